//! The server's fan control of an agentless BMC against `dcmon bmc-sim`'s thermal model,
//! read back with the real `ipmitool`: a curve holds the CPU in its band under load,
//! lost temperatures put the fans to Full at 100 % within one cycle, the server hands
//! the fans back when it stops, the Zephyr preset does what DESIGN §8 says, a duty
//! below the vendor minimum is refused, and every write is in `dcmon audit`.
//!
//! The curves run every 2 s (the smallest interval a curve allows is 1 s) so that a
//! cycle is short next to the simulator's CPU time constant (15 s).

use super::bmc_sim::{Sim, have_ipmitool, reading, sdr_rows};
use super::{OperatorServer, dcmon, run, stdout};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const PASSWORD_ENV: &str = "DCMON_E2E_BMC_PASSWORD";

fn dcmon_cmd(cfg: &str, args: &[&str]) -> Output {
    Command::new(dcmon())
        .env_remove("RUST_BACKTRACE")
        .args(args)
        .args(["--config", cfg])
        .output()
        .unwrap()
}

fn ok(cfg: &str, args: &[&str]) -> String {
    let out = dcmon_cmd(cfg, args);
    assert!(
        out.status.success(),
        "dcmon {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

/// `dcmon bmc add` of the simulator's first BMC as `sim`; polled rarely so that the
/// telemetry poller stays out of the way.
fn add_sim(server: &OperatorServer, sim: &Sim) {
    run(Command::new(dcmon())
        .env(PASSWORD_ENV, "s3cret")
        .args(["bmc", "add", "--name", "sim"])
        .args(["--address", &format!("127.0.0.1:{}", sim.port)])
        .args(["--user", "admin", "--password-env", PASSWORD_ENV])
        .args(["--interval", "5m", "--config", &server.cfg]));
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Supermicro fan mode as ipmitool reads it: "00" standard, "01" full.
fn mode(sim: &Sim) -> String {
    sim.ok("17", &["raw", "0x30", "0x45", "0x00"])
        .trim()
        .to_owned()
}

fn duty(sim: &Sim, zone: &str) -> u8 {
    let hex = sim.ok("17", &["raw", "0x30", "0x70", "0x66", "0x00", zone]);
    u8::from_str_radix(hex.trim(), 16).unwrap_or_else(|e| panic!("duty {hex:?}: {e}"))
}

fn sensor(sim: &Sim, name: &str) -> f64 {
    reading(&sdr_rows(&sim.ok("17", &["sdr", "list"])), name).0
}

/// The fan writes in `dcmon audit`, oldest first, as their detail; each must be the
/// curve's own.
fn audited_writes(cfg: &str) -> Vec<String> {
    let out = ok(cfg, &["audit", "--limit", "10000"]);
    let mut writes: Vec<String> = out
        .lines()
        .filter(|l| l.contains("\tipmi.fan_write\t"))
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!((cols[1], cols[3]), ("curve:sim", "sim"), "{l}");
            cols[4].to_owned()
        })
        .collect();
    writes.reverse();
    writes
}

fn wait_until<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> (T, Duration) {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return (v, started.elapsed());
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_curve_holds_the_cpu_in_its_band_fails_safe_within_a_cycle_and_hands_back_at_shutdown() {
    have_ipmitool();
    let dir = tempfile::tempdir().unwrap();
    let server = OperatorServer::start(dir.path());
    let mut sim = Sim::start(1, &["--vendor", "supermicro", "--seed", "7"]);
    add_sim(&server, &sim);
    // 0.7 load: the BMC's own Standard mode would settle just above 50 °C, 30 % duty at
    // 55 °C; only the curve's upper half holds the CPU between 40 and 50 °C.
    assert_eq!(sim.control("load 0 0.7").trim(), "ok");
    let curve = write_file(
        dir.path(),
        "curve.yaml",
        "interval_s: 2\nzones:\n  - zone: 0\n    points: [[40, 30], [50, 100]]\n    hysteresis_c: 1\n    min_dwell_s: 4\n",
    );
    ok(
        &server.cfg,
        &["fans", "curve", "set", "--bmc", "sim", "--file", &curve],
    );

    let started = Instant::now();
    let mut trace = Vec::new();
    let mut in_band = 0;
    while in_band < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "the CPU did not settle between 40 and 50 °C: (s, °C, mode, zone 0 duty) {trace:?}\n{}",
            server.proc.log()
        );
        let (cpu, m, d) = (sensor(&sim, "CPU Temp"), mode(&sim), duty(&sim, "0x00"));
        trace.push((started.elapsed().as_secs(), cpu, m.clone(), d));
        // What the curve gives at this temperature, allowing for the hold of the
        // hysteresis and the lag of one cycle.
        let on_curve = (30.0 + 7.0 * (cpu - 40.0)).clamp(30.0, 100.0);
        let follows = (f64::from(d) - on_curve).abs() <= 20.0;
        in_band = if (40.0..=50.0).contains(&cpu) && m == "01" && follows {
            in_band + 1
        } else {
            0
        };
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!(
        "curve: CPU in its band after {:?}: (s, °C, mode, zone 0 duty) {trace:?}",
        started.elapsed()
    );

    let dry = ok(&server.cfg, &["fans", "dry-run", "--bmc", "sim"]);
    assert!(
        dry.contains("Fan mode: full") && dry.contains("CPU Temp") && dry.contains("zone 0: "),
        "{dry}"
    );
    let url = format!("{}/api/bmcs/sim/fans", server.base);
    let (status, view) = server.http.get(&url, Some(&server.token)).unwrap();
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["mode"], "full", "{view}");
    assert_eq!(view["curve"]["config"]["interval_s"], 2, "{view}");
    assert!(view["decision"]["fail_safe"].is_null(), "{view}");
    assert!(
        view["temperatures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "CPU Temp" && t["kind"] == "cpu_temp"),
        "{view}"
    );

    assert_eq!(sim.control("fault 0 lose-temperatures on").trim(), "ok");
    let fault = Instant::now();
    let (_, audited) = wait_until(
        "the fail-safe writes in the audit log",
        Duration::from_secs(10),
        || {
            audited_writes(&server.cfg)
                .iter()
                .any(|w| w.contains("new=\"full\"") && w.contains("result=ok"))
                .then_some(())
        },
    );
    wait_until(
        "Full mode at 100 % read back",
        Duration::from_secs(10),
        || {
            (mode(&sim) == "01" && duty(&sim, "0x00") == 100 && duty(&sim, "0x01") == 100)
                .then_some(())
        },
    );
    let read_back = fault.elapsed();
    eprintln!(
        "fail-safe: temperatures lost -> Full mode write audited after {audited:?}, Full + 100 %/100 % read back by ipmitool after {read_back:?} (interval 2 s)"
    );
    // One cycle of 2 s, plus the cycle's own exchanges and the polling here.
    assert!(audited < Duration::from_millis(3500), "{audited:?}");
    let events_url = format!("{}/api/events?bmc=sim&kind=fan_fail_safe", server.base);
    let (status, events) = server.http.get(&events_url, Some(&server.token)).unwrap();
    assert_eq!(status, 200, "{events}");
    let list = events["events"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{events}");
    assert_eq!(list[0]["severity"], "critical");
    assert!(
        list[0]["message"]
            .as_str()
            .unwrap()
            .contains("no fresh temperature"),
        "{events}"
    );
    assert_eq!(sim.control("fault 0 lose-temperatures off").trim(), "ok");
    wait_until("the fail-safe cleared", Duration::from_secs(10), || {
        let url = format!(
            "{}/api/events?bmc=sim&kind=fan_fail_safe_cleared",
            server.base
        );
        let (_, v) = server.http.get(&url, Some(&server.token)).ok()?;
        (v["events"].as_array()?.len() == 1).then_some(())
    });

    let OperatorServer { proc, cfg, .. } = server;
    assert!(proc.interrupt().success());
    assert_eq!(mode(&sim), "00", "handed back to Standard mode at shutdown");
    let writes = audited_writes(&cfg);
    let last = writes.last().unwrap();
    assert!(
        last.contains("command=\"set fan mode\"")
            && last.contains("new=\"standard\"")
            && last.contains("result=ok"),
        "{writes:#?}"
    );
    assert!(
        writes
            .iter()
            .any(|w| w.contains("command=\"set zone 0 duty\"") && w.contains("old=")),
        "{writes:#?}"
    );
}

#[test]
fn the_zephyr_preset_acts_as_stated_and_a_duty_below_the_minimum_is_refused() {
    have_ipmitool();
    let dir = tempfile::tempdir().unwrap();
    let server = OperatorServer::start(dir.path());
    let mut sim = Sim::start(1, &["--vendor", "supermicro", "--load", "0"]);
    add_sim(&server, &sim);
    ok(&server.cfg, &["bmc", "check", "sim"]);

    let low = write_file(
        dir.path(),
        "low.yaml",
        "zones:\n  - zone: 0\n    points: [[30, 15], [60, 100]]\n",
    );
    let out = dcmon_cmd(
        &server.cfg,
        &["fans", "curve", "set", "--bmc", "sim", "--file", &low],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("zones[0].points[0]: duty 15 % is below Supermicro's minimum of 20 %"),
        "{err}"
    );
    assert!(
        !dcmon_cmd(&server.cfg, &["fans", "curve", "show", "--bmc", "sim"])
            .status
            .success()
    );

    // Idle in Standard mode: CPU well under 50 °C, fans at the 50 % floor (~3750 RPM).
    assert_eq!(mode(&sim), "00");
    let (cpu, fan1) = (sensor(&sim, "CPU Temp"), sensor(&sim, "FAN1"));
    assert!(
        cpu <= 50.0 && fan1 > 2050.0,
        "CPU {cpu} °C, FAN1 {fan1} RPM"
    );
    ok(
        &server.cfg,
        &[
            "fans",
            "preset",
            "zephyr",
            "--bmc",
            "sim",
            "--interval",
            "2",
        ],
    );
    let shown = ok(&server.cfg, &["fans", "curve", "show", "--bmc", "sim"]);
    assert!(
        shown.contains("preset: zephyr") && shown.contains("interval_s: 2"),
        "{shown}"
    );
    let (_, took) = wait_until("zone 0 at 0x18", Duration::from_secs(10), || {
        (mode(&sim) == "01" && duty(&sim, "0x00") == 0x18).then_some(())
    });
    eprintln!("zephyr: zone 0 at 0x18 {took:?} after the preset was set");
    std::thread::sleep(Duration::from_secs(6));
    let fan1 = sensor(&sim, "FAN1");
    assert!((1500.0..2100.0).contains(&fan1), "FAN1 at 24 %: {fan1} RPM");
    assert_eq!(
        duty(&sim, "0x00"),
        0x18,
        "left alone once the fans are slow"
    );

    assert_eq!(sim.control("load 0 1.0").trim(), "ok");
    let (_, took) = wait_until("handed back above 50 °C", Duration::from_secs(90), || {
        (mode(&sim) == "00").then_some(())
    });
    let cpu = sensor(&sim, "CPU Temp");
    eprintln!("zephyr: handed back to Standard mode {took:?} after full load, CPU now {cpu} °C");
    assert!(cpu > 50.0, "handed back at {cpu} °C");
    let dry = ok(&server.cfg, &["fans", "dry-run", "--bmc", "sim"]);
    assert!(
        dry.contains("above 50 °C: the fans belong to the BMC"),
        "{dry}"
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(mode(&sim), "00", "stays with the BMC while hot");

    // Exactly the two writes that ipmitool saw take effect, each audited.
    let writes = audited_writes(&server.cfg);
    assert_eq!(writes.len(), 2, "{writes:#?}");
    assert!(
        writes[0].contains("command=\"set zone 0 duty\" old=\"50 %\" new=\"24 %\" result=ok"),
        "{writes:#?}"
    );
    assert!(
        writes[1].contains("command=\"set fan mode\" old=\"full\" new=\"standard\" result=ok"),
        "{writes:#?}"
    );
}
