//! SDR sensor values as curve inputs: temperatures with their kind, fan speeds with their
//! zone. One conversion for the agent's in-band loop and the server's agentless loop.

use super::{FanRpm, Reading, SensorKind};
use crate::client::SensorValue;
use crate::vendor::Vendor;

/// IPMI sensor type codes (IPMI 2.0 table 42-3).
const SENSOR_TEMPERATURE: u8 = 0x01;
const SENSOR_FAN: u8 = 0x04;
/// Entity IDs (IPMI 2.0 table 43-13): processor.
const ENTITY_PROCESSOR: u8 = 0x03;

/// The temperatures and fan speeds among `values`, read at `at_ms`. Sensors without a
/// reading are left out (a zone whose sensors all lack one goes to fail-safe).
pub fn from_sensors(
    values: &[SensorValue],
    vendor: Vendor,
    at_ms: i64,
) -> (Vec<Reading>, Vec<FanRpm>) {
    let mut temps = Vec::new();
    let mut fans = Vec::new();
    for v in values {
        let Some(value) = v.value else { continue };
        let r = &v.record;
        match r.sensor_type {
            SENSOR_TEMPERATURE => temps.push(Reading {
                name: r.name.clone(),
                kind: if r.entity_id == ENTITY_PROCESSOR || is_cpu_name(&r.name) {
                    SensorKind::CpuTemp
                } else {
                    SensorKind::Other
                },
                celsius: value,
                at_ms,
            }),
            SENSOR_FAN => fans.push(FanRpm {
                name: r.name.clone(),
                zone: fan_zone(vendor, &r.name),
                rpm: value,
                at_ms,
            }),
            _ => {}
        }
    }
    (temps, fans)
}

/// `CPU Temp`, `CPU1 Temp`, `CPU2 Temp`, `Proc 1 Temp`: BMCs that give every sensor the
/// system board as its entity still name processor temperatures so.
fn is_cpu_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("cpu") || n.starts_with("proc") || n.contains(" cpu")
}

/// Supermicro names zone 0's fans FAN1, FAN2, ... and zone 1's FANA, FANB, ...
fn fan_zone(vendor: Vendor, name: &str) -> Option<u8> {
    if vendor != Vendor::Supermicro {
        return None;
    }
    let rest = name.strip_prefix("FAN")?;
    match rest.chars().next()? {
        c if c.is_ascii_digit() => Some(0),
        c if c.is_ascii_alphabetic() => Some(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fan_zones_and_cpu_names() {
        let check = |name: &str, zone: Option<u8>| {
            assert_eq!(fan_zone(Vendor::Supermicro, name), zone, "{name}")
        };
        check("FAN1", Some(0));
        check("FAN12", Some(0));
        check("FANA", Some(1));
        check("FANB", Some(1));
        check("PSU FAN", None);
        assert_eq!(fan_zone(Vendor::Dell, "FAN1"), None);
        for (name, cpu) in [
            ("CPU Temp", true),
            ("CPU1 Temp", true),
            ("Proc 1 Temp", true),
            ("Inlet Temp", false),
            ("System Temp", false),
            ("PCH Temp", false),
        ] {
            assert_eq!(is_cpu_name(name), cpu, "{name}");
        }
    }
}
