//! The `gpu` collector: NVIDIA GPUs, named as dcgm-exporter names them
//! (`DCGM_FI_DEV_GPU_TEMP{gpu,UUID,modelName}`, ...), plus dcmon's own `dcmon_gpu_*`.
//!
//! Two backends fill the same [`GpuReading`] per GPU, and one pure function,
//! [`push_samples`], turns readings into samples:
//! - [`nvml`]: NVML in-process (`libnvidia-ml.so.1` loaded at run time, so the agent runs
//!   on machines without NVIDIA). Handles are opened once; XID errors arrive through an
//!   NVML event set that each collection drains without waiting.
//! - [`smi`]: `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`, only when NVML
//!   cannot load (DESIGN §2). It has no XID events and no PCIe replay counter.
//!
//! A field a GPU does not support is omitted, not an error. A GPU that has fallen off the
//! bus reports `dcmon_gpu_lost 1` while the others keep reporting; `dcmon_gpu_up` says
//! per GPU whether everything asked of it was answered. The collection fails only when
//! no GPU could be read at all.
//!
//! Hotspot (junction) temperature is not reported: neither NVML (no temperature sensor
//! or field id for it in the headers nvml-wrapper 0.13 binds) nor
//! `nvidia-smi --query-gpu` exposes it; tools that show it read GPU registers directly.

mod nvml;
mod smi;

use super::push;
use super::{CollectError, Collector};
use dcmon_wire::MetricSample;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Settings of the `gpu` collector (`collectors.gpu` in `agent.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuConfig {
    /// The NVML library to load; default: `libnvidia-ml.so.1` found by the dynamic loader.
    /// Set it when the driver's libraries are mounted elsewhere (agent in a container).
    pub nvml_library: Option<PathBuf>,
    /// The `nvidia-smi` run when NVML cannot load; a bare name is looked up on `PATH`.
    pub nvidia_smi: PathBuf,
    /// How long one `nvidia-smi` run may take before it is killed: a GPU in a bad state
    /// can make it hang for minutes, which would stall every other collector.
    #[serde(with = "humantime_serde")]
    pub nvidia_smi_timeout: Duration,
}

impl Default for GpuConfig {
    fn default() -> Self {
        Self {
            nvml_library: None,
            nvidia_smi: PathBuf::from("nvidia-smi"),
            nvidia_smi_timeout: Duration::from_secs(10),
        }
    }
}

impl GpuConfig {
    /// Every problem, each naming its setting under `collectors.gpu`.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut p = Vec::new();
        if self.nvidia_smi.as_os_str().is_empty() {
            p.push("collectors.gpu.nvidia_smi: must not be empty".to_owned());
        }
        if self
            .nvml_library
            .as_ref()
            .is_some_and(|l| l.as_os_str().is_empty())
        {
            p.push(
                "collectors.gpu.nvml_library: must not be empty; omit it for the default"
                    .to_owned(),
            );
        }
        if self.nvidia_smi_timeout.is_zero() {
            p.push("collectors.gpu.nvidia_smi_timeout: must be more than 0s".to_owned());
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }
}

/// One value a GPU may report; the index into [`GpuReading::values`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    GpuTemp,
    MemoryTemp,
    PowerUsage,
    PowerLimit,
    GpuUtil,
    MemCopyUtil,
    FanSpeed,
    FbUsed,
    FbFree,
    FbTotal,
    SmClock,
    MemClock,
    Pstate,
    ThrottleReasons,
    EccSbeVolatile,
    EccDbeVolatile,
    EccSbeAggregate,
    EccDbeAggregate,
    PcieReplay,
    PcieLinkGen,
    PcieLinkWidth,
    PcieLinkGenMax,
    PcieLinkWidthMax,
    RetiredPending,
    RetiredSbe,
    RetiredDbe,
    RowRemapPending,
    RowRemapFailure,
    NvlinkCrcFlitErrors,
    NvlinkCrcDataErrors,
    NvlinkReplayErrors,
    NvlinkRecoveryErrors,
    LastXid,
}

impl Field {
    /// Every field, in the order samples are emitted.
    const ALL: [Field; FIELD_COUNT] = [
        Field::GpuTemp,
        Field::MemoryTemp,
        Field::PowerUsage,
        Field::PowerLimit,
        Field::GpuUtil,
        Field::MemCopyUtil,
        Field::FanSpeed,
        Field::FbUsed,
        Field::FbFree,
        Field::FbTotal,
        Field::SmClock,
        Field::MemClock,
        Field::Pstate,
        Field::ThrottleReasons,
        Field::EccSbeVolatile,
        Field::EccDbeVolatile,
        Field::EccSbeAggregate,
        Field::EccDbeAggregate,
        Field::PcieReplay,
        Field::PcieLinkGen,
        Field::PcieLinkWidth,
        Field::PcieLinkGenMax,
        Field::PcieLinkWidthMax,
        Field::RetiredPending,
        Field::RetiredSbe,
        Field::RetiredDbe,
        Field::RowRemapPending,
        Field::RowRemapFailure,
        Field::NvlinkCrcFlitErrors,
        Field::NvlinkCrcDataErrors,
        Field::NvlinkReplayErrors,
        Field::NvlinkRecoveryErrors,
        Field::LastXid,
    ];

    /// The metric name: dcgm-exporter's where it has one. Units are dcgm's: W, MiB,
    /// MHz, %, °C.
    fn metric(self) -> &'static str {
        match self {
            Field::GpuTemp => "DCGM_FI_DEV_GPU_TEMP",
            Field::MemoryTemp => "DCGM_FI_DEV_MEMORY_TEMP",
            Field::PowerUsage => "DCGM_FI_DEV_POWER_USAGE",
            Field::PowerLimit => "DCGM_FI_DEV_POWER_MGMT_LIMIT",
            Field::GpuUtil => "DCGM_FI_DEV_GPU_UTIL",
            Field::MemCopyUtil => "DCGM_FI_DEV_MEM_COPY_UTIL",
            Field::FanSpeed => "DCGM_FI_DEV_FAN_SPEED",
            Field::FbUsed => "DCGM_FI_DEV_FB_USED",
            Field::FbFree => "DCGM_FI_DEV_FB_FREE",
            Field::FbTotal => "DCGM_FI_DEV_FB_TOTAL",
            Field::SmClock => "DCGM_FI_DEV_SM_CLOCK",
            Field::MemClock => "DCGM_FI_DEV_MEM_CLOCK",
            Field::Pstate => "DCGM_FI_DEV_PSTATE",
            Field::ThrottleReasons => "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
            Field::EccSbeVolatile => "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
            Field::EccDbeVolatile => "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
            Field::EccSbeAggregate => "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
            Field::EccDbeAggregate => "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
            Field::PcieReplay => "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
            Field::PcieLinkGen => "DCGM_FI_DEV_PCIE_LINK_GEN",
            Field::PcieLinkWidth => "DCGM_FI_DEV_PCIE_LINK_WIDTH",
            Field::PcieLinkGenMax => "dcmon_gpu_pcie_link_gen_max",
            Field::PcieLinkWidthMax => "dcmon_gpu_pcie_link_width_max",
            Field::RetiredPending => "DCGM_FI_DEV_RETIRED_PENDING",
            Field::RetiredSbe => "DCGM_FI_DEV_RETIRED_SBE",
            Field::RetiredDbe => "DCGM_FI_DEV_RETIRED_DBE",
            Field::RowRemapPending => "DCGM_FI_DEV_ROW_REMAP_PENDING",
            Field::RowRemapFailure => "DCGM_FI_DEV_ROW_REMAP_FAILURE",
            Field::NvlinkCrcFlitErrors => "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
            Field::NvlinkCrcDataErrors => "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
            Field::NvlinkReplayErrors => "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
            Field::NvlinkRecoveryErrors => "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
            Field::LastXid => "DCGM_FI_DEV_XID_ERRORS",
        }
    }
}

const FIELD_COUNT: usize = 33;

/// Whether a GPU answered this collection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum GpuState {
    /// Everything asked of it was answered (or is not supported by it).
    #[default]
    Up,
    /// Fallen off the bus (NVML `GpuLost`, nvidia-smi "GPU is lost"): only a reboot or a
    /// reset brings it back.
    Lost,
    /// Some reading failed for another reason; what was read is still reported.
    Failed(String),
}

/// What one collection read from one GPU: one `Option` per [`Field`], `None` when the GPU
/// does not support it or did not answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GpuReading {
    /// NVML / nvidia-smi index, the `gpu` label.
    pub index: u32,
    /// `GPU-...`; empty when unknown (a GPU lost before it could be asked), which drops
    /// the label.
    pub uuid: String,
    /// Product name (`NVIDIA H100 80GB HBM3`), the `modelName` label.
    pub model: String,
    pub state: GpuState,
    pub values: [Option<f64>; FIELD_COUNT],
    /// XID errors seen since the agent started, by code, sorted by code.
    pub xid_counts: Vec<(u64, u64)>,
    /// XID codes that arrived in the latest collection, in order.
    pub new_xids: Vec<u64>,
}

impl Default for GpuReading {
    fn default() -> Self {
        Self {
            index: 0,
            uuid: String::new(),
            model: String::new(),
            state: GpuState::Up,
            values: [None; FIELD_COUNT],
            xid_counts: Vec::new(),
            new_xids: Vec::new(),
        }
    }
}

impl GpuReading {
    pub(crate) fn set(&mut self, field: Field, value: f64) {
        self.values[field as usize] = Some(value);
    }

    fn get(&self, field: Field) -> Option<f64> {
        self.values[field as usize]
    }

    /// Clears what the previous collection read, keeping identity and XID counts.
    fn clear_values(&mut self) {
        self.values = [None; FIELD_COUNT];
        self.state = GpuState::Up;
    }
}

/// Appends the samples of `readings`: every present field, then `dcmon_gpu_up`,
/// `dcmon_gpu_lost` and `dcmon_gpu_xid_errors_total{xid}`, per GPU.
pub(crate) fn push_samples(readings: &[GpuReading], out: &mut Vec<MetricSample>) {
    for r in readings {
        let index = r.index.to_string();
        let labels = [
            ("gpu", index.as_str()),
            ("UUID", r.uuid.as_str()),
            ("modelName", r.model.as_str()),
        ];
        for field in Field::ALL {
            if let Some(value) = r.get(field) {
                push(out, field.metric(), &labels, value);
            }
        }
        let up = if r.state == GpuState::Up { 1.0 } else { 0.0 };
        let lost = if r.state == GpuState::Lost { 1.0 } else { 0.0 };
        push(out, "dcmon_gpu_up", &labels, up);
        push(out, "dcmon_gpu_lost", &labels, lost);
        for (code, count) in &r.xid_counts {
            let code = code.to_string();
            let [gpu, uuid, model] = labels;
            push(
                out,
                "dcmon_gpu_xid_errors_total",
                &[gpu, uuid, model, ("xid", code.as_str())],
                *count as f64,
            );
        }
    }
}

enum Backend {
    Nvml(nvml::NvmlGpus),
    Smi(smi::SmiGpus),
}

/// Reads NVIDIA GPUs through NVML, or nvidia-smi when NVML cannot load.
pub struct GpuCollector {
    /// `None` when this machine has no GPU either backend can see.
    backend: Option<Backend>,
    /// The problem last logged per GPU position, so that each change is logged once
    /// instead of every collection.
    logged_problems: Vec<Option<String>>,
    /// XID errors not yet handed to the runner as events.
    events: Vec<super::CollectorEvent>,
}

impl GpuCollector {
    /// Chooses the backend once: NVML when it loads and sees a GPU, else nvidia-smi when
    /// it answers, else none. Why a backend was not chosen is logged at debug level only:
    /// most machines simply have no NVIDIA GPU.
    pub fn new(cfg: &GpuConfig) -> Self {
        let backend = match nvml::NvmlGpus::open(cfg.nvml_library.as_deref()) {
            Ok(gpus) => Some(Backend::Nvml(gpus)),
            Err(nvml_reason) => {
                tracing::debug!(reason = %nvml_reason, "gpu collector: NVML not usable");
                match smi::SmiGpus::probe(&cfg.nvidia_smi, cfg.nvidia_smi_timeout) {
                    Ok(gpus) => Some(Backend::Smi(gpus)),
                    Err(smi_reason) => {
                        tracing::debug!(reason = %smi_reason, "gpu collector: nvidia-smi not usable");
                        None
                    }
                }
            }
        };
        let (name, readings) = match &backend {
            Some(Backend::Nvml(g)) => ("NVML", g.readings()),
            Some(Backend::Smi(g)) => ("nvidia-smi", g.readings()),
            None => ("none", &[][..]),
        };
        if !readings.is_empty() {
            let mut models: Vec<&str> = readings.iter().map(|r| r.model.as_str()).collect();
            models.dedup();
            tracing::info!(
                backend = name,
                gpus = readings.len(),
                models = %models.join(", "),
                "gpu collector backend chosen"
            );
        }
        let logged_problems = vec![None; readings.len()];
        Self {
            backend,
            logged_problems,
            events: Vec::new(),
        }
    }
}

/// Logs each GPU whose state changed since the last collection, once; `logged` holds the
/// problem last logged per GPU position.
fn log_changes(readings: &[GpuReading], logged: &mut Vec<Option<String>>) {
    logged.resize(readings.len(), None);
    for (r, logged) in readings.iter().zip(logged.iter_mut()) {
        let problem = match &r.state {
            GpuState::Up => None,
            GpuState::Lost => Some("GPU has fallen off the bus; reboot or reset it"),
            GpuState::Failed(m) => Some(m.as_str()),
        };
        if problem == logged.as_deref() {
            continue;
        }
        match problem {
            Some(p) => {
                tracing::warn!(gpu = r.index, uuid = %r.uuid, problem = p, "GPU not fully readable")
            }
            None => tracing::info!(gpu = r.index, uuid = %r.uuid, "GPU readable again"),
        }
        *logged = problem.map(str::to_owned);
    }
}

impl Collector for GpuCollector {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn is_available(&self) -> bool {
        self.backend.is_some()
    }

    fn collect(&mut self, out: &mut Vec<MetricSample>) -> Result<(), CollectError> {
        let readings = match &mut self.backend {
            None => return Ok(()),
            Some(Backend::Nvml(g)) => g.collect(),
            Some(Backend::Smi(g)) => g.collect()?,
        };
        push_samples(readings, out);
        for r in readings.iter() {
            for &xid in &r.new_xids {
                self.events.push(super::CollectorEvent {
                    kind: "gpu_xid",
                    severity: "critical",
                    message: format!("GPU {} ({}) reported XID {xid}", r.index, r.model),
                    detail: serde_json::json!({
                        "gpu": r.index, "UUID": r.uuid, "modelName": r.model, "xid": xid,
                    }),
                });
            }
        }
        log_changes(readings, &mut self.logged_problems);
        let read_something = readings
            .iter()
            .any(|r| r.state == GpuState::Up || r.values.iter().any(Option::is_some));
        if read_something {
            Ok(())
        } else {
            Err(nothing_readable(readings))
        }
    }

    fn take_events(&mut self) -> Vec<super::CollectorEvent> {
        std::mem::take(&mut self.events)
    }
}

/// The error of a collection in which no GPU could be read.
fn nothing_readable(readings: &[GpuReading]) -> CollectError {
    let why = match readings.iter().find_map(|r| match &r.state {
        GpuState::Failed(m) => Some(format!("GPU {}: {m}", r.index)),
        GpuState::Lost => Some(format!("GPU {} has fallen off the bus", r.index)),
        GpuState::Up => None,
    }) {
        Some(w) => w,
        None => "no GPU listed".to_owned(),
    };
    CollectError::Io {
        path: "every GPU".to_owned(),
        source: std::io::Error::other(format!(
            "{why}; check `nvidia-smi` and the kernel log (dmesg) for XID errors"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};

    pub(super) fn testdata() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/collectors/gpu/testdata")
    }

    fn render(samples: &[MetricSample]) -> String {
        let mut s = String::new();
        for m in samples {
            let _ = writeln!(s, "{} {}", m.labels, m.value);
        }
        s
    }

    fn check(reading: GpuReading, expect: &str) {
        let mut out = Vec::new();
        push_samples(&[reading], &mut out);
        assert_eq!(render(&out), expect);
    }

    fn reading(values: &[(Field, f64)]) -> GpuReading {
        let mut r = GpuReading {
            index: 3,
            uuid: "GPU-1".into(),
            model: "NVIDIA H200".into(),
            ..GpuReading::default()
        };
        for (f, v) in values {
            r.set(*f, *v);
        }
        r
    }

    #[test]
    fn readings_become_dcgm_named_samples() {
        check(
            reading(&[(Field::GpuTemp, 41.0), (Field::LastXid, 0.0)]),
            concat!(
                r#"DCGM_FI_DEV_GPU_TEMP{UUID="GPU-1",gpu="3",modelName="NVIDIA H200"} 41"#,
                "\n",
                r#"DCGM_FI_DEV_XID_ERRORS{UUID="GPU-1",gpu="3",modelName="NVIDIA H200"} 0"#,
                "\n",
                r#"dcmon_gpu_up{UUID="GPU-1",gpu="3",modelName="NVIDIA H200"} 1"#,
                "\n",
                r#"dcmon_gpu_lost{UUID="GPU-1",gpu="3",modelName="NVIDIA H200"} 0"#,
                "\n",
            ),
        );
        check(
            GpuReading {
                xid_counts: vec![(48, 1), (79, 2)],
                ..reading(&[(Field::LastXid, 79.0)])
            },
            concat!(
                r#"DCGM_FI_DEV_XID_ERRORS{UUID="GPU-1",gpu="3",modelName="NVIDIA H200"} 79"#,
                "\n",
                r#"dcmon_gpu_up{UUID="GPU-1",gpu="3",modelName="NVIDIA H200"} 1"#,
                "\n",
                r#"dcmon_gpu_lost{UUID="GPU-1",gpu="3",modelName="NVIDIA H200"} 0"#,
                "\n",
                r#"dcmon_gpu_xid_errors_total{UUID="GPU-1",gpu="3",modelName="NVIDIA H200",xid="48"} 1"#,
                "\n",
                r#"dcmon_gpu_xid_errors_total{UUID="GPU-1",gpu="3",modelName="NVIDIA H200",xid="79"} 2"#,
                "\n",
            ),
        );
        check(
            GpuReading {
                index: 4,
                state: GpuState::Lost,
                ..GpuReading::default()
            },
            "dcmon_gpu_up{gpu=\"4\"} 0\ndcmon_gpu_lost{gpu=\"4\"} 1\n",
        );
        check(
            GpuReading {
                state: GpuState::Failed("power usage: Unknown Error".into()),
                ..reading(&[(Field::FbUsed, 10.0)])
            },
            concat!(
                r#"DCGM_FI_DEV_FB_USED{UUID="GPU-1",gpu="3",modelName="NVIDIA H200"} 10"#,
                "\n",
                r#"dcmon_gpu_up{UUID="GPU-1",gpu="3",modelName="NVIDIA H200"} 0"#,
                "\n",
                r#"dcmon_gpu_lost{UUID="GPU-1",gpu="3",modelName="NVIDIA H200"} 0"#,
                "\n",
            ),
        );
    }

    #[test]
    fn every_field_has_its_own_valid_metric_name() {
        for (i, f) in Field::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i, "Field::ALL out of order at {f:?}");
        }
        // `push` rejects (in debug builds: panics on) an invalid name.
        let mut out = Vec::new();
        push_samples(&[reading(&Field::ALL.map(|f| (f, 1.0)))], &mut out);
        let mut names: Vec<&str> = out.iter().map(|s| s.labels.metric()).collect();
        assert_eq!(names.len(), FIELD_COUNT + 2);
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FIELD_COUNT + 2);
    }

    /// Eight H100s (one lost, one on a degraded link, one with a pending row remap), as
    /// `/metrics` shows them. Set `UPDATE_EXPECT=1` to rewrite `testdata/expected.prom`
    /// after an intended change.
    #[test]
    fn fixture_renders_expected_exposition() {
        let csv = std::fs::read_to_string(testdata().join("h100x8.csv")).unwrap();
        let mut readings = Vec::new();
        smi::parse(smi::QUERY, &csv, &mut readings).unwrap();
        let mut samples = Vec::new();
        push_samples(&readings, &mut samples);
        crate::collectors::check_exposition_snapshot(samples, &testdata().join("expected.prom"));
    }

    /// Collects what is logged at warn level and above.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn without_nvml_or_nvidia_smi_the_collector_is_unavailable_quietly() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = GpuConfig {
            nvml_library: Some(dir.path().join("libnvidia-ml.so.1")),
            nvidia_smi: dir.path().join("nvidia-smi"),
            ..GpuConfig::default()
        };
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let (available, collected) = tracing::subscriber::with_default(subscriber, || {
            let mut c = GpuCollector::new(&cfg);
            let mut out = Vec::new();
            let result = c.collect(&mut out);
            (c.is_available(), result.is_ok() && out.is_empty())
        });
        assert!(!available);
        assert!(collected);
        let logged = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
        assert_eq!(logged, "");
    }

    /// On the machine running the tests, whatever it has: the default configuration never
    /// panics, and an available collector reports every GPU it found.
    #[test]
    fn default_config_on_this_machine_does_not_panic() {
        let mut c = GpuCollector::new(&GpuConfig::default());
        let mut out = Vec::new();
        let result = c.collect(&mut out);
        if c.is_available() {
            let text = render(&out);
            assert!(text.contains("dcmon_gpu_up{"), "{result:?}\n{text}");
        } else {
            assert!(result.is_ok() && out.is_empty());
        }
    }

    /// The collector over a stand-in nvidia-smi that prints `csv` and exits 15, as
    /// nvidia-smi does when a GPU is lost.
    fn collector_over(dir: &std::path::Path, csv: &str) -> GpuCollector {
        use std::os::unix::fs::PermissionsExt;
        let data = dir.join("answer.csv");
        std::fs::write(&data, csv).unwrap();
        let smi = dir.join("nvidia-smi");
        std::fs::write(
            &smi,
            format!("#!/bin/sh\ncat '{}'\nexit 15\n", data.display()),
        )
        .unwrap();
        std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
        GpuCollector::new(&GpuConfig {
            nvml_library: Some(dir.join("libnvidia-ml.so.1")),
            nvidia_smi: smi,
            ..GpuConfig::default()
        })
    }

    #[test]
    fn a_lost_gpu_is_data_and_only_nothing_readable_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let csv = std::fs::read_to_string(testdata().join("h100x8.csv")).unwrap();
        let mut c = collector_over(dir.path(), &csv);
        assert!(c.is_available());
        let mut out = Vec::new();
        c.collect(&mut out).unwrap();
        let text = render(&out);
        assert!(text.contains("dcmon_gpu_lost{gpu=\"4\"} 1\n"), "{text}");
        assert_eq!(text.matches("dcmon_gpu_up{").count(), 8, "{text}");

        let dir = tempfile::tempdir().unwrap();
        let first = csv.lines().next().unwrap_or_default();
        let lost = "Unable to determine the device handle for GPU 0000:9A:00.0: GPU is lost.";
        let mut c = collector_over(dir.path(), &format!("{first}\n"));
        std::fs::write(dir.path().join("answer.csv"), format!("{lost}\n")).unwrap();
        let mut out = Vec::new();
        let err = c.collect(&mut out).unwrap_err().to_string();
        assert_eq!(
            err,
            "reading every GPU: GPU 0 has fallen off the bus; \
             check `nvidia-smi` and the kernel log (dmesg) for XID errors"
        );
        assert_eq!(
            render(&out),
            "dcmon_gpu_up{gpu=\"0\"} 0\ndcmon_gpu_lost{gpu=\"0\"} 1\n"
        );
    }

    #[test]
    fn config_defaults_round_trip_and_validate() {
        let c = GpuConfig::default();
        let yaml = serde_norway::to_string(&c).unwrap();
        assert_eq!(serde_norway::from_str::<GpuConfig>(&yaml).unwrap(), c);
        assert_eq!(c.validate(), Ok(()));
        let partial: GpuConfig =
            serde_norway::from_str("nvidia_smi: /opt/bin/nvidia-smi\n").unwrap();
        assert_eq!(partial.nvidia_smi, PathBuf::from("/opt/bin/nvidia-smi"));
        assert!(serde_norway::from_str::<GpuConfig>("nvidia_sm: x\n").is_err());
        let bad = GpuConfig {
            nvml_library: Some(PathBuf::new()),
            nvidia_smi: PathBuf::new(),
            nvidia_smi_timeout: Duration::ZERO,
        };
        assert_eq!(
            bad.validate().unwrap_err(),
            [
                "collectors.gpu.nvidia_smi: must not be empty",
                "collectors.gpu.nvml_library: must not be empty; omit it for the default",
                "collectors.gpu.nvidia_smi_timeout: must be more than 0s",
            ]
        );
    }
}
