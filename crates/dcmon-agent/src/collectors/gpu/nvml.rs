//! NVML backend: handles and XID event sets opened once, read every collection.

use super::{Field, GpuReading, GpuState};
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::event::EventSet;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id as fi;
use nvml_wrapper::{Device, Nvml};
use std::path::Path;

/// Fields read in one `nvmlDeviceGetFieldValues` call, the way dcgm reads them.
const FIELD_VALUES: [(u32, Field); 15] = [
    (fi::NVML_FI_DEV_MEMORY_TEMP, Field::MemoryTemp),
    (fi::NVML_FI_DEV_ECC_SBE_VOL_TOTAL, Field::EccSbeVolatile),
    (fi::NVML_FI_DEV_ECC_DBE_VOL_TOTAL, Field::EccDbeVolatile),
    (fi::NVML_FI_DEV_ECC_SBE_AGG_TOTAL, Field::EccSbeAggregate),
    (fi::NVML_FI_DEV_ECC_DBE_AGG_TOTAL, Field::EccDbeAggregate),
    (fi::NVML_FI_DEV_PCIE_REPLAY_COUNTER, Field::PcieReplay),
    (fi::NVML_FI_DEV_RETIRED_PENDING, Field::RetiredPending),
    (fi::NVML_FI_DEV_RETIRED_SBE, Field::RetiredSbe),
    (fi::NVML_FI_DEV_RETIRED_DBE, Field::RetiredDbe),
    (fi::NVML_FI_DEV_REMAPPED_PENDING, Field::RowRemapPending),
    (fi::NVML_FI_DEV_REMAPPED_FAILURE, Field::RowRemapFailure),
    (
        fi::NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL,
        Field::NvlinkCrcFlitErrors,
    ),
    (
        fi::NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
        Field::NvlinkCrcDataErrors,
    ),
    (
        fi::NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL,
        Field::NvlinkReplayErrors,
    ),
    (
        fi::NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,
        Field::NvlinkRecoveryErrors,
    ),
];

/// Events drained per GPU per collection at most: a GPU spewing XIDs must not keep the
/// collection from finishing; the rest wait for the next one.
const MAX_EVENTS_PER_COLLECT: usize = 64;

/// The GPUs NVML sees, opened once.
pub(super) struct NvmlGpus {
    nvml: &'static Nvml,
    handles: Vec<Option<Handle>>,
    readings: Vec<GpuReading>,
    field_ids: Vec<FieldId>,
}

/// What is kept open per GPU.
struct Handle {
    device: Device<'static>,
    /// `None` when the GPU does not deliver XID events (then `DCGM_FI_DEV_XID_ERRORS` is
    /// omitted rather than a misleading 0).
    events: Option<EventSet<'static>>,
    last_xid: u64,
    /// Maximum PCIe generation and width: fixed by the GPU and the slot, read once.
    link_gen_max: Option<f64>,
    link_width_max: Option<f64>,
}

impl NvmlGpus {
    /// Loads NVML and opens every GPU it lists. Fails when NVML cannot load or lists no
    /// GPU; a GPU that cannot be opened is kept (reported down, retried each collection).
    pub(super) fn open(library: Option<&Path>) -> Result<Self, String> {
        let mut builder = Nvml::builder();
        if let Some(lib) = library {
            builder.lib_path(lib.as_os_str());
        }
        let nvml = builder.init().map_err(|e| format!("loading NVML: {e}"))?;
        let count = nvml
            .device_count()
            .map_err(|e| format!("NVML device count: {e}"))?;
        if count == 0 {
            return Err("NVML loaded but lists no GPU".to_owned());
        }
        // Device handles and event sets borrow the library. The collector lives as long
        // as the agent, so the library is kept for the rest of the process.
        let nvml: &'static Nvml = Box::leak(Box::new(nvml));
        let mut gpus = Self {
            nvml,
            handles: Vec::new(),
            readings: Vec::new(),
            field_ids: FIELD_VALUES.iter().map(|(id, _)| FieldId(*id)).collect(),
        };
        for index in 0..count {
            let mut reading = GpuReading {
                index,
                ..GpuReading::default()
            };
            let handle = open_handle(nvml, &mut reading);
            gpus.handles.push(handle);
            gpus.readings.push(reading);
        }
        Ok(gpus)
    }

    pub(super) fn readings(&self) -> &[GpuReading] {
        &self.readings
    }

    /// Reads every GPU; one GPU's failure leaves the others' readings intact.
    pub(super) fn collect(&mut self) -> &[GpuReading] {
        for (handle, reading) in self.handles.iter_mut().zip(&mut self.readings) {
            reading.clear_values();
            if handle.is_none() {
                *handle = open_handle(self.nvml, reading);
            }
            if let Some(h) = handle {
                read_device(h, &self.field_ids, reading);
            }
        }
        &self.readings
    }
}

/// Opens GPU `reading.index`, records its identity in `reading`, registers for its XID
/// events; on failure records why in `reading.state`.
fn open_handle(nvml: &'static Nvml, reading: &mut GpuReading) -> Option<Handle> {
    let device = match nvml.device_by_index(reading.index) {
        Ok(d) => d,
        Err(e) => {
            reading.state = state_of(&e, "opening the GPU");
            return None;
        }
    };
    reading.uuid = device.uuid().unwrap_or_default();
    reading.model = device.name().unwrap_or_default();
    let events = nvml.create_event_set().ok().and_then(|set| {
        device
            .register_events(EventTypes::CRITICAL_XID_ERROR, set)
            .ok()
    });
    Some(Handle {
        link_gen_max: device.max_pcie_link_gen().ok().map(f64::from),
        link_width_max: device.max_pcie_link_width().ok().map(f64::from),
        device,
        events,
        last_xid: 0,
    })
}

/// What a failed NVML call means for the GPU's state.
fn state_of(e: &NvmlError, what: &str) -> GpuState {
    match e {
        NvmlError::GpuLost => GpuState::Lost,
        e => GpuState::Failed(format!("{what}: {e}")),
    }
}

/// Whether an error only means "this GPU or driver does not have that": omitted, no error.
fn is_absent(e: &NvmlError) -> bool {
    matches!(
        e,
        NvmlError::NotSupported
            | NvmlError::FunctionNotFound
            | NvmlError::FailedToLoadSymbol(_)
            | NvmlError::NoData
    )
}

/// The GPU has fallen off the bus: nothing more can be read from it this collection.
struct Lost;

/// Collects per-call outcomes into one reading.
struct Reader<'r> {
    reading: &'r mut GpuReading,
}

impl Reader<'_> {
    /// The value of one NVML call: `None` when unsupported or failed (the first failure
    /// is kept in the state), `Err(Lost)` when the GPU is gone.
    fn take<T>(&mut self, what: &str, r: Result<T, NvmlError>) -> Result<Option<T>, Lost> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(NvmlError::GpuLost) => {
                self.reading.state = GpuState::Lost;
                Err(Lost)
            }
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => {
                if self.reading.state == GpuState::Up {
                    self.reading.state = GpuState::Failed(format!("{what}: {e}"));
                }
                Ok(None)
            }
        }
    }

    fn set(&mut self, field: Field, value: Option<f64>) {
        if let Some(v) = value {
            self.reading.set(field, v);
        }
    }
}

fn read_device(h: &mut Handle, field_ids: &[FieldId], reading: &mut GpuReading) {
    let mut r = Reader { reading };
    if read_values(h, field_ids, &mut r).is_err() {
        // Values read before the GPU vanished are stale; report only that it is lost.
        r.reading.clear_values();
        r.reading.state = GpuState::Lost;
        return;
    }
    drain_xid_events(h, &mut r);
}

fn read_values(h: &Handle, field_ids: &[FieldId], r: &mut Reader<'_>) -> Result<(), Lost> {
    let d = &h.device;
    let temp = r.take("temperature", d.temperature(TemperatureSensor::Gpu))?;
    r.set(Field::GpuTemp, temp.map(f64::from));
    let power = r.take("power usage", d.power_usage())?;
    r.set(Field::PowerUsage, power.map(|mw| f64::from(mw) / 1000.0));
    let limit = r.take("power limit", d.power_management_limit())?;
    r.set(Field::PowerLimit, limit.map(|mw| f64::from(mw) / 1000.0));
    if let Some(u) = r.take("utilization", d.utilization_rates())? {
        r.set(Field::GpuUtil, Some(f64::from(u.gpu)));
        r.set(Field::MemCopyUtil, Some(f64::from(u.memory)));
    }
    let fan = r.take("fan speed", d.fan_speed(0))?;
    r.set(Field::FanSpeed, fan.map(f64::from));
    if let Some(m) = r.take("memory info", d.memory_info())? {
        // Whole MiB, as dcgm reports the frame buffer.
        let mib = |bytes: u64| (bytes / (1024 * 1024)) as f64;
        r.set(Field::FbUsed, Some(mib(m.used)));
        r.set(Field::FbFree, Some(mib(m.free)));
        r.set(Field::FbTotal, Some(mib(m.total)));
    }
    let sm = r.take("SM clock", d.clock_info(Clock::SM))?;
    r.set(Field::SmClock, sm.map(f64::from));
    let mem = r.take("memory clock", d.clock_info(Clock::Memory))?;
    r.set(Field::MemClock, mem.map(f64::from));
    let pstate = r.take("performance state", d.performance_state())?;
    // NVML_PSTATE_UNKNOWN (32) is omitted rather than reported as a P-state.
    r.set(
        Field::Pstate,
        pstate.map(|p| p.as_c()).filter(|p| *p <= 15).map(f64::from),
    );
    let throttle = r.take("throttle reasons", d.current_throttle_reasons())?;
    r.set(Field::ThrottleReasons, throttle.map(|t| t.bits() as f64));
    let gen_now = r.take("PCIe link generation", d.current_pcie_link_gen())?;
    r.set(Field::PcieLinkGen, gen_now.map(f64::from));
    let width_now = r.take("PCIe link width", d.current_pcie_link_width())?;
    r.set(Field::PcieLinkWidth, width_now.map(f64::from));
    r.set(Field::PcieLinkGenMax, h.link_gen_max);
    r.set(Field::PcieLinkWidthMax, h.link_width_max);
    if let Some(samples) = r.take("field values", d.field_values_for(field_ids))? {
        for ((_, field), sample) in FIELD_VALUES.iter().zip(samples) {
            let value = match sample {
                Ok(s) => s.value,
                Err(e) => Err(e),
            };
            let Some(value) = r.take(field.metric(), value.map_err(absent_when_invalid))? else {
                continue;
            };
            r.set(*field, Some(sample_f64(value)));
        }
    }
    Ok(())
}

/// A field id the driver does not know (older than the header) answers `InvalidArg`:
/// the same as not supported.
fn absent_when_invalid(e: NvmlError) -> NvmlError {
    match e {
        NvmlError::InvalidArg => NvmlError::NotSupported,
        e => e,
    }
}

fn sample_f64(v: SampleValue) -> f64 {
    match v {
        SampleValue::F64(v) => v,
        SampleValue::U32(v) => f64::from(v),
        SampleValue::U64(v) => v as f64,
        SampleValue::I64(v) => v as f64,
    }
}

/// Counts the XID events that arrived since the last collection, without waiting, and
/// logs each one.
fn drain_xid_events(h: &mut Handle, r: &mut Reader<'_>) {
    r.reading.new_xids.clear();
    let Some(events) = &h.events else {
        return;
    };
    for _ in 0..MAX_EVENTS_PER_COLLECT {
        let event = match events.wait(0) {
            Ok(e) => e,
            Err(NvmlError::Timeout) => break,
            Err(e) => {
                if r.take("XID events", Err::<(), _>(e)).is_err() {
                    r.reading.clear_values();
                    r.reading.state = GpuState::Lost;
                    return;
                }
                break;
            }
        };
        if !event.event_type.contains(EventTypes::CRITICAL_XID_ERROR) {
            continue;
        }
        match event.event_data {
            Some(XidError::Value(code)) => {
                tracing::warn!(
                    gpu = r.reading.index,
                    uuid = %r.reading.uuid,
                    xid = code,
                    "GPU reported an XID error; see NVIDIA's XID catalogue for what it means"
                );
                h.last_xid = code;
                count_xid(&mut r.reading.xid_counts, code);
                r.reading.new_xids.push(code);
            }
            Some(XidError::Unknown) | None => tracing::warn!(
                gpu = r.reading.index,
                uuid = %r.reading.uuid,
                "GPU reported an XID error without a code"
            ),
        }
    }
    r.set(Field::LastXid, Some(h.last_xid as f64));
}

/// Adds one occurrence of `code`, keeping `counts` sorted by code.
fn count_xid(counts: &mut Vec<(u64, u64)>, code: u64) {
    match counts.binary_search_by_key(&code, |(c, _)| *c) {
        Ok(i) => counts[i].1 += 1,
        Err(i) => counts.insert(i, (code, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xid_counts_stay_sorted_and_accumulate() {
        let mut counts = Vec::new();
        for code in [79, 13, 79, 48, 13, 79] {
            count_xid(&mut counts, code);
        }
        assert_eq!(counts, [(13, 2), (48, 1), (79, 3)]);
    }

    #[test]
    fn lost_and_other_errors_map_to_states() {
        let check = |e: NvmlError, expect: GpuState| assert_eq!(state_of(&e, "x"), expect);
        check(NvmlError::GpuLost, GpuState::Lost);
        check(
            NvmlError::NoPermission,
            GpuState::Failed(
                "x: the current user does not have permission to perform this operation".into(),
            ),
        );
        assert!(is_absent(&NvmlError::NotSupported));
        assert!(is_absent(&absent_when_invalid(NvmlError::InvalidArg)));
        assert!(!is_absent(&NvmlError::Unknown));
    }

    #[test]
    fn missing_library_is_a_reason_not_a_panic() {
        let err = NvmlGpus::open(Some(Path::new("/nonexistent/libnvidia-ml.so.1")))
            .err()
            .unwrap_or_default();
        assert!(err.starts_with("loading NVML: "), "{err}");
    }
}
