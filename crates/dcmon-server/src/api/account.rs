//! Sign-in, sign-out and the caller's own account (`/api/session`, `/api/me`).

use super::{ApiError, run_blocking};
use crate::accounts::{LockoutPolicy, LoginAttempt, LoginOutcome};
use crate::auth::{self, Principal};
use crate::state::AppState;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// Parses a JSON body, naming the expected shape when it does not fit.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(
    body: &Bytes,
    expected: &str,
) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body: {e}; expected {expected}")))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    user: String,
    password: String,
}

/// A time as RFC 3339 (UTC), for messages.
pub(super) fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `POST /api/session` (public): `{"user", "password"}` → `{"user", "role", "csrf"}`
/// and the session cookie.
pub(super) async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: LoginBody = json_body(&body, r#"{"user": U, "password": P}"#)?;
    let remote = peer.ip().to_string();
    let lockout = LockoutPolicy::from_config(&state.config().auth);
    let now = state.clock.now_ms();
    let db = state.control.clone();
    let outcome = run_blocking(
        move || {
            db.login(
                &LoginAttempt {
                    user: &b.user,
                    password: &b.password,
                    remote: Some(&remote),
                },
                lockout,
                now,
            )
        },
        ApiError::internal,
    )
    .await?;
    match outcome {
        LoginOutcome::Success(s) => {
            let body = Json(serde_json::json!({
                "user": s.user,
                "role": s.role,
                "csrf": s.csrf,
            }));
            Ok(([(header::SET_COOKIE, auth::session_cookie(&s.id))], body).into_response())
        }
        LoginOutcome::BadCredentials => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "user name or password is wrong",
        )),
        LoginOutcome::Locked { until_ms } => Err(ApiError::new(
            StatusCode::LOCKED,
            "locked",
            format!(
                "too many failed sign-ins: this user is locked until {} (an admin can unlock it sooner)",
                rfc3339(until_ms)
            ),
        )),
    }
}

/// `DELETE /api/session`: signs out (ends the session of the cookie sent).
pub(super) async fn logout(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(id) = auth::session_id(&headers) {
        let id = id.to_owned();
        let db = state.control.clone();
        let remote = peer.ip().to_string();
        run_blocking(
            move || db.end_session(&id, Some(&remote)),
            ApiError::internal,
        )
        .await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, auth::clear_session_cookie())],
    )
        .into_response())
}

/// `GET /api/me`: `{"name", "role", "via", "totp_enabled"}`.
pub(super) async fn me(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let db = state.control.clone();
    let name = who.name.clone();
    let user = run_blocking(move || db.user(&name), ApiError::internal).await?;
    Ok(Json(serde_json::json!({
        "name": who.name,
        "role": who.role,
        "via": who.via,
        "totp_enabled": user.is_some_and(|u| u.totp_enabled),
    })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(super::rfc3339(1_800_000_000_000), "2027-01-15T08:00:00Z");
    }
}
