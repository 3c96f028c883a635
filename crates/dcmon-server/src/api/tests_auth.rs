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
