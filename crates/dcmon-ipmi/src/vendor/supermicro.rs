//! Supermicro X10–X13 and H11–H13 fan control (DESIGN §8; smfc documents the same
//! commands): fan mode `30 45`, zone duty `30 70 66`; X9 boards use `30 91 5A 03`.

use super::FanRequestError;
use crate::CodecError;
use crate::cmd::need;
use crate::msg::{Request, netfn};

/// Lowest duty a Supermicro zone is set to. Below about 20 % common Supermicro fans
/// drop under the BMC's default lower-critical thresholds and the BMC answers by
/// running every fan at full speed; Zephyr's homelab setting 0x18 (24 %, ~1800 RPM on
/// X10/X11 boards) has run for years just above it.
pub const MIN_DUTY_PERCENT: u8 = 20;
/// Zone 0: CPU and system fans (FAN1…); zone 1: peripheral fans (FANA…).
pub const ZONES: &str = "0 (CPU/system), 1 (peripheral)";

/// Fan modes of `30 45 01 <m>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum FanMode {
    Standard,
    Full,
    Optimal,
    HeavyIo,
    Other(u8),
}

impl FanMode {
    pub fn code(self) -> u8 {
        match self {
            FanMode::Standard => 0,
            FanMode::Full => 1,
            FanMode::Optimal => 2,
            FanMode::HeavyIo => 4,
            FanMode::Other(c) => c,
        }
    }

    pub fn from_code(c: u8) -> Self {
        match c {
            0 => FanMode::Standard,
            1 => FanMode::Full,
            2 => FanMode::Optimal,
            4 => FanMode::HeavyIo,
            c => FanMode::Other(c),
        }
    }

    /// Accepts the names of `fans.sh` and the CLI: standard, full, optimal,
    /// heavyio / heavy_io.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "standard" => FanMode::Standard,
            "full" => FanMode::Full,
            "optimal" => FanMode::Optimal,
            "heavyio" | "heavy_io" | "heavy-io" => FanMode::HeavyIo,
            _ => return None,
        })
    }

    pub fn name(self) -> String {
        match self {
            FanMode::Standard => "standard".into(),
            FanMode::Full => "full".into(),
            FanMode::Optimal => "optimal".into(),
            FanMode::HeavyIo => "heavyio".into(),
            FanMode::Other(c) => format!("unknown (0x{c:02x})"),
        }
    }
}

pub fn get_fan_mode() -> Request {
    Request::new(netfn::OEM, 0x45, [0x00])
}

pub fn parse_fan_mode(d: &[u8]) -> Result<FanMode, CodecError> {
    need(d, 1, "Supermicro fan mode response")?;
    Ok(FanMode::from_code(d[0]))
}

pub fn set_fan_mode(mode: FanMode) -> Request {
    Request::new(netfn::OEM, 0x45, [0x01, mode.code()])
}

fn check_zone(zone: u8) -> Result<(), FanRequestError> {
    if zone > 1 {
        return Err(FanRequestError::NoSuchZone { zone, zones: ZONES });
    }
    Ok(())
}

pub fn get_zone_duty(zone: u8) -> Result<Request, FanRequestError> {
    check_zone(zone)?;
    Ok(Request::new(netfn::OEM, 0x70, [0x66, 0x00, zone]))
}

/// Duty in percent.
pub fn parse_zone_duty(d: &[u8]) -> Result<u8, CodecError> {
    need(d, 1, "Supermicro zone duty response")?;
    Ok(d[0])
}

/// `30 70 66 01 <zone> <duty>`, the documented form (the Zephyr seed sent a stray
/// extra byte). The BMC applies it only in Full mode: see [`manual_duty`].
pub fn set_zone_duty(zone: u8, duty: u8) -> Result<Request, FanRequestError> {
    check_zone(zone)?;
    super::check_duty(super::Vendor::Supermicro, duty)?;
    Ok(Request::new(netfn::OEM, 0x70, [0x66, 0x01, zone, duty]))
}

/// X9 boards: `30 91 5A 03 <10h + zone> <duty 0–255>`.
pub fn set_zone_duty_x9(zone: u8, duty: u8) -> Result<Request, FanRequestError> {
    check_zone(zone)?;
    super::check_duty(super::Vendor::Supermicro, duty)?;
    let raw = (u16::from(duty) * 255).div_ceil(100) as u8;
    Ok(Request::new(
        netfn::OEM,
        0x91,
        [0x5A, 0x03, 0x10 + zone, raw],
    ))
}

/// The requests that set a zone's duty: Full mode first unless already in it, since
/// duties take effect in Full mode only.
pub fn manual_duty(
    current: Option<FanMode>,
    zone: u8,
    duty: u8,
    x9: bool,
) -> Result<Vec<Request>, FanRequestError> {
    let set = if x9 {
        set_zone_duty_x9(zone, duty)?
    } else {
        set_zone_duty(zone, duty)?
    };
    let mut out = Vec::with_capacity(2);
    if current != Some(FanMode::Full) {
        out.push(set_fan_mode(FanMode::Full));
    }
    out.push(set);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(r: &Request) -> Vec<u8> {
        let mut v = vec![r.netfn, r.cmd];
        v.extend(&r.data);
        v
    }

    #[test]
    fn design_byte_sequences() {
        assert_eq!(bytes(&get_fan_mode()), [0x30, 0x45, 0x00]);
        assert_eq!(
            bytes(&set_fan_mode(FanMode::HeavyIo)),
            [0x30, 0x45, 0x01, 4]
        );
        assert_eq!(
            bytes(&get_zone_duty(1).expect("zone 1")),
            [0x30, 0x70, 0x66, 0x00, 1]
        );
        assert_eq!(
            bytes(&set_zone_duty(0, 50).expect("valid")),
            [0x30, 0x70, 0x66, 0x01, 0, 50]
        );
        assert_eq!(
            bytes(&set_zone_duty_x9(1, 100).expect("valid")),
            [0x30, 0x91, 0x5A, 0x03, 0x11, 255]
        );
        assert!(set_zone_duty(2, 50).is_err());
        assert!(set_zone_duty(0, 10).is_err());
    }

    #[test]
    fn manual_duty_switches_to_full_first() {
        let plan = manual_duty(Some(FanMode::Optimal), 0, 40, false).expect("valid");
        assert_eq!(
            plan.iter().map(bytes).collect::<Vec<_>>(),
            [
                vec![0x30, 0x45, 0x01, 1],
                vec![0x30, 0x70, 0x66, 0x01, 0, 40]
            ]
        );
        assert_eq!(
            manual_duty(Some(FanMode::Full), 0, 40, false)
                .expect("valid")
                .len(),
            1
        );
        assert_eq!(FanMode::from_name("heavy_io"), Some(FanMode::HeavyIo));
    }
}
