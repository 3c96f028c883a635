//! HPE iLO: telemetry (SDR, SEL, DCMI) works as everywhere; iLO offers no fan control
//! over IPMI, so every fan request is refused up front.

use super::{FanRequestError, Vendor};

/// Shown wherever fan control would be offered.
pub const FAN_CONTROL: &str =
    "fan control is not available over IPMI on HPE iLO (use iLO's own thermal settings)";

pub fn fan_control() -> Result<(), FanRequestError> {
    Err(FanRequestError::NotAvailable(Vendor::Hpe))
}
