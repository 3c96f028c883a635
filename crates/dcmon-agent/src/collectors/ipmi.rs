//! The `ipmi` collector: every SDR sensor of the local BMC through the IPMI device
//! (`/dev/ipmi0`, needs root), named as ipmi_exporter names them so that existing
//! dashboards work: `ipmi_temperature_celsius`, `ipmi_fan_speed_rpm`,
//! `ipmi_voltage_volts`, `ipmi_current_amperes`, `ipmi_power_watts`, each with its
//! `*_state` series (0 nominal, 1 warning, 2 critical, NaN without a reading), then
//! `ipmi_sensor_value` / `ipmi_sensor_state{type}` for every other sensor, and `ipmi_up`.
//!
//! The SDR repository is read once and cached: reading it costs one request per 16 bytes
//! (hundreds of requests on a large board), the sensor readings one request per sensor.
//! It is read again when Get SDR Repository Info reports another addition or erase
//! time, or when a cached sensor answers "not present" (the BMC was reflashed).
//!
//! The collector is generic over the transport so that tests drive it against the BMC
//! simulator; the agent uses [`InbandDevice`].

use super::{CollectError, Collector};
use dcmon_ipmi::IpmiError;
use dcmon_ipmi::client::{self, SensorValue};
use dcmon_ipmi::cmd::sdr::{self, SdrRecord, SensorRecord};
use dcmon_ipmi::cmd::{sel, sensor};
use dcmon_ipmi::msg::{BMC_ADDR, CompletionCode};
use dcmon_ipmi::transport::Transport;
use dcmon_ipmi::transport::inband::InbandDevice;
use dcmon_wire::{Labels, MetricSample};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;
use tokio::runtime::Runtime;

/// How the agent reaches its own BMC (`ipmi` in `agent.yaml`): used by the `ipmi` and
/// `bmc_fan` collectors and by `dcmon-agent fans`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpmiConfig {
    /// The Linux IPMI device (`modprobe ipmi_devintf ipmi_si` creates it).
    pub device: PathBuf,
    /// How long one request to the BMC may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Where sysfs is mounted: the board's maker and model are read from
    /// `<sys_root>/class/dmi/id` to recognise Supermicro boards and their generation.
    pub sys_root: PathBuf,
}

impl Default for IpmiConfig {
    fn default() -> Self {
        Self {
            device: PathBuf::from("/dev/ipmi0"),
            timeout: Duration::from_secs(5),
            sys_root: PathBuf::from("/sys"),
        }
    }
}

impl IpmiConfig {
    /// Every problem, each naming its setting under `ipmi`.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut p = Vec::new();
        if self.device.to_str().is_none() {
            p.push(format!(
                "ipmi.device: {:?} is not valid UTF-8",
                self.device.display()
            ));
        }
        if self.timeout.is_zero() {
            p.push("ipmi.timeout: must be more than 0s".to_owned());
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }

    /// Opens the configured device; the error says how to get one.
    pub fn open(&self) -> Result<InbandDevice, String> {
        let path = self.device.to_string_lossy();
        InbandDevice::open(&path, self.timeout).map_err(|e| describe_open_error(&path, &e))
    }
}

/// What went wrong opening the IPMI device, and what to do about it.
pub fn describe_open_error(path: &str, e: &IpmiError) -> String {
    let kind = match e {
        IpmiError::Io { source, .. } => Some(source.kind()),
        _ => None,
    };
    match kind {
        Some(std::io::ErrorKind::NotFound) => {
            format!("{path} does not exist: load the IPMI driver (modprobe ipmi_devintf ipmi_si)")
        }
        Some(std::io::ErrorKind::PermissionDenied) => {
            format!("{path}: permission denied: run as root")
        }
        _ => e.to_string(),
    }
}

/// A current-thread runtime for a collector that talks to the BMC: the runner calls
/// `collect` from blocking context, where the collector drives its own futures.
pub(crate) fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Reads the SDR sensors of one BMC; see the module documentation.
pub struct IpmiCollector<T> {
    rt: Runtime,
    /// The BMC, or why it could not be reached.
    bmc: Result<T, String>,
    /// The sensor records; `None` until the first read and after a "not present".
    sdr: Option<Sdr>,
}

/// The cached sensor records and what identified that version of the repository.
struct Sdr {
    sensors: Vec<SensorRecord>,
    /// Get SDR Repository Info bytes 1–12 (count, free space, addition and erase
    /// times); `None` when the BMC does not answer that command.
    stamp: Option<Vec<u8>>,
}

impl IpmiCollector<InbandDevice> {
    /// The collector of this machine's BMC through the configured device.
    pub fn inband(cfg: &IpmiConfig) -> std::io::Result<Self> {
        Ok(Self::new(runtime()?, cfg.open()))
    }
}

impl<T: Transport> IpmiCollector<T> {
    /// `bmc` must have been created inside `rt` (a LAN session's socket belongs to the
    /// runtime that created it).
    pub fn new(rt: Runtime, bmc: Result<T, String>) -> Self {
        Self { rt, bmc, sdr: None }
    }

    async fn read(bmc: &T, cache: &mut Option<Sdr>) -> Result<Vec<SensorValue>, IpmiError> {
        let stamp =
            match client::call(bmc, &sdr::get_repository_info(), "Get SDR Repository Info").await {
                Ok(info) => info.get(1..13).map(<[u8]>::to_vec),
                // Without the command only a "not present" triggers a new read.
                Err(e) if e.completion().is_some() => None,
                Err(e) => return Err(e),
            };
        let sdr = match cache.take() {
            Some(sdr) if stamp.is_none() || sdr.stamp == stamp => sdr,
            old => {
                if old.is_some() {
                    tracing::info!(bmc = bmc.host(), "SDR repository changed; reading it again");
                }
                let sensors = client::sdr_records(bmc)
                    .await?
                    .into_iter()
                    .filter_map(|r| match r {
                        SdrRecord::Sensor(s) => Some(s),
                        SdrRecord::Other { .. } => None,
                    })
                    .collect();
                Sdr { sensors, stamp }
            }
        };
        let mut values = Vec::with_capacity(sdr.sensors.len());
        let mut stale = false;
        for s in &sdr.sensors {
            let (value, gone) = read_sensor(bmc, s).await?;
            if gone && !stale {
                tracing::info!(
                    bmc = bmc.host(),
                    sensor = %s.name,
                    "sensor not present; the SDR will be read again"
                );
                stale = true;
            }
            values.push(value);
        }
        if !stale {
            *cache = Some(sdr);
        }
        Ok(values)
    }
}

/// One sensor's reading, and whether the BMC says the sensor does not exist.
async fn read_sensor<T: Transport>(
    bmc: &T,
    s: &SensorRecord,
) -> Result<(SensorValue, bool), IpmiError> {
    let unreadable = SensorValue {
        record: s.clone(),
        value: None,
        raw: None,
        states: None,
        status: "ns",
    };
    // Sensors owned by other controllers need IPMB bridging, which is not done.
    if s.owner_id != BMC_ADDR || s.owner_lun != 0 {
        return Ok((unreadable, false));
    }
    let rsp = bmc.send(&sensor::get_sensor_reading(s.number)).await?;
    if rsp.completion == CompletionCode::NOT_PRESENT {
        return Ok((unreadable, true));
    }
    let reading = match rsp.ok().map(sensor::SensorReading::parse) {
        Ok(Ok(r)) if r.valid() => r,
        _ => return Ok((unreadable, false)),
    };
    let analog = s.is_analog();
    let value = SensorValue {
        record: s.clone(),
        value: if analog {
            s.conversion.and_then(|c| c.convert(reading.raw))
        } else {
            None
        },
        raw: Some(reading.raw),
        states: Some(u16::from(reading.states) | (u16::from(reading.states_high) << 8)),
        status: if analog {
            reading.threshold_status().abbreviation()
        } else {
            "ok"
        },
    };
    Ok((value, false))
}

impl<T: Transport> Collector for IpmiCollector<T> {
    fn name(&self) -> &'static str {
        "ipmi"
    }

    fn is_available(&self) -> bool {
        let bmc = match &self.bmc {
            Ok(bmc) => bmc,
            Err(why) => {
                tracing::info!(collector = "ipmi", "no IPMI device: {why}");
                return false;
            }
        };
        match self.rt.block_on(client::device_id(bmc)) {
            Ok(_) => true,
            Err(e) => {
                tracing::info!(collector = "ipmi", error = %e, "the BMC does not answer Get Device ID");
                false
            }
        }
    }

    fn collect(&mut self, out: &mut Vec<MetricSample>) -> Result<(), CollectError> {
        let bmc = self
            .bmc
            .as_ref()
            .map_err(|why| CollectError::Ipmi(why.clone()))?;
        let result = self.rt.block_on(Self::read(bmc, &mut self.sdr));
        push(
            out,
            "ipmi_up",
            &[("collector", "ipmi")],
            f64::from(u8::from(result.is_ok())),
        );
        for v in result.map_err(|e| CollectError::Ipmi(e.to_string()))? {
            push_sensor(out, &v);
        }
        Ok(())
    }
}

/// The ipmi_exporter series of one unit code (IPMI 2.0 Table 43-15).
fn typed_metrics(unit: u8) -> Option<(&'static str, &'static str)> {
    Some(match unit {
        1 => ("ipmi_temperature_celsius", "ipmi_temperature_state"),
        4 => ("ipmi_voltage_volts", "ipmi_voltage_state"),
        5 => ("ipmi_current_amperes", "ipmi_current_state"),
        6 => ("ipmi_power_watts", "ipmi_power_state"),
        18 => ("ipmi_fan_speed_rpm", "ipmi_fan_speed_state"),
        _ => return None,
    })
}

/// ipmi_exporter's states: 0 nominal, 1 warning, 2 critical; NaN when unknown.
fn threshold_state(status: &str) -> f64 {
    match status {
        "ok" => 0.0,
        "nc" => 1.0,
        "cr" | "nr" => 2.0,
        _ => f64::NAN,
    }
}

/// State of a sensor-specific discrete sensor from its asserted offsets (Table 42-3),
/// for the types whose offsets mean trouble: power supply failure or lost input is
/// critical, a predictive failure or configuration error a warning; a chassis
/// intrusion is critical, as freeipmi (and so ipmi_exporter) rates it.
fn discrete_state(sensor_type: u8, event_type: u8, states: u16) -> f64 {
    if event_type != 0x6F {
        return 0.0;
    }
    let (critical, warning): (u16, u16) = match sensor_type {
        // Offsets 1 failure, 3 input lost, 4 input lost or out of range; 2 predictive
        // failure, 5 input out of range, 6 configuration error.
        0x08 => (0x001A, 0x0064),
        // Offset 0 general chassis intrusion; the others are other intrusions.
        0x05 => (0x0001, 0x007E),
        _ => (0, 0),
    };
    if states & critical != 0 {
        2.0
    } else if states & warning != 0 {
        1.0
    } else {
        0.0
    }
}

/// Appends the series of one sensor.
fn push_sensor(out: &mut Vec<MetricSample>, v: &SensorValue) {
    let r = &v.record;
    let id = r.record_id.to_string();
    let base = [("id", id.as_str()), ("name", r.name.as_str())];
    if r.is_analog() {
        let value = v.value.unwrap_or(f64::NAN);
        let state = threshold_state(v.status);
        match typed_metrics(r.unit) {
            Some((value_metric, state_metric)) => {
                push(out, value_metric, &base, value);
                push(out, state_metric, &base, state);
            }
            None => {
                let typed = [
                    base[0],
                    base[1],
                    ("type", sel::sensor_type_name(r.sensor_type)),
                ];
                push(out, "ipmi_sensor_value", &typed, value);
                push(out, "ipmi_sensor_state", &typed, state);
            }
        }
    } else {
        let typed = [
            base[0],
            base[1],
            ("type", sel::sensor_type_name(r.sensor_type)),
        ];
        let (value, state) = match v.states {
            Some(bits) => (
                f64::from(bits),
                discrete_state(r.sensor_type, r.event_type, bits),
            ),
            None => (f64::NAN, f64::NAN),
        };
        push(out, "ipmi_sensor_value", &typed, value);
        push(out, "ipmi_sensor_state", &typed, state);
    }
}

/// Appends one sample. Metric and label names are constants of this module and label
/// values are free text, so an invalid series is a bug caught in debug builds.
fn push(out: &mut Vec<MetricSample>, metric: &str, labels: &[(&str, &str)], value: f64) {
    match Labels::new(metric, labels.iter().copied()) {
        Ok(labels) => out.push(MetricSample { labels, value }),
        Err(e) => {
            if cfg!(debug_assertions) {
                panic!("ipmi collector built an invalid series {metric}: {e}");
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dcmon_ipmi::msg::{Request, Response, netfn};
    use dcmon_ipmi::rakp::Privilege;
    use dcmon_ipmi::sim::{Bmc, BmcConfig, Vendor};
    use std::sync::Mutex;

    const START: Duration = Duration::from_secs(1_700_000_000);

    /// The simulator's BMC model answering in-process. `hide` makes one sensor number
    /// answer "not present", `sdr_added` moves the SDR's most recent addition time;
    /// `asked` records every request.
    pub(crate) struct SimBmc {
        pub bmc: Mutex<Bmc>,
        pub hide: Mutex<Option<u8>>,
        pub sdr_added: Mutex<bool>,
        pub asked: Mutex<Vec<Request>>,
    }

    impl SimBmc {
        pub(crate) fn new(vendor: Vendor) -> Self {
            let config = BmcConfig {
                vendor,
                seed: 3,
                dell_refuses_manual_fans: false,
            };
            Self {
                bmc: Mutex::new(Bmc::new(config, START)),
                hide: Mutex::new(None),
                sdr_added: Mutex::new(false),
                asked: Mutex::new(Vec::new()),
            }
        }

        /// How many Get SDR requests were sent so far.
        fn sdr_reads(&self) -> usize {
            let asked = self.asked.lock().expect("not poisoned");
            asked
                .iter()
                .filter(|r| (r.netfn, r.cmd) == (netfn::STORAGE, 0x23))
                .count()
        }
    }

    impl Transport for SimBmc {
        async fn send(&self, req: &Request) -> Result<Response, IpmiError> {
            self.asked.lock().expect("not poisoned").push(req.clone());
            let hidden = *self.hide.lock().expect("not poisoned");
            if (req.netfn, req.cmd) == (netfn::SENSOR_EVENT, 0x2D)
                && req.data.first() == hidden.as_ref()
            {
                return Ok(Response::to(req, CompletionCode::NOT_PRESENT, []));
            }
            let rsp = self.bmc.lock().expect("not poisoned").handle(
                &dcmon_ipmi::sim::Request {
                    netfn: req.netfn,
                    cmd: req.cmd,
                    data: &req.data,
                    privilege: Privilege::Administrator,
                },
                START,
            );
            let mut data = rsp.data;
            if (req.netfn, req.cmd) == (netfn::STORAGE, 0x20)
                && *self.sdr_added.lock().expect("not poisoned")
                && let Some(added) = data.get_mut(5)
            {
                *added = added.wrapping_add(1);
            }
            Ok(Response::to(req, rsp.completion, data))
        }

        fn host(&self) -> &str {
            "sim"
        }
    }

    fn sim(c: &IpmiCollector<SimBmc>) -> &SimBmc {
        c.bmc.as_ref().expect("sim")
    }

    fn collector(vendor: Vendor) -> IpmiCollector<SimBmc> {
        IpmiCollector::new(runtime().expect("runtime"), Ok(SimBmc::new(vendor)))
    }

    fn up(out: &[MetricSample]) -> Option<f64> {
        out.iter()
            .find(|s| s.labels.metric() == "ipmi_up" && s.labels.get("collector") == Some("ipmi"))
            .map(|s| s.value)
    }

    fn value(out: &[MetricSample], metric: &str, name: &str) -> f64 {
        out.iter()
            .find(|s| s.labels.metric() == metric && s.labels.get("name") == Some(name))
            .unwrap_or_else(|| panic!("no {metric}{{name={name:?}}} in {out:#?}"))
            .value
    }

    #[test]
    fn sensors_follow_ipmi_exporter_names_and_match_the_simulator() {
        let mut c = collector(Vendor::Supermicro);
        assert!(c.is_available());
        let mut out = Vec::new();
        c.collect(&mut out).expect("collects");
        let sim = c
            .bmc
            .as_ref()
            .expect("sim")
            .bmc
            .lock()
            .expect("not poisoned");
        assert_eq!(up(&out), Some(1.0), "{out:?}");
        let cpu = value(&out, "ipmi_temperature_celsius", "CPU Temp");
        assert!((cpu - sim.cpu_temperature()).abs() <= 1.0, "{cpu}");
        assert_eq!(value(&out, "ipmi_temperature_state", "CPU Temp"), 0.0);
        for (i, fan) in ["FAN1", "FAN2", "FAN3", "FAN4", "FANA"].iter().enumerate() {
            let rpm = value(&out, "ipmi_fan_speed_rpm", fan);
            assert!((rpm - sim.fan_rpm()[i]).abs() <= 100.0, "{fan} {rpm}");
            assert_eq!(value(&out, "ipmi_fan_speed_state", fan), 0.0);
        }
        assert!((11.8..12.2).contains(&value(&out, "ipmi_voltage_volts", "12V")));
        assert_eq!(
            value(&out, "ipmi_sensor_value", "PS1 Status"),
            1.0,
            "presence detected"
        );
        assert_eq!(value(&out, "ipmi_sensor_state", "PS1 Status"), 0.0);
        let psu = out
            .iter()
            .find(|s| s.labels.get("name") == Some("PS1 Status"))
            .expect("PSU series");
        assert_eq!(psu.labels.get("type"), Some("Power Supply"));
        assert!(
            psu.labels
                .get("id")
                .is_some_and(|id| id.parse::<u16>().is_ok())
        );
        assert_eq!(value(&out, "ipmi_sensor_state", "Chassis Intru"), 0.0);
    }

    #[test]
    fn sdr_is_read_once_and_again_after_a_change_or_not_present() {
        let mut c = collector(Vendor::Generic);
        let reads = |c: &IpmiCollector<SimBmc>| sim(c).sdr_reads();
        c.collect(&mut Vec::new()).expect("collects");
        let first = reads(&c);
        assert!(first > 0);
        c.collect(&mut Vec::new()).expect("collects");
        assert_eq!(reads(&c), first, "cached");
        *sim(&c).hide.lock().expect("not poisoned") = Some(0x41);
        let mut out = Vec::new();
        c.collect(&mut out).expect("collects");
        assert!(value(&out, "ipmi_fan_speed_rpm", "FAN1").is_nan());
        assert!(value(&out, "ipmi_fan_speed_state", "FAN1").is_nan());
        assert_eq!(reads(&c), first, "not re-read within the cycle");
        c.collect(&mut Vec::new()).expect("collects");
        assert_eq!(reads(&c), 2 * first, "re-read after not present");
        *sim(&c).hide.lock().expect("not poisoned") = None;
        c.collect(&mut Vec::new()).expect("collects");
        assert_eq!(
            reads(&c),
            3 * first,
            "read again: the repository was read while a sensor was missing"
        );
        c.collect(&mut Vec::new()).expect("collects");
        assert_eq!(reads(&c), 3 * first, "cached again");
        *sim(&c).sdr_added.lock().expect("not poisoned") = true;
        c.collect(&mut Vec::new()).expect("collects");
        assert_eq!(reads(&c), 4 * first, "re-read after an addition");
    }

    #[test]
    fn lost_temperatures_give_nan_and_a_missing_device_is_unavailable() {
        let mut c = collector(Vendor::Supermicro);
        c.bmc
            .as_ref()
            .expect("sim")
            .bmc
            .lock()
            .expect("not poisoned")
            .set_temperatures_lost(true);
        let mut out = Vec::new();
        c.collect(&mut out).expect("collects");
        assert!(value(&out, "ipmi_temperature_celsius", "CPU Temp").is_nan());
        assert!(value(&out, "ipmi_temperature_state", "CPU Temp").is_nan());

        let cfg = IpmiConfig {
            device: PathBuf::from("/nonexistent/ipmi0"),
            ..IpmiConfig::default()
        };
        let mut missing = IpmiCollector::inband(&cfg).expect("runtime");
        assert!(!missing.is_available());
        let e = missing
            .collect(&mut Vec::new())
            .expect_err("no device")
            .to_string();
        assert!(e.contains("/nonexistent/ipmi0 does not exist: load the IPMI driver (modprobe ipmi_devintf ipmi_si)"), "{e}");
    }

    #[test]
    fn discrete_states() {
        let check = |sensor_type, states, expect: f64| {
            assert_eq!(
                discrete_state(sensor_type, 0x6F, states),
                expect,
                "{sensor_type:x} {states:x}"
            );
        };
        check(0x08, 0x0001, 0.0);
        check(0x08, 0x0003, 2.0);
        check(0x08, 0x0005, 1.0);
        check(0x05, 0x0001, 2.0);
        check(0x07, 0xFFFF, 0.0);
    }

    /// The same collector over RMCP+ against the simulator's LAN server.
    #[test]
    fn collects_over_lan_from_the_simulator_server() {
        use dcmon_ipmi::sim::{Faults, Fleet, SimConfig, User};
        use dcmon_ipmi::transport::lan::{LanConfig, LanSession};
        let server = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let fleet = (0..20)
            .find_map(|_| {
                let probe = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
                let port = probe.local_addr().ok()?.port();
                drop(probe);
                server
                    .block_on(Fleet::start(SimConfig {
                        bind: [127, 0, 0, 1].into(),
                        base_port: port,
                        count: 1,
                        vendor: Vendor::Supermicro,
                        seed: 1,
                        dell_refuses_manual_fans: false,
                        users: vec![User {
                            name: "admin".into(),
                            password: "s3cret".into(),
                            max_privilege: Privilege::Administrator,
                        }],
                        faults: Faults::default(),
                        load: None,
                    }))
                    .ok()
            })
            .expect("a free UDP port");
        let addr = fleet.addrs()[0];
        let rt = runtime().expect("runtime");
        let mut config = LanConfig::new("127.0.0.1", "admin", b"s3cret".to_vec());
        config.port = addr.port();
        let session = rt
            .block_on(LanSession::connect(config))
            .map_err(|e| e.to_string());
        let mut c = IpmiCollector::new(rt, session);
        assert!(c.is_available());
        let mut out = Vec::new();
        c.collect(&mut out).expect("collects");
        assert_eq!(up(&out), Some(1.0));
        assert!(value(&out, "ipmi_fan_speed_rpm", "FANA") > 1000.0);
        server.block_on(fleet.shutdown());
    }
}
