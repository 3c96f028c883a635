//! The web UI in a real browser: `tests/web/ui.mjs` drives Debian's Chromium through
//! playwright-core against a real server with a real agent pushing to it. Both tools are
//! installed by `cargo xtask test`; without them this test fails (it never passes by
//! skipping).

use super::agent_live::Agent;
use super::{OperatorServer, dcmon, run, stdout, wait_for_series};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Failed sign-ins before a lock-out, set low so the scenario is short.
const LOCKOUT_FAILURES: u32 = 3;

/// Browser scenarios run one at a time: each drives a Chromium against its own server,
/// which is heavy for a small test machine, and they share the screenshot folder.
pub(super) static BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The cargo target dir (`<target>/debug/dcmon` → `<target>`), where `cargo xtask test`
/// installs playwright-core (`web-tests/`) and where screenshots go (`screenshots/`).
pub(super) fn target_dir() -> PathBuf {
    dcmon()
        .parent()
        .and_then(|p| p.parent())
        .expect("dcmon lives in <target>/<profile>/")
        .to_path_buf()
}

/// playwright-core's ES module entry, or a failure that says how to get it.
pub(super) fn playwright() -> PathBuf {
    let entry = target_dir().join("web-tests/node_modules/playwright-core/index.mjs");
    let mut missing = Vec::new();
    if !std::path::Path::new(CHROMIUM).exists() {
        missing.push(format!("Debian's chromium ({CHROMIUM})"));
    }
    if !entry.exists() {
        missing.push(format!("playwright-core ({})", entry.display()));
    }
    let node = Command::new("node").arg("--version").output();
    if !matches!(node, Ok(ref o) if o.status.success()) {
        missing.push("node".to_owned());
    }
    assert!(
        missing.is_empty(),
        "the browser tests need {}; run `cargo xtask test` once (it installs them)",
        missing.join(", ")
    );
    entry
}

/// Removes the screenshots of an earlier run that `mine` says belong to the caller's
/// scenario, so that a folder holds one run's pictures per scenario.
pub(super) fn clear_screenshots(dir: &std::path::Path, mine: impl Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_str().is_some_and(&mine) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The first admin, made with an admin API token as an installer script would: that
/// token and the admin's password.
pub(super) fn first_admin(server: &OperatorServer) -> (String, &'static str) {
    let admin_token = stdout(&run(Command::new(dcmon()).args([
        "token",
        "create",
        "--role",
        "admin",
        "--config",
        &server.cfg,
    ])))
    .trim()
    .to_owned();
    let password = "admin-password-1";
    let (status, body) = server
        .http
        .post(
            &format!("{}/api/users", server.base),
            &admin_token,
            &serde_json::json!({"name": "admin", "role": "admin", "password": password}),
        )
        .unwrap();
    assert_eq!(status, 201, "creating the admin: {body}");
    (admin_token, password)
}

/// Runs the browser scenarios of `tests/web/<script>` signed in as the first admin, with
/// `env` besides the common variables; their screenshots replace the earlier ones that
/// `mine` names. Fails with the scenarios' output and the server's log.
pub(super) fn run_scenarios(
    server: &OperatorServer,
    script: &str,
    password: &str,
    env: &[(&str, String)],
    mine: impl Fn(&str) -> bool,
) {
    let entry = playwright();
    let screenshots = target_dir().join("screenshots");
    clear_screenshots(&screenshots, mine);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/web")
        .join(script);
    let out = Command::new("node")
        .arg(&path)
        .env("DCMON_URL", &server.base)
        .env("DCMON_ADMIN_USER", "admin")
        .env("DCMON_ADMIN_PASSWORD", password)
        .env("DCMON_SCREENSHOTS", &screenshots)
        .env("DCMON_PLAYWRIGHT", &entry)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("running node");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{script} scenarios failed ({}); screenshots in {}:\n{log}\n--- server ---\n{}",
        out.status,
        screenshots.display(),
        server.proc.log()
    );
    eprintln!("{log}screenshots in {}", screenshots.display());
}

#[test]
fn web_ui_in_chromium_login_fleet_machine_zoom_commands_roles_totp_lockout() {
    playwright();
    let _one_browser = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let server = OperatorServer::start_with(
        dir.path(),
        &format!(
            "ui:\n  refresh: 1s\nauth:\n  lockout_failures: {LOCKOUT_FAILURES}\n  login_attempts_per_minute: 1000\n"
        ),
    );
    let host = "webui-gpu01";
    let agent = Agent::register(&server, &dir.path().join("agent"), host, "interval: 2s\n");
    let _agent = agent.spawn();

    let (_, password) = first_admin(&server);
    wait_for_series(
        &server.http,
        &server.base,
        &server.token,
        &format!(r#"dcmon_collector_up{{host="{host}"}}"#),
        Duration::from_secs(30),
    );

    // The BMC and Alerts scenarios' screenshots (`bmc*`, `alerts*`) are their own.
    run_scenarios(
        &server,
        "ui.mjs",
        password,
        &[
            ("DCMON_HOST", host.to_owned()),
            ("DCMON_LOCKOUT_FAILURES", LOCKOUT_FAILURES.to_string()),
        ],
        |name| !name.starts_with("bmc") && !name.starts_with("alerts"),
    );
}
