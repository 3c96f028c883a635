//! The HTTP surface: `app(state)` builds the whole router.
//!
//! Anonymous routes: `GET /healthz` only. Agent routes need a valid agent signature;
//! everything else needs an API token with a sufficient role.

mod agent;
mod alerts;
mod bmcs;
mod commands;
mod events;
mod fans;
mod prom;
mod remote_write;

pub use remote_write::SeriesCache;

use crate::auth::{Role, require_role};
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use dcmon_wire::api::ErrorBody;

/// Largest request body accepted (a spooled multi-batch upload fits many times over).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The version and build printed by `/healthz` and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every error answer: HTTP status, stable machine code, human message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A failure of ours: logged in full, answered without internals.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(ErrorBody {
                code: self.code.to_owned(),
                message: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"dcmon\""),
            );
        }
        resp
    }
}

/// The whole router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route(dcmon_wire::api::PATH_REGISTER, post(agent::register))
        .route(dcmon_wire::api::PATH_PUSH, post(agent::push))
        .route(dcmon_wire::api::PATH_EVENTS, post(agent::events))
        .route(dcmon_wire::command::PATH_COMMANDS, post(commands::poll))
        .route(
            dcmon_wire::command::PATH_COMMAND_RESULT,
            post(commands::result),
        )
        .route("/api/commands", get(commands::list).post(commands::create))
        .route("/api/commands/{id}", get(commands::get_one))
        .route("/api/v1/query", get(prom::query).post(prom::query))
        .route(
            "/api/v1/query_range",
            get(prom::query_range).post(prom::query_range),
        )
        .route("/api/v1/series", get(prom::series).post(prom::series))
        .route("/api/v1/labels", get(prom::labels).post(prom::labels))
        .route("/api/v1/label/{name}/values", get(prom::label_values))
        .route("/api/v1/write", post(remote_write::write))
        .route("/api/v1/status/buildinfo", get(prom::buildinfo))
        .route("/api/agents", get(agents_list))
        .route("/api/bmcs", get(bmcs::list).post(bmcs::create))
        .route("/api/bmcs/import", post(bmcs::import))
        .route("/api/bmcs/{name}", delete(bmcs::remove))
        .route(
            "/api/bmcs/{name}/curve",
            get(fans::get_curve)
                .put(fans::put_curve)
                .delete(fans::delete_curve),
        )
        .route("/api/bmcs/{name}/fans", get(fans::status))
        .route("/api/events", get(events::list))
        .route("/api/alerts", get(alerts::list))
        .route("/api/alerts/{id}", get(alerts::get_one))
        .route("/api/alerts/{id}/ack", post(alerts::ack))
        .route(
            "/api/rules",
            get(alerts::rules_list).post(alerts::rules_add),
        )
        .route("/api/rules/import", post(alerts::rules_import))
        .route("/api/rules/{name}", delete(alerts::rules_remove))
        .route(
            "/api/channels",
            get(alerts::channels_list).post(alerts::channels_add),
        )
        .route("/api/channels/{name}", delete(alerts::channels_remove))
        .route("/api/channels/{name}/test", post(alerts::channels_test))
        .route(
            "/api/silences",
            get(alerts::silences_list).post(alerts::silences_add),
        )
        .route("/api/silences/{id}", delete(alerts::silences_remove))
        .route("/api/notifications", get(alerts::notifications))
        .route("/api/stats", get(stats))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Runs store work on the blocking pool (never on the async executor) and turns its
/// error into an answer with `to_answer`; a panicked task is an internal error.
pub(crate) async fn run_blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
    to_answer: impl FnOnce(E) -> ApiError,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
        .map_err(to_answer)
}

/// A storage failure as an answer: limits the client can act on are theirs, the rest ours.
pub(crate) fn tsdb_error(e: dcmon_tsdb::TsdbError) -> ApiError {
    if e.is_client_error() {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "limit", e.to_string())
    } else {
        ApiError::internal(e)
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "version": VERSION,
        "build": option_env!("DCMON_BUILD").unwrap_or("dev"),
    }))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn agents_list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_role(&state, &headers, Role::Viewer).await?;
    let db = state.control.clone();
    let agents = run_blocking(move || db.list_agents(), ApiError::internal).await?;
    Ok(Json(serde_json::json!({ "agents": agents })))
}

async fn stats(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_role(&state, &headers, Role::Viewer).await?;
    let tsdb = state.tsdb.clone();
    let s = run_blocking(move || tsdb.stats(), ApiError::internal).await?;
    Ok(Json(serde_json::json!({
        "series": s.series,
        "samples": s.samples,
        "disk_bytes": s.disk_bytes,
        "version": VERSION,
    })))
}

#[cfg(test)]
mod tests;
