//! Get Sensor Reading (IPMI 2.0 §35.14) and the status ipmitool derives from it.

use super::need;
use crate::CodecError;
use crate::msg::{Request, netfn};

pub fn get_sensor_reading(number: u8) -> Request {
    Request::new(netfn::SENSOR_EVENT, 0x2D, [number])
}

/// Get Sensor Reading response (§35.14, Table 35-15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SensorReading {
    pub raw: u8,
    pub scanning_enabled: bool,
    /// "Reading/state unavailable" bit: the value is meaningless.
    pub unavailable: bool,
    /// Threshold comparison bits for threshold sensors, state bits 0–7 otherwise.
    pub states: u8,
    /// State bits 8–14 of discrete sensors, when present.
    pub states_high: u8,
}

impl SensorReading {
    pub fn parse(d: &[u8]) -> Result<Self, CodecError> {
        need(d, 2, "Get Sensor Reading response")?;
        Ok(SensorReading {
            raw: d[0],
            scanning_enabled: d[1] & 0x40 != 0,
            unavailable: d[1] & 0x20 != 0,
            states: d.get(2).copied().unwrap_or(0),
            states_high: d.get(3).copied().unwrap_or(0) & 0x7F,
        })
    }

    /// Whether the reading can be shown.
    pub fn valid(&self) -> bool {
        self.scanning_enabled && !self.unavailable
    }

    /// Threshold status of a threshold sensor (bits of Table 35-15 byte 3).
    pub fn threshold_status(&self) -> ThresholdStatus {
        let s = self.states;
        if s & 0x24 != 0 {
            ThresholdStatus::NonRecoverable
        } else if s & 0x12 != 0 {
            ThresholdStatus::Critical
        } else if s & 0x09 != 0 {
            ThresholdStatus::NonCritical
        } else {
            ThresholdStatus::Ok
        }
    }
}

/// Worst threshold crossed, as ipmitool abbreviates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum ThresholdStatus {
    Ok,
    NonCritical,
    Critical,
    NonRecoverable,
}

impl ThresholdStatus {
    pub fn abbreviation(self) -> &'static str {
        match self {
            ThresholdStatus::Ok => "ok",
            ThresholdStatus::NonCritical => "nc",
            ThresholdStatus::Critical => "cr",
            ThresholdStatus::NonRecoverable => "nr",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(data: &[u8], expect: (bool, &str)) {
        let r = SensorReading::parse(data).expect("parses");
        assert_eq!(
            (r.valid(), r.threshold_status().abbreviation()),
            expect,
            "{data:?}"
        );
    }

    #[test]
    fn status_bits() {
        check(&[45, 0xC0, 0x00], (true, "ok"));
        check(&[45, 0xC0, 0x08], (true, "nc"));
        check(&[45, 0xC0, 0x18], (true, "cr"));
        check(&[45, 0xC0, 0x3F], (true, "nr"));
        check(&[3, 0xC0, 0x03], (true, "cr"));
        check(&[0, 0xE0], (false, "ok"));
        check(&[0, 0x80], (false, "ok"));
        assert!(SensorReading::parse(&[1]).is_err());
    }
}
