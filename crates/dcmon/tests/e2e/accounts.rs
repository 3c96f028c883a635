//! Accounts over real HTTPS: a user made with `dcmon user add` signs in, its session
//! cookie and CSRF token work against the running server, and the sign-in is in
//! `dcmon audit` with the client's address.

use super::{OperatorServer, dcmon, run, stdout};
use std::io::Write;
use std::process::{Command, Stdio};

const PASSWORD: &str = "correct horse battery";

/// One request with optional cookie, CSRF token and JSON body; status, headers, body.
fn send(
    s: &OperatorServer,
    method: reqwest::Method,
    path: &str,
    cookie: Option<&str>,
    csrf: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    s.http.rt.block_on(async {
        let mut req = s.http.http.request(method, format!("{}{path}", s.base));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        if let Some(t) = csrf {
            req = req.header("x-csrf-token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, headers, body)
    })
}

#[test]
fn a_cli_made_user_signs_in_over_tls_and_its_cookie_and_csrf_token_work() {
    let dir = tempfile::tempdir().unwrap();
    let s = OperatorServer::start(dir.path());
    let mut add = Command::new(dcmon())
        .args([
            "user",
            "add",
            "ann",
            "--role",
            "operator",
            "--password-stdin",
        ])
        .args(["--config", &s.cfg])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(add.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");

    use reqwest::Method;
    let login = serde_json::json!({ "user": "ann", "password": PASSWORD });
    let (status, headers, body) = send(&s, Method::POST, "/api/session", None, None, Some(login));
    assert_eq!(status, 200, "{body}");
    let set_cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        set_cookie.ends_with("; HttpOnly; Secure; SameSite=Strict; Path=/"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let csrf = body["csrf"].as_str().unwrap().to_owned();

    let (status, _, me) = send(&s, Method::GET, "/api/me", Some(&cookie), None, None);
    assert_eq!(status, 200);
    assert_eq!(
        (me["name"].as_str(), me["via"].as_str()),
        (Some("ann"), Some("session"))
    );

    let new_token = serde_json::json!({ "name": "script", "role": "viewer" });
    let (status, _, body) = send(
        &s,
        Method::POST,
        "/api/tokens",
        Some(&cookie),
        None,
        Some(new_token.clone()),
    );
    assert_eq!((status, body["code"].as_str()), (403, Some("csrf")));
    let (status, _, body) = send(
        &s,
        Method::POST,
        "/api/tokens",
        Some(&cookie),
        Some(&csrf),
        Some(new_token),
    );
    assert_eq!(status, 201, "{body}");
    let (status, _) = s
        .http
        .get(
            &format!("{}/api/v1/query?query=up", s.base),
            body["token"].as_str(),
        )
        .unwrap();
    assert_eq!(
        status, 200,
        "the token made in the session works as a Bearer token"
    );

    let (status, _, _) = send(
        &s,
        Method::DELETE,
        "/api/session",
        Some(&cookie),
        Some(&csrf),
        None,
    );
    assert_eq!(status, 204);
    let (status, _, _) = send(&s, Method::GET, "/api/me", Some(&cookie), None, None);
    assert_eq!(status, 401, "signed out");

    let audit = stdout(&run(
        Command::new(dcmon()).args(["audit", "--config", &s.cfg, "--actor", "ann"])
    ));
    let actions: Vec<(&str, &str)> = audit
        .lines()
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols[2], cols[5])
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("logout", "127.0.0.1"),
            ("api_token.create", "127.0.0.1"),
            ("login.ok", "127.0.0.1"),
        ],
        "{audit}"
    );
}
