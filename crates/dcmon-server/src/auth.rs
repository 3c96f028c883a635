//! Who is calling: users' API tokens (Bearer) with roles, and agents' signed requests.

use crate::api::ApiError;
use crate::control::AgentRecord;
use crate::state::AppState;
use axum::http::{HeaderMap, Method, StatusCode};
use dcmon_wire::api::{AgentStatus, codes};
use dcmon_wire::sign;
use std::collections::HashMap;
use std::sync::Mutex;

/// Roles, least to most privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read only (seed name `readonly`).
    Viewer,
    /// Changes servers, rules, commands (seed name `readwrite`).
    Operator,
    /// Everything, users included.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" | "readonly" => Some(Self::Viewer),
            "operator" | "readwrite" => Some(Self::Operator),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// An authenticated user or automation.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// Checks the `Authorization: Bearer` token and that its role is at least `min`.
pub async fn require_role(
    state: &AppState,
    headers: &HeaderMap,
    min: Role,
) -> Result<Principal, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "authentication required: send `Authorization: Bearer <api token>` (create one with `dcmon token create`)",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("Authorization header must be `Bearer <api token>`"))?
        .to_owned();
    // Answered from memory unless the control file changed: no blocking-pool hop.
    let record = state
        .control
        .lookup_api_token(&token)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::unauthorized("API token is not valid (unknown or revoked)"))?;
    if record.role < min {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this needs role {} or higher; the token {:?} has role {}",
                min.as_str(),
                record.name,
                record.role.as_str()
            ),
        ));
    }
    Ok(Principal {
        name: format!("token:{}", record.name),
        role: record.role,
    })
}

/// Nonces seen within the skew window, per agent: a replayed request is refused even
/// when its signature and timestamp are valid.
#[derive(Default)]
pub struct NonceCache {
    seen: Mutex<HashMap<String, i64>>,
}

impl NonceCache {
    /// Records `key`; false when it was already recorded and has not expired.
    pub fn insert(&self, key: String, expires_ms: i64, now_ms: i64) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() > 4096 && seen.len().is_power_of_two() {
            seen.retain(|_, exp| *exp > now_ms);
        }
        match seen.get(&key) {
            Some(exp) if *exp > now_ms => false,
            _ => {
                seen.insert(key, expires_ms);
                true
            }
        }
    }
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message)
}

/// Verifies an agent's signed request; returns the agent when it may proceed.
pub async fn verify_agent(
    state: &AppState,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<AgentRecord, ApiError> {
    let parsed = sign::parse_headers(|name| headers.get(name).and_then(|v| v.to_str().ok()));
    let sig = match parsed {
        Ok(s) => s,
        Err(e @ sign::SignError::MissingHeader(_)) => {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                codes::SIGNATURE_MISSING,
                format!("unsigned agent request: {e}"),
            ));
        }
        Err(e) => {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                codes::SIGNATURE_INVALID,
                e.to_string(),
            ));
        }
    };
    let Some(agent_id) = sig.agent_id.clone() else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            codes::SIGNATURE_MISSING,
            format!("header {} is missing", sign::HEADER_AGENT),
        ));
    };
    check_clock(state, sig.timestamp_ms)?;
    let db = state.control.clone();
    let id = agent_id.clone();
    let agent = tokio::task::spawn_blocking(move || db.agent(&id))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            refuse(
                StatusCode::UNAUTHORIZED,
                codes::AGENT_UNKNOWN,
                format!(
                    "agent {agent_id} is not registered here; register with `dcmon-agent register`"
                ),
            )
        })?;
    let key = sign::public_key_from_text(&agent.public_key).map_err(ApiError::internal)?;
    sign::verify(&key, &sig, method.as_str(), path_and_query, body).map_err(|e| {
        refuse(
            StatusCode::UNAUTHORIZED,
            codes::SIGNATURE_INVALID,
            format!("agent {}: {e}", agent.id),
        )
    })?;
    check_nonce(state, &agent.id, &sig)?;
    match agent.status {
        AgentStatus::Approved => Ok(agent),
        AgentStatus::Pending => Err(refuse(
            StatusCode::FORBIDDEN,
            codes::AGENT_PENDING,
            format!(
                "agent {} ({}) awaits approval: `dcmon agents approve {}`",
                agent.id, agent.host, agent.id
            ),
        )),
        AgentStatus::Revoked => Err(refuse(
            StatusCode::FORBIDDEN,
            codes::AGENT_REVOKED,
            format!(
                "agent {} ({}) was revoked; re-register with a new enrollment token",
                agent.id, agent.host
            ),
        )),
    }
}

/// Verifies the registration request's self-signature (proof of key possession).
pub fn verify_registration(
    state: &AppState,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    public_key: &str,
) -> Result<(), ApiError> {
    let sig = sign::parse_headers(|name| headers.get(name).and_then(|v| v.to_str().ok())).map_err(
        |e| match e {
            sign::SignError::MissingHeader(_) => refuse(
                StatusCode::UNAUTHORIZED,
                codes::SIGNATURE_MISSING,
                e.to_string(),
            ),
            _ => refuse(
                StatusCode::UNAUTHORIZED,
                codes::SIGNATURE_INVALID,
                e.to_string(),
            ),
        },
    )?;
    check_clock(state, sig.timestamp_ms)?;
    let key = sign::public_key_from_text(public_key).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("public_key: {e}"),
        )
    })?;
    sign::verify(&key, &sig, method.as_str(), path_and_query, body).map_err(|e| {
        refuse(
            StatusCode::UNAUTHORIZED,
            codes::SIGNATURE_INVALID,
            format!("registration: {e}"),
        )
    })?;
    check_nonce(state, public_key, &sig)
}

fn check_clock(state: &AppState, timestamp_ms: i64) -> Result<(), ApiError> {
    let now = state.clock.now_ms();
    // The nonce cache lives in memory: a request signed before this process started
    // could be a capture replayed after a restart, so it is refused. An agent signs
    // every retry afresh, so it only sees this if its clock runs behind.
    if timestamp_ms < state.boot_ms {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            codes::TIMESTAMP_STALE,
            format!(
                "request signed at {timestamp_ms} ms, before this server started ({} ms): sign it again (and check the agent's clock)",
                state.boot_ms
            ),
        ));
    }
    let skew = state.config().agents.max_clock_skew.as_millis() as i64;
    if (now - timestamp_ms).abs() > skew {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            codes::TIMESTAMP_STALE,
            format!(
                "request signed at {timestamp_ms} ms but the server time is {now} ms ({:+.1} s apart, more than the allowed {} s): sync the agent's clock (NTP)",
                (timestamp_ms - now) as f64 / 1000.0,
                skew / 1000
            ),
        ));
    }
    Ok(())
}

fn check_nonce(state: &AppState, who: &str, sig: &sign::SignatureHeaders) -> Result<(), ApiError> {
    let skew = state.config().agents.max_clock_skew.as_millis() as i64;
    // Past timestamp + skew the clock check refuses the request anyway.
    let expires = sig.timestamp_ms + skew + 1;
    if !state.nonces.insert(
        format!("{who}/{}", sig.nonce),
        expires,
        state.clock.now_ms(),
    ) {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            codes::NONCE_REPLAYED,
            format!(
                "nonce {} was already used: replayed request refused",
                sig.nonce
            ),
        ));
    }
    Ok(())
}
