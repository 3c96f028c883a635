//! Dell iDRAC fan control (DESIGN §8): manual `30 30 01 00`, automatic `30 30 01 01`,
//! all fans `30 30 02 FF <duty>`.

use crate::msg::{CompletionCode, Request, netfn};

pub const MIN_DUTY_PERCENT: u8 = 10;

pub fn manual_mode() -> Request {
    Request::new(netfn::OEM, 0x30, [0x01, 0x00])
}

/// Hands fan control back to the iDRAC. Also the fail-safe when temperatures cannot
/// be read.
pub fn automatic_mode() -> Request {
    Request::new(netfn::OEM, 0x30, [0x01, 0x01])
}

pub fn set_all_fans(duty: u8) -> Result<Request, super::FanRequestError> {
    super::check_duty(super::Vendor::Dell, duty)?;
    Ok(Request::new(netfn::OEM, 0x30, [0x02, 0xFF, duty]))
}

/// The requests for a manual duty on all fans.
pub fn manual_duty(duty: u8) -> Result<Vec<Request>, super::FanRequestError> {
    Ok(vec![manual_mode(), set_all_fans(duty)?])
}

/// What a refused manual fan command means. iDRAC 9 firmware 3.34 and later removed
/// manual fan control over IPMI and answer the OEM commands with D4h (insufficient
/// privilege) even for an administrator; older firmware without the command says C1h.
pub fn explain_refusal(code: CompletionCode) -> Option<&'static str> {
    match code {
        CompletionCode::INSUFFICIENT_PRIVILEGE => Some(
            "this iDRAC refuses manual fan control over IPMI (iDRAC 9 firmware 3.34 and later removed it); fans stay under iDRAC's automatic control",
        ),
        CompletionCode::INVALID_COMMAND => {
            Some("this iDRAC does not know Dell's fan commands (30h 30h)")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_byte_sequences() {
        assert_eq!((manual_mode().netfn, manual_mode().cmd), (0x30, 0x30));
        assert_eq!(manual_mode().data, [0x01, 0x00]);
        assert_eq!(automatic_mode().data, [0x01, 0x01]);
        assert_eq!(set_all_fans(30).expect("valid").data, [0x02, 0xFF, 30]);
        assert!(set_all_fans(5).is_err());
        assert!(explain_refusal(CompletionCode(0xD4)).is_some_and(|s| s.contains("3.34")));
        assert_eq!(explain_refusal(CompletionCode(0xCC)), None);
    }
}
