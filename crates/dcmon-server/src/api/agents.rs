//! Agents seen from the API: list (viewer), approve and revoke, enrollment tokens
//! (operator). Changes are audited with the caller and its address.

use super::account::{json_body, remote};
use super::{ApiError, run_blocking};
use crate::auth::Principal;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use dcmon_wire::api::AgentStatus;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

/// Longest validity of an enrollment token made over the API.
const MAX_ENROLL_TTL_S: u64 = 30 * 86_400;

/// `GET /api/agents` (viewer).
pub(super) async fn list(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let db = state.control.clone();
    let agents = run_blocking(move || db.list_agents(), ApiError::internal).await?;
    Ok(Json(json!({ "agents": agents })))
}

async fn set_status(
    state: &AppState,
    who: Principal,
    peer: SocketAddr,
    headers: &HeaderMap,
    agent: String,
    status: AgentStatus,
) -> Result<Json<serde_json::Value>, ApiError> {
    let remote = remote(state, peer, headers);
    let db = state.control.clone();
    let record = run_blocking(
        move || db.set_agent_status_from(&agent, status, &who.name, Some(&remote)),
        |e| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{e:#}")),
    )
    .await?;
    Ok(Json(json!(record)))
}

/// `POST /api/agents/{id}/approve` (operator): admits a pending (or revoked) agent.
pub(super) async fn approve(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_status(&state, who, peer, &headers, id, AgentStatus::Approved).await
}

/// `POST /api/agents/{id}/revoke` (operator): refuses the agent from its next request.
pub(super) async fn revoke(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_status(&state, who, peer, &headers, id, AgentStatus::Revoked).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    uses: u32,
    ttl_s: u64,
}

/// `POST /api/enroll-tokens` (operator) `{"uses", "ttl_s"}` → 201 `{"token", "expires_ms"}`.
pub(super) async fn create_enroll_token(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let b: EnrollBody = json_body(&body, r#"{"uses": 1, "ttl_s": 3600}"#)?;
    if !(1..=10_000).contains(&b.uses) {
        return Err(ApiError::bad_request("uses: must be between 1 and 10000"));
    }
    if !(60..=MAX_ENROLL_TTL_S).contains(&b.ttl_s) {
        return Err(ApiError::bad_request(format!(
            "ttl_s: must be between 60 and {MAX_ENROLL_TTL_S} (30 days)"
        )));
    }
    let remote = remote(&state, peer, &headers);
    let db = state.control.clone();
    let (token, expires_ms) = run_blocking(
        move || {
            db.create_enroll_token_from(
                b.uses,
                Duration::from_secs(b.ttl_s),
                &who.name,
                Some(&remote),
            )
        },
        ApiError::internal,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token, "expires_ms": expires_ms })),
    ))
}
