//! Command endpoints: the agent's long-poll and result report (signed), and the REST API
//! that queues commands and shows their history (API token: operator to send, viewer to
//! read).

use super::agent::path_and_query;
use super::{ApiError, ClientAddr, run_blocking};
use crate::auth::{Principal, verify_agent};
use crate::commands::{CommandRecord, DEFAULT_TTL_MS};
use crate::state::AppState;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use dcmon_wire::command::{
    AgentCommand, CommandResult, CommandSpec, MAX_POLL_WAIT_MS, PollRequest,
};
use std::net::SocketAddr;
use std::time::Duration;

/// `POST /api/agent/commands`: answers with the agent's queued commands as soon as
/// there are any, or with none after the wait.
pub(super) async fn poll(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Vec<AgentCommand>>, ApiError> {
    let agent = verify_agent(&state, &method, path_and_query(&uri), &headers, &body).await?;
    let req: PollRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("poll body: {e}")))?;
    state.saw_agent(&agent.id, &addr);
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(u64::from(req.wait_ms.min(MAX_POLL_WAIT_MS)));
    let notify = state.commands.agent(&agent.id);
    loop {
        // Registered before looking, so a command queued in between still wakes us.
        let woken = notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let db = state.control.clone();
        let id = agent.id.clone();
        let commands = run_blocking(move || db.take_commands(&id), ApiError::internal).await?;
        if !commands.is_empty() {
            tracing::info!(agent = %agent.id, count = commands.len(), "commands delivered");
            return Ok(Json(commands));
        }
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep_until(deadline) => return Ok(Json(Vec::new())),
        }
    }
}

/// `POST /api/agent/commands/result`.
pub(super) async fn result(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let agent = verify_agent(&state, &method, path_and_query(&uri), &headers, &body).await?;
    let result: CommandResult = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("command result body: {e}")))?;
    let db = state.control.clone();
    let id = agent.id.clone();
    let stored = run_blocking(move || db.finish_command(&id, &result), ApiError::internal).await?;
    match stored {
        Some(record) => {
            tracing::info!(agent = %agent.id, command = record.id, kind = %record.kind, status = %record.status, "command finished");
            state.commands.results.notify_waiters();
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no command with this id awaits a result from this agent",
        )),
    }
}

/// Body of `POST /api/commands`: `{"host": "gpu01", "kind": "fan_control", "params": {...}}`.
#[derive(serde::Deserialize)]
pub(super) struct NewCommand {
    /// Agent id, host label or hostname.
    host: String,
    #[serde(flatten)]
    command: CommandSpec,
    /// Seconds the command waits for its agent before it expires (default 600).
    #[serde(default)]
    ttl_s: Option<u32>,
}

#[derive(serde::Deserialize)]
pub(super) struct WaitQuery {
    /// Wait up to this long for the result (e.g. `10s`); at most 60 s.
    wait: Option<String>,
}

fn parse_wait(q: &WaitQuery) -> Result<Duration, ApiError> {
    match &q.wait {
        None => Ok(Duration::ZERO),
        Some(w) => humantime::parse_duration(w)
            .map(|d| d.min(Duration::from_secs(60)))
            .map_err(|e| ApiError::bad_request(format!("wait={w:?}: {e}; use e.g. wait=10s"))),
    }
}

/// Waits until the command is final or `wait` passes; returns its latest state.
async fn settle(state: &AppState, id: i64, wait: Duration) -> Result<CommandRecord, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let woken = state.commands.results.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let db = state.control.clone();
        let record = run_blocking(move || db.command(id), ApiError::internal)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no command {id}"),
                )
            })?;
        if record.is_final() || tokio::time::Instant::now() >= deadline {
            return Ok(record);
        }
        // Results written by another process reach us through the watcher, which
        // notifies at most four times a second; the timer bounds the wait either way.
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// `POST /api/commands[?wait=10s]` (operator).
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ClientAddr(remote): ClientAddr,
    Query(q): Query<WaitQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<CommandRecord>), ApiError> {
    let wait = parse_wait(&q)?;
    let new: NewCommand = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "command body: {e}; expected {{\"host\": H, \"kind\": fan_control|reboot|config_update|collect_now, \"params\": {{...}}}}"
        ))
    })?;
    new.command.validate().map_err(ApiError::bad_request)?;
    let db = state.control.clone();
    let ttl = new
        .ttl_s
        .map_or(DEFAULT_TTL_MS, |s| i64::from(s.max(1)) * 1000);
    let queued = run_blocking(
        move || db.queue_command(&new.host, &new.command, &who.name, Some(&remote), ttl),
        |e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "command_refused",
                e.to_string(),
            )
        },
    )
    .await?;
    state.commands.wake(&queued.agent_id);
    let record = if wait.is_zero() {
        queued
    } else {
        settle(&state, queued.id, wait).await?
    };
    Ok((StatusCode::CREATED, Json(record)))
}

#[derive(serde::Deserialize)]
pub(super) struct ListQuery {
    host: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/commands[?host=H&limit=N]` (viewer): newest first.
pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let db = state.control.clone();
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let commands = run_blocking(
        move || db.list_commands(q.host.as_deref(), limit),
        |e| ApiError::bad_request(e.to_string()),
    )
    .await?;
    Ok(Json(serde_json::json!({ "commands": commands })))
}

/// `GET /api/commands/{id}[?wait=10s]` (viewer).
pub(super) async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<CommandRecord>, ApiError> {
    let wait = parse_wait(&q)?;
    Ok(Json(settle(&state, id, wait).await?))
}
