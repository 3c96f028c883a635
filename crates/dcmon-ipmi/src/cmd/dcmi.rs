//! DCMI 1.5 Get Power Reading (DCMI 1.5 §6.6.1): network function 2Ch, group
//! extension code DCh.

use super::{need, u16_le, u32_le};
use crate::CodecError;
use crate::msg::{Request, netfn};

/// DCMI's defining body code, first byte of every DCMI request and response.
pub const DCMI_GROUP: u8 = 0xDC;

/// Get Power Reading, system power statistics mode.
pub fn get_power_reading() -> Request {
    Request::new(netfn::GROUP_EXTENSION, 0x02, [DCMI_GROUP, 0x01, 0x00, 0x00])
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PowerReading {
    pub current_watts: u16,
    pub minimum_watts: u16,
    pub maximum_watts: u16,
    pub average_watts: u16,
    /// Seconds since 1970 by the BMC's clock.
    pub timestamp: u32,
    pub period_ms: u32,
    pub active: bool,
}

impl PowerReading {
    pub fn parse(d: &[u8]) -> Result<Self, CodecError> {
        need(d, 18, "DCMI Get Power Reading response")?;
        if d[0] != DCMI_GROUP {
            return Err(CodecError::Field {
                what: "DCMI group extension code",
                value: d[0].into(),
            });
        }
        Ok(PowerReading {
            current_watts: u16_le(&d[1..]),
            minimum_watts: u16_le(&d[3..]),
            maximum_watts: u16_le(&d[5..]),
            average_watts: u16_le(&d[7..]),
            timestamp: u32_le(&d[9..]),
            period_ms: u32_le(&d[13..]),
            active: d[17] & 0x40 != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_reading() {
        let d = [
            0xDC, 0x2C, 1, 0x10, 0, 0x80, 2, 0x30, 1, 0, 0, 0, 0, 0xE8, 3, 0, 0, 0x40,
        ];
        let r = PowerReading::parse(&d).expect("parses");
        assert_eq!(
            (r.current_watts, r.minimum_watts, r.maximum_watts),
            (300, 16, 640)
        );
        assert_eq!((r.average_watts, r.period_ms, r.active), (304, 1000, true));
        assert!(PowerReading::parse(&d[..17]).is_err());
    }
}
