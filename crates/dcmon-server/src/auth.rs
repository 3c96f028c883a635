//! Who is calling: users (API tokens, session cookies, trusted proxy headers) with
//! roles, enforced per route by [`enforce`]; and agents' signed requests.

use crate::api::{Access, ApiError};
use crate::control::AgentRecord;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dcmon_wire::api::{AgentStatus, codes};
use dcmon_wire::sign;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
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

/// The session cookie: `HttpOnly` (no script reads it), `Secure` (HTTPS only),
/// `SameSite=Strict` (no other site's page sends it), for the whole server.
pub const SESSION_COOKIE: &str = "dcmon_session";
/// Header carrying the CSRF token on state-changing requests of sessions and proxy users.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Headers a trusted reverse proxy sets for the user it authenticated.
pub const PROXY_USER_HEADER: &str = "x-fleet-auth-user";
pub const PROXY_ROLE_HEADER: &str = "x-fleet-auth-role";

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// `Authorization: Bearer <api token>`.
    Token,
    /// The session cookie from `POST /api/session`.
    Session,
    /// Headers of a trusted reverse proxy (`auth.trusted_proxies`).
    Proxy,
}

/// An authenticated user or automation, put in the request extensions by the route
/// policy before the handler runs (`Extension<Principal>`).
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user; for an API token its owner (`cli:<login>` for CLI-made tokens), or
    /// `token:<name>` for tokens older than owners.
    pub name: String,
    pub role: Role,
    pub via: Via,
    /// The CSRF token state-changing requests must echo in `X-CSRF-Token` (sessions and
    /// proxy users; `None` for API tokens, which browsers never send on their own).
    pub csrf: Option<String>,
}

/// `Set-Cookie` value that hands a browser its session.
pub fn session_cookie(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; HttpOnly; Secure; SameSite=Strict; Path=/"
    ))
    .unwrap_or_else(|_| clear_session_cookie())
}

/// `Set-Cookie` value that removes the session cookie.
pub fn clear_session_cookie() -> HeaderValue {
    HeaderValue::from_static("dcmon_session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0")
}

/// The session id from the request's `Cookie` headers, if any.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// Compares secrets in time independent of where they differ.
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caller, from (in this order) a Bearer token, the session cookie, or trusted
/// proxy headers (only when the TCP peer `peer` is in `auth.trusted_proxies`).
/// `Ok(None)`: no credentials (or an expired session). A Bearer header that is not a
/// valid token is an error rather than falling through to the cookie.
pub async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<Option<Principal>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return bearer(state, value).map(Some);
    }
    if let Some(id) = session_id(headers) {
        let id = id.to_owned();
        let db = state.control.clone();
        let policy = crate::accounts::SessionPolicy::from_config(&state.config().auth);
        let now = state.clock.now_ms();
        let user =
            crate::api::run_blocking(move || db.session(&id, policy, now), ApiError::internal)
                .await?;
        if let Some(u) = user {
            return Ok(Some(Principal {
                name: u.name,
                role: u.role,
                via: Via::Session,
                csrf: Some(u.csrf),
            }));
        }
    }
    match peer {
        Some(peer) if is_trusted_proxy(state, peer.ip()) => proxy_user(state, headers).await,
        _ => Ok(None),
    }
}

fn is_trusted_proxy(state: &AppState, ip: IpAddr) -> bool {
    let config = state.config();
    !config.auth.trusted_proxies.is_empty()
        && config.auth.proxy_nets().iter().any(|n| n.contains(ip))
}

/// The user a trusted proxy vouches for, if it sent the headers.
async fn proxy_user(state: &AppState, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
    let Some(user) = headers.get(PROXY_USER_HEADER) else {
        return Ok(None);
    };
    let user = user
        .to_str()
        .ok()
        .filter(|u| crate::accounts::check_user_name(u).is_ok())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "the proxy's X-Fleet-Auth-User header is not a valid user name (1 to 64 letters, digits, '.', '_', '-', '@')",
            )
        })?
        .to_owned();
    let role_text = headers
        .get(PROXY_ROLE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let role = Role::parse(role_text.trim()).ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "unknown_role",
            format!(
                "the proxy sent X-Fleet-Auth-Role {role_text:?} for user {user}: not a dcmon role; configure the proxy to send viewer, operator or admin"
            ),
        )
    })?;
    let key = state.secret_box().await?;
    let csrf = hex::encode(key.mac(PROXY_CSRF_PURPOSE, user.as_bytes()));
    Ok(Some(Principal {
        name: user,
        role,
        via: Via::Proxy,
        csrf: Some(csrf),
    }))
}

/// MAC purpose of proxy users' CSRF tokens: stable per user, unforgeable without the key.
const PROXY_CSRF_PURPOSE: &str = "csrf-proxy-user";

/// The client's address for rate limits and the audit log: the TCP peer, or, when the
/// peer is a trusted proxy, the last address it appended to `X-Forwarded-For`.
pub fn client_ip(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    if is_trusted_proxy(state, peer.ip()) {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .next_back();
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    peer.ip()
}

/// Sign-in attempts per client address in the last minute, in memory: a restart
/// forgets them, which costs an attacker a restart per minute of guesses. Per-user
/// lock-out (in the store) is the limit that survives restarts.
#[derive(Default)]
pub struct LoginRateLimit {
    clients: Mutex<HashMap<IpAddr, AttemptWindow>>,
}

/// One client's attempts within the last minute.
#[derive(Default)]
struct AttemptWindow {
    times: std::collections::VecDeque<i64>,
    /// A refusal was already reported (audited) in this window.
    refusal_noted: bool,
}

/// Addresses tracked before idle ones are dropped.
const RATE_LIMIT_ADDRESSES: usize = 10_000;
const RATE_WINDOW_MS: i64 = 60_000;

impl LoginRateLimit {
    /// Counts an attempt from `ip` at `now_ms`. Refused: `Err((seconds until an attempt
    /// is allowed again, whether this is the first refusal in a row))`; refusals are not
    /// counted as attempts.
    pub fn check(&self, ip: IpAddr, now_ms: i64, per_minute: u32) -> Result<(), (u64, bool)> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if clients.len() >= RATE_LIMIT_ADDRESSES {
            clients.retain(|_, w| {
                w.times
                    .back()
                    .is_some_and(|t| now_ms.saturating_sub(*t) < RATE_WINDOW_MS)
            });
        }
        let w = clients.entry(ip).or_default();
        while w
            .times
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= RATE_WINDOW_MS)
        {
            w.times.pop_front();
        }
        if w.times.len() >= per_minute as usize {
            let oldest = w.times.front().copied().unwrap_or(now_ms);
            let wait_ms = (oldest + RATE_WINDOW_MS - now_ms).max(1000);
            let first = !w.refusal_noted;
            w.refusal_noted = true;
            return Err(((wait_ms as u64).div_ceil(1000), first));
        }
        w.refusal_noted = false;
        w.times.push_back(now_ms);
        Ok(())
    }
}

/// Checks an `Authorization` header's API token. Answered from memory unless the
/// control file changed: no blocking-pool hop.
fn bearer(state: &AppState, value: &HeaderValue) -> Result<Principal, ApiError> {
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::unauthorized("Authorization header must be `Bearer <api token>`")
        })?;
    let record = state
        .control
        .lookup_api_token(token)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::unauthorized("API token is not valid (unknown or revoked)"))?;
    state.used_token(record.id);
    Ok(Principal {
        name: record
            .owner
            .unwrap_or_else(|| format!("token:{}", record.name)),
        role: record.role,
        via: Via::Token,
        csrf: None,
    })
}

/// The route policy, run before every handler (see `api::Route`): Public and Agent
/// routes pass through (agent handlers verify signatures themselves); Api and Page
/// routes need a caller with at least the route's role, and a state-changing request
/// of a session or proxy user needs its CSRF token.
pub(crate) async fn enforce(
    State((state, access)): State<(AppState, Access)>,
    mut req: Request,
    next: Next,
) -> Response {
    let (min, page) = match access {
        Access::Public | Access::Agent => return next.run(req).await,
        Access::Api(role) => (role, false),
        Access::Page(role) => (role, true),
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let who = match identify(&state, req.headers(), peer).await {
        Ok(Some(p)) => p,
        Ok(None) if page => return login_redirect(req.uri()),
        Ok(None) => {
            return ApiError::unauthorized(
                "sign in first: send `Authorization: Bearer <api token>` (create one with `dcmon token create`) or the session cookie from POST /api/session",
            )
            .into_response();
        }
        Err(e) if page && e.status == StatusCode::UNAUTHORIZED => {
            return login_redirect(req.uri());
        }
        Err(e) => return e.into_response(),
    };
    if who.role < min {
        let message = format!(
            "this needs role {} or higher; {} has role {}",
            min.as_str(),
            who.name,
            who.role.as_str()
        );
        return if page {
            forbidden_page(&message)
        } else {
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response()
        };
    }
    if !req.method().is_safe() && who.via != Via::Token {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        let expected = who.csrf.as_deref().unwrap_or_default().as_bytes();
        if expected.is_empty() || !same_secret(sent, expected) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong X-CSRF-Token header: pages send the token from their <meta name=\"csrf-token\">; scripts should use an API token instead of a session",
            )
            .into_response();
        }
    }
    req.extensions_mut().insert(who);
    next.run(req).await
}

/// 303 to the sign-in page, which sends the user back here afterwards.
fn login_redirect(uri: &axum::http::Uri) -> Response {
    let here = uri.path_and_query().map_or("/", |p| p.as_str());
    let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/login?next={next}"))],
    )
        .into_response()
}

fn forbidden_page(message: &str) -> Response {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Forbidden - dcmon</title></head><body><h1>Forbidden</h1><p>{escaped}</p><p><a href=\"/\">Back to the fleet</a></p></body></html>"
        ),
    )
        .into_response()
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
