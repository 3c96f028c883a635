//! Agent endpoints: registration with an enrollment token, signed batch push.

use super::ApiError;
use crate::auth::{verify_agent, verify_registration};
use crate::config::Approval;
use crate::control::EnrollError;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use dcmon_wire::api::{
    AgentEvent, AgentStatus, MAX_EVENTS_PER_REPORT, PushResponse, RegisterRequest,
    RegisterResponse, codes,
};
use std::net::SocketAddr;

pub(super) fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
}

fn remote(addr: &SocketAddr) -> String {
    addr.ip().to_string()
}

pub(super) async fn register(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<RegisterResponse>, ApiError> {
    let req: RegisterRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("registration body: {e}")))?;
    for (field, value, max) in [
        ("hostname", &req.hostname, 253),
        ("machine_id", &req.machine_id, 128),
        ("agent_version", &req.agent_version, 64),
    ] {
        if value.is_empty() || value.len() > max || value.chars().any(|c| c.is_control()) {
            return Err(ApiError::bad_request(format!(
                "{field}: must be 1 to {max} printable characters"
            )));
        }
    }
    verify_registration(
        &state,
        &method,
        path_and_query(&uri),
        &headers,
        &body,
        &req.public_key,
    )?;
    let initial = match state.config().agents.approval {
        Approval::Auto => AgentStatus::Approved,
        Approval::Manual => AgentStatus::Pending,
    };
    let db = state.control.clone();
    let remote = Some(remote(&addr));
    let token = req.token.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        db.register_agent(&token, &req, initial, remote.as_deref())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    match outcome {
        Ok(agent) => {
            state.sessions.forget(&agent.id);
            tracing::info!(agent = %agent.id, host = %agent.host, status = agent.status.as_str(), "agent registered");
            Ok(Json(RegisterResponse {
                agent_id: agent.id,
                status: agent.status,
                host: agent.host,
            }))
        }
        Err(e) => {
            let status = match e {
                EnrollError::Unknown => StatusCode::UNAUTHORIZED,
                EnrollError::Expired | EnrollError::UsedUp => StatusCode::FORBIDDEN,
            };
            Err(ApiError::new(
                status,
                codes::ENROLL_TOKEN_INVALID,
                e.to_string(),
            ))
        }
    }
}

pub(super) async fn push(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PushResponse>, ApiError> {
    let agent = verify_agent(&state, &method, path_and_query(&uri), &headers, &body).await?;
    let resp = crate::ingest::push(&state, &agent, &body).await?;
    state.saw_agent(&agent.id, &addr);
    Ok(Json(resp))
}

/// `POST /api/agent/events`: the agent's events, stored once each under its host; a
/// `fan_write` is also an audit entry, as every fan write the server makes is.
pub(super) async fn events(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let agent = verify_agent(&state, &method, path_and_query(&uri), &headers, &body).await?;
    let events: Vec<AgentEvent> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("events body: {e}")))?;
    if events.len() > MAX_EVENTS_PER_REPORT {
        return Err(ApiError::bad_request(format!(
            "{} events in one report; at most {MAX_EVENTS_PER_REPORT}",
            events.len()
        )));
    }
    let mut rows = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let bad = |what: &str| ApiError::bad_request(format!("events[{i}].{what}"));
        if e.id.is_empty() || e.id.len() > 64 {
            return Err(bad("id: 1 to 64 characters"));
        }
        if e.kind.is_empty()
            || e.kind.len() > 64
            || !e.kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return Err(bad("kind: 1 to 64 of a-z and _"));
        }
        if !matches!(e.severity.as_str(), "info" | "warning" | "critical") {
            return Err(bad("severity: info, warning or critical"));
        }
        if e.message.len() > 4096 || e.detail.as_ref().is_some_and(|d| d.len() > 65536) {
            return Err(bad("message (4 KiB) or detail (64 KiB) too long"));
        }
        let detail = match &e.detail {
            Some(d) => serde_json::from_str(d).map_err(|_| bad("detail: not JSON"))?,
            None => serde_json::Value::Null,
        };
        rows.push(crate::events::NewEvent {
            ts_ms: e.ts_ms,
            source: "agent".into(),
            host: agent.host.clone(),
            bmc: None,
            kind: e.kind.clone(),
            severity: e.severity.clone(),
            message: e.message.clone(),
            detail,
            dedup_key: format!("agent:{}:{}", agent.id, e.id),
        });
    }
    let db = state.control.clone();
    let actor = format!("agent:{}", agent.host);
    let host = agent.host.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        for r in rows {
            // Audited only when stored now, so a resent report audits nothing twice.
            let stored = db.add_events(std::slice::from_ref(&r))? == 1;
            if stored && r.kind == "fan_write" {
                db.audit(&actor, "ipmi.fan_write", &host, &r.message, None)?;
            }
        }
        Ok(())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}
