//! Accounts over HTTP: sign-in and sign-out (`/api/session`), the caller's own account
//! (`/api/me`: password, TOTP), users (admin) and API tokens.

use super::{ApiError, run_blocking};
use crate::accounts::{
    AccountError, LockoutPolicy, LoginAttempt, LoginOutcome, UserChange, UserRecord,
};
use crate::auth::{self, Principal, Role, Via};
use crate::secrets::SecretBox;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use std::net::SocketAddr;

/// Parses a JSON body, naming the expected shape when it does not fit.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(
    body: &Bytes,
    expected: &str,
) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body: {e}; expected {expected}")))
}

/// A time as RFC 3339 (UTC), for messages.
pub(super) fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The client's address as the audit log records it.
pub(super) fn remote(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> String {
    auth::client_ip(state, peer, headers).to_string()
}

fn parse_role(field: &str, text: &str) -> Result<Role, ApiError> {
    Role::parse(text).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{field}: {text:?} is not a role; use viewer, operator or admin"
        ))
    })
}

pub(super) fn account_error(e: AccountError) -> ApiError {
    match e {
        AccountError::Invalid(m) => ApiError::bad_request(m),
        e @ AccountError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        e @ AccountError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "exists", e.to_string()),
        e @ AccountError::LastAdmin(_) => {
            ApiError::new(StatusCode::CONFLICT, "last_admin", e.to_string())
        }
        e @ AccountError::WrongPassword => {
            ApiError::new(StatusCode::FORBIDDEN, "wrong_password", e.to_string())
        }
        e @ AccountError::WrongCode => {
            ApiError::new(StatusCode::BAD_REQUEST, "wrong_code", e.to_string())
        }
        e @ AccountError::NoPendingTotp => {
            ApiError::new(StatusCode::CONFLICT, "no_pending_totp", e.to_string())
        }
        e @ (AccountError::Secret(_) | AccountError::Store(_)) => ApiError::internal(e),
    }
}

/// Account changes are for users: a token's owner or a proxy user may not be one.
fn own_user(who: &Principal) -> Result<String, ApiError> {
    if who.via == Via::Proxy {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "proxy_user",
            "this account is managed by the reverse proxy that signed you in",
        ));
    }
    Ok(who.name.clone())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    user: String,
    password: String,
    totp: Option<String>,
    recovery_code: Option<String>,
}

/// `POST /api/session` (public): `{"user", "password", "totp"?, "recovery_code"?}` →
/// `{"user", "role", "csrf"}` and the session cookie. Every attempt is audited.
pub(super) async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: LoginBody = json_body(
        &body,
        r#"{"user": U, "password": P, "totp": "123456" (when enabled)}"#,
    )?;
    let ip = auth::client_ip(&state, peer, &headers);
    let remote = ip.to_string();
    let config = state.config();
    let now = state.clock.now_ms();
    if let Err((retry_s, first)) =
        state
            .login_limit
            .check(ip, now, config.auth.login_attempts_per_minute)
    {
        if first {
            // One entry per run of refusals, so a flood cannot flood the log.
            let db = state.control.clone();
            let user: String = b.user.chars().take(64).collect();
            let r = remote.clone();
            run_blocking(
                move || {
                    db.audit(
                        &user,
                        "login.rate_limited",
                        &user,
                        &format!(
                            "more than {} attempts a minute from {r}",
                            config.auth.login_attempts_per_minute
                        ),
                        Some(&r),
                    )
                },
                ApiError::internal,
            )
            .await?;
        }
        let mut resp = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many sign-in attempts from {remote}; try again in {retry_s} s"),
        )
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_s));
        return Ok(resp);
    }
    let lockout = LockoutPolicy::from_config(&config.auth);
    let data_dir = config.data_dir.clone();
    let db = state.control.clone();
    let outcome = run_blocking(
        move || {
            db.login(
                &LoginAttempt {
                    user: &b.user,
                    password: &b.password,
                    totp: b.totp.as_deref(),
                    recovery_code: b.recovery_code.as_deref(),
                    remote: Some(&remote),
                },
                lockout,
                || SecretBox::open(&data_dir),
                now,
            )
        },
        account_error,
    )
    .await?;
    match outcome {
        LoginOutcome::Success(s) => Ok((
            [(header::SET_COOKIE, auth::session_cookie(&s.id))],
            Json(json!({ "user": s.user, "role": s.role, "csrf": s.csrf })),
        )
            .into_response()),
        LoginOutcome::BadCredentials => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "user name or password is wrong",
        )),
        LoginOutcome::TotpRequired => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "totp_required",
            "enter the 6-digit code from your authenticator app (or a recovery code)",
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
        let remote = remote(&state, peer, &headers);
        run_blocking(move || db.end_session(&id, Some(&remote)), account_error).await?;
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
    let user = run_blocking(move || db.user(&name), account_error).await?;
    Ok(Json(json!({
        "name": who.name,
        "role": who.role,
        "via": who.via,
        "totp_enabled": user.is_some_and(|u| u.totp_enabled),
    })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current: String,
    new: String,
}

/// `POST /api/me/password` `{"current", "new"}`: ends the user's other sessions.
pub(super) async fn change_password(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let b: PasswordBody = json_body(&body, r#"{"current": P, "new": P2}"#)?;
    let name = own_user(&who)?;
    let keep = (who.via == Via::Session)
        .then(|| auth::session_id(&headers).map(str::to_owned))
        .flatten();
    let remote = remote(&state, peer, &headers);
    let db = state.control.clone();
    run_blocking(
        move || db.change_password(&name, &b.current, &b.new, keep.as_deref(), Some(&remote)),
        account_error,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/me/totp`: a new TOTP secret, pending until confirmed →
/// `{"secret", "otpauth_url", "qr_svg"}`.
pub(super) async fn begin_totp(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = own_user(&who)?;
    let data_dir = state.config().data_dir.clone();
    let db = state.control.clone();
    let enrolment = run_blocking(
        move || db.begin_totp(&name, &SecretBox::open(&data_dir)?),
        account_error,
    )
    .await?;
    Ok(Json(json!(enrolment)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    code: String,
}

/// `POST /api/me/totp/confirm` `{"code"}` → `{"recovery_codes": [10 codes]}`.
pub(super) async fn confirm_totp(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let b: CodeBody = json_body(&body, r#"{"code": "123456"}"#)?;
    let name = own_user(&who)?;
    let data_dir = state.config().data_dir.clone();
    let remote = remote(&state, peer, &headers);
    let now = state.clock.now_ms();
    let db = state.control.clone();
    let codes = run_blocking(
        move || {
            db.confirm_totp(
                &name,
                &b.code,
                &SecretBox::open(&data_dir)?,
                Some(&remote),
                now,
            )
        },
        account_error,
    )
    .await?;
    Ok(Json(json!({ "recovery_codes": codes })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordOnlyBody {
    password: String,
}

/// `DELETE /api/me/totp` `{"password"}`: turns the second factor off.
pub(super) async fn disable_totp(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let b: PasswordOnlyBody = json_body(&body, r#"{"password": P}"#)?;
    let name = own_user(&who)?;
    let remote = remote(&state, peer, &headers);
    let db = state.control.clone();
    run_blocking(
        move || db.disable_totp(&name, &b.password, Some(&remote)),
        account_error,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/users` (admin).
pub(super) async fn list_users(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let db = state.control.clone();
    let users = run_blocking(move || db.list_users(), account_error).await?;
    Ok(Json(json!({ "users": users })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    name: String,
    role: String,
    password: String,
}

/// `POST /api/users` (admin) `{"name", "role", "password"}` → 201 and the user.
pub(super) async fn create_user(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<UserRecord>), ApiError> {
    let b: NewUserBody = json_body(
        &body,
        r#"{"name": N, "role": "viewer|operator|admin", "password": P}"#,
    )?;
    let role = parse_role("role", &b.role)?;
    let remote = remote(&state, peer, &headers);
    let now = state.clock.now_ms();
    let db = state.control.clone();
    let user = run_blocking(
        move || db.create_user(&b.name, role, &b.password, &who.name, Some(&remote), now),
        account_error,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChangeBody {
    role: Option<String>,
    password: Option<String>,
    #[serde(default)]
    unlock: bool,
}

/// `PUT /api/users/{name}` (admin) `{"role"?, "password"?, "unlock"?: true}`.
pub(super) async fn update_user(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<UserRecord>, ApiError> {
    let b: UserChangeBody = json_body(
        &body,
        r#"{"role": "viewer|operator|admin", "password": P, "unlock": true} (each optional)"#,
    )?;
    let change = UserChange {
        role: b
            .role
            .as_deref()
            .map(|r| parse_role("role", r))
            .transpose()?,
        password: b.password,
        unlock: b.unlock,
    };
    let remote = remote(&state, peer, &headers);
    let db = state.control.clone();
    let user = run_blocking(
        move || db.update_user(&name, &change, &who.name, Some(&remote)),
        account_error,
    )
    .await?;
    Ok(Json(user))
}

/// `DELETE /api/users/{name}` (admin): not the last admin.
pub(super) async fn remove_user(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let remote = remote(&state, peer, &headers);
    let db = state.control.clone();
    run_blocking(
        move || db.remove_user(&name, &who.name, Some(&remote)),
        account_error,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/tokens`: the caller's own tokens (an admin sees all), with the last-use
/// times not yet flushed to the store.
pub(super) async fn list_tokens(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let db = state.control.clone();
    let mut tokens = run_blocking(move || db.list_api_tokens(), ApiError::internal).await?;
    if who.role < Role::Admin {
        tokens.retain(|t| t.owner.as_deref() == Some(who.name.as_str()));
    }
    {
        let pending = state
            .token_uses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for t in &mut tokens {
            if let Some(&used) = pending.get(&t.id) {
                t.last_used_ms = Some(t.last_used_ms.map_or(used, |u| u.max(used)));
            }
        }
    }
    Ok(Json(json!({ "tokens": tokens })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTokenBody {
    name: String,
    role: String,
}

/// `POST /api/tokens` `{"name", "role"}` → 201 `{"id", "token"}` (the token is shown
/// once). A caller may create tokens up to its own role.
pub(super) async fn create_token(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let b: NewTokenBody = json_body(&body, r#"{"name": N, "role": "viewer|operator|admin"}"#)?;
    let role = parse_role("role", &b.role)?;
    let name = b.name.trim().to_owned();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name: must be 1 to 64 printable characters",
        ));
    }
    if role > who.role {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "a token may have your role ({}) or a lower one, not {}",
                who.role.as_str(),
                role.as_str()
            ),
        ));
    }
    let remote = remote(&state, peer, &headers);
    let db = state.control.clone();
    let (id, token) = run_blocking(
        move || db.issue_api_token(&name, role, &who.name, Some(&remote)),
        ApiError::internal,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "token": token })),
    ))
}

/// `DELETE /api/tokens/{id}`: the caller's own token (an admin's: any).
pub(super) async fn revoke_token(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let remote = remote(&state, peer, &headers);
    let db = state.control.clone();
    let revoked = run_blocking(
        move || {
            let Some(t) = db.api_token(id)? else {
                return Ok(false);
            };
            // Another user's token is "not found", not "forbidden": its id tells nothing.
            if who.role < Role::Admin && t.owner.as_deref() != Some(who.name.as_str()) {
                return Ok(false);
            }
            db.revoke_api_token_from(id, &who.name, Some(&remote))
        },
        ApiError::internal,
    )
    .await?;
    if revoked {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no active API token {id} of yours; see GET /api/tokens"),
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(super::rfc3339(1_800_000_000_000), "2027-01-15T08:00:00Z");
    }
}
