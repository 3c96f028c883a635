//! `dcmon ipmi` against a BMC we did not write: Debian's `ipmi_sim` (OpenIPMI lanserv),
//! checked field by field against `ipmitool -I lanplus` on the same simulator. Sensor
//! records are compiled by OpenIPMI's own `sdrcomp`. `ipmi_sim` offers no SHA-256
//! suites, so only cipher suite 3 is compared (ipmitool `-C 17` fails with "invalid
//! authentication algorithm").

use super::{Proc, dcmon, run, stdout};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const IPMI_SIM: &str = "/usr/bin/ipmi_sim";
pub(super) const USER: &str = "admin";
pub(super) const PASSWORD: &str = "s3cret";
/// Supermicro's IANA number, so that both tools name the manufacturer.
const MANUFACTURER_ID: u32 = 10876;

/// One threshold sensor for `sdrcomp` (its field names, see `lanserv/sdrcomp`):
/// number, sensor type, entity, unit, M, result exponent, name, threshold lines.
struct Sensor {
    number: u8,
    sensor_type: &'static str,
    entity: &'static str,
    unit: &'static str,
    m: i32,
    r_exp: i32,
    name: &'static str,
    thresholds: &'static [(&'static str, u8)],
    /// Raw reading set with `sensor_set_value`.
    raw: u8,
}

/// A CPU temperature above its upper non-critical threshold (status "nc", and a SEL
/// event), a fan in RPM with M = 50, a 12 V rail with a result exponent of −2.
const SENSORS: [Sensor; 3] = [
    Sensor {
        number: 1,
        sensor_type: "Temperature",
        entity: "processor",
        unit: "degrees_C",
        m: 1,
        r_exp: 0,
        name: "CPU Temp",
        thresholds: &[("unc", 80), ("uc", 90), ("unr", 100)],
        raw: 85,
    },
    Sensor {
        number: 2,
        sensor_type: "Fan",
        entity: "fan_cooling_device",
        unit: "RPM",
        m: 50,
        r_exp: 0,
        name: "FAN1",
        thresholds: &[("lnc", 20), ("lc", 10)],
        raw: 72,
    },
    Sensor {
        number: 3,
        sensor_type: "Voltage",
        entity: "system_board",
        unit: "Volts",
        m: 6,
        r_exp: -2,
        name: "12V",
        thresholds: &[("lc", 180), ("uc", 220)],
        raw: 201,
    },
];

impl Sensor {
    fn sdr(&self) -> String {
        let mut thresholds = String::new();
        for (which, raw) in self.thresholds {
            thresholds += &format!("\t{which}_thrsh_readable true\n\t{which}_thresh {raw}\n");
        }
        format!(
            "sdr type 1
\tsensor_owner_id 0x20
\tsensor_owner_lun 0
\tchannel_number 0
\tsensor_number {number}
\tentity_id {entity}
\tentity_instance 1
\tsensor_type {sensor_type}
\tinit_scanning true
\tinit_events true
\tinit_thresholds true
\tinit_sensor_type true
\tdefault_event_gen_on true
\tdefault_sensor_scan_on true
\tsensor_threshold_access readable
\tevent_reading_type_code 1
\tanalog_data_format unsigned
\trate_unit none
\tmodifier_unit none
\tpercentage false
\tbase_unit {unit}
\tmodifier_unit_code unspecified
\tlinearization linear
\tm {m}
\ttolerance 0
\tb 0
\taccuracy 1
\taccuracy_exp 0
\tsensor_direction input
\tr_exp {r_exp}
\tb_exp 0
\tsensor_maximum 255
\tsensor_minimum 0
{thresholds}\tid_string \"{name}\"
endsdr
",
            number = self.number,
            entity = self.entity,
            sensor_type = self.sensor_type,
            unit = self.unit,
            m = self.m,
            r_exp = self.r_exp,
            name = self.name,
        )
    }

    /// `sensor_add`, the thresholds (`sensor_set_threshold` lists them from upper
    /// non-recoverable down to lower non-critical) and the reading.
    fn commands(&self) -> String {
        const ORDER: [&str; 6] = ["unr", "uc", "unc", "lnr", "lc", "lnc"];
        let mut enabled = String::new();
        let mut values = String::new();
        for which in ORDER {
            let raw = self.thresholds.iter().find(|(w, _)| *w == which);
            enabled.push(if raw.is_some() { '1' } else { '0' });
            values += &format!(" {}", raw.map_or(0, |(_, r)| *r));
        }
        let n = self.number;
        let code = match self.sensor_type {
            "Temperature" => 0x01,
            "Voltage" => 0x02,
            _ => 0x04,
        };
        // Events on every threshold, so that crossing one logs it in the SEL.
        let events = "000111111111111";
        format!(
            "sensor_add 0x20 0 {n} {code:#04x} 0x01\n\
             sensor_set_threshold 0x20 0 {n} readable {enabled}{values}\n\
             sensor_set_event_support 0x20 0 {n} enable scanning per-state \
             {events} {events} {events} {events}\n\
             sensor_set_value 0x20 0 {n} {raw} 1\n",
            raw = self.raw,
        )
    }
}

pub(super) struct IpmiSim {
    pub(super) proc: Proc,
    pub(super) port: u16,
    _dir: tempfile::TempDir,
}

/// A UDP port free on loopback now.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `main_sdr_add` lines for the records `sdrcomp -r` wrote: header, then as many bytes
/// as the header's length byte says.
fn sdr_commands(raw: &[u8]) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while rest.len() >= 5 {
        let (record, tail) = rest.split_at((5 + usize::from(rest[4])).min(rest.len()));
        out += "main_sdr_add 0x20";
        for b in record {
            out += &format!(" {b:#04x}");
        }
        out += "\n";
        rest = tail;
    }
    out
}

impl IpmiSim {
    pub(super) fn start() -> Self {
        assert!(
            Path::new(IPMI_SIM).exists(),
            "{IPMI_SIM} is missing: run `cargo xtask test`, which installs openipmi, \
             ipmitool and freeipmi-tools (or apt-get install openipmi ipmitool)"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

        let sdrs: String = SENSORS.iter().map(Sensor::sdr).collect();
        std::fs::write(path("sensors.sdrs"), sdrs).unwrap();
        // -r: bare records rather than the persistence format; -8: 8-bit ASCII names.
        run(Command::new("sdrcomp").args([
            "-r",
            "-8",
            "-o",
            &path("sensors.bsdr"),
            &path("sensors.sdrs"),
        ]));
        let records = std::fs::read(path("sensors.bsdr")).unwrap();

        // mc_add: address, device ID, device SDRs, revision, firmware 2.15, support
        // bits, manufacturer, product (all hex).
        let mut emu = format!(
            "mc_setbmc 0x20\n\
             mc_add 0x20 0x20 has-device-sdrs 0x01 0x02 0x15 0x9f {MANUFACTURER_ID:#08x} 0x0815\n\
             sel_enable 0x20 100 0x0a\n"
        );
        emu += &sdr_commands(&records);
        for s in &SENSORS {
            emu += &s.commands();
        }
        // One event added as is: 12V (#3) "Lower Critical going low", deasserted.
        emu += "sel_add 0x20 0x02 0 0 0 0 0x20 0x00 0x04 0x02 0x03 0x81 0x52 0xb4 0xb4\n";
        emu += "mc_enable 0x20\n";
        std::fs::write(path("cmds.emu"), emu).unwrap();

        let port = free_udp_port();
        let auths = "none md2 md5 straight";
        std::fs::write(
            path("lan.conf"),
            format!(
                "name \"dcmon-e2e\"\n\
                 set_working_mc 0x20\n\
                 startlan 1\n\
                 \taddr 127.0.0.1 {port}\n\
                 \tpriv_limit admin\n\
                 \tallowed_auths_callback {auths}\n\
                 \tallowed_auths_user {auths}\n\
                 \tallowed_auths_operator {auths}\n\
                 \tallowed_auths_admin {auths}\n\
                 \tguid a123456789abcdefa123456789abcdef\n\
                 endlan\n\
                 user 2 true \"{USER}\" \"{PASSWORD}\" admin 10 {auths}\n"
            ),
        )
        .unwrap();
        std::fs::create_dir(path("state")).unwrap();

        // -n: no console on stdin/stdout (EOF on stdin would stop it otherwise); the
        // piped stdin stays open for the life of the process anyway.
        let proc = Proc::spawn(
            "ipmi_sim",
            Command::new(IPMI_SIM)
                .args(["-c", &path("lan.conf"), "-f", &path("cmds.emu")])
                .args(["-s", &path("state"), "-n"])
                .stdin(Stdio::piped()),
        );
        let sim = Self {
            proc,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = sim.ipmitool(&["mc", "info"]);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "ipmi_sim did not answer ipmitool: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                sim.proc.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        sim
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(super) fn ipmitool(&self, args: &[&str]) -> Output {
        Command::new("ipmitool")
            .args(["-I", "lanplus", "-H", "127.0.0.1"])
            .args(["-p", &self.port.to_string()])
            .args(["-U", USER, "-P", PASSWORD, "-C", "3", "-N", "1", "-R", "2"])
            .args(args)
            .output()
            .expect("running ipmitool")
    }

    fn dcmon(&self, password: &str, args: &[&str]) -> Output {
        Command::new(dcmon())
            .args([
                "ipmi",
                "-H",
                &self.host(),
                "-U",
                USER,
                "-P",
                password,
                "-C",
                "3",
            ])
            .args(args)
            .output()
            .expect("running dcmon ipmi")
    }

    /// ipmitool's and dcmon's stdout for the same command; both must succeed.
    fn both(&self, args: &[&str]) -> (String, String) {
        let theirs = self.ipmitool(args);
        assert!(
            theirs.status.success(),
            "ipmitool {args:?}: {}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        let ours = self.dcmon(PASSWORD, args);
        assert!(
            ours.status.success(),
            "dcmon ipmi {args:?}: {}\n{}",
            String::from_utf8_lossy(&ours.stderr),
            self.proc.log()
        );
        (stdout(&theirs), stdout(&ours))
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = run(Command::new(dcmon())
            .args(["ipmi", "-H", &self.host(), "-U", USER, "-P", PASSWORD])
            .args(&all));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("dcmon ipmi {all:?}: not JSON ({e}):\n{}", stdout(&out)))
    }
}

/// Each line as its `|`- or `:`-separated fields with whitespace collapsed, blank
/// lines dropped: the two tools pad columns differently.
fn fields(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            l.split(['|', ':'])
                .map(|f| f.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
        })
        .filter(|f| f.iter().any(|x| !x.is_empty()))
        .collect()
}

fn assert_same(what: &str, theirs: &str, ours: &str) {
    assert_eq!(
        fields(ours),
        fields(theirs),
        "{what}: dcmon ipmi (left) and ipmitool (right) differ\n--- dcmon\n{ours}--- ipmitool\n{theirs}"
    );
}

#[test]
fn dcmon_ipmi_matches_ipmitool_on_openipmi_ipmi_sim() {
    let sim = IpmiSim::start();

    let (theirs, ours) = sim.both(&["mc", "info"]);
    // ipmitool adds the board name it knows for some product IDs; dcmon does not.
    let theirs: String = theirs
        .lines()
        .filter(|l| !l.starts_with("Product Name"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_same("mc info", &theirs, &ours);
    assert!(ours.contains(&format!("Manufacturer ID           : {MANUFACTURER_ID}")));

    let (theirs, ours) = sim.both(&["chassis", "status"]);
    assert_same("chassis status", &theirs, &ours);
    let (theirs, ours) = sim.both(&["chassis", "power", "status"]);
    assert_same("chassis power status", &theirs, &ours);

    // Without a `chassis_control` program ipmi_sim refuses power control with CCh.
    let theirs = sim.ipmitool(&["chassis", "power", "on"]);
    assert!(
        !theirs.status.success()
            && String::from_utf8_lossy(&theirs.stderr).contains("Invalid data field"),
        "ipmitool chassis power on: {}",
        String::from_utf8_lossy(&theirs.stderr)
    );
    let ours = sim.dcmon(PASSWORD, &["chassis", "power", "on"]);
    let err = String::from_utf8_lossy(&ours.stderr);
    assert!(
        !ours.status.success() && err.contains("Chassis Control") && err.contains("(0xCC)"),
        "dcmon ipmi chassis power on: {err}"
    );

    let (theirs, ours) = sim.both(&["sdr", "list"]);
    assert_same("sdr list", &theirs, &ours);
    for row in [
        "CPU Temp | 85 degrees C | nc",
        "FAN1 | 3600 RPM | ok",
        "12V | 12.06 Volts | ok",
    ] {
        let want: Vec<String> = row.split('|').map(|f| f.trim().to_owned()).collect();
        assert!(fields(&ours).contains(&want), "no {row:?} in\n{ours}");
    }

    let (theirs, ours) = sim.both(&["sel", "list"]);
    assert_same("sel list", &theirs, &ours);
    assert!(ours.contains("Upper Non-critical going high"), "{ours}");
    assert!(ours.contains("Lower Critical going low"), "{ours}");

    let (theirs, ours) = sim.both(&["raw", "0x06", "0x01"]);
    assert_same("raw 0x06 0x01", &theirs, &ours);

    let id = sim.json(&["mc", "info"]);
    assert_eq!(id["manufacturer_id"], MANUFACTURER_ID, "{id}");
    assert_eq!(id["firmware_major"], 2, "{id}");
    let chassis = sim.json(&["chassis", "status"]);
    assert_eq!(chassis["power_on"], false, "{chassis}");
    let sensors = sim.json(&["sdr", "list"]);
    let names: Vec<&str> = sensors
        .as_array()
        .unwrap_or_else(|| panic!("sdr list --json is an array: {sensors}"))
        .iter()
        .filter_map(|s| s["record"]["name"].as_str())
        .collect();
    assert_eq!(names, ["CPU Temp", "FAN1", "12V"], "{sensors}");
    let fan = &sensors[1];
    assert_eq!(
        (fan["value"].as_f64(), fan["status"].as_str()),
        (Some(3600.0), Some("ok")),
        "{fan}"
    );
    let events = sim.json(&["sel", "list"]);
    assert!(events.as_array().is_some_and(|e| e.len() >= 2), "{events}");
    let power = sim.json(&["chassis", "power", "status"]);
    assert_eq!(power["power"], "off", "{power}");
}

#[test]
fn dcmon_ipmi_names_a_wrong_password_and_times_out_on_a_stopped_ipmi_sim() {
    let sim = IpmiSim::start();

    let out = sim.dcmon("not-the-password", &["mc", "info"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong password was accepted");
    assert!(
        err.contains("authentication failed") && err.contains("wrong password"),
        "{err}"
    );

    let pid = sim.proc.child.id().to_string();
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
    let started = Instant::now();
    let out = sim.dcmon(
        PASSWORD,
        &["--timeout", "1s", "--retries", "1", "mc", "info"],
    );
    let took = started.elapsed();
    signal("-CONT");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a stopped BMC answered");
    assert!(err.contains("no response within"), "{err}");
    assert!(took < Duration::from_secs(5), "gave up after {took:?}");

    let (_, ours) = sim.both(&["mc", "info"]);
    assert!(ours.contains("Manufacturer ID"), "{ours}");
}
