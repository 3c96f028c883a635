//! The agent against a real server: its spool across a server outage and an agent
//! restart, live commands (collect_now, fan_control on `dcmon bmc-sim` over RMCP+,
//! config_update, reboot), and its local exporter checked by `promtool` and scraped by
//! a real `prometheus`.

use super::bmc_sim::Sim;
use super::{
    OperatorServer, PinnedHttp, Proc, dcmon, dcmon_agent, form_encode, free_port, join_command,
    promtool_check_metrics, run, stdout, wait_for_series, wait_ok, write,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A registered agent: its config file, and the command that runs it.
pub(super) struct Agent {
    cfg: PathBuf,
}

impl Agent {
    /// Writes `agent.yaml` (state dir, interval, `extra` YAML), registers with the server.
    pub(super) fn register(server: &OperatorServer, dir: &Path, host: &str, extra: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let cfg = dir.join("agent.yaml");
        write(
            &cfg,
            &format!(
                "state_dir: {}\nhostname: {host}\n{extra}",
                dir.join("state").display()
            ),
        );
        let (_, token) = join_command(&stdout(&run(Command::new(dcmon()).args([
            "enroll",
            "create",
            "--config",
            &server.cfg,
        ]))));
        let out = stdout(&run(Command::new(dcmon_agent()).args([
            "--config",
            cfg.to_str().unwrap(),
            "register",
            "--server",
            &server.base,
            "--token",
            &token,
            "--fingerprint",
            &server.fingerprint,
        ])));
        assert!(out.contains("status approved"), "{out}");
        Self { cfg }
    }

    pub(super) fn spawn(&self) -> Proc {
        Proc::spawn(
            "dcmon-agent",
            Command::new(dcmon_agent()).args(["--config", self.cfg.to_str().unwrap(), "run"]),
        )
    }
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Raw sample timestamps (seconds) of `selector` over the last `range`.
fn sample_times(server: &OperatorServer, selector: &str, range: &str) -> Vec<f64> {
    let url = format!(
        "{}/api/v1/query?query={}",
        server.base,
        form_encode(&format!("{selector}[{range}]"))
    );
    let (status, v) = server.http.get(&url, Some(&server.token)).unwrap();
    assert_eq!(status, 200, "{v}");
    let result = v["data"]["result"].as_array().unwrap();
    assert!(result.len() <= 1, "{selector}: {v}");
    let Some(series) = result.first() else {
        return Vec::new();
    };
    series["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_f64().unwrap())
        .collect()
}

fn latest(server: &OperatorServer, query: &str) -> Option<f64> {
    let url = format!("{}/api/v1/query?query={}", server.base, form_encode(query));
    let (_, v) = server.http.get(&url, Some(&server.token)).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn agent_spools_when_server_down_and_replays_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = OperatorServer::start(dir.path());
    let agent = Agent::register(
        &server,
        &dir.path().join("agent"),
        "spooler",
        "interval: 1s\ncommands:\n  enabled: false\n",
    );
    let mut proc = agent.spawn();
    let up = r#"dcmon_collector_up{collector="os",host="spooler"}"#;
    wait_for_series(
        &server.http,
        &server.base,
        &server.token,
        up,
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_secs(3));

    // The server goes away for 60 s; halfway through, the agent restarts too.
    let down_at = now_s();
    server.kill();
    std::thread::sleep(Duration::from_secs(30));
    let status = proc.interrupt();
    assert!(status.success(), "agent exit {status:?}");
    let restart_from = now_s();
    proc = agent.spawn();
    let restart_to = now_s();
    std::thread::sleep(Duration::from_secs(30));
    let back_at = now_s();
    server.restart();

    // Everything kept is sent: the spool drains and the newest scrape arrives.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let drained = latest(&server, r#"dcmon_agent_spool_scrapes{host="spooler"}"#) == Some(0.0);
        let fresh = sample_times(&server, up, "10s")
            .last()
            .is_some_and(|t| *t > back_at + 1.0);
        if drained && fresh {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spool did not drain:\n{}\n{}",
            proc.log(),
            server.proc.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let times = sample_times(&server, up, "3m");
    let outage: Vec<f64> = times
        .iter()
        .copied()
        .filter(|t| *t > down_at - 3.0 && *t < back_at + 3.0)
        .collect();
    assert!(
        outage.windows(2).all(|w| w[0] < w[1]),
        "samples out of order or duplicated: {outage:?}"
    );
    // One sample a second, except while the agent itself was restarting.
    for w in outage.windows(2) {
        let gap = w[1] - w[0];
        let spans_restart = w[0] <= restart_to && w[1] >= restart_from;
        let allowed = if spans_restart {
            restart_to - restart_from + 3.0
        } else {
            2.5
        };
        assert!(
            gap <= allowed,
            "a {gap:.1} s gap at {} (outage {down_at:.1}..{back_at:.1}): {outage:?}",
            w[0]
        );
    }
    let expected = back_at - down_at;
    assert!(
        outage.len() as f64 >= expected - 8.0,
        "{} samples over a {expected:.0} s outage",
        outage.len()
    );
    assert_eq!(
        latest(
            &server,
            r#"dcmon_agent_spool_dropped_scrapes_total{host="spooler"}"#
        ),
        Some(0.0)
    );
    eprintln!(
        "spool e2e: {} samples kept over a {expected:.1} s outage with an agent restart; max gap {:.2} s",
        outage.len(),
        outage.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
    );
}

/// A plain-HTTP GET with a bearer token on loopback; the body of a 200 answer.
fn plain_get(port: u16, path: &str, token: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_owned()
}

/// Queues a command through the REST API, waits for its result, and returns the record
/// and the server-side round trip (queued → result stored).
fn command(server: &OperatorServer, body: serde_json::Value) -> (serde_json::Value, f64) {
    let (status, v) = server
        .http
        .post(
            &format!("{}/api/commands?wait=10s", server.base),
            &server.token,
            &body,
        )
        .unwrap();
    assert_eq!(status, 201, "{v}");
    let rtt = v["finished_ms"].as_f64().unwrap_or(f64::NAN) - v["created_ms"].as_f64().unwrap();
    (v, rtt)
}

#[test]
fn commands_reach_the_agent_within_a_second_and_its_exporter_serves_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let server = OperatorServer::start(dir.path());
    let sim = Sim::start(1, &["--vendor", "supermicro"]);
    let password = dir.path().join("bmc.pass");
    write(&password, "s3cret\n");
    let token_file = dir.path().join("scrape.token");
    write(&token_file, "scrape-secret\n");
    let rebooted = dir.path().join("rebooted");
    let exporter_port = free_port();
    let agent = Agent::register(
        &server,
        &dir.path().join("agent"),
        "cmdhost",
        &format!(
            "interval: 30s\n\
             bmc_lan:\n  address: 127.0.0.1:{}\n  user: admin\n  password_file: {}\n\
             commands:\n  reboot_command: [touch, {}]\n\
             exporter:\n  listen: 127.0.0.1:{exporter_port}\n  bearer_token_file: {}\n",
            sim.port,
            password.display(),
            rebooted.display(),
            token_file.display()
        ),
    );
    let proc = agent.spawn();
    wait_for_series(
        &server.http,
        &server.base,
        &server.token,
        r#"dcmon_collector_up{host="cmdhost"}"#,
        Duration::from_secs(30),
    );
    // Give the long-poll a moment to be open, as it is in steady state.
    std::thread::sleep(Duration::from_secs(1));

    let (v, rtt) = command(
        &server,
        serde_json::json!({"host": "cmdhost", "kind": "collect_now"}),
    );
    assert_eq!(v["status"], "succeeded", "{v}\n{}", proc.log());
    assert!(v["message"].as_str().unwrap().contains("collected"), "{v}");
    assert!(rtt < 1000.0, "collect_now took {rtt} ms: {v}");
    eprintln!("collect_now round trip: {rtt} ms");

    let (v, rtt) = command(
        &server,
        serde_json::json!({"host": "cmdhost", "kind": "fan_control",
            "params": {"action": "zone", "zone": 0, "duty": 40}}),
    );
    assert_eq!(v["status"], "succeeded", "{v}\n{}", proc.log());
    assert!(rtt < 1000.0, "fan_control took {rtt} ms: {v}");
    eprintln!("fan_control round trip: {rtt} ms");
    let (v, _) = command(
        &server,
        serde_json::json!({"host": "cmdhost", "kind": "fan_control",
            "params": {"action": "status"}}),
    );
    assert_eq!(v["output"]["mode"], "full", "{v}");
    assert!(
        v["output"]["zones"]
            .as_array()
            .unwrap()
            .iter()
            .any(|z| z["zone"] == 0 && z["duty_percent"] == 40),
        "{v}"
    );
    // Below the vendor minimum: refused by the agent before anything is sent.
    let (v, _) = command(
        &server,
        serde_json::json!({"host": "cmdhost", "kind": "fan_control",
            "params": {"action": "zone", "zone": 0, "duty": 5}}),
    );
    assert_eq!(v["status"], "failed", "{v}");
    assert!(v["message"].as_str().unwrap().contains("minimum"), "{v}");

    // The CLI path: config_update persists the new interval in agent.yaml.
    let out = stdout(&run(Command::new(dcmon()).args([
        "command",
        "send",
        "--config",
        &server.cfg,
        "--host",
        "cmdhost",
        "config_update",
        "--interval",
        "5s",
    ])));
    assert!(
        out.contains("succeeded") && out.contains("interval 5 s"),
        "{out}"
    );
    let saved = std::fs::read_to_string(&agent.cfg).unwrap();
    assert!(saved.contains("interval: 5s"), "{saved}");

    // Reboot: a scheduled one can be cancelled; then one runs the configured command.
    let (v, _) = command(
        &server,
        serde_json::json!({"host": "cmdhost", "kind": "reboot", "params": {"delay_s": 60}}),
    );
    assert_eq!(v["status"], "succeeded", "{v}");
    let (v, _) = command(
        &server,
        serde_json::json!({"host": "cmdhost", "kind": "reboot", "params": {"cancel": true}}),
    );
    assert_eq!(v["message"], "scheduled reboot cancelled", "{v}");
    let (v, _) = command(
        &server,
        serde_json::json!({"host": "cmdhost", "kind": "reboot", "params": {}}),
    );
    assert_eq!(v["status"], "succeeded", "{v}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rebooted.exists() {
        assert!(
            Instant::now() < deadline,
            "reboot command never ran:\n{}",
            proc.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let history = stdout(&run(Command::new(dcmon()).args([
        "command",
        "list",
        "--config",
        &server.cfg,
        "--host",
        "cmdhost",
    ])));
    assert_eq!(
        history.lines().filter(|l| l.contains("succeeded")).count(),
        7,
        "{history}"
    );

    // The local exporter: token required, valid exposition, and a real Prometheus
    // scrapes it.
    let metrics = format!("http://127.0.0.1:{exporter_port}/metrics");
    let (status, _) = server.http.get(&metrics, None).unwrap();
    assert_eq!(status, 401);
    let text = plain_get(exporter_port, "/metrics", "scrape-secret");
    promtool_check_metrics(&text);
    let prom_port = free_port();
    let prom_cfg = dir.path().join("prometheus.yml");
    write(
        &prom_cfg,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dcmon-agent\n    \
             authorization:\n      credentials_file: {}\n    static_configs:\n      \
             - targets: ['127.0.0.1:{exporter_port}']\n",
            token_file.display()
        ),
    );
    let prometheus = Proc::spawn(
        "prometheus",
        Command::new("/usr/bin/prometheus").args([
            format!("--config.file={}", prom_cfg.display()),
            format!("--storage.tsdb.path={}", dir.path().join("prom").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ]),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    let http = PinnedHttp::new(&server.fingerprint);
    wait_ok(
        &http,
        &format!("{prom}/-/ready"),
        "prometheus did not become ready",
        &prometheus,
        Duration::from_secs(60),
    );
    let q = form_encode(r#"node_load1{host="cmdhost"} and on() up{job="dcmon-agent"} == 1"#);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = http
            .get(&format!("{prom}/api/v1/query?query={q}"), None)
            .unwrap();
        if v["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped the agent: {v}\n{}",
            prometheus.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Zone 0's duty and the fan mode as the real ipmitool reads them from the simulator.
fn zone0_and_mode(sim: &Sim) -> (u8, u8) {
    let hex = |args: &[&str]| u8::from_str_radix(sim.ok("17", args).trim(), 16).unwrap();
    (
        hex(&["raw", "0x30", "0x70", "0x66", "0x00", "0x00"]),
        hex(&["raw", "0x30", "0x45", "0x00"]),
    )
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < within, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

#[test]
fn agent_runs_its_fan_curve_fails_safe_without_temperatures_and_hands_back_on_stop() {
    let dir = tempfile::tempdir().unwrap();
    let server = OperatorServer::start(dir.path());
    let mut sim = Sim::start(1, &["--vendor", "supermicro"]);
    let password = dir.path().join("bmc.pass");
    write(&password, "s3cret\n");
    let agent = Agent::register(
        &server,
        &dir.path().join("agent"),
        "fanhost",
        &format!(
            "interval: 5s\n\
             bmc_lan:\n  address: 127.0.0.1:{}\n  user: admin\n  password_file: {}\n\
             fan_curve:\n  interval_s: 1\n  zones:\n    - zone: 0\n      points: [[0, 30], [150, 31]]\n",
            sim.port,
            password.display()
        ),
    );
    assert_eq!(
        zone0_and_mode(&sim).1,
        0,
        "the simulator starts in standard mode"
    );
    let proc = agent.spawn();
    // The curve takes over: full mode, zone 0 at 30 %.
    wait_until(
        "the curve sets zone 0 to 30 %",
        Duration::from_secs(20),
        || zone0_and_mode(&sim) == (30, 1),
    );
    // Temperatures become unreadable: full speed within one cycle (1 s) plus one read.
    assert!(sim.control("fault 0 lose-temperatures on").contains("ok"));
    let took = wait_until("fail-safe to 100 %", Duration::from_secs(10), || {
        zone0_and_mode(&sim).0 == 100
    });
    eprintln!("agent fan loop: fail-safe {took:?} after temperatures were lost (cycle 1 s)");
    assert!(took < Duration::from_secs(4), "fail-safe took {took:?}");
    assert!(sim.control("fault 0 lose-temperatures off").contains("ok"));
    wait_until("the curve resumes", Duration::from_secs(10), || {
        zone0_and_mode(&sim) == (30, 1)
    });
    // A clean stop hands the fans back to the BMC.
    let status = proc.interrupt();
    assert!(status.success(), "agent exit {status:?}");
    assert_eq!(
        zone0_and_mode(&sim).1,
        0,
        "standard mode after the agent stopped"
    );

    // The agent's writes and fail-safe transitions reached the server as events, and its
    // fan writes are in the audit log under the agent's name.
    let url = format!("{}/api/events?host=fanhost&limit=1000", server.base);
    let (status, v) = server.http.get(&url, Some(&server.token)).unwrap();
    assert_eq!(status, 200, "{v}");
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in ["fan_write", "fan_fail_safe", "fan_fail_safe_cleared"] {
        assert!(kinds.contains(&kind), "no {kind} event in {v}");
    }
    let audit = stdout(&run(Command::new(dcmon()).args([
        "audit",
        "--config",
        &server.cfg,
        "--limit",
        "500",
    ])));
    assert!(
        audit.lines().any(|l| l.contains("agent:fanhost")
            && l.contains("ipmi.fan_write")
            && l.contains("curve stopped")),
        "{audit}"
    );
}
