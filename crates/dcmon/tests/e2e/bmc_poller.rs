//! The server's agentless BMC poller against Debian's `ipmi_sim`: BMCs added with
//! `dcmon bmc add` while the server runs are polled, a stopped BMC turns unreachable and
//! counts failures, a resumed one recovers, and a new SEL entry becomes one event.
//!
//! The inventory allows intervals of 10 s and more; the server's documented
//! `bmc_poll.interval_override` polls every 2 s here so the test takes seconds per step.

use super::ipmi_sim::{IpmiSim, PASSWORD, USER};
use super::{OperatorServer, dcmon, form_encode, run, stdout, wait_for_series};
use std::process::Command;
use std::time::{Duration, Instant};

const POLL_CONFIG: &str = "bmc_poll:\n  timeout: 1s\n  attempts: 2\n  interval_override: 2s\n";

/// The first value `query` returns now, if any.
fn value(server: &OperatorServer, query: &str) -> Option<f64> {
    let url = format!("{}/api/v1/query?query={}", server.base, form_encode(query));
    let (status, v) = server.http.get(&url, Some(&server.token)).ok()?;
    if status != 200 {
        return None;
    }
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Waits until `query` returns a value `ok` accepts; returns the time it took.
fn wait_value(
    server: &OperatorServer,
    query: &str,
    ok: impl Fn(f64) -> bool,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < within {
        last = value(server, query);
        if last.is_some_and(&ok) {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "{query}: last value {last:?} after {within:?}\n{}",
        server.proc.log()
    );
}

/// `dcmon bmc list --json`, the entry of `name`.
fn listed(server: &OperatorServer, name: &str) -> serde_json::Value {
    let out = run(Command::new(dcmon()).args(["bmc", "list", "--json", "--config", &server.cfg]));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    all.as_array()
        .and_then(|a| a.iter().find(|b| b["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in {all}"))
}

fn sel_events(server: &OperatorServer, bmc: &str) -> Vec<serde_json::Value> {
    let url = format!("{}/api/events?bmc={bmc}&kind=sel&limit=1000", server.base);
    let (status, v) = server.http.get(&url, Some(&server.token)).unwrap();
    assert_eq!(status, 200, "{v}");
    v["events"].as_array().cloned().unwrap_or_default()
}

#[test]
fn bmc_poller_polls_added_bmcs_marks_a_stopped_one_unreachable_and_stores_sel_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = OperatorServer::start_with(dir.path(), POLL_CONFIG);
    let sims: Vec<IpmiSim> = (0..3).map(|_| IpmiSim::start()).collect();
    let added = Instant::now();
    for (i, sim) in sims.iter().enumerate() {
        let out = run(Command::new(dcmon()).args([
            "bmc",
            "add",
            "--name",
            &format!("sim{i}"),
            "--address",
            &format!("127.0.0.1:{}", sim.port),
            "--user",
            USER,
            "--password",
            PASSWORD,
            "--interval",
            "10s",
            "--config",
            &server.cfg,
        ]));
        assert!(
            stdout(&out).contains(&format!("sim{i}")),
            "{}",
            stdout(&out)
        );
    }
    for i in 0..3 {
        let q = format!("ipmi_temperature_celsius{{bmc=\"sim{i}\",name=\"CPU Temp\"}}");
        wait_for_series(
            &server.http,
            &server.base,
            &server.token,
            &q,
            Duration::from_secs(30),
        );
        wait_value(
            &server,
            &format!("dcmon_bmc_state{{bmc=\"sim{i}\",state=\"ok\"}}"),
            |v| v == 1.0,
            Duration::from_secs(30),
        );
    }
    let first_polls = added.elapsed();
    let temp = value(
        &server,
        "ipmi_temperature_celsius{bmc=\"sim0\",name=\"CPU Temp\"}",
    );
    assert_eq!(temp, Some(85.0), "the raw reading set in ipmi_sim");
    let host = value(&server, "dcmon_bmc_up{bmc=\"sim0\",host=\"sim0\"}");
    assert_eq!(host, Some(1.0), "without an agent, host is the BMC's name");
    assert_eq!(listed(&server, "sim0")["last_state"], "ok");
    assert_eq!(listed(&server, "sim0")["vendor"], "supermicro");

    // A stopped BMC: unreachable after one poll's retry budget, failures growing.
    let pid = sims[1].proc.child.id().to_string();
    let signal = |sig: &str| {
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    let to_unreachable = wait_value(
        &server,
        "dcmon_bmc_state{bmc=\"sim1\",state=\"unreachable\"}",
        |v| v == 1.0,
        Duration::from_secs(20),
    );
    let to_three = wait_value(
        &server,
        "dcmon_bmc_consecutive_failures{bmc=\"sim1\"}",
        |v| v >= 3.0,
        Duration::from_secs(30),
    );
    assert_eq!(value(&server, "dcmon_bmc_up{bmc=\"sim1\"}"), Some(0.0));
    let row = listed(&server, "sim1");
    assert_eq!(row["last_state"], "unreachable", "{row}");
    assert!(row["consecutive_failures"].as_u64() >= Some(3), "{row}");
    let took = value(&server, "dcmon_bmc_poll_duration_seconds{bmc=\"sim1\"}").unwrap();
    assert!(took <= 1.5, "a dead BMC cost {took} s, over its 1 s budget");
    assert_eq!(
        value(&server, "dcmon_bmc_state{bmc=\"sim0\",state=\"ok\"}"),
        Some(1.0),
        "the others are polled meanwhile"
    );
    signal("-CONT");
    let to_ok = wait_value(
        &server,
        "dcmon_bmc_state{bmc=\"sim1\",state=\"ok\"}",
        |v| v == 1.0,
        Duration::from_secs(20),
    );
    wait_value(
        &server,
        "dcmon_bmc_consecutive_failures{bmc=\"sim1\"}",
        |v| v == 0.0,
        Duration::from_secs(10),
    );

    // SEL: what was there became events once; one entry added becomes one more event.
    let before = sel_events(&server, "sim2");
    assert!(!before.is_empty(), "ipmi_sim starts with one SEL entry");
    let add = sims[2].ipmitool(&[
        "raw", "0x0a", "0x44", "0x00", "0x00", "0x02", "0x00", "0x00", "0x00", "0x00", "0x20",
        "0x00", "0x04", "0x01", "0x01", "0x01", "0x09", "0xff", "0xff",
    ]);
    assert!(
        add.status.success(),
        "Add SEL Entry: {}",
        String::from_utf8_lossy(&add.stderr)
    );
    let started = Instant::now();
    let mut after = before.clone();
    while after.len() == before.len() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
        after = sel_events(&server, "sim2");
    }
    let to_event = started.elapsed();
    assert_eq!(after.len(), before.len() + 1, "{after:#?}");
    let new = &after[0];
    assert_eq!(new["severity"], "critical", "{new}");
    assert_eq!(new["host"], "sim2");
    assert!(
        new["message"].as_str().unwrap().contains("Temperature"),
        "{new}"
    );
    // Three more polls read nothing new.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(sel_events(&server, "sim2").len(), after.len());

    // A removed BMC is no longer polled.
    run(Command::new(dcmon()).args(["bmc", "remove", "sim0", "--config", &server.cfg]));
    // A poll in flight at the removal may still land: reload check, poll, write.
    std::thread::sleep(Duration::from_secs(4));
    let polled_at = || value(&server, "timestamp(dcmon_bmc_up{bmc=\"sim0\"})");
    let last = polled_at();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(polled_at(), last, "sim0 was polled after its removal");

    eprintln!(
        "bmc poller timings: 3 BMCs added -> all ok {first_polls:?}; SIGSTOP -> unreachable \
         {to_unreachable:?}, -> 3 failures in a row {:?} more; SIGCONT -> ok {to_ok:?}; \
         SEL entry added -> event {to_event:?}",
        to_three
    );
}
