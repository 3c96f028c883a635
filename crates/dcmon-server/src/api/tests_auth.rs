//! Users' authentication and authorisation, in-process: the authorisation matrix over
//! every route of [`routes`], sessions and their cookie, CSRF.

use super::tests::{Harness, T0};
use super::{Access, Route, app, routes};
use crate::auth::Role;
use crate::config::Approval;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use serde_json::Value;
use std::collections::HashSet;
use std::net::SocketAddr;
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery";
const ROLES: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

/// Sends `req` from `peer` (127.0.0.1 unless the request names one).
async fn send_raw(h: &Harness, mut req: Request<Body>) -> Response {
    if req.extensions().get::<ConnectInfo<SocketAddr>>().is_none() {
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    }
    app(h.state.clone()).oneshot(req).await.unwrap()
}

async fn json_of(resp: Response) -> Value {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// The route's path with every `{param}` filled with a value no record has.
fn sample_path(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "999999" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// How a matrix request proves who it is.
enum Cred {
    Anonymous,
    Bearer(String),
    /// Session id and its CSRF token.
    Session(String, String),
}

fn request(route: &Route, cred: &Cred) -> Request<Body> {
    let mut b = Request::builder()
        .method(route.method.clone())
        .uri(sample_path(route.path));
    match cred {
        Cred::Anonymous => {}
        Cred::Bearer(t) => b = b.header(header::AUTHORIZATION, format!("Bearer {t}")),
        Cred::Session(id, csrf) => {
            b = b
                .header(header::COOKIE, format!("theme=dark; dcmon_session={id}"))
                .header("x-csrf-token", csrf);
        }
    }
    // Agent routes get a well-formed registration body, so that they answer for the
    // missing signature rather than for the body.
    let body = if route.access == Access::Agent {
        serde_json::json!({
            "token": "dcmon_et_x", "public_key": "ed25519:x", "hostname": "h",
            "machine_id": "m", "agent_version": "1"
        })
        .to_string()
    } else {
        String::new()
    };
    b.body(Body::from(body)).unwrap()
}

/// Users `viewer`, `operator`, `admin`, each with an API token of its role.
fn users(h: &Harness) -> Vec<(Role, String, String)> {
    ROLES
        .iter()
        .map(|&role| {
            let name = role.as_str().to_owned();
            h.state
                .control
                .create_user(&name, role, PASSWORD, "test", None, T0)
                .unwrap();
            let token = h
                .state
                .control
                .create_api_token(&name, role, &name)
                .unwrap();
            (role, name, token)
        })
        .collect()
}

#[tokio::test]
async fn every_route_answers_each_role_and_credential_as_its_policy_says() {
    let h = Harness::new(Approval::Auto);
    let users = users(&h);
    let table = routes();
    let mut seen = HashSet::new();
    for r in &table {
        assert!(
            seen.insert((r.method.clone(), r.path)),
            "{} {} is declared twice",
            r.method,
            r.path
        );
    }
    let mut requests = 0;
    for route in &table {
        let what = format!("{} {} ({:?})", route.method, route.path, route.access);
        let resp = send_raw(&h, request(route, &Cred::Anonymous)).await;
        requests += 1;
        let status = resp.status();
        match route.access {
            Access::Public => assert_ne!(status, StatusCode::UNAUTHORIZED, "anonymous {what}"),
            Access::Agent | Access::Api(_) => {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "anonymous {what}")
            }
            Access::Page(_) => {
                assert_eq!(status, StatusCode::SEE_OTHER, "anonymous {what}");
                let location = resp.headers()[header::LOCATION].to_str().unwrap();
                assert!(
                    location.starts_with("/login?next=%2F"),
                    "{what}: {location}"
                );
            }
        }
        for (role, name, token) in &users {
            let session = h.state.control.create_session(name, T0, None).unwrap();
            for cred in [
                Cred::Bearer(token.clone()),
                Cred::Session(session.id.clone(), session.csrf.clone()),
            ] {
                let status = send_raw(&h, request(route, &cred)).await.status();
                requests += 1;
                let who = format!(
                    "{} by {}",
                    what,
                    match cred {
                        Cred::Bearer(_) => format!("{name}'s token"),
                        _ => format!("{name}'s session"),
                    }
                );
                match route.access {
                    Access::Agent => assert_eq!(status, StatusCode::UNAUTHORIZED, "{who}"),
                    Access::Api(min) | Access::Page(min) if *role < min => {
                        assert_eq!(status, StatusCode::FORBIDDEN, "{who}")
                    }
                    _ => assert!(
                        status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                        "{who}: {status}"
                    ),
                }
            }
        }
    }
    println!(
        "authorisation matrix: {} routes x 4 principals (anonymous, viewer, operator, admin) = {} cells; {requests} requests (bearer token and session cookie for each signed-in role)",
        table.len(),
        table.len() * 4
    );
    assert_eq!(requests, table.len() * 7);
}

#[tokio::test]
async fn state_changing_session_requests_need_the_sessions_csrf_token() {
    let h = Harness::new(Approval::Auto);
    users(&h);
    let session = h.state.control.create_session("admin", T0, None).unwrap();
    let other = h.state.control.create_session("admin", T0, None).unwrap();
    let mut checked = 0;
    for route in routes() {
        if route.method == Method::GET || !matches!(route.access, Access::Api(_) | Access::Page(_))
        {
            continue;
        }
        for csrf in [None, Some("wrong"), Some(other.csrf.as_str())] {
            let mut b = Request::builder()
                .method(route.method.clone())
                .uri(sample_path(route.path))
                .header(header::COOKIE, format!("dcmon_session={}", session.id));
            if let Some(c) = csrf {
                b = b.header("x-csrf-token", c);
            }
            let resp = send_raw(&h, b.body(Body::empty()).unwrap()).await;
            assert_eq!(
                resp.status(),
                StatusCode::FORBIDDEN,
                "{} {}",
                route.method,
                route.path
            );
            assert_eq!(
                json_of(resp).await["code"],
                "csrf",
                "{} {}",
                route.method,
                route.path
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked}");
}

async fn login(h: &Harness, user: &str, password: &str) -> Response {
    send_raw(
        h,
        Request::post("/api/session")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                serde_json::json!({ "user": user, "password": password }).to_string(),
            ))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn sign_in_sets_a_strict_cookie_that_works_until_sign_out() {
    let h = Harness::new(Approval::Auto);
    users(&h);
    let resp = login(&h, "operator", "wrong password!").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let unknown = json_of(login(&h, "nobody", "wrong password!").await).await;
    assert_eq!(
        json_of(resp).await,
        unknown,
        "unknown user and wrong password look alike"
    );
    assert_eq!(unknown["code"], "bad_credentials");

    let resp = login(&h, "operator", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = resp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    let id = cookie
        .strip_prefix("dcmon_session=")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    assert_eq!(
        cookie,
        format!("dcmon_session={id}; HttpOnly; Secure; SameSite=Strict; Path=/")
    );
    let v = json_of(resp).await;
    assert_eq!(
        (v["user"].as_str(), v["role"].as_str()),
        (Some("operator"), Some("operator"))
    );
    let csrf = v["csrf"].as_str().unwrap().to_owned();

    let me = |cookie: String| {
        Request::get("/api/me")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap()
    };
    let resp = send_raw(&h, me(format!("dcmon_session={id}"))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v = json_of(resp).await;
    assert_eq!(v["name"], "operator");
    assert_eq!(v["via"], "session");
    assert_eq!(v["totp_enabled"], false);

    // Idle past the limit: the session is over.
    let idle = h.state.config().auth.session_idle.as_millis() as i64;
    h.clock
        .0
        .store(T0 + idle + 1, std::sync::atomic::Ordering::SeqCst);
    let resp = send_raw(&h, me(format!("dcmon_session={id}"))).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    h.clock.0.store(T0, std::sync::atomic::Ordering::SeqCst);

    let resp = login(&h, "operator", PASSWORD).await;
    let cookie = resp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    let pair = cookie.split(';').next().unwrap().to_owned();
    let csrf2 = json_of(resp).await["csrf"].as_str().unwrap().to_owned();
    assert_ne!(csrf, csrf2, "each session has its own CSRF token");
    let resp = send_raw(
        &h,
        Request::delete("/api/session")
            .header(header::COOKIE, &pair)
            .header("x-csrf-token", &csrf2)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(
        resp.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        send_raw(&h, me(pair)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let actions: Vec<String> = h
        .state
        .control
        .audit_tail(5)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions[0], "logout");
    assert_eq!(actions[1], "login.ok");
}

#[tokio::test]
async fn a_token_acts_as_its_owner_and_a_bad_token_is_not_a_session() {
    let h = Harness::new(Approval::Auto);
    let users = users(&h);
    let (_, _, viewer_token) = &users[0];
    let resp = send_raw(
        &h,
        Request::get("/api/me")
            .header(header::AUTHORIZATION, format!("Bearer {viewer_token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let v = json_of(resp).await;
    assert_eq!(
        (v["name"].as_str(), v["via"].as_str()),
        (Some("viewer"), Some("token"))
    );
    // A wrong token is refused even when a valid session cookie comes with it.
    let session = h.state.control.create_session("admin", T0, None).unwrap();
    let resp = send_raw(
        &h,
        Request::get("/api/me")
            .header(header::AUTHORIZATION, "Bearer dcmon_at_forged")
            .header(header::COOKIE, format!("dcmon_session={}", session.id))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

/// A JSON request with the given credentials, from `peer`.
fn call(method: Method, path: &str, cred: &Cred, body: Value, peer: [u8; 4]) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json");
    match cred {
        Cred::Anonymous => {}
        Cred::Bearer(t) => b = b.header(header::AUTHORIZATION, format!("Bearer {t}")),
        Cred::Session(id, csrf) => {
            b = b
                .header(header::COOKIE, format!("dcmon_session={id}"))
                .header("x-csrf-token", csrf);
        }
    }
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    let mut req = b.body(body).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((peer, 40000))));
    req
}

const LOCAL: [u8; 4] = [127, 0, 0, 1];

async fn login_from(
    h: &Harness,
    body: Value,
    peer: [u8; 4],
) -> (StatusCode, Value, Option<String>) {
    let resp = send_raw(
        h,
        call(Method::POST, "/api/session", &Cred::Anonymous, body, peer),
    )
    .await;
    let status = resp.status();
    let retry = resp
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    (status, json_of(resp).await, retry)
}

fn set_clock(h: &Harness, ms: i64) {
    h.clock.0.store(ms, std::sync::atomic::Ordering::SeqCst);
}

fn audit_actions(h: &Harness, n: u32) -> Vec<String> {
    h.state
        .control
        .audit_tail(n)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

#[tokio::test]
async fn repeated_failures_lock_the_user_until_the_lockout_has_passed() {
    let h = Harness::new(Approval::Auto);
    users(&h);
    let wrong = serde_json::json!({ "user": "viewer", "password": "not the password" });
    for _ in 0..4 {
        let (s, v, _) = login_from(&h, wrong.clone(), LOCAL).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("bad_credentials"))
        );
    }
    let (s, v, _) = login_from(&h, wrong.clone(), LOCAL).await;
    assert_eq!(s, StatusCode::LOCKED, "{v}");
    assert_eq!(v["code"], "locked");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("locked until 2027-01-15T08:15:00Z"),
        "{v}"
    );
    let right = serde_json::json!({ "user": "viewer", "password": PASSWORD });
    let (s, _, _) = login_from(&h, right.clone(), LOCAL).await;
    assert_eq!(
        s,
        StatusCode::LOCKED,
        "the right password does not help while locked"
    );
    // The lock-out is stored: listed for admins, and still there for a new server state.
    let users = h.state.control.list_users().unwrap();
    let viewer = users.iter().find(|u| u.name == "viewer").unwrap();
    assert_eq!(viewer.locked_until_ms, Some(T0 + 15 * 60_000));
    set_clock(&h, T0 + 15 * 60_000);
    let (s, v, _) = login_from(&h, right, LOCAL).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let actions = audit_actions(&h, 3);
    assert_eq!(actions, ["login.ok", "login.locked", "login.lockout"]);
    let entry = &h.state.control.audit_tail(1).unwrap()[0];
    assert_eq!(entry.remote.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn too_many_attempts_from_one_address_get_429_with_retry_after() {
    let h = Harness::new(Approval::Auto);
    let guess = serde_json::json!({ "user": "nobody", "password": "guess guess guess" });
    for _ in 0..10 {
        let (s, _, _) = login_from(&h, guess.clone(), [192, 0, 2, 1]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    set_clock(&h, T0 + 20_000);
    for _ in 0..2 {
        let (s, v, retry) = login_from(&h, guess.clone(), [192, 0, 2, 1]).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
        assert_eq!(v["code"], "rate_limited");
        assert_eq!(retry.as_deref(), Some("40"));
    }
    // Another address is not affected; the first may try again after the minute.
    let (s, _, _) = login_from(&h, guess.clone(), [192, 0, 2, 2]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    set_clock(&h, T0 + 60_000);
    let (s, _, _) = login_from(&h, guess, [192, 0, 2, 1]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let log = h.state.control.audit_tail(20).unwrap();
    let limited: Vec<_> = log
        .iter()
        .filter(|e| e.action == "login.rate_limited")
        .collect();
    assert_eq!(limited.len(), 1, "one entry per run of refusals");
    assert_eq!(limited[0].remote.as_deref(), Some("192.0.2.1"));
}

#[tokio::test]
async fn totp_enrolment_then_sign_in_with_a_code_and_with_a_recovery_code_once() {
    let h = Harness::new(Approval::Auto);
    users(&h);
    let s = h
        .state
        .control
        .create_session("operator", T0, None)
        .unwrap();
    let me = Cred::Session(s.id.clone(), s.csrf.clone());
    let resp = send_raw(
        &h,
        call(Method::POST, "/api/me/totp", &me, Value::Null, LOCAL),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let e = json_of(resp).await;
    assert!(e["qr_svg"].as_str().unwrap().contains("<svg"));
    assert!(
        e["otpauth_url"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/dcmon:operator?")
    );
    let secret = base32::decode(
        base32::Alphabet::Rfc4648 { padding: false },
        e["secret"].as_str().unwrap(),
    )
    .unwrap();
    let step = T0 / 1000 / crate::totp::STEP_S;
    let code = |step: i64| crate::totp::code_at(&secret, step).unwrap();
    let confirm = |c: String| {
        call(
            Method::POST,
            "/api/me/totp/confirm",
            &me,
            serde_json::json!({ "code": c }),
            LOCAL,
        )
    };
    let resp = send_raw(&h, confirm("000000".into())).await;
    let wrong_code_status = resp.status();
    let resp = if wrong_code_status == StatusCode::OK {
        resp // 000000 happened to be the code (one chance in a million)
    } else {
        assert_eq!(wrong_code_status, StatusCode::BAD_REQUEST);
        send_raw(&h, confirm(code(step))).await
    };
    assert_eq!(resp.status(), StatusCode::OK);
    let recovery = json_of(resp).await["recovery_codes"].clone();
    assert_eq!(recovery.as_array().unwrap().len(), 10);

    let sign_in = |extra: Value| {
        let mut body = serde_json::json!({ "user": "operator", "password": PASSWORD });
        if let (Some(b), Some(x)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(x.clone());
        }
        body
    };
    let (s, v, _) = login_from(&h, sign_in(Value::Null), LOCAL).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("totp_required"))
    );
    let (s, v, _) = login_from(
        &h,
        sign_in(serde_json::json!({ "totp": code(step + 1) })),
        LOCAL,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v, _) = login_from(
        &h,
        sign_in(serde_json::json!({ "totp": code(step + 1) })),
        LOCAL,
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("totp_required")),
        "a code is accepted once"
    );
    let rc = recovery[0].as_str().unwrap();
    let (s, _, _) = login_from(
        &h,
        sign_in(serde_json::json!({ "recovery_code": rc })),
        LOCAL,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = login_from(
        &h,
        sign_in(serde_json::json!({ "recovery_code": rc })),
        LOCAL,
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a recovery code is accepted once"
    );
    let v =
        json_of(send_raw(&h, call(Method::GET, "/api/me", &me, Value::Null, LOCAL)).await).await;
    assert_eq!(v["totp_enabled"], true);
    // Turning it off needs the password.
    let off = |pw: &str| {
        call(
            Method::DELETE,
            "/api/me/totp",
            &me,
            serde_json::json!({ "password": pw }),
            LOCAL,
        )
    };
    assert_eq!(
        send_raw(&h, off("wrong password")).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send_raw(&h, off(PASSWORD)).await.status(),
        StatusCode::NO_CONTENT
    );
    let (s, _, _) = login_from(&h, sign_in(Value::Null), LOCAL).await;
    assert_eq!(s, StatusCode::OK);
    let actions = audit_actions(&h, 40);
    for a in [
        "totp.enable",
        "totp.disable",
        "login.totp_required",
        "login.failed",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a}: {actions:?}");
    }
}

#[tokio::test]
async fn proxy_headers_count_only_from_listed_proxies() {
    let h = Harness::new(Approval::Auto);
    let mut config = (*h.state.config()).clone();
    config.auth.trusted_proxies = vec!["10.1.0.0/16".into()];
    h.state.set_config(config);
    let me = |peer: [u8; 4], role: &str, method: Method, csrf: Option<&str>| {
        let mut req = call(method, "/api/me/totp", &Cred::Anonymous, Value::Null, peer);
        let hs = req.headers_mut();
        hs.insert("x-fleet-auth-user", "alice".parse().unwrap());
        hs.insert("x-fleet-auth-role", role.parse().unwrap());
        if let Some(c) = csrf {
            hs.insert("x-csrf-token", c.parse().unwrap());
        }
        req
    };
    let get_me = |peer: [u8; 4], role: &str| {
        let mut req = me(peer, role, Method::GET, None);
        *req.uri_mut() = "/api/me".parse().unwrap();
        req
    };
    // From an address that is not listed: the headers mean nothing.
    let resp = send_raw(&h, get_me([10, 2, 0, 1], "admin")).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = send_raw(&h, get_me([10, 1, 3, 4], "operator")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v = json_of(resp).await;
    assert_eq!(
        (v["name"].as_str(), v["role"].as_str(), v["via"].as_str()),
        (Some("alice"), Some("operator"), Some("proxy"))
    );
    let resp = send_raw(&h, get_me([10, 1, 3, 4], "superuser")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let v = json_of(resp).await;
    assert_eq!(v["code"], "unknown_role");
    assert!(
        v["message"].as_str().unwrap().contains("\"superuser\""),
        "{v}"
    );
    // Proxy users' writes need the CSRF token: HMAC of the name under the server key.
    let resp = send_raw(&h, me([10, 1, 3, 4], "operator", Method::POST, None)).await;
    assert_eq!(json_of(resp).await["code"], "csrf");
    let key = h.state.secret_box().await.unwrap();
    let csrf = hex::encode(key.mac("csrf-proxy-user", b"alice"));
    let resp = send_raw(&h, me([10, 1, 3, 4], "operator", Method::POST, Some(&csrf))).await;
    // Past the policy: the account itself belongs to the proxy.
    assert_eq!(json_of(resp).await["code"], "proxy_user");
}

#[tokio::test]
async fn tokens_are_capped_at_the_callers_role_and_listed_per_owner() {
    let h = Harness::new(Approval::Auto);
    let users = users(&h);
    let op = Cred::Bearer(users[1].2.clone());
    let admin = Cred::Bearer(users[2].2.clone());
    let create = |cred: &Cred, role: &str| {
        call(
            Method::POST,
            "/api/tokens",
            cred,
            serde_json::json!({ "name": "ci", "role": role }),
            LOCAL,
        )
    };
    let resp = send_raw(&h, create(&op, "admin")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = send_raw(&h, create(&op, "operator")).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let v = json_of(resp).await;
    let new_token = v["token"].as_str().unwrap().to_owned();
    let new_id = v["id"].as_i64().unwrap();
    // The new token works, acting as its owner.
    let resp = send_raw(
        &h,
        call(
            Method::GET,
            "/api/me",
            &Cred::Bearer(new_token.clone()),
            Value::Null,
            LOCAL,
        ),
    )
    .await;
    assert_eq!(json_of(resp).await["name"], "operator");
    let list = |cred: &Cred| call(Method::GET, "/api/tokens", cred, Value::Null, LOCAL);
    let mine = json_of(send_raw(&h, list(&op)).await).await;
    let mine = mine["tokens"].as_array().unwrap();
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(mine.iter().all(|t| t["owner"] == "operator"));
    let used = mine.iter().find(|t| t["id"] == new_id).unwrap();
    assert_eq!(
        used["last_used_ms"], T0,
        "last use shown before it is flushed"
    );
    h.state.flush_last_seen().unwrap();
    assert_eq!(
        h.state
            .control
            .api_token(new_id)
            .unwrap()
            .unwrap()
            .last_used_ms,
        Some(T0)
    );
    let all = json_of(send_raw(&h, list(&admin)).await).await;
    assert_eq!(all["tokens"].as_array().unwrap().len(), 4);
    // Only the owner (or an admin) revokes; to others the token does not exist.
    let viewer = Cred::Bearer(users[0].2.clone());
    let revoke = |cred: &Cred| {
        call(
            Method::DELETE,
            &format!("/api/tokens/{new_id}"),
            cred,
            Value::Null,
            LOCAL,
        )
    };
    assert_eq!(
        send_raw(&h, revoke(&viewer)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send_raw(&h, revoke(&op)).await.status(),
        StatusCode::NO_CONTENT
    );
    let resp = send_raw(
        &h,
        call(
            Method::GET,
            "/api/me",
            &Cred::Bearer(new_token),
            Value::Null,
            LOCAL,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admins_manage_users_but_not_the_last_admin_away() {
    let h = Harness::new(Approval::Auto);
    let users = users(&h);
    let admin = Cred::Bearer(users[2].2.clone());
    let put = |name: &str, body: Value| {
        call(
            Method::PUT,
            &format!("/api/users/{name}"),
            &admin,
            body,
            LOCAL,
        )
    };
    let resp = send_raw(&h, put("admin", serde_json::json!({ "role": "viewer" }))).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(json_of(resp).await["code"], "last_admin");
    let resp = send_raw(
        &h,
        call(
            Method::DELETE,
            "/api/users/admin",
            &admin,
            Value::Null,
            LOCAL,
        ),
    )
    .await;
    assert_eq!(json_of(resp).await["code"], "last_admin");
    let resp = send_raw(
        &h,
        call(
            Method::POST,
            "/api/users",
            &admin,
            serde_json::json!({ "name": "bob", "role": "admin", "password": "short" }),
            LOCAL,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = send_raw(
        &h,
        call(
            Method::POST,
            "/api/users",
            &admin,
            serde_json::json!({ "name": "bob", "role": "admin", "password": PASSWORD }),
            LOCAL,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    // With a second admin the first may be demoted; its admin token goes with the role.
    let resp = send_raw(&h, put("admin", serde_json::json!({ "role": "operator" }))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send_raw(
        &h,
        call(Method::GET, "/api/users", &admin, Value::Null, LOCAL),
    )
    .await;
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "the demoted admin's admin token is revoked"
    );
    let bob = h.state.control.create_session("bob", T0, None).unwrap();
    let bob = Cred::Session(bob.id, bob.csrf);
    let v = json_of(
        send_raw(
            &h,
            call(Method::GET, "/api/users", &bob, Value::Null, LOCAL),
        )
        .await,
    )
    .await;
    let names: Vec<&str> = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "bob", "operator", "viewer"]);
    let resp = send_raw(
        &h,
        call(
            Method::DELETE,
            "/api/users/viewer",
            &bob,
            Value::Null,
            LOCAL,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = send_raw(
        &h,
        call(
            Method::DELETE,
            "/api/users/viewer",
            &bob,
            Value::Null,
            LOCAL,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let e = &h.state.control.audit_tail(1).unwrap()[0];
    assert_eq!(
        (e.actor.as_str(), e.action.as_str(), e.target.as_str()),
        ("bob", "user.remove", "viewer")
    );
}

#[tokio::test]
async fn operators_approve_and_revoke_agents_and_make_enrollment_tokens_audited() {
    let mut h = Harness::new(Approval::Manual);
    users(&h);
    let (s, v, _) = h.register("m1", "gpu01").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["agent_id"].as_str().unwrap().to_owned();
    let op = h
        .state
        .control
        .create_session("operator", T0, None)
        .unwrap();
    let op = Cred::Session(op.id, op.csrf);
    let peer = [198, 51, 100, 9];
    let resp = send_raw(
        &h,
        call(
            Method::POST,
            &format!("/api/agents/{id}/approve"),
            &op,
            Value::Null,
            peer,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json_of(resp).await["status"], "approved");
    let resp = send_raw(
        &h,
        call(
            Method::POST,
            "/api/agents/gpu01/revoke",
            &op,
            Value::Null,
            peer,
        ),
    )
    .await;
    assert_eq!(json_of(resp).await["status"], "revoked");
    let resp = send_raw(
        &h,
        call(
            Method::POST,
            "/api/agents/nope/revoke",
            &op,
            Value::Null,
            peer,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = send_raw(
        &h,
        call(
            Method::POST,
            "/api/enroll-tokens",
            &op,
            serde_json::json!({ "uses": 0, "ttl_s": 3600 }),
            peer,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = send_raw(
        &h,
        call(
            Method::POST,
            "/api/enroll-tokens",
            &op,
            serde_json::json!({ "uses": 2, "ttl_s": 3600 }),
            peer,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let v = json_of(resp).await;
    assert!(v["token"].as_str().unwrap().starts_with("dcmon_et_"));
    assert!(v["expires_ms"].as_i64().unwrap() > 0);
    let log = h.state.control.audit_tail(3).unwrap();
    let got: Vec<(&str, &str, Option<&str>)> = log
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.remote.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("operator", "enroll_token.create", Some("198.51.100.9")),
            ("operator", "agent.revoke", Some("198.51.100.9")),
            ("operator", "agent.approve", Some("198.51.100.9")),
        ]
    );
}

#[tokio::test]
async fn the_audit_log_is_searchable_and_paged_newest_first() {
    let h = Harness::new(Approval::Auto);
    let users = users(&h);
    let admin = Cred::Bearer(users[2].2.clone());
    for i in 0..5 {
        h.state
            .control
            .audit(
                "alice",
                "bmc.create",
                &format!("rack{i}"),
                "",
                Some("10.0.0.1"),
            )
            .unwrap();
    }
    let get = |q: &str| {
        call(
            Method::GET,
            &format!("/api/audit?{q}"),
            &admin,
            Value::Null,
            LOCAL,
        )
    };
    let v = json_of(send_raw(&h, get("actor=alice&limit=2")).await).await;
    let page: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(page, ["rack4", "rack3"]);
    let next = v["next_before_id"].as_i64().unwrap();
    let v =
        json_of(send_raw(&h, get(&format!("actor=alice&limit=2&before_id={next}"))).await).await;
    let page: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(page, ["rack2", "rack1"]);
    let v = json_of(send_raw(&h, get("q=RACK0")).await).await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    assert_eq!(v["next_before_id"], Value::Null);
    let v = json_of(send_raw(&h, get("action=user&actor=test")).await).await;
    assert_eq!(
        v["entries"].as_array().unwrap().len(),
        3,
        "the user.* family: {v}"
    );
    let resp = send_raw(&h, get("limit=0")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = send_raw(&h, get("bogus=1")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}
