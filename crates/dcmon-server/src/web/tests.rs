use super::layout::PageUser;
use super::{alert_pages, pages};
use crate::auth::Role;

fn user(role: Role) -> PageUser<'static> {
    PageUser {
        name: "alice",
        role,
        csrf: "tok-123",
    }
}

/// Every page as each role sees it.
fn every_page(role: Role) -> Vec<(&'static str, String)> {
    let u = user(role);
    vec![
        ("fleet", pages::fleet(&u).into_string()),
        ("machine", pages::machine(&u, "gpu01").into_string()),
        (
            "agents",
            pages::agents(&u, "https://dc:8443", "SHA256:abc").into_string(),
        ),
        ("bmcs", pages::bmcs(&u).into_string()),
        ("bmc", pages::bmc(&u, "rack1-smc").into_string()),
        ("alerts", alert_pages::alerts(&u, None).into_string()),
        ("alert rules", alert_pages::rules(&u).into_string()),
        ("alert channels", alert_pages::channels(&u).into_string()),
        ("silences", alert_pages::silences(&u).into_string()),
        ("users", pages::users(&u).into_string()),
        ("tokens", pages::tokens(&u).into_string()),
        ("audit", pages::audit(&u).into_string()),
        (
            "settings",
            pages::settings(&u, &[("listen", "0.0.0.0:8443".to_owned())]).into_string(),
        ),
    ]
}

#[test]
fn navigation_shows_only_what_the_role_may_open() {
    let check = |role: Role, shown: &[&str], hidden: &[&str]| {
        for (name, html) in every_page(role) {
            for href in shown {
                assert!(
                    html.contains(&format!("href=\"{href}\"")),
                    "{role:?} {name}: {href} missing"
                );
            }
            for href in hidden {
                assert!(
                    !html.contains(&format!("href=\"{href}\"")),
                    "{role:?} {name}: {href} shown"
                );
            }
        }
    };
    check(
        Role::Viewer,
        &["/", "/alerts", "/agents", "/bmcs", "/tokens", "/settings"],
        &["/users", "/audit"],
    );
    check(
        Role::Operator,
        &["/", "/alerts", "/agents", "/bmcs", "/tokens", "/settings"],
        &["/users", "/audit"],
    );
    check(
        Role::Admin,
        &[
            "/",
            "/alerts",
            "/agents",
            "/bmcs",
            "/users",
            "/tokens",
            "/audit",
            "/settings",
        ],
        &[],
    );
}

#[test]
fn every_page_carries_the_csrf_token_user_and_logout() {
    for (name, html) in every_page(Role::Viewer) {
        assert!(
            html.contains(r#"<meta name="csrf-token" content="tok-123">"#),
            "{name}"
        );
        assert!(html.contains("alice"), "{name}");
        assert!(html.contains(r#"id="logout""#), "{name}");
        assert!(html.starts_with("<!DOCTYPE html>"), "{name}");
        assert!(
            !html.contains("http://") && !html.contains("cdn"),
            "{name}: external resource"
        );
    }
}

#[test]
fn write_controls_only_for_roles_that_may_use_them() {
    let machine = |r| pages::machine(&user(r), "gpu01").into_string();
    assert!(!machine(Role::Viewer).contains("command-form"));
    assert!(machine(Role::Operator).contains("command-form"));
    let agents = |r| pages::agents(&user(r), "https://dc:8443", "SHA256:abc").into_string();
    assert!(!agents(Role::Viewer).contains("enroll-form"));
    assert!(agents(Role::Operator).contains("enroll-form"));
    // A token can be created up to the creator's own role.
    let tokens = pages::tokens(&user(Role::Operator)).into_string();
    assert!(tokens.contains(r#"value="operator""#) && !tokens.contains(r#"value="admin""#));
}

#[test]
fn data_from_outside_is_escaped() {
    let html = pages::machine(&user(Role::Viewer), "<script>x</script>\"").into_string();
    assert!(!html.contains("<script>x"), "{html}");
    assert!(html.contains("&lt;script&gt;x&lt;/script&gt;&quot;"));
}

#[test]
fn login_page_has_both_steps_and_no_session_data() {
    let html = pages::login().into_string();
    assert!(html.contains(r#"id="login-form""#) && html.contains(r#"id="totp-step""#));
    assert!(!html.contains("csrf-token") && !html.contains("logout"));
}

#[test]
fn forbidden_page_keeps_the_navigation_of_the_role() {
    let html = pages::forbidden(&user(Role::Viewer), "this needs role admin").into_string();
    assert!(html.contains("this needs role admin") && html.contains("href=\"/agents\""));
    assert!(!html.contains("href=\"/users\""));
}

#[test]
fn forbidden_page_without_a_user_offers_sign_in_only() {
    let html = pages::forbidden_unnamed("unknown role \"root\"").into_string();
    assert!(html.contains("unknown role &quot;root&quot;") && html.contains("href=\"/login\""));
    assert!(!html.contains("href=\"/agents\"") && !html.contains("csrf-token"));
}

#[test]
fn durations_read_as_a_config_file_would_write_them() {
    let check = |secs: u64, expect: &str| {
        assert_eq!(
            super::duration_text(std::time::Duration::from_secs(secs)),
            expect
        );
    };
    check(90 * 86_400, "90d");
    check(12 * 3_600, "12h");
    check(300, "5m");
    check(90, "90s");
    check(0, "0ms");
}

#[tokio::test]
async fn static_files_are_cached_by_content_and_revalidated_by_etag() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt;
    let app =
        axum::Router::new().route("/static/{*path}", axum::routing::get(super::assets::serve));
    let get = |uri: String, etag: Option<String>| {
        let app = app.clone();
        async move {
            let mut req = Request::get(uri);
            if let Some(e) = etag {
                req = req.header(header::IF_NONE_MATCH, e);
            }
            app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
        }
    };
    let versioned = super::assets::url("js/fleet.js");
    let resp = get(versioned.clone(), None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert_eq!(h[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert_eq!(
        h[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    let etag = h[header::ETAG].to_str().unwrap().to_owned();
    assert!(
        versioned.ends_with(etag.trim_matches('"')),
        "{versioned} {etag}"
    );

    // A module's relative import comes without the version: revalidated each time.
    let plain = get("/static/js/fleet.js".into(), None).await;
    assert_eq!(plain.headers()[header::CACHE_CONTROL], "no-cache");
    let again = get("/static/js/fleet.js".into(), Some(etag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    // A stale version in the link is served, but not cached for long.
    let stale = get("/static/app.css?v=0000".into(), None).await;
    assert_eq!(stale.headers()[header::CACHE_CONTROL], "no-cache");
    assert!(
        stale.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    for missing in [
        "/static/nope.js",
        "/static/../Cargo.toml",
        "/static/js/../../src/lib.rs",
    ] {
        assert_eq!(
            get(missing.into(), None).await.status(),
            StatusCode::NOT_FOUND,
            "{missing}"
        );
    }
}

#[test]
fn only_paths_on_this_server_are_followed_after_sign_in() {
    for (next, ok) in [
        ("/", true),
        ("/machines/gpu01?range=6h", true),
        ("//evil.example/", false),
        ("/\\evil.example/", false),
        ("https://evil.example/", false),
        ("", false),
    ] {
        assert_eq!(super::is_local_path(next), ok, "{next:?}");
    }
    let to = |n: Option<&str>| super::next_location(n).to_str().unwrap().to_owned();
    assert_eq!(to(Some("/agents")), "/agents");
    assert_eq!(to(Some("/x\r\nSet-Cookie: a=b")), "/");
    assert_eq!(to(Some("//evil.example")), "/");
    assert_eq!(to(None), "/");
}

#[test]
fn bmcs_sit_between_agents_and_users_in_the_navigation_and_stay_marked_on_a_bmc() {
    let html = pages::bmc(&user(Role::Admin), "rack1-smc").into_string();
    let at = |href: &str| html.find(&format!("href=\"{href}\"")).unwrap();
    assert!(at("/agents") < at("/bmcs") && at("/bmcs") < at("/users"));
    assert!(
        html.contains(r#"<a href="/bmcs" aria-current="page">BMCs</a>"#),
        "{html}"
    );
}

#[test]
fn bmc_controls_only_for_roles_that_may_use_them() {
    let bmcs = |r| pages::bmcs(&user(r)).into_string();
    // Viewers see the inventory; operators may check connectivity; admins add and remove.
    let viewer = bmcs(Role::Viewer);
    assert!(viewer.contains(r#"data-can-check="false""#) && !viewer.contains("bmc-form"));
    assert!(!viewer.contains("<th>Actions</th>"));
    let operator = bmcs(Role::Operator);
    assert!(
        operator.contains(r#"data-can-check="true""#)
            && operator.contains(r#"data-can-admin="false""#)
    );
    assert!(!operator.contains("bmc-form"));
    let admin = bmcs(Role::Admin);
    assert!(admin.contains(r#"data-can-admin="true""#) && admin.contains(r#"id="bmc-form""#));
    // The form asks for a password but the page never carries one back.
    assert!(admin.contains(r#"name="password" type="password""#));
    let bmc = |r| pages::bmc(&user(r), "rack1-smc").into_string();
    assert!(bmc(Role::Viewer).contains(r#"data-can-write="false""#));
    assert!(bmc(Role::Viewer).contains("Read only"));
    assert!(bmc(Role::Operator).contains(r#"data-can-write="true""#));
    assert!(!bmc(Role::Operator).contains("Read only"));
}

#[test]
fn bmc_page_is_a_shell_with_charts_and_its_name_escaped() {
    let html = pages::bmc(&user(Role::Viewer), "<b>x</b>\"").into_string();
    assert!(!html.contains("<b>x"), "{html}");
    assert!(html.contains("&lt;b&gt;x&lt;/b&gt;&quot;"));
    let html = pages::bmc(&user(Role::Viewer), "rack1-smc").into_string();
    for id in ["fan-status", "charts-bmc", "curve-body", "bmc-info"] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert!(html.contains("uPlot.iife.min.js") && html.contains("js/bmc.js"));
}

/// The BMC and Alerts pages through the real router: their access policy (sign-in first, every
/// role may look) and the page each role gets.
#[tokio::test]
async fn bmc_and_alert_pages_are_served_to_signed_in_users_and_send_others_to_sign_in() {
    use crate::config::ServerConfig;
    use crate::control::{ControlDb, now_ms};
    use crate::state::{AppState, SystemClock};
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Request, StatusCode, header};
    use http_body_util::BodyExt;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    let control = ControlDb::open(dir.path()).unwrap();
    let tsdb = dcmon_tsdb::Tsdb::open(&dir.path().join("tsdb")).unwrap();
    let state = AppState::new(config, control, tsdb, Arc::new(SystemClock), "x".into());
    let get = |path: &str, session: Option<&str>| {
        let mut b = Request::builder().uri(path);
        if let Some(id) = session {
            b = b.header(header::COOKIE, format!("dcmon_session={id}"));
        }
        let mut req = b.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let app = crate::api::app(state.clone());
        async move {
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let location = resp
                .headers()
                .get(header::LOCATION)
                .map(|v| v.to_str().unwrap().to_owned());
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, location, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    for path in [
        "/bmcs",
        "/bmcs/rack1-smc",
        "/alerts",
        "/alerts/rules",
        "/alerts/channels",
        "/alerts/silences",
        "/alerts/7",
    ] {
        let (status, location, _) = get(path, None).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        let next = format!("/login?next={}", path.replace('/', "%2F"));
        assert_eq!(location.as_deref(), Some(next.as_str()), "{path}");
    }
    let now = now_ms();
    for (name, role) in [
        ("vera", Role::Viewer),
        ("otto", Role::Operator),
        ("ada", Role::Admin),
    ] {
        state
            .control
            .create_user(name, role, "a long enough password", "test", None, now)
            .unwrap();
        let session = state.control.create_session(name, now, None).unwrap();
        let (status, _, html) = get("/bmcs", Some(&session.id)).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert!(html.contains(r#"id="bmcs-table""#), "{name}");
        assert!(
            html.contains(&session.csrf),
            "{name}: the page carries its CSRF token"
        );
        assert_eq!(html.contains("bmc-form"), role == Role::Admin, "{name}");
        let (status, _, html) = get("/bmcs/rack1-smc", Some(&session.id)).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert!(html.contains(r#"data-bmc="rack1-smc""#), "{name}");
        assert_eq!(
            html.contains(r#"data-can-write="true""#),
            role >= Role::Operator,
            "{name}"
        );
        for (path, id, form) in [
            ("/alerts", "open-table", "silence-form"),
            ("/alerts/rules", "rules-table", "rule-form"),
            ("/alerts/channels", "channels-table", "channel-form"),
            ("/alerts/silences", "silences-table", "silence-form"),
            ("/alerts/7", "open-table", "silence-form"),
        ] {
            let (status, _, html) = get(path, Some(&session.id)).await;
            assert_eq!(status, StatusCode::OK, "{name} {path}");
            assert!(html.contains(&format!("id=\"{id}\"")), "{name} {path}");
            assert!(html.contains(&session.csrf), "{name} {path}");
            assert_eq!(
                html.contains(r#"data-open-alert="7""#),
                path == "/alerts/7",
                "{name} {path}"
            );
            assert_eq!(
                html.contains(&format!("id=\"{form}\"")),
                role >= Role::Operator,
                "{name} {path}"
            );
        }
    }
}

#[test]
fn alerts_come_first_after_the_fleet_and_stay_marked_on_their_sub_pages() {
    for (name, html) in [
        ("alerts", alert_pages::alerts(&user(Role::Viewer), None)),
        ("alert", alert_pages::alerts(&user(Role::Viewer), Some(7))),
        ("rules", alert_pages::rules(&user(Role::Viewer))),
        ("channels", alert_pages::channels(&user(Role::Viewer))),
        ("silences", alert_pages::silences(&user(Role::Viewer))),
    ] {
        let html = html.into_string();
        let nav = &html[html.find(r#"<ul class="nav">"#).unwrap()..];
        let at = |href: &str| nav.find(&format!("href=\"{href}\"")).unwrap();
        assert!(
            at("/") < at("/alerts") && at("/alerts") < at("/agents"),
            "{name}"
        );
        assert!(
            nav.contains(r#"<a href="/alerts" aria-current="page">Alerts</a>"#),
            "{name}: Alerts is not marked"
        );
        // The sub-navigation reaches all four pages and marks only this one.
        for href in [
            "/alerts",
            "/alerts/rules",
            "/alerts/channels",
            "/alerts/silences",
        ] {
            assert!(html.contains(&format!("href=\"{href}\"")), "{name}: {href}");
        }
        assert_eq!(
            html.matches(r#"aria-current="page""#).count(),
            2,
            "{name}: the main and the sub-navigation mark one entry each"
        );
    }
}

#[test]
fn alert_write_controls_only_for_operators_and_admins() {
    let forms = [
        ("alerts", "silence-form"),
        ("rules", "rule-form"),
        ("rules", "import-form"),
        ("channels", "channel-form"),
        ("silences", "silence-form"),
    ];
    let render = |page: &str, role| {
        let u = user(role);
        match page {
            "alerts" => alert_pages::alerts(&u, None),
            "rules" => alert_pages::rules(&u),
            "channels" => alert_pages::channels(&u),
            _ => alert_pages::silences(&u),
        }
        .into_string()
    };
    for role in [Role::Viewer, Role::Operator, Role::Admin] {
        let write = role >= Role::Operator;
        for (page, form) in forms {
            let html = render(page, role);
            assert_eq!(
                html.contains(&format!("id=\"{form}\"")),
                write,
                "{role:?} {page}: {form}"
            );
            assert!(
                html.contains(&format!("data-can-write=\"{write}\"")),
                "{role:?} {page}"
            );
        }
    }
    // The channel form asks for secrets as passwords and never carries one back.
    let channels = render("channels", Role::Operator);
    assert!(channels.contains(r#"name="token" type="password""#));
    assert!(channels.contains(r#"name="password" type="password""#));
    // Every field the server may name has a place for its message.
    let rules = render("rules", Role::Operator);
    for field in [
        "name",
        "expr",
        "threshold",
        "resolve",
        "for",
        "channels",
        "yaml",
    ] {
        assert!(
            rules.contains(&format!("data-error-for=\"{field}\"")),
            "{field}"
        );
    }
}
