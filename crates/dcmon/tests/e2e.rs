//! End-to-end: the real `dcmon` and `dcmon-agent` binaries on loopback.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "e2e/accounts.rs"]
mod accounts;
#[path = "e2e/agent_live.rs"]
mod agent_live;
#[path = "e2e/alerts.rs"]
mod alerts;
#[path = "e2e/bmc_poller.rs"]
mod bmc_poller;
#[path = "e2e/bmc_sim.rs"]
mod bmc_sim;
#[path = "e2e/durability.rs"]
mod durability;
#[path = "e2e/fan_control.rs"]
mod fan_control;
#[path = "e2e/ipmi_sim.rs"]
mod ipmi_sim;
#[path = "e2e/promql_compat.rs"]
mod promql_compat;
#[path = "e2e/web_alerts.rs"]
mod web_alerts;
#[path = "e2e/web_bmc.rs"]
mod web_bmc;
#[path = "e2e/web_ui.rs"]
mod web_ui;

/// Kills the process when the test ends, however it ends.
struct Proc {
    child: Child,
    name: &'static str,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Self {
            child,
            name,
            stderr,
        }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGINT (Ctrl-C) and waits for a clean exit.
    fn interrupt(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop on SIGINT:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} stderr ---\n{}", self.name, self.log());
        }
    }
}

fn dcmon() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dcmon"))
}

/// The agent binary lives beside `dcmon` in the same target dir (`cargo xtask test`
/// builds it first); built here when a bare `cargo test` did not.
fn dcmon_agent() -> PathBuf {
    let path = dcmon().with_file_name("dcmon-agent");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "dcmon-agent", "--bin", "dcmon-agent"])
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building dcmon-agent");
    }
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("running command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

/// An HTTPS client that trusts exactly the server's pinned key, as the agent does.
struct PinnedHttp {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl PinnedHttp {
    fn new(fingerprint: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(dcmon_agent::client::PinnedVerifier::new(Some(
            fingerprint.to_owned(),
        )))
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Self { rt, http }
    }

    /// GET with an optional bearer token: (status, JSON body).
    fn get(&self, url: &str, token: Option<&str>) -> Result<(u16, serde_json::Value), String> {
        self.rt.block_on(async {
            let mut req = self.http.get(url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = resp.json().await.unwrap_or(serde_json::Value::Null);
            Ok((status, body))
        })
    }
}

impl PinnedHttp {
    /// POST of a JSON body with a bearer token: (status, JSON body).
    fn post(
        &self,
        url: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value), String> {
        self.rt.block_on(async {
            let resp = self
                .http
                .post(url)
                .bearer_auth(token)
                .json(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = resp.json().await.unwrap_or(serde_json::Value::Null);
            Ok((status, body))
        })
    }
}

/// Polls `url` until it answers 200; else panics with `what` and the process's log.
fn wait_ok(http: &PinnedHttp, url: &str, what: &str, proc: &Proc, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok((200, _)) = http.get(url, None) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}:\n{}", proc.log());
}

fn wait_healthy(http: &PinnedHttp, base: &str, server: &Proc) {
    wait_ok(
        http,
        &format!("{base}/healthz"),
        "server did not become healthy",
        server,
        Duration::from_secs(30),
    );
}

/// A `dcmon server` on loopback with its config and data under `dir`, healthy, with a
/// client pinned to its key and an operator API token.
struct OperatorServer {
    proc: Proc,
    cfg: String,
    base: String,
    fingerprint: String,
    http: PinnedHttp,
    token: String,
}

impl OperatorServer {
    fn start(dir: &Path) -> Self {
        Self::start_with(dir, "")
    }

    /// [`OperatorServer::start`] with `extra` YAML appended to the config.
    fn start_with(dir: &Path, extra: &str) -> Self {
        let port = free_port();
        let config = dir.join("server.yaml");
        let data = dir.join("data");
        write(
            &config,
            &format!(
                "listen: 127.0.0.1:{port}\ndata_dir: {}\n{extra}",
                data.display()
            ),
        );
        let cfg = config.to_str().unwrap().to_owned();
        let proc = Self::spawn(&cfg);
        let cert = data.join("tls/server.crt");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cert.exists() {
            assert!(Instant::now() < deadline, "no certificate:\n{}", proc.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        let (fingerprint, _) = join_command(&stdout(&run(
            Command::new(dcmon()).args(["enroll", "create", "--config", &cfg])
        )));
        let token =
            stdout(&run(Command::new(dcmon()).args([
                "token", "create", "--role", "operator", "--config", &cfg,
            ])))
            .trim()
            .to_owned();
        let http = PinnedHttp::new(&fingerprint);
        let base = format!("https://127.0.0.1:{port}");
        wait_healthy(&http, &base, &proc);
        Self {
            proc,
            cfg,
            base,
            fingerprint,
            http,
            token,
        }
    }

    fn spawn(cfg: &str) -> Proc {
        Proc::spawn(
            "dcmon server",
            Command::new(dcmon()).args(["server", "--config", cfg]),
        )
    }

    /// SIGKILL: no shutdown path runs.
    fn kill(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
    }

    /// Starts the server again on the same config (after the old process is gone).
    fn restart(&mut self) {
        self.proc = Self::spawn(&self.cfg);
        wait_healthy(&self.http, &self.base, &self.proc);
    }
}

/// Polls `query` until it returns a non-empty vector; returns the time it took.
fn wait_for_series(
    http: &PinnedHttp,
    base: &str,
    token: &str,
    query: &str,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    let url = format!("{base}/api/v1/query?query={}", form_encode(query));
    let mut last = serde_json::Value::Null;
    while started.elapsed() < within {
        if let Ok((200, v)) = http.get(&url, Some(token)) {
            if v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
            {
                return started.elapsed();
            }
            last = v;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{query} not found within {within:?}; last answer: {last}");
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `--fingerprint` and `--token` of the `dcmon-agent register ...` line `dcmon` printed.
fn join_command(output: &str) -> (String, String) {
    let line = output
        .lines()
        .find(|l| l.trim_start().starts_with("dcmon-agent register"))
        .unwrap_or_else(|| panic!("no join command in:\n{output}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let arg = |name: &str| words[words.iter().position(|w| *w == name).unwrap() + 1].to_owned();
    (arg("--fingerprint"), arg("--token"))
}

/// Runs `promtool check metrics` (Debian's prometheus package: the reference parser of
/// the format) on an exposition; fails the test on a parse error or a finding other than
/// the camelCase names node_exporter's own metrics (node_memory_MemTotal_bytes) have too.
fn promtool_check_metrics(text: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by `cargo xtask test`");
    std::io::Write::write_all(promtool.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let problems =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    // Exit 1 is a parse error; 3 is lint findings.
    assert_ne!(
        out.status.code(),
        Some(1),
        "promtool could not parse the exposition:\n{problems}\n{text}"
    );
    for line in problems.lines() {
        assert!(
            line.contains("non-") || line.contains("camelCase") || line.trim().is_empty(),
            "unexpected promtool finding: {line}"
        );
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn agent_registers_with_token_and_its_samples_are_queryable_within_one_interval() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("server.yaml");
    write(
        &config,
        &format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\n",
            dir.path().join("data").display()
        ),
    );
    let cfg = config.to_str().unwrap();
    let server = Proc::spawn(
        "dcmon server",
        Command::new(dcmon()).args(["server", "--config", cfg]),
    );
    let base = format!("https://127.0.0.1:{port}");

    // The admin side: an API token and an enrollment token (with the join command).
    let viewer =
        stdout(&run(Command::new(dcmon()).args([
            "token", "create", "--config", cfg, "--role", "viewer",
        ])))
        .trim()
        .to_owned();
    // The certificate exists once the server has started.
    let deadline = Instant::now() + Duration::from_secs(30);
    let join = loop {
        let out = stdout(&run(
            Command::new(dcmon()).args(["enroll", "create", "--config", cfg, "--ttl", "10m"])
        ));
        if !out.contains("<start the server") {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "no certificate:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (fingerprint, token) = join_command(&join);
    assert!(fingerprint.starts_with("SHA256:"));

    let http = PinnedHttp::new(&fingerprint);
    wait_healthy(&http, &base, &server);
    let (status, body) = http
        .get(&format!("{base}/api/v1/query?query=node_load1"), None)
        .unwrap();
    assert_eq!(status, 401, "unauthenticated query must be refused: {body}");

    // Register against the loopback URL (the join command names the public one).
    let agent_cfg = dir.path().join("agent/agent.yaml");
    let state = dir.path().join("agent/state");
    let agent = |c: &mut Command| {
        c.env("DCMON_AGENT_STATE_DIR", &state)
            .arg("--config")
            .arg(&agent_cfg);
    };
    let mut reg = Command::new(dcmon_agent());
    agent(&mut reg);
    reg.args([
        "register",
        "--server",
        &base,
        "--token",
        &token,
        "--fingerprint",
        "SHA256:not-the-server",
    ]);
    let out = reg.output().unwrap();
    assert!(
        !out.status.success(),
        "a wrong fingerprint must refuse registration"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not the expected"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut reg = Command::new(dcmon_agent());
    agent(&mut reg);
    reg.args([
        "register",
        "--server",
        &base,
        "--token",
        &token,
        "--fingerprint",
        &fingerprint,
    ]);
    let out = stdout(&run(&mut reg));
    assert!(out.contains("status approved"), "{out}");
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(state.join("agent.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);
    let saved = std::fs::read_to_string(&agent_cfg).unwrap();
    assert!(
        saved.contains(&fingerprint) && !saved.contains(&token),
        "config pins the key and never stores the token:\n{saved}"
    );

    let interval = Duration::from_secs(5);
    let mut run_cmd = Command::new(dcmon_agent());
    agent(&mut run_cmd);
    run_cmd.args(["run", "--interval", "5s"]);
    let agent_proc = Proc::spawn("dcmon-agent", &mut run_cmd);
    let took = wait_for_series(
        &http,
        &base,
        &viewer,
        &format!("node_load1{{host=\"{}\"}}", hostname()),
        interval,
    );
    eprintln!("node_load1 visible {took:?} after the agent started (interval {interval:?})");
    wait_for_series(
        &http,
        &base,
        &viewer,
        "node_cpu_seconds_total{mode=\"idle\"}",
        Duration::from_secs(5),
    );

    let list = stdout(&run(
        Command::new(dcmon()).args(["agents", "list", "--config", cfg])
    ));
    assert!(
        list.contains(&hostname()) && list.contains("approved"),
        "{list}"
    );
    run(Command::new(dcmon()).args(["agents", "revoke", &hostname(), "--config", cfg]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent_proc.log().contains("agent_revoked") {
        assert!(
            Instant::now() < deadline,
            "agent not refused after revoke:\n{}",
            agent_proc.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(agent_proc.interrupt().success());
    assert!(server.interrupt().success());
}

#[test]
fn server_fails_closed_without_a_certificate_and_names_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.yaml");
    write(
        &config,
        &format!(
            "listen: 127.0.0.1:{}\ndata_dir: {}\ntls:\n  cert_file: /nonexistent/cert.pem\n  key_file: /nonexistent/key.pem\n",
            free_port(),
            dir.path().display()
        ),
    );
    let out = Command::new(dcmon())
        .args(["server", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLS certificate") && err.contains("/nonexistent/cert.pem"),
        "{err}"
    );

    write(&config, "listen: 127.0.0.1:1\nlisten_addr: x\n");
    let out = Command::new(dcmon())
        .args(["server", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.yaml:2:1: unknown field `listen_addr`"),
        "{err}"
    );
}

#[test]
fn garbage_flags_get_clear_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let agent_cfg = dir.path().join("agent.yaml");
    let fails = |program: PathBuf, args: &[&str], expect: &str| {
        let out = Command::new(&program)
            .env("DCMON_AGENT_STATE_DIR", dir.path().join("state"))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(
                if err.contains("error: invalid value")
                    || err.contains("error: unexpected")
                    || err.contains("error: the following required")
                {
                    2
                } else {
                    1
                }
            ),
            "{args:?}: {err}"
        );
        assert!(err.contains(expect), "{args:?}: {expect:?} not in:\n{err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    };
    fails(
        dcmon(),
        &["server", "--data-dir", &data, "--set", "nonsense"],
        "--set \"nonsense\": expected KEY=VALUE",
    );
    fails(
        dcmon(),
        &["server", "--data-dir", &data, "--set", "agents.colour=blue"],
        "unknown setting \"agents.colour\"; valid keys here: approval, max_clock_skew",
    );
    fails(
        dcmon(),
        &["server", "--data-dir", &data, "--listen", "not-an-address"],
        "--listen: listen=\"not-an-address\"",
    );
    fails(
        dcmon(),
        &["server", "--data-dir", &data, "--log-level", "[[["],
        "log.level",
    );
    fails(
        dcmon(),
        &["enroll", "create", "--data-dir", &data, "--ttl", "soon"],
        "invalid value 'soon' for '--ttl",
    );
    fails(
        dcmon(),
        &["enroll", "create", "--data-dir", &data, "--uses", "0"],
        "--uses must be at least 1",
    );
    fails(
        dcmon(),
        &[
            "user",
            "add",
            "bob",
            "--role",
            "root",
            "--generate",
            "--data-dir",
            &data,
        ],
        "invalid value 'root' for '--role <ROLE>'",
    );
    fails(
        dcmon(),
        &["user", "remove", "nobody", "--data-dir", &data],
        "no user named \"nobody\"",
    );
    fails(
        dcmon(),
        &[
            "rules",
            "add",
            "--name",
            "X",
            "--expr",
            "rate(up[",
            "--data-dir",
            &data,
        ],
        "rule X: expr: unexpected end of input",
    );
    fails(
        dcmon(),
        &[
            "rules",
            "add",
            "--name",
            "X",
            "--expr",
            "up",
            "--for",
            "soon",
            "--data-dir",
            &data,
        ],
        "invalid value 'soon' for '--for",
    );
    fails(
        dcmon(),
        &[
            "channels",
            "add",
            "--name",
            "c",
            "--type",
            "pager",
            "--url",
            "https://x",
            "--data-dir",
            &data,
        ],
        "channel type \"pager\": use email, slack, discord, teams, telegram or webhook",
    );
    fails(
        dcmon(),
        &[
            "channels",
            "add",
            "--name",
            "c",
            "--type",
            "slack",
            "--data-dir",
            &data,
        ],
        "channel c: url: a slack channel needs its webhook URL",
    );
    fails(
        dcmon(),
        &["alerts", "ack", "twelve", "--data-dir", &data],
        "invalid value 'twelve' for '<ID>'",
    );
    fails(
        dcmon(),
        &[
            "alerts",
            "silence",
            "--match",
            "host",
            "--for",
            "1h",
            "--comment",
            "c",
            "--data-dir",
            &data,
        ],
        "matcher \"host\": use name=value",
    );
    fails(
        dcmon(),
        &["audit", "--since", "yesterday", "--data-dir", &data],
        "--since \"yesterday\": expected a duration such as 24h",
    );
    fails(
        dcmon(),
        &["server", "--data-dir", &data, "--set", "ui.refresh=0s"],
        "ui.refresh: must be between 1s and 5m",
    );
    fails(
        dcmon(),
        &[
            "server",
            "--data-dir",
            &data,
            "--set",
            "ui.thresholds.cpu_tmp=[1,2,3]",
        ],
        "ui.thresholds.cpu_tmp: no such fleet column",
    );
    fails(
        dcmon(),
        &[
            "server",
            "--data-dir",
            &data,
            "--set",
            "auth.lockout_failures=0",
        ],
        "auth.lockout_failures: must be between 1 and 100",
    );
    fails(
        dcmon(),
        &["server", "--data-dir", &data, "--set", "alerts.interval=0s"],
        "alerts.interval: must be between 1s and 1h",
    );
    fails(
        dcmon(),
        &["token", "create", "--data-dir", &data, "--role", "root"],
        "invalid value 'root' for '--role",
    );
    fails(
        dcmon(),
        &["agents", "revoke", "nobody", "--data-dir", &data],
        "no agent with id or host \"nobody\"",
    );
    fails(
        dcmon(),
        &[
            "command",
            "send",
            "--data-dir",
            &data,
            "--host",
            "nobody",
            "collect_now",
        ],
        "no agent with id or host \"nobody\"",
    );
    fails(
        dcmon(),
        &[
            "command",
            "send",
            "--data-dir",
            &data,
            "--host",
            "x",
            "fan_control",
            "mode",
            "turbo",
        ],
        "use standard, full, optimal or heavy_io",
    );
    fails(
        dcmon(),
        &[
            "command",
            "send",
            "--data-dir",
            &data,
            "--host",
            "x",
            "reboot",
            "--delay",
            "later",
        ],
        "invalid value 'later' for '--delay",
    );
    fails(
        dcmon(),
        &[
            "bmc",
            "add",
            "--data-dir",
            &data,
            "--name",
            "bad name!",
            "--address",
            "10.0.0.1",
            "--user",
            "admin",
            "--password",
            "pw",
        ],
        "name",
    );
    let csv = dir.path().join("bmcs.csv");
    write(
        &csv,
        "name,address,user,password
node1,10.0.0.1
",
    );
    fails(
        dcmon(),
        &["bmc", "import", "--data-dir", &data, csv.to_str().unwrap()],
        "line 2",
    );
    let curve = dir.path().join("curve.yaml");
    write(&curve, "zones: [{zone: 0, points: [[50, 40], [40, 60]]}]\n");
    fails(
        dcmon(),
        &[
            "command",
            "send",
            "--data-dir",
            &data,
            "--host",
            "x",
            "config_update",
            "--fan-curve",
            curve.to_str().unwrap(),
        ],
        "zones[0].points[1]",
    );
    write(&curve, "{{{ not yaml");
    fails(
        dcmon(),
        &[
            "fans",
            "curve",
            "set",
            "--data-dir",
            &data,
            "--bmc",
            "x",
            "--file",
            curve.to_str().unwrap(),
        ],
        "not a fan curve",
    );
    let cfg = agent_cfg.to_str().unwrap();
    fails(
        dcmon_agent(),
        &["--config", cfg, "fans", "--lan", "10.0.0.1", "status"],
        "--user",
    );
    fails(
        dcmon_agent(),
        &[
            "--config",
            cfg,
            "register",
            "--server",
            "http://x:1",
            "--token",
            "t",
            "--yes",
        ],
        "must be an https:// URL",
    );
    fails(
        dcmon_agent(),
        &["--config", cfg, "run"],
        "this agent is not registered",
    );
    fails(
        dcmon_agent(),
        &["--config", cfg, "run", "--interval", "10ms"],
        "interval: must be at least 1s",
    );
    write(
        &agent_cfg,
        "interval: 30s\ncollectors:\n  disabled: [gpu0]\n",
    );
    fails(
        dcmon_agent(),
        &["--config", cfg, "collect", "--once"],
        "collectors.disabled: unknown collector \"gpu0\"; known: os",
    );
    write(
        &agent_cfg,
        "exporter:\n  listen: nowhere\ncommands:\n  reboot_command: []\n\
         fan_curve:\n  zones: [{zone: 0, points: [[50, 40], [40, 60]]}]\n",
    );
    fails(
        dcmon_agent(),
        &["--config", cfg, "collect", "--once"],
        "exporter.listen: \"nowhere\" is not an address",
    );
    fails(
        dcmon_agent(),
        &["--config", cfg, "collect", "--once"],
        "commands.reboot_command: must name a program",
    );
    fails(
        dcmon_agent(),
        &["--config", cfg, "collect", "--once"],
        "fan_curve.zones[0].points[1]",
    );
    write(&agent_cfg, "server: [1, 2]\n");
    fails(
        dcmon_agent(),
        &["--config", cfg, "collect", "--once"],
        "agent.yaml:1:",
    );
}

#[test]
fn quickstart_runs_server_and_agent_and_reuses_its_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("qs");
    let port = free_port();
    let start = || {
        let mut p = Proc::spawn(
            "dcmon quickstart",
            Command::new(dcmon()).args([
                "quickstart",
                "--data-dir",
                data.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--interval",
                "2s",
            ]),
        );
        // Read stdout until the banner is complete.
        let mut out = p.child.stdout.take().unwrap();
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(60);
        while !text.contains("Stop with Ctrl-C") {
            assert!(Instant::now() < deadline, "no banner:\n{text}\n{}", p.log());
            let n = out.read(&mut buf).unwrap();
            assert!(n > 0, "quickstart exited:\n{text}\n{}", p.log());
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        // Keep draining, as a terminal would.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        (p, text)
    };
    let (p, banner) = start();
    let field = |name: &str| -> String {
        let line = banner
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} in:\n{banner}"));
        line.split_whitespace()
            .nth(name.split_whitespace().count())
            .unwrap()
            .to_owned()
    };
    let fingerprint = field("Certificate fingerprint:");
    let token = field("Viewer API token:");
    assert!(
        banner.contains("Admin login:              admin / "),
        "{banner}"
    );
    assert!(banner.contains("dcmon-agent register --server"), "{banner}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&data).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "the data dir is private");
    let http = PinnedHttp::new(&fingerprint);
    let base = format!("https://127.0.0.1:{port}");
    wait_for_series(
        &http,
        &base,
        &token,
        &format!("node_load1{{host=\"{}\"}}", hostname()),
        Duration::from_secs(15),
    );
    assert!(
        p.interrupt().success(),
        "quickstart must stop cleanly on Ctrl-C"
    );

    // Second run: same data, same certificate, no new password.
    let (p, banner2) = start();
    assert!(
        banner2.contains("password shown at the first quickstart"),
        "{banner2}"
    );
    assert!(banner2.contains(&fingerprint), "{banner2}");
    wait_for_series(&http, &base, &token, "node_load1", Duration::from_secs(15));
    assert!(p.interrupt().success());
}

#[test]
fn collect_once_prints_valid_exposition_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.yaml");
    let collect = |format: &str| {
        let out = run(Command::new(dcmon_agent())
            .env("DCMON_AGENT_STATE_DIR", dir.path().join("state"))
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "collect",
                "--once",
                "--format",
                format,
            ]));
        stdout(&out)
    };
    let text = collect("prometheus");
    let host = hostname();
    assert!(
        text.contains("# TYPE node_cpu_seconds_total counter"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "node_load1{{host=\"{host}\",instance=\"{host}\"}}"
        )),
        "{text}"
    );
    assert!(
        text.contains("dcmon_collector_up{collector=\"os\""),
        "{text}"
    );
    promtool_check_metrics(&text);
    let json: serde_json::Value = serde_json::from_str(&collect("json")).unwrap();
    let samples = json["samples"].as_array().unwrap();
    assert!(
        samples
            .iter()
            .any(|s| s["metric"] == "node_load1" && s["labels"]["host"] == host),
        "{json}"
    );
}

#[test]
fn sighup_reloads_the_config_and_an_invalid_one_keeps_the_running_settings() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("server.yaml");
    let base_yaml = format!(
        "listen: 127.0.0.1:{port}\ndata_dir: {}\n",
        dir.path().join("data").display()
    );
    write(&config, &base_yaml);
    let cfg = config.to_str().unwrap();
    let server = Proc::spawn(
        "dcmon server",
        Command::new(dcmon()).args(["server", "--config", cfg]),
    );
    let base = format!("https://127.0.0.1:{port}");
    let cert = dir.path().join("data/tls/server.crt");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cert.exists() {
        assert!(
            Instant::now() < deadline,
            "no certificate:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let enroll = stdout(&run(
        Command::new(dcmon()).args(["enroll", "create", "--config", cfg, "--uses", "2"])
    ));
    let (fingerprint, token) = join_command(&enroll);
    let http = PinnedHttp::new(&fingerprint);
    wait_healthy(&http, &base, &server);
    let hup = |server: &Proc| {
        let _ = Command::new("kill")
            .args(["-HUP", &server.child.id().to_string()])
            .status();
    };
    let wait_log = |server: &Proc, text: &str, count: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.log().matches(text).count() < count {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the log:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    write(
        &config,
        &(base_yaml.clone() + "agents:\n  approval: manual\n"),
    );
    hup(&server);
    wait_log(&server, "configuration reloaded", 1);
    let agent_cfg = dir.path().join("agent.yaml");
    let out = stdout(&run(Command::new(dcmon_agent())
        .env("DCMON_AGENT_STATE_DIR", dir.path().join("state"))
        .args([
            "--config",
            agent_cfg.to_str().unwrap(),
            "register",
            "--server",
            &base,
            "--token",
            &token,
        ])
        .args(["--fingerprint", &fingerprint])));
    assert!(
        out.contains("status pending"),
        "manual approval applies after SIGHUP: {out}"
    );

    write(&config, &(base_yaml + "agents:\n  approval: sometimes\n"));
    hup(&server);
    wait_log(&server, "configuration reload failed", 1);
    assert!(
        server.log().contains("unknown variant `sometimes`"),
        "{}",
        server.log()
    );
    let (status, _) = http.get(&format!("{base}/healthz"), None).unwrap();
    assert_eq!(
        status, 200,
        "the server keeps running on its old configuration"
    );
    assert!(server.interrupt().success());
}
