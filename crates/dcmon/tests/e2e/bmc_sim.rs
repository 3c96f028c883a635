//! `dcmon bmc-sim` driven by the real `ipmitool` over lanplus with cipher suites 3 and
//! 17: an independent RMCP+ implementation checks the simulator's sessions, SDRs, SEL
//! and OEM fan commands.

use super::{Proc, dcmon};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `true` once ipmitool is known to run; the suite's command (`cargo xtask test`)
/// installs it, so its absence fails the test rather than skipping it.
pub(crate) fn have_ipmitool() -> bool {
    assert!(
        Command::new("ipmitool").arg("-V").output().is_ok(),
        "ipmitool is not installed: run `cargo xtask test`, which installs it (or apt-get install ipmitool)"
    );
    true
}

/// A block of `n` consecutive free UDP ports on loopback.
fn free_udp_ports(n: u16) -> u16 {
    for _ in 0..50 {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        if base < 65535 - n
            && (0..n).all(|i| std::net::UdpSocket::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
    panic!("no block of {n} free UDP ports");
}

pub(crate) struct Sim {
    proc: Proc,
    pub(crate) port: u16,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Sim {
    /// Starts `dcmon bmc-sim` and waits for its "listening" line.
    pub(crate) fn start(count: u16, args: &[&str]) -> Self {
        let port = free_udp_ports(count);
        let mut proc = Proc::spawn(
            "dcmon bmc-sim",
            Command::new(dcmon())
                .args(["bmc-sim", "--count", &count.to_string()])
                .args(["--base-port", &port.to_string()])
                .args(["--user", "admin", "--password", "s3cret"])
                .args(args)
                .stdin(Stdio::piped()),
        );
        let mut stdout = BufReader::new(proc.child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(
            line.contains("listening"),
            "first line {line:?}:\n{}",
            proc.log()
        );
        Self { proc, port, stdout }
    }

    /// Sends one control line and returns the answer's first line.
    pub(crate) fn control(&mut self, line: &str) -> String {
        let stdin = self.proc.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        answer
    }

    fn ipmitool(&self, port_offset: u16, suite: &str, password: &str, args: &[&str]) -> Output {
        Command::new("ipmitool")
            .args(["-I", "lanplus", "-H", "127.0.0.1"])
            .args(["-p", &(self.port + port_offset).to_string()])
            .args(["-U", "admin", "-P", password, "-C", suite])
            .args(["-N", "1", "-R", "2"])
            .args(args)
            .output()
            .expect("running ipmitool")
    }

    /// Runs ipmitool on the first BMC with the right password; fails the test if it fails.
    pub(crate) fn ok(&self, suite: &str, args: &[&str]) -> String {
        let out = self.ipmitool(0, suite, "s3cret", args);
        assert!(
            out.status.success(),
            "ipmitool -C {suite} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.proc.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// `sdr list` as (name, value, status) rows.
pub(crate) fn sdr_rows(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            (cols.len() == 3).then(|| (cols[0].into(), cols[1].into(), cols[2].into()))
        })
        .collect()
}

/// The number in front of a reading such as "3700 RPM" or "12.05 Volts".
pub(crate) fn reading(rows: &[(String, String, String)], name: &str) -> (f64, String) {
    let (_, value, status) = rows
        .iter()
        .find(|(n, ..)| n == name)
        .unwrap_or_else(|| panic!("no sensor {name} in {rows:?}"));
    let number = value
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name}: reading {value:?}"));
    (number, status.clone())
}

#[test]
fn ipmitool_reads_device_chassis_sensors_and_events_over_suites_3_and_17() {
    if !have_ipmitool() {
        return;
    }
    let sim = Sim::start(1, &["--vendor", "supermicro", "--seed", "7"]);
    for suite in ["3", "17"] {
        let mc = sim.ok(suite, &["mc", "info"]);
        assert!(mc.contains("Manufacturer ID           : 10876"), "{mc}");
        assert!(mc.contains("IPMI Version              : 2.0"), "{mc}");
        let chassis = sim.ok(suite, &["chassis", "status"]);
        assert!(chassis.contains("System Power         : on"), "{chassis}");
        let sdr = sim.ok(suite, &["sdr", "list"]);
        let rows = sdr_rows(&sdr);
        let (cpu, status) = reading(&rows, "CPU Temp");
        assert!(
            (25.0..70.0).contains(&cpu) && status == "ok",
            "CPU {cpu} {status}\n{sdr}"
        );
        assert!(sdr.contains("degrees C"), "{sdr}");
        for fan in ["FAN1", "FAN2", "FAN3", "FAN4", "FANA"] {
            let (rpm, status) = reading(&rows, fan);
            // Standard mode, cool CPU: the 50 % floor of ~7500 RPM fans.
            assert!(
                (3300.0..4200.0).contains(&rpm) && status == "ok",
                "{fan} {rpm}\n{sdr}"
            );
            assert_eq!(rpm % 100.0, 0.0, "{fan}: 100 RPM per count");
        }
        let (v12, _) = reading(&rows, "12V");
        let (v5, _) = reading(&rows, "5VCC");
        let (v3, _) = reading(&rows, "3.3VCC");
        assert!(
            (11.8..12.2).contains(&v12) && (4.9..5.1).contains(&v5),
            "{sdr}"
        );
        assert!((3.25..3.35).contains(&v3), "{sdr}");
        assert!(sdr.contains("Volts") && sdr.contains("RPM"), "{sdr}");
        assert!(rows.iter().any(|(n, ..)| n == "PS1 Status"), "{sdr}");
        assert!(rows.iter().any(|(n, ..)| n == "Chassis Intru"), "{sdr}");
        let sensor = sim.ok(suite, &["sensor", "get", "FAN1"]);
        assert!(
            sensor.contains("Lower Critical        : 500.000"),
            "{sensor}"
        );
        let sel = sim.ok(suite, &["sel", "list"]);
        assert!(sel.contains("System Event"), "{sel}");
        let dcmi = sim.ok(
            suite,
            &["raw", "0x2c", "0x02", "0xdc", "0x01", "0x00", "0x00"],
        );
        assert!(dcmi.trim_start().starts_with("dc"), "{dcmi}");
    }
}

#[test]
fn supermicro_fan_mode_and_zone_duty_round_trip_through_ipmitool() {
    if !have_ipmitool() {
        return;
    }
    let sim = Sim::start(1, &["--vendor", "supermicro"]);
    assert_eq!(sim.ok("17", &["raw", "0x30", "0x45", "0x00"]).trim(), "00");
    sim.ok("17", &["raw", "0x30", "0x45", "0x01", "0x01"]);
    sim.ok(
        "3",
        &["raw", "0x30", "0x70", "0x66", "0x01", "0x00", "0x32"],
    );
    assert_eq!(sim.ok("3", &["raw", "0x30", "0x45", "0x00"]).trim(), "01");
    assert_eq!(
        sim.ok("17", &["raw", "0x30", "0x70", "0x66", "0x00", "0x00"])
            .trim(),
        "32"
    );
    // The fans settle at 50 % of ~7500 RPM; FANA (zone 1) stays at Full's 100 %.
    std::thread::sleep(Duration::from_secs(8));
    let rows = sdr_rows(&sim.ok("17", &["sdr", "list"]));
    let (fan1, _) = reading(&rows, "FAN1");
    let (fana, _) = reading(&rows, "FANA");
    assert!((3300.0..=4100.0).contains(&fan1), "FAN1 {fan1}");
    assert!(fana > 6800.0, "FANA {fana}");
    // The seed's stray byte is refused, not silently taken.
    let out = sim.ipmitool(
        0,
        "17",
        "s3cret",
        &[
            "raw", "0x30", "0x70", "0x66", "0x01", "0x00", "0x00", "0x18",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rsp=0xc7"));
}

#[test]
fn dell_manual_fan_commands_and_the_newer_idrac_refusal() {
    if !have_ipmitool() {
        return;
    }
    let sim = Sim::start(1, &["--vendor", "dell"]);
    assert!(
        sim.ok("17", &["mc", "info"])
            .contains("Manufacturer ID           : 674")
    );
    sim.ok("17", &["raw", "0x30", "0x30", "0x01", "0x00"]);
    sim.ok("3", &["raw", "0x30", "0x30", "0x02", "0xff", "0x64"]);
    std::thread::sleep(Duration::from_secs(8));
    let (fan1, _) = reading(&sdr_rows(&sim.ok("17", &["sdr", "list"])), "FAN1");
    assert!(fan1 > 6800.0, "FAN1 {fan1}");
    sim.ok("17", &["raw", "0x30", "0x30", "0x01", "0x01"]);
    drop(sim);

    let sim = Sim::start(1, &["--vendor", "dell", "--idrac-refuses-manual-fans"]);
    let out = sim.ipmitool(0, "17", "s3cret", &["raw", "0x30", "0x30", "0x01", "0x00"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rsp=0xd4"));
}

#[test]
fn wrong_password_and_refused_credentials_fail_ipmitool() {
    if !have_ipmitool() {
        return;
    }
    let mut sim = Sim::start(1, &[]);
    for suite in ["3", "17"] {
        let out = sim.ipmitool(0, suite, "wrong", &["mc", "info"]);
        assert!(
            !out.status.success(),
            "-C {suite} with a wrong password succeeded"
        );
    }
    assert_eq!(sim.control("fault all reject-credentials on").trim(), "ok");
    assert!(
        !sim.ipmitool(0, "17", "s3cret", &["mc", "info"])
            .status
            .success()
    );
    assert_eq!(sim.control("fault all reject-credentials off").trim(), "ok");
    sim.ok("17", &["mc", "info"]);
    assert_eq!(sim.control("fault 0 lose-temperatures on").trim(), "ok");
    let rows = sdr_rows(&sim.ok("17", &["sdr", "list"]));
    let cpu = rows.iter().find(|(n, ..)| n == "CPU Temp").unwrap();
    assert_eq!(cpu.2, "ns", "CPU Temp without a reading: {cpu:?}");
    assert_eq!(sim.control("fault 0 silent on").trim(), "ok");
    assert!(
        !sim.ipmitool(0, "17", "s3cret", &["mc", "info"])
            .status
            .success()
    );
}

/// Our client against a misbehaving BMC: garbage gets a "malformed" error (no panic), a
/// slow or silent BMC a timeout within the budget, a wrong password one clear refusal
/// without retrying.
#[test]
fn dcmon_ipmi_reports_garbage_slow_and_silent_bmcs_within_its_budget() {
    let mut sim = Sim::start(1, &[]);
    let target = format!("127.0.0.1:{}", sim.port);
    let dcmon_ipmi = |password: &str, extra: &[&str]| {
        let started = std::time::Instant::now();
        let out = Command::new(dcmon())
            .env_remove("RUST_BACKTRACE")
            .args([
                "ipmi", "-H", &target, "-U", "admin", "-P", password, "-C", "17",
            ])
            .args(extra)
            .args(["mc", "info"])
            .output()
            .unwrap();
        (out, started.elapsed())
    };
    let (out, _) = dcmon_ipmi("s3cret", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (out, took) = dcmon_ipmi("wrong", &["--timeout", "5s", "--retries", "3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("authentication failed"),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(2),
        "a wrong password took {took:?}: retried?"
    );

    for (fault, off, expect) in [
        (
            "fault 0 garbage on",
            "fault 0 garbage off",
            "malformed response",
        ),
        (
            "fault 0 delay 3000",
            "fault 0 delay 0",
            "no response within 1s",
        ),
        (
            "fault 0 silent on",
            "fault 0 silent off",
            "no response within 1s",
        ),
    ] {
        assert_eq!(sim.control(fault).trim(), "ok", "{fault}");
        let (out, took) = dcmon_ipmi("s3cret", &["--timeout", "1s", "--retries", "2"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{fault}: succeeded");
        assert!(err.contains(expect), "{fault}: {err}");
        assert!(!err.contains("panicked"), "{fault}: {err}");
        assert!(
            took < Duration::from_millis(1500),
            "{fault}: took {took:?} of a 1 s budget"
        );
        assert_eq!(sim.control(off).trim(), "ok", "{off}");
    }
    let (out, _) = dcmon_ipmi("s3cret", &[]);
    assert!(
        out.status.success(),
        "after the faults: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `dcmon ipmi` and ipmitool agree on the simulator over both cipher suites, and our
/// OEM fan writes are what ipmitool reads back; a duty below the vendor minimum is refused
/// before anything is sent, and a newer iDRAC's refusal is explained plainly.
#[test]
fn dcmon_ipmi_agrees_with_ipmitool_and_its_fan_writes_read_back() {
    have_ipmitool();
    let sim = Sim::start(1, &[]);
    let target = format!("127.0.0.1:{}", sim.port);
    let ours = |target: &str, suite: &str, args: &[&str]| -> Output {
        Command::new(dcmon())
            .env_remove("RUST_BACKTRACE")
            .args([
                "ipmi", "-H", target, "-U", "admin", "-P", "s3cret", "-C", suite,
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let ok = |o: Output| -> String {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let field = |text: &str, name: &str| -> String {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name:?} in:\n{text}"))
            .split_once(':')
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    for suite in ["3", "17"] {
        let theirs = sdr_rows(&sim.ok(suite, &["sdr", "list"]));
        let mine = sdr_rows(&ok(ours(&target, suite, &["sdr", "list"])));
        let names = |rows: &[(String, String, String)]| -> Vec<String> {
            rows.iter().map(|r| r.0.clone()).collect()
        };
        assert_eq!(names(&mine), names(&theirs), "-C {suite} sensor names");
        for ((name, v_ours, _), (_, v_theirs, _)) in mine.iter().zip(&theirs) {
            let unit = |v: &str| v.split_once(' ').map(|(_, u)| u.to_owned());
            assert_eq!(unit(v_ours), unit(v_theirs), "-C {suite} {name}: unit");
            if let (Ok(a), Ok(b)) = (
                v_ours.split(' ').next().unwrap().parse::<f64>(),
                v_theirs.split(' ').next().unwrap().parse::<f64>(),
            ) {
                // The thermal model moves between the two reads: close, not equal.
                assert!(
                    (a - b).abs() <= 0.15 * a.abs().max(b.abs()).max(1.0),
                    "-C {suite} {name}: {a} vs {b}"
                );
            }
        }
        let (theirs, mine) = (
            sim.ok(suite, &["mc", "info"]),
            ok(ours(&target, suite, &["mc", "info"])),
        );
        for f in [
            "Device ID",
            "Firmware Revision",
            "IPMI Version",
            "Manufacturer ID",
        ] {
            assert_eq!(field(&mine, f), field(&theirs, f), "-C {suite} mc info {f}");
        }
        // ipmitool appends its Supermicro OEM suffix to sensor-specific events even when
        // it is empty ("... boot event ()"); we print no empty parentheses.
        let events = |t: &str| -> Vec<String> {
            t.lines()
                .map(|l| {
                    l.split('|')
                        .skip(3)
                        .map(|f| f.trim().trim_end_matches(" ()"))
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect()
        };
        let (theirs, mine) = (
            sim.ok(suite, &["sel", "list"]),
            ok(ours(&target, suite, &["sel", "list"])),
        );
        assert_eq!(events(&mine), events(&theirs), "-C {suite} sel list");
    }

    ok(ours(&target, "17", &["fan", "mode", "full"]));
    assert_eq!(sim.ok("3", &["raw", "0x30", "0x45", "0x00"]).trim(), "01");
    ok(ours(&target, "3", &["fan", "zone", "1", "50"]));
    assert_eq!(
        sim.ok("17", &["raw", "0x30", "0x70", "0x66", "0x00", "0x01"])
            .trim(),
        "32"
    );
    let low = ours(&target, "3", &["fan", "zone", "1", "10"]);
    let err = String::from_utf8_lossy(&low.stderr);
    assert!(
        !low.status.success() && err.contains("below") && err.contains("20 %"),
        "{err}"
    );
    assert_eq!(
        sim.ok("17", &["raw", "0x30", "0x70", "0x66", "0x00", "0x01"])
            .trim(),
        "32"
    );
    ok(ours(&target, "17", &["fan", "mode", "standard"]));
    assert_eq!(sim.ok("3", &["raw", "0x30", "0x45", "0x00"]).trim(), "00");

    let dell = Sim::start(1, &["--vendor", "dell", "--idrac-refuses-manual-fans"]);
    let refused = ours(
        &format!("127.0.0.1:{}", dell.port),
        "17",
        &["fan", "mode", "full"],
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("3.34"), "{err}");
}

#[test]
fn one_process_serves_three_bmcs_on_consecutive_ports() {
    if !have_ipmitool() {
        return;
    }
    let mut sim = Sim::start(3, &["--vendor", "generic"]);
    for offset in 0..3 {
        let out = sim.ipmitool(offset, "17", "s3cret", &["chassis", "power", "off"]);
        assert!(
            out.status.success(),
            "BMC {offset}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = sim.ipmitool(1, "3", "s3cret", &["chassis", "status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("System Power         : off"));
    let status = sim.control("status 2");
    assert!(status.starts_with("bmc 2 127.0.0.1:"), "{status}");
    assert!(
        !sim.ipmitool(3, "17", "s3cret", &["mc", "info"])
            .status
            .success()
    );
}

#[test]
fn freeipmi_reads_the_same_sensors_over_suites_3_and_17() {
    if Command::new("ipmi-sensors")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: ipmi-sensors is not installed (apt-get install freeipmi-tools)");
        return;
    }
    let sim = Sim::start(1, &["--vendor", "supermicro", "--seed", "7"]);
    let cache = tempfile::tempdir().unwrap();
    for suite in ["3", "17"] {
        let out = Command::new("ipmi-sensors")
            .args(["-D", "LAN_2_0", "-h", &format!("127.0.0.1:{}", sim.port)])
            .args([
                "-u",
                "admin",
                "-p",
                "s3cret",
                "-I",
                suite,
                "-W",
                "opensesspriv",
            ])
            .arg(format!("--sdr-cache-directory={}", cache.path().display()))
            .arg("--quiet-cache")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "-I {suite}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (name, unit) in [("CPU Temp", "C"), ("FAN1", "RPM"), ("12V", "V")] {
            let row = text
                .lines()
                .find(|l| l.contains(&format!("| {name} ")))
                .unwrap_or_else(|| panic!("-I {suite}: no {name} in\n{text}"));
            let cols: Vec<&str> = row.split('|').map(str::trim).collect();
            assert_eq!((cols[4], cols[5]), (unit, "'OK'"), "{row}");
        }
        assert!(text.contains("'Presence detected'"), "{text}");
    }
}
