//! Vendor profiles (DESIGN §8): who made the BMC, from Get Device ID's IANA
//! manufacturer ID, and each vendor's OEM fan commands as pure request builders and
//! response interpretation. Fan-curve logic lives elsewhere.

pub mod dell;
pub mod hpe;
pub mod supermicro;

use std::fmt;

/// BMC maker, by IANA Private Enterprise Number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Vendor {
    /// 10876 (2A7Ch).
    Supermicro,
    /// 674.
    Dell,
    /// 11 (Hewlett-Packard) and 47196 (Hewlett Packard Enterprise).
    Hpe,
    Other(u32),
}

impl Vendor {
    pub fn from_manufacturer_id(id: u32) -> Self {
        match id {
            10876 => Vendor::Supermicro,
            674 => Vendor::Dell,
            11 | 47196 => Vendor::Hpe,
            other => Vendor::Other(other),
        }
    }

    /// Lowest fan duty the vendor's fans are allowed to be set to, in percent. Below
    /// it fans stall or drop under the BMC's lower-critical RPM threshold, and the BMC
    /// answers by running every fan at 100 %.
    pub fn minimum_duty_percent(self) -> Option<u8> {
        match self {
            Vendor::Supermicro => Some(supermicro::MIN_DUTY_PERCENT),
            Vendor::Dell => Some(dell::MIN_DUTY_PERCENT),
            Vendor::Hpe | Vendor::Other(_) => None,
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Vendor::Supermicro => f.write_str("Supermicro"),
            Vendor::Dell => f.write_str("Dell"),
            Vendor::Hpe => f.write_str("HPE"),
            Vendor::Other(id) => write!(f, "manufacturer {id}"),
        }
    }
}

/// A fan request the profile refuses before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FanRequestError {
    #[error("duty {duty} % is above 100 %")]
    DutyOver100 { duty: u8 },
    #[error("duty {duty} % is below {vendor}'s minimum of {minimum} %")]
    BelowMinimum {
        vendor: Vendor,
        duty: u8,
        minimum: u8,
    },
    #[error("zone {zone} does not exist (zones: {zones})")]
    NoSuchZone { zone: u8, zones: &'static str },
    #[error("fan control is not available over IPMI on {0}")]
    NotAvailable(Vendor),
}

/// Checks a requested duty against 100 % and the vendor's minimum.
pub fn check_duty(vendor: Vendor, duty: u8) -> Result<(), FanRequestError> {
    if duty > 100 {
        return Err(FanRequestError::DutyOver100 { duty });
    }
    match vendor.minimum_duty_percent() {
        Some(minimum) if duty < minimum => Err(FanRequestError::BelowMinimum {
            vendor,
            duty,
            minimum,
        }),
        _ => Ok(()),
    }
}

/// A fan as the SDR shows it: current speed and lower-critical threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct FanReading {
    pub name: String,
    pub rpm: f64,
    pub lower_critical_rpm: Option<f64>,
}

/// Fans that a change from `current_duty` to `new_duty` would likely put below their
/// lower-critical threshold, assuming speed proportional to duty. Supermicro BMCs
/// react to such a fan by running all fans at full speed, the opposite of the intent.
pub fn fans_below_lower_critical(
    fans: &[FanReading],
    current_duty: u8,
    new_duty: u8,
) -> Vec<String> {
    if current_duty == 0 {
        return Vec::new();
    }
    let scale = f64::from(new_duty) / f64::from(current_duty);
    fans.iter()
        .filter_map(|f| {
            let lcr = f.lower_critical_rpm?;
            let predicted = f.rpm * scale;
            (f.rpm > 0.0 && predicted < lcr).then(|| {
                format!(
                    "{}: {:.0} RPM at {} % would be about {:.0} RPM, below its lower-critical {:.0} RPM; the BMC would then run all fans at 100 %",
                    f.name, f.rpm, current_duty, predicted, lcr
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendors_from_iana_numbers() {
        assert_eq!(Vendor::from_manufacturer_id(0x2A7C), Vendor::Supermicro);
        assert_eq!(Vendor::from_manufacturer_id(674), Vendor::Dell);
        assert_eq!(Vendor::from_manufacturer_id(11), Vendor::Hpe);
        assert_eq!(Vendor::from_manufacturer_id(47196), Vendor::Hpe);
        assert_eq!(Vendor::from_manufacturer_id(343), Vendor::Other(343));
    }

    #[test]
    fn duty_limits() {
        assert_eq!(check_duty(Vendor::Supermicro, 50), Ok(()));
        assert!(matches!(
            check_duty(Vendor::Supermicro, 5),
            Err(FanRequestError::BelowMinimum { .. })
        ));
        assert_eq!(
            check_duty(Vendor::Dell, 101),
            Err(FanRequestError::DutyOver100 { duty: 101 })
        );
    }

    #[test]
    fn warns_for_fans_that_would_drop_below_lower_critical() {
        let fans = [
            FanReading {
                name: "FAN1".into(),
                rpm: 1800.0,
                lower_critical_rpm: Some(700.0),
            },
            FanReading {
                name: "FAN2".into(),
                rpm: 1200.0,
                lower_critical_rpm: Some(700.0),
            },
        ];
        let w = fans_below_lower_critical(&fans, 50, 25);
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("FAN2: 1200 RPM at 50 % would be about 600 RPM"));
        assert!(fans_below_lower_critical(&fans, 50, 60).is_empty());
    }
}
