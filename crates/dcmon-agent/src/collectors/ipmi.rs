//! The `ipmi` collector: every SDR sensor of the local BMC through the IPMI device
//! (`/dev/ipmi0`, needs root), named as ipmi_exporter names them (see
//! [`dcmon_ipmi::exporter`], shared with the server's BMC poller), plus `ipmi_up`.
//!
//! The collector is generic over the transport so that tests drive it against the BMC
//! simulator; the agent uses [`InbandDevice`].

use super::push;
use super::{CollectError, Collector};
use dcmon_ipmi::IpmiError;
use dcmon_ipmi::client;
use dcmon_ipmi::exporter::{SensorCache, sensor_series};
use dcmon_ipmi::transport::Transport;
use dcmon_ipmi::transport::inband::InbandDevice;
use dcmon_wire::MetricSample;
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
    sdr: SensorCache,
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
        Self {
            rt,
            bmc,
            sdr: SensorCache::default(),
        }
    }
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
        let result = self.rt.block_on(self.sdr.read(bmc));
        push(
            out,
            "ipmi_up",
            &[("collector", "ipmi")],
            f64::from(u8::from(result.is_ok())),
        );
        let read = result.map_err(|e| CollectError::Ipmi(e.to_string()))?;
        for series in sensor_series(&read.values) {
            let labels: Vec<(&str, &str)> = series
                .labels
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect();
            push(out, series.metric, &labels, series.value);
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dcmon_ipmi::msg::{CompletionCode, Request, Response, netfn};
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

    /// The same collector over RMCP+ against the simulator's LAN server.
    #[test]
    fn collects_over_lan_from_the_simulator_server() {
        use dcmon_ipmi::sim::{Fleet, SimConfig};
        use dcmon_ipmi::transport::lan::{LanConfig, LanSession};
        let server = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let fleet = server
            .block_on(Fleet::start(SimConfig::loopback(
                Vendor::Supermicro,
                "admin",
                "s3cret",
            )))
            .expect("simulator");
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
