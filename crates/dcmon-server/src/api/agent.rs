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
use dcmon_wire::api::{AgentStatus, PushResponse, RegisterRequest, RegisterResponse, codes};
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
    let now = state.clock.now_ms();
    state
        .last_seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(agent.id.clone(), (now, remote(&addr)));
    Ok(Json(resp))
}
