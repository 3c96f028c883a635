//! The HTTP surface: every route is declared once in [`routes`] with its [`Access`]
//! policy, and [`app`] builds the router from that table, so no route exists without a
//! policy and the authorisation-matrix test covers every route.
//!
//! Public routes: `GET /healthz`, `POST /api/session` (sign-in) and the UI's sign-in page
//! and static files. Agent routes need a valid agent signature (checked by their
//! handlers); everything else needs a user (API token, session or trusted proxy) with a
//! sufficient role, checked by `auth::enforce` before the handler runs.

mod account;
mod agent;
mod agents;
mod alerts;
mod audit;
mod bmcs;
mod commands;
mod events;
mod fans;
mod fleet;
mod prom;
mod remote_write;

pub use remote_write::SeriesCache;

use crate::auth::Role;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
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

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: `/healthz`, the sign-in page and its static files, `POST /api/session`.
    Public,
    /// Agents: the handler verifies the request signature itself.
    Agent,
    /// JSON API: anonymous gets 401, too low a role 403 (JSON errors).
    Api(Role),
    /// HTML page: anonymous is sent to `/login?next=<path>` (303), too low a role gets a
    /// 403 page.
    Page(Role),
}

/// One route: method, path, policy, handler.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: MethodRouter<AppState>,
}

impl Route {
    pub fn get<H, T>(path: &'static str, access: Access, h: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        Self::new(Method::GET, path, access, axum::routing::get(h))
    }

    pub fn post<H, T>(path: &'static str, access: Access, h: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        Self::new(Method::POST, path, access, axum::routing::post(h))
    }

    pub fn put<H, T>(path: &'static str, access: Access, h: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        Self::new(Method::PUT, path, access, axum::routing::put(h))
    }

    pub fn delete<H, T>(path: &'static str, access: Access, h: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        Self::new(Method::DELETE, path, access, axum::routing::delete(h))
    }

    fn new(
        method: Method,
        path: &'static str,
        access: Access,
        handler: MethodRouter<AppState>,
    ) -> Self {
        Self {
            method,
            path,
            access,
            handler,
        }
    }
}

/// Every route of the server, in one list: the JSON API here, then the UI's pages.
pub fn routes() -> Vec<Route> {
    let mut all = api_routes();
    all.extend(alerts::routes());
    all.extend(crate::web::routes());
    all
}

fn api_routes() -> Vec<Route> {
    use Access::{Agent, Api, Public};
    use Role::{Admin, Operator, Viewer};
    use dcmon_wire::api::{PATH_EVENTS, PATH_PUSH, PATH_REGISTER};
    use dcmon_wire::command::{PATH_COMMAND_RESULT, PATH_COMMANDS};
    vec![
        Route::get("/healthz", Public, healthz),
        // Agents.
        Route::post(PATH_REGISTER, Agent, agent::register),
        Route::post(PATH_PUSH, Agent, agent::push),
        Route::post(PATH_EVENTS, Agent, agent::events),
        Route::post(PATH_COMMANDS, Agent, commands::poll),
        Route::post(PATH_COMMAND_RESULT, Agent, commands::result),
        // Accounts.
        Route::post("/api/session", Public, account::login),
        Route::delete("/api/session", Api(Viewer), account::logout),
        Route::get("/api/me", Api(Viewer), account::me),
        Route::post("/api/me/password", Api(Viewer), account::change_password),
        Route::post("/api/me/totp", Api(Viewer), account::begin_totp),
        Route::post("/api/me/totp/confirm", Api(Viewer), account::confirm_totp),
        Route::delete("/api/me/totp", Api(Viewer), account::disable_totp),
        Route::get("/api/users", Api(Admin), account::list_users),
        Route::post("/api/users", Api(Admin), account::create_user),
        Route::put("/api/users/{name}", Api(Admin), account::update_user),
        Route::delete("/api/users/{name}", Api(Admin), account::remove_user),
        Route::get("/api/tokens", Api(Viewer), account::list_tokens),
        Route::post("/api/tokens", Api(Viewer), account::create_token),
        Route::delete("/api/tokens/{id}", Api(Viewer), account::revoke_token),
        Route::get("/api/audit", Api(Admin), audit::list),
        // Commands.
        Route::get("/api/commands", Api(Viewer), commands::list),
        Route::post("/api/commands", Api(Operator), commands::create),
        Route::get("/api/commands/{id}", Api(Viewer), commands::get_one),
        // Prometheus HTTP API and remote_write.
        Route::get("/api/v1/query", Api(Viewer), prom::query),
        Route::post("/api/v1/query", Api(Viewer), prom::query),
        Route::get("/api/v1/query_range", Api(Viewer), prom::query_range),
        Route::post("/api/v1/query_range", Api(Viewer), prom::query_range),
        Route::get("/api/v1/series", Api(Viewer), prom::series),
        Route::post("/api/v1/series", Api(Viewer), prom::series),
        Route::get("/api/v1/labels", Api(Viewer), prom::labels),
        Route::post("/api/v1/labels", Api(Viewer), prom::labels),
        Route::get(
            "/api/v1/label/{name}/values",
            Api(Viewer),
            prom::label_values,
        ),
        Route::post("/api/v1/write", Api(Operator), remote_write::write),
        Route::get("/api/v1/status/buildinfo", Api(Viewer), prom::buildinfo),
        // Fleet.
        Route::get("/api/agents", Api(Viewer), agents::list),
        Route::post("/api/agents/{id}/approve", Api(Operator), agents::approve),
        Route::post("/api/agents/{id}/revoke", Api(Operator), agents::revoke),
        Route::post(
            "/api/enroll-tokens",
            Api(Operator),
            agents::create_enroll_token,
        ),
        Route::get("/api/events", Api(Viewer), events::list),
        Route::get("/api/fleet", Api(Viewer), fleet::table),
        Route::get("/api/fleet/stream", Api(Viewer), fleet::stream),
        Route::get("/api/stats", Api(Viewer), stats),
        // BMCs and fans.
        Route::get("/api/bmcs", Api(Viewer), bmcs::list),
        Route::post("/api/bmcs", Api(Admin), bmcs::create),
        Route::post("/api/bmcs/import", Api(Admin), bmcs::import),
        Route::delete("/api/bmcs/{name}", Api(Admin), bmcs::remove),
        Route::post("/api/bmcs/{name}/check", Api(Operator), bmcs::check),
        Route::get("/api/bmcs/{name}/curve", Api(Viewer), fans::get_curve),
        Route::put("/api/bmcs/{name}/curve", Api(Operator), fans::put_curve),
        Route::delete("/api/bmcs/{name}/curve", Api(Operator), fans::delete_curve),
        Route::get("/api/bmcs/{name}/fans", Api(Viewer), fans::status),
        Route::post(
            "/api/bmcs/{name}/fans/preview",
            Api(Operator),
            fans::preview,
        ),
    ]
}

/// The whole router, built from [`routes`], each route behind its policy.
pub fn app(state: AppState) -> Router {
    router_from(state, routes())
}

/// A router of `table`, each route behind its policy.
pub(crate) fn router_from(state: AppState, table: Vec<Route>) -> Router {
    let mut router = Router::new();
    for route in table {
        let policy = axum::middleware::from_fn_with_state(
            (state.clone(), route.access),
            crate::auth::enforce,
        );
        router = router.route(route.path, route.handler.route_layer(policy));
    }
    router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The caller's address, as audit entries record it: the TCP peer, or the client a
/// trusted reverse proxy names (see `auth::client_ip`).
pub(crate) struct ClientAddr(pub String);

impl axum::extract::FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        use axum::extract::ConnectInfo;
        let ConnectInfo(peer) =
            ConnectInfo::<std::net::SocketAddr>::from_request_parts(parts, state)
                .await
                .map_err(ApiError::internal)?;
        Ok(Self(
            crate::auth::client_ip(state, peer, &parts.headers).to_string(),
        ))
    }
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

async fn stats(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
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
#[cfg(test)]
mod tests_auth;
