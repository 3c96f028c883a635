//! The web UI: server-rendered page shells (maud templates in [`pages`] inside the one
//! [`layout`]) and the embedded static files ([`assets`]: CSS, JS modules, vendored
//! uPlot). Pages carry no data; their scripts fetch it from the JSON APIs with the
//! session cookie and send the page's CSRF token on every write.

mod alert_pages;
mod assets;
mod layout;
mod pages;

use crate::api::{Access, Route};
use crate::auth::{Principal, Role};
use crate::config::ServerConfig;
use crate::state::AppState;
use axum::Extension;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use layout::PageUser;
use maud::Markup;
use std::net::SocketAddr;

/// The UI's routes, each with its access policy; `api::routes` appends them to the API's.
pub fn routes() -> Vec<Route> {
    use Access::{Page, Public};
    use Role::{Admin, Viewer};
    vec![
        Route::get("/login", Public, login),
        Route::get("/static/{*path}", Public, assets::serve),
        Route::get("/", Page(Viewer), fleet),
        Route::get("/alerts", Page(Viewer), alerts),
        Route::get("/alerts/rules", Page(Viewer), alert_rules),
        Route::get("/alerts/channels", Page(Viewer), alert_channels),
        Route::get("/alerts/silences", Page(Viewer), alert_silences),
        Route::get("/alerts/{id}", Page(Viewer), alert),
        Route::get("/machines/{host}", Page(Viewer), machine),
        Route::get("/agents", Page(Viewer), agents),
        Route::get("/bmcs", Page(Viewer), bmcs),
        Route::get("/bmcs/{name}", Page(Viewer), bmc),
        Route::get("/users", Page(Admin), users),
        Route::get("/tokens", Page(Viewer), tokens),
        Route::get("/audit", Page(Admin), audit),
        Route::get("/settings", Page(Viewer), settings),
    ]
}

fn user(p: &Principal) -> PageUser<'_> {
    PageUser {
        name: &p.name,
        role: p.role,
        csrf: p.csrf.as_deref().unwrap_or(""),
    }
}

/// A page as an answer: never cached (it holds the session's CSRF token), never framed,
/// scripts only from this server.
fn html(markup: Markup) -> Response {
    let mut resp = markup.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// The 403 page of `Access::Page` routes (answered by `auth::enforce` before the handler);
/// `who` is none when the caller could not be named (a proxy sent an unknown role).
pub fn forbidden_page(who: Option<&Principal>, message: &str) -> Response {
    let markup = match who {
        Some(who) => pages::forbidden(&user(who), message),
        None => pages::forbidden_unnamed(message),
    };
    let mut resp = html(markup);
    *resp.status_mut() = StatusCode::FORBIDDEN;
    resp
}

/// `/login`; a caller already signed in goes on to where it was going (the same `next`
/// check as the page's script: a path on this server).
async fn login(
    State(state): State<AppState>,
    Query(q): Query<LoginQuery>,
    parts: axum::http::request::Parts,
) -> Response {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if let Ok(Some(_)) = crate::auth::identify(&state, &parts.headers, peer).await {
        let to = next_location(q.next.as_deref());
        return (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    }
    html(pages::login())
}

/// Where `next` may send a signed-in user: a local path that is a valid header value,
/// else the fleet.
fn next_location(next: Option<&str>) -> HeaderValue {
    next.filter(|n| is_local_path(n))
        .and_then(|n| HeaderValue::from_str(n).ok())
        .unwrap_or_else(|| HeaderValue::from_static("/"))
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

/// A path on this server: not another origin (`//host`, `/\\host`) nor a scheme.
fn is_local_path(p: &str) -> bool {
    p.starts_with('/') && !p.starts_with("//") && !p.starts_with("/\\")
}

async fn fleet(Extension(p): Extension<Principal>) -> Response {
    html(pages::fleet(&user(&p)))
}

async fn machine(Extension(p): Extension<Principal>, Path(host): Path<String>) -> Response {
    html(pages::machine(&user(&p), &host))
}

async fn agents(State(state): State<AppState>, Extension(p): Extension<Principal>) -> Response {
    let public_url = state.config().public_url();
    html(pages::agents(
        &user(&p),
        &public_url,
        &state.tls_fingerprint,
    ))
}

async fn bmcs(Extension(p): Extension<Principal>) -> Response {
    html(pages::bmcs(&user(&p)))
}

async fn bmc(Extension(p): Extension<Principal>, Path(name): Path<String>) -> Response {
    html(pages::bmc(&user(&p), &name))
}

async fn alerts(Extension(p): Extension<Principal>) -> Response {
    html(alert_pages::alerts(&user(&p), None))
}

async fn alert(Extension(p): Extension<Principal>, Path(id): Path<i64>) -> Response {
    html(alert_pages::alerts(&user(&p), Some(id)))
}

async fn alert_rules(Extension(p): Extension<Principal>) -> Response {
    html(alert_pages::rules(&user(&p)))
}

async fn alert_channels(Extension(p): Extension<Principal>) -> Response {
    html(alert_pages::channels(&user(&p)))
}

async fn alert_silences(Extension(p): Extension<Principal>) -> Response {
    html(alert_pages::silences(&user(&p)))
}

async fn users(Extension(p): Extension<Principal>) -> Response {
    html(pages::users(&user(&p)))
}

async fn tokens(Extension(p): Extension<Principal>) -> Response {
    html(pages::tokens(&user(&p)))
}

async fn audit(Extension(p): Extension<Principal>) -> Response {
    html(pages::audit(&user(&p)))
}

async fn settings(State(state): State<AppState>, Extension(p): Extension<Principal>) -> Response {
    html(pages::settings(
        &user(&p),
        &server_settings(&state.config()),
    ))
}

/// The running settings a user may want to know, by config key. Listed one by one rather
/// than dumping the config, so a setting added later (a webhook URL, an SMTP password)
/// is never shown by accident.
fn server_settings(c: &ServerConfig) -> Vec<(&'static str, String)> {
    let d = duration_text;
    let proxies = if c.auth.trusted_proxies.is_empty() {
        "none (header auth off)".to_owned()
    } else {
        c.auth.trusted_proxies.join(", ")
    };
    vec![
        ("public_url", c.public_url()),
        ("listen", c.listen.to_string()),
        ("data_dir", c.data_dir.display().to_string()),
        (
            "agents.approval",
            format!("{:?}", c.agents.approval).to_lowercase(),
        ),
        ("agents.max_clock_skew", d(c.agents.max_clock_skew)),
        ("retention.raw", d(c.retention.raw)),
        ("retention.rollup_5m", d(c.retention.rollup_5m)),
        ("retention.rollup_1h", d(c.retention.rollup_1h)),
        (
            "storage.out_of_order_window",
            d(c.storage.out_of_order_window),
        ),
        (
            "limits.max_series_per_host",
            match c.limits.max_series_per_host {
                0 => "no limit".to_owned(),
                n => n.to_string(),
            },
        ),
        ("ui.refresh", d(c.ui.refresh)),
        ("ui.stale_after", d(c.ui.stale_after)),
        ("ui.offline_after", d(c.ui.offline_after)),
        ("auth.session_idle", d(c.auth.session_idle)),
        ("auth.session_max", d(c.auth.session_max)),
        ("auth.lockout_failures", c.auth.lockout_failures.to_string()),
        ("auth.lockout_minutes", c.auth.lockout_minutes.to_string()),
        (
            "auth.login_attempts_per_minute",
            c.auth.login_attempts_per_minute.to_string(),
        ),
        ("auth.trusted_proxies", proxies),
        ("log.level", c.log.level.clone()),
        ("version", crate::api::VERSION.to_owned()),
    ]
}

/// A setting's duration in its largest whole unit (`90d`, `12h`, `5m`, `30s`), as the
/// config file would say it; humantime's calendar months would read oddly here.
fn duration_text(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests;
