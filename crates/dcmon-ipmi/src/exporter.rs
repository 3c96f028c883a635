//! Sensors as Prometheus's ipmi_exporter names them, so that existing dashboards work
//! whether a reading came from an agent (in-band) or from the server's BMC poller (LAN):
//! `ipmi_temperature_celsius`, `ipmi_fan_speed_rpm`, `ipmi_voltage_volts`,
//! `ipmi_current_amperes`, `ipmi_power_watts`, each with its `*_state` series
//! (0 nominal, 1 warning, 2 critical, NaN without a reading), then `ipmi_sensor_value` /
//! `ipmi_sensor_state{type}` for every other sensor. Labels `id` (SDR record ID) and
//! `name` (the sensor's ID string), plus `type` on the generic series.
//!
//! [`SensorCache`] reads the values: the SDR repository is read once and cached, as
//! reading it costs one request per 16 bytes (hundreds on a large board) while the
//! readings cost one request per sensor. It is read again when Get SDR Repository Info
//! reports another addition or erase time, or when a cached sensor answers "not
//! present" (the BMC was reflashed). [`sensor_series`] maps the values to series; it
//! does no IO.

use crate::IpmiError;
use crate::client::{self, SensorValue};
use crate::cmd::sdr::{self, SdrRecord, SensorRecord};
use crate::cmd::{sel, sensor};
use crate::msg::CompletionCode;
use crate::transport::Transport;

/// One series of one sensor: metric name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct ExporterSeries {
    pub metric: &'static str,
    /// `id`, `name` and, on the generic series, `type`.
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// The series of every sensor, in the order given.
pub fn sensor_series(values: &[SensorValue]) -> Vec<ExporterSeries> {
    let mut out = Vec::with_capacity(values.len() * 2);
    for v in values {
        push_sensor(&mut out, v);
    }
    out
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

fn push_sensor(out: &mut Vec<ExporterSeries>, v: &SensorValue) {
    let r = &v.record;
    let base = || vec![("id", r.record_id.to_string()), ("name", r.name.clone())];
    let typed = || {
        let mut l = base();
        l.push(("type", sel::sensor_type_name(r.sensor_type).to_owned()));
        l
    };
    let mut push = |metric, labels, value| {
        out.push(ExporterSeries {
            metric,
            labels,
            value,
        })
    };
    if r.is_analog() {
        let value = v.value.unwrap_or(f64::NAN);
        let state = threshold_state(v.status);
        match typed_metrics(r.unit) {
            Some((value_metric, state_metric)) => {
                push(value_metric, base(), value);
                push(state_metric, base(), state);
            }
            None => {
                push("ipmi_sensor_value", typed(), value);
                push("ipmi_sensor_state", typed(), state);
            }
        }
    } else {
        let (value, state) = match v.states {
            Some(bits) => (
                f64::from(bits),
                discrete_state(r.sensor_type, r.event_type, bits),
            ),
            None => (f64::NAN, f64::NAN),
        };
        push("ipmi_sensor_value", typed(), value);
        push("ipmi_sensor_state", typed(), state);
    }
}

/// The sensor records of one BMC, kept between reads; see the module documentation.
#[derive(Debug, Default)]
pub struct SensorCache {
    sdr: Option<Sdr>,
}

/// The cached sensor records and what identified that version of the repository.
#[derive(Debug)]
struct Sdr {
    sensors: Vec<SensorRecord>,
    /// Get SDR Repository Info bytes 1–12 (count, free space, addition and erase
    /// times); `None` when the BMC does not answer that command.
    stamp: Option<Vec<u8>>,
}

/// What one [`SensorCache::read`] found.
#[derive(Debug)]
pub struct SensorRead {
    pub values: Vec<SensorValue>,
    /// Whether the SDR repository was read (first read, or it changed).
    pub sdr_read: bool,
}

impl SensorCache {
    /// Every sensor's value; the SDR repository is read first when not cached or
    /// changed. Sensors without a reading come back with status "ns"; only transport
    /// failures and a repository that cannot be read are errors.
    pub async fn read<T: Transport>(&mut self, bmc: &T) -> Result<SensorRead, IpmiError> {
        let stamp =
            match client::call(bmc, &sdr::get_repository_info(), "Get SDR Repository Info").await {
                Ok(info) => info.get(1..13).map(<[u8]>::to_vec),
                // Without the command only a "not present" triggers a new read.
                Err(e) if e.completion().is_some() => None,
                Err(e) => return Err(e),
            };
        let (sdr, sdr_read) = match self.sdr.take() {
            Some(sdr) if stamp.is_none() || sdr.stamp == stamp => (sdr, false),
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
                (Sdr { sensors, stamp }, true)
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
            self.sdr = Some(sdr);
        }
        Ok(SensorRead { values, sdr_read })
    }

    /// Forgets the cached records, so the next read reads the repository again.
    pub fn invalidate(&mut self) {
        self.sdr = None;
    }
}

/// One sensor's reading, and whether the BMC says the sensor does not exist.
async fn read_sensor<T: Transport>(
    bmc: &T,
    s: &SensorRecord,
) -> Result<(SensorValue, bool), IpmiError> {
    if !SensorValue::readable_directly(s) {
        return Ok((SensorValue::unreadable(s), false));
    }
    let rsp = bmc.send(&sensor::get_sensor_reading(s.number)).await?;
    if rsp.completion == CompletionCode::NOT_PRESENT {
        return Ok((SensorValue::unreadable(s), true));
    }
    Ok((SensorValue::from_response(s, &rsp), false))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn threshold_states_follow_ipmi_exporter() {
        let check = |status, expect: f64| {
            let got = threshold_state(status);
            assert!(
                got == expect || (got.is_nan() && expect.is_nan()),
                "{status}"
            );
        };
        check("ok", 0.0);
        check("nc", 1.0);
        check("cr", 2.0);
        check("nr", 2.0);
        check("ns", f64::NAN);
    }
}
