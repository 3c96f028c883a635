//! The `nvme` collector: SMART / Health log of every NVMe controller, read with admin
//! passthrough commands ([`ioctl`]) and decoded by hand ([`log`]); no smartctl, no
//! nvme-cli. Series are named as smartctl_exporter names them (`smartctl_device_*`,
//! label `device="nvme0"`), so its dashboards and alerts work unchanged; the fields it
//! has no series for are `dcmon_nvme_*`.
//!
//! Controllers are listed from `<sys_root>/class/nvme` at every collection (a replaced
//! drive shows up without a restart); Identify Controller is asked once per controller,
//! until it has answered. A controller that fails reports `dcmon_nvme_up{device} 0`, the
//! others are still reported, and the collection succeeds: partial failure is data.

mod ioctl;
mod log;

use super::push;
use super::{CollectError, Collector};
use dcmon_wire::MetricSample;
use log::{ControllerIdentity, IDENTIFY_LEN, SMART_LOG_LEN};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Settings of the `nvme` collector (`collectors.nvme` in `agent.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NvmeConfig {
    /// Where sysfs is mounted; controllers are the `nvme<N>` entries of
    /// `<sys_root>/class/nvme`.
    pub sys_root: PathBuf,
    /// Where the controllers' character devices are (`<dev_root>/nvme0`); `/host/dev`
    /// when the agent runs in a container.
    pub dev_root: PathBuf,
}

impl Default for NvmeConfig {
    fn default() -> Self {
        Self {
            sys_root: PathBuf::from("/sys"),
            dev_root: PathBuf::from("/dev"),
        }
    }
}

impl NvmeConfig {
    /// Every problem, each naming its setting under `collectors.nvme`.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut p = Vec::new();
        for (field, path) in [("sys_root", &self.sys_root), ("dev_root", &self.dev_root)] {
            if !path.is_absolute() {
                p.push(format!(
                    "collectors.nvme.{field}: {} must be an absolute path",
                    path.display()
                ));
            }
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }
}

/// Why one admin command to one controller failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    #[error("opening {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} on {path}: {source}")]
    Ioctl {
        path: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} on {path}: the controller answered NVMe status {status:#x}")]
    Status {
        path: String,
        what: &'static str,
        status: i32,
    },
    #[error("{what} on {path}: {message}")]
    Decode {
        path: String,
        what: &'static str,
        message: String,
    },
}

impl AdminError {
    fn is_permission_denied(&self) -> bool {
        match self {
            Self::Open { source, .. } | Self::Ioctl { source, .. } => {
                source.kind() == std::io::ErrorKind::PermissionDenied
            }
            Self::Status { .. } | Self::Decode { .. } => false,
        }
    }
}

/// The two admin commands the collector sends; tests answer them with recorded pages.
pub(crate) trait AdminCommands: Send {
    /// Identify Controller into `buf` (4096 bytes).
    fn identify_controller(&mut self, device: &str, buf: &mut [u8]) -> Result<(), AdminError>;
    /// The controller-wide SMART / Health log page into `buf` (512 bytes).
    fn smart_log(&mut self, device: &str, buf: &mut [u8]) -> Result<(), AdminError>;
}

/// What the collector remembers about one controller between collections.
#[derive(Default)]
struct Drive {
    identity: Option<ControllerIdentity>,
    /// The last collection's outcome, so a failure is logged when it starts and when it
    /// ends rather than every interval.
    failing: bool,
}

/// Reads every controller's SMART / Health log; see the module documentation.
pub struct NvmeCollector {
    class_dir: PathBuf,
    admin: Box<dyn AdminCommands>,
    available: bool,
    drives: BTreeMap<String, Drive>,
    /// Scratch for the log page and Identify data, reused across collections.
    buf: Vec<u8>,
}

impl NvmeCollector {
    /// Lists the controllers and identifies them once. The collector is available when
    /// sysfs lists a controller and not every controller refused the agent for lack of
    /// privilege; that refusal is logged here, once.
    pub fn new(cfg: NvmeConfig) -> Self {
        let admin = Box::new(ioctl::DevNodes {
            dev_root: cfg.dev_root.clone(),
        });
        Self::with_admin(&cfg, admin)
    }

    fn with_admin(cfg: &NvmeConfig, admin: Box<dyn AdminCommands>) -> Self {
        let mut c = Self {
            class_dir: cfg.sys_root.join("class/nvme"),
            admin,
            available: false,
            drives: BTreeMap::new(),
            buf: vec![0; IDENTIFY_LEN],
        };
        let names = c.controllers().unwrap_or_default();
        let mut denied = Vec::new();
        for name in &names {
            match c.identify(name) {
                Ok(identity) => {
                    c.drives.entry(name.clone()).or_default().identity = Some(identity);
                }
                Err(e) if e.is_permission_denied() => denied.push(e.to_string()),
                Err(e) => {
                    tracing::warn!(collector = "nvme", device = %name, error = %e,
                        "Identify Controller failed; retried at each collection");
                }
            }
        }
        c.available = !names.is_empty() && denied.len() < names.len();
        if !names.is_empty() && !c.available {
            tracing::warn!(
                collector = "nvme",
                error = %denied.join("; "),
                "NVMe admin commands need root (CAP_SYS_ADMIN); the nvme collector is off \
                 until the agent runs as root"
            );
        }
        c
    }

    /// Controller names (`nvme0`, ...) in sysfs, sorted. Fabrics and namespace entries
    /// never appear in this class, but the name is still checked before it becomes a path.
    fn controllers(&self) -> Result<Vec<String>, CollectError> {
        let entries = std::fs::read_dir(&self.class_dir).map_err(|source| CollectError::Io {
            path: self.class_dir.display().to_string(),
            source,
        })?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| {
                n.strip_prefix("nvme")
                    .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        names.sort_by_key(|n| (n.len(), n.clone()));
        Ok(names)
    }

    fn identify(&mut self, device: &str) -> Result<ControllerIdentity, AdminError> {
        self.buf.resize(IDENTIFY_LEN, 0);
        self.admin.identify_controller(device, &mut self.buf)?;
        log::parse_identify_controller(&self.buf).map_err(|message| AdminError::Decode {
            path: device.to_owned(),
            what: "Identify Controller",
            message,
        })
    }

    fn read_smart_log(&mut self, device: &str) -> Result<log::SmartLog, AdminError> {
        self.buf.resize(SMART_LOG_LEN, 0);
        self.admin.smart_log(device, &mut self.buf)?;
        log::parse_smart_log(&self.buf).map_err(|message| AdminError::Decode {
            path: device.to_owned(),
            what: "SMART / Health log",
            message,
        })
    }
}

impl Collector for NvmeCollector {
    fn name(&self) -> &'static str {
        "nvme"
    }

    fn is_available(&self) -> bool {
        self.available
    }

    fn collect(&mut self, out: &mut Vec<MetricSample>) -> Result<(), CollectError> {
        let names = self.controllers()?;
        self.drives.retain(|name, _| names.contains(name));
        for name in &names {
            let mut drive = self.drives.remove(name).unwrap_or_default();
            if drive.identity.is_none() {
                drive.identity = self.identify(name).ok();
            }
            let result = self.read_smart_log(name);
            match &result {
                Ok(_) if drive.failing => {
                    tracing::info!(collector = "nvme", device = %name, "SMART log readable again");
                }
                Err(e) if !drive.failing => {
                    tracing::warn!(collector = "nvme", device = %name, error = %e,
                        "reading the SMART log failed; reported as dcmon_nvme_up 0");
                }
                _ => {}
            }
            drive.failing = result.is_err();
            if let Some(id) = &drive.identity {
                push(
                    out,
                    "smartctl_device",
                    &[
                        ("device", name),
                        ("model_name", &id.model_name),
                        ("serial_number", &id.serial_number),
                        ("firmware_version", &id.firmware_version),
                    ],
                    1.0,
                );
            }
            if let Ok(smart) = &result {
                push_smart_log(out, name, smart);
            }
            push(
                out,
                "dcmon_nvme_up",
                &[("device", name)],
                if result.is_ok() { 1.0 } else { 0.0 },
            );
            self.drives.insert(name.clone(), drive);
        }
        Ok(())
    }
}

fn push_smart_log(out: &mut Vec<MetricSample>, device: &str, s: &log::SmartLog) {
    let dev = [("device", device)];
    let temp = |t| log::kelvin_to_celsius(t);
    push(
        out,
        "smartctl_device_critical_warning",
        &dev,
        f64::from(s.critical_warning),
    );
    push(
        out,
        "smartctl_device_temperature",
        &[("device", device), ("temperature_type", "current")],
        temp(s.composite_temperature_k),
    );
    const SENSORS: [&str; 8] = [
        "sensor1", "sensor2", "sensor3", "sensor4", "sensor5", "sensor6", "sensor7", "sensor8",
    ];
    for (kind, &k) in SENSORS.iter().zip(&s.temperature_sensors_k) {
        // 0 K is how the spec marks a sensor the controller does not implement.
        if k != 0 {
            push(
                out,
                "smartctl_device_temperature",
                &[("device", device), ("temperature_type", kind)],
                temp(k),
            );
        }
    }
    for (metric, value) in [
        (
            "smartctl_device_available_spare",
            f64::from(s.available_spare),
        ),
        (
            "smartctl_device_available_spare_threshold",
            f64::from(s.available_spare_threshold),
        ),
        (
            "smartctl_device_percentage_used",
            f64::from(s.percentage_used),
        ),
        ("smartctl_device_bytes_read", s.bytes_read()),
        ("smartctl_device_bytes_written", s.bytes_written()),
        ("smartctl_device_power_cycle_count", s.power_cycles as f64),
        (
            "smartctl_device_power_on_seconds",
            s.power_on_hours as f64 * 3600.0,
        ),
        ("dcmon_nvme_unsafe_shutdowns", s.unsafe_shutdowns as f64),
        ("smartctl_device_media_errors", s.media_errors as f64),
        (
            "smartctl_device_num_err_log_entries",
            s.error_log_entries as f64,
        ),
    ] {
        push(out, metric, &dev, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    /// Answers from canned pages; a device without a page fails like the named error.
    struct Recorded {
        smart: BTreeMap<&'static str, Vec<u8>>,
        denied: bool,
    }

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::from(kind)
    }

    impl AdminCommands for Recorded {
        fn identify_controller(&mut self, device: &str, buf: &mut [u8]) -> Result<(), AdminError> {
            if self.denied {
                return Err(AdminError::Open {
                    path: format!("/dev/{device}"),
                    source: io(std::io::ErrorKind::PermissionDenied),
                });
            }
            buf.fill(b' ');
            buf[4..4 + device.len()].copy_from_slice(device.as_bytes());
            buf[24..34].copy_from_slice(b"TEST MODEL");
            buf[64..68].copy_from_slice(b"1.0A");
            Ok(())
        }

        fn smart_log(&mut self, device: &str, buf: &mut [u8]) -> Result<(), AdminError> {
            match self.smart.get(device) {
                Some(page) => {
                    buf.copy_from_slice(page);
                    Ok(())
                }
                None => Err(AdminError::Ioctl {
                    path: format!("/dev/{device}"),
                    what: "Get Log Page (SMART / Health)",
                    source: io(std::io::ErrorKind::Other),
                }),
            }
        }
    }

    fn testdata_config() -> NvmeConfig {
        NvmeConfig {
            sys_root: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("src/collectors/nvme/testdata/sys"),
            dev_root: PathBuf::from("/nonexistent"),
        }
    }

    fn render(samples: &[MetricSample]) -> String {
        let mut s = String::new();
        for m in samples {
            let _ = writeln!(s, "{} {}", m.labels, m.value);
        }
        s
    }

    #[test]
    fn failing_drive_reports_up_zero_and_the_others_their_log() {
        let page = log::tests::page(&[
            (1, &308u16.to_le_bytes()),
            (3, &[100, 10, 2]),
            (32, &[10]),
            (48, &[20]),
            (112, &[5]),
            (128, &[24]),
            (144, &[1]),
            (202, &313u16.to_le_bytes()),
        ]);
        let admin = Recorded {
            smart: BTreeMap::from([("nvme0", page)]),
            denied: false,
        };
        let mut c = NvmeCollector::with_admin(&testdata_config(), Box::new(admin));
        assert!(c.is_available());
        let mut out = Vec::new();
        c.collect(&mut out).unwrap();
        let expect = r#"smartctl_device{device="nvme0",firmware_version="1.0A",model_name="TEST MODEL",serial_number="nvme0"} 1
smartctl_device_critical_warning{device="nvme0"} 0
smartctl_device_temperature{device="nvme0",temperature_type="current"} 35
smartctl_device_temperature{device="nvme0",temperature_type="sensor2"} 40
smartctl_device_available_spare{device="nvme0"} 100
smartctl_device_available_spare_threshold{device="nvme0"} 10
smartctl_device_percentage_used{device="nvme0"} 2
smartctl_device_bytes_read{device="nvme0"} 5120000
smartctl_device_bytes_written{device="nvme0"} 10240000
smartctl_device_power_cycle_count{device="nvme0"} 5
smartctl_device_power_on_seconds{device="nvme0"} 86400
dcmon_nvme_unsafe_shutdowns{device="nvme0"} 1
smartctl_device_media_errors{device="nvme0"} 0
smartctl_device_num_err_log_entries{device="nvme0"} 0
dcmon_nvme_up{device="nvme0"} 1
smartctl_device{device="nvme1",firmware_version="1.0A",model_name="TEST MODEL",serial_number="nvme1"} 1
dcmon_nvme_up{device="nvme1"} 0
"#;
        assert_eq!(render(&out), expect);
    }

    #[test]
    fn permission_denied_on_every_controller_makes_it_unavailable() {
        let admin = Recorded {
            smart: BTreeMap::new(),
            denied: true,
        };
        let c = NvmeCollector::with_admin(&testdata_config(), Box::new(admin));
        assert!(!c.is_available());
    }

    #[test]
    fn no_controllers_in_sysfs_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let c = NvmeCollector::new(NvmeConfig {
            sys_root: dir.path().to_path_buf(),
            dev_root: dir.path().to_path_buf(),
        });
        assert!(!c.is_available());
    }

    #[test]
    fn config_defaults_round_trip_and_validate() {
        let c = NvmeConfig::default();
        let yaml = serde_norway::to_string(&c).unwrap();
        assert_eq!(serde_norway::from_str::<NvmeConfig>(&yaml).unwrap(), c);
        assert_eq!(c.validate(), Ok(()));
        assert!(serde_norway::from_str::<NvmeConfig>("dev_rot: /x\n").is_err());
        let bad = NvmeConfig {
            dev_root: PathBuf::from("dev"),
            ..NvmeConfig::default()
        };
        assert_eq!(
            bad.validate().unwrap_err(),
            ["collectors.nvme.dev_root: dev must be an absolute path"]
        );
    }
}
