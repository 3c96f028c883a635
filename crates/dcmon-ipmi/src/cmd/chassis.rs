//! Chassis commands (IPMI 2.0 §28): Get Chassis Status and Chassis Control.

use super::need;
use crate::CodecError;
use crate::msg::{Request, netfn};

/// Get Chassis Status (§28.2).
pub fn get_chassis_status() -> Request {
    Request::new(netfn::CHASSIS, 0x01, [])
}

/// Chassis Control actions (§28.3, Table 28-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    Off,
    On,
    Cycle,
    Reset,
    /// ACPI soft shutdown via the operating system.
    Soft,
}

impl PowerAction {
    fn code(self) -> u8 {
        match self {
            PowerAction::Off => 0x00,
            PowerAction::On => 0x01,
            PowerAction::Cycle => 0x02,
            PowerAction::Reset => 0x03,
            PowerAction::Soft => 0x05,
        }
    }

    /// The word ipmitool uses on its command line and in its answer.
    pub fn name(self) -> &'static str {
        match self {
            PowerAction::Off => "Down/Off",
            PowerAction::On => "Up/On",
            PowerAction::Cycle => "Cycle",
            PowerAction::Reset => "Reset",
            PowerAction::Soft => "Soft",
        }
    }
}

/// Chassis Control (§28.3).
pub fn chassis_control(action: PowerAction) -> Request {
    Request::new(netfn::CHASSIS, 0x02, [action.code()])
}

/// Get Chassis Status response (§28.2, Table 28-3).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChassisStatus {
    pub power_on: bool,
    pub power_overload: bool,
    pub power_interlock: bool,
    pub main_power_fault: bool,
    pub power_control_fault: bool,
    /// "always-off", "previous", "always-on" or "unknown".
    pub power_restore_policy: &'static str,
    /// Why the system last changed power state, as ipmitool names it.
    pub last_power_event: &'static str,
    pub intrusion: bool,
    pub front_panel_lockout: bool,
    pub drive_fault: bool,
    pub cooling_fault: bool,
}

impl ChassisStatus {
    pub fn parse(d: &[u8]) -> Result<Self, CodecError> {
        need(d, 3, "Get Chassis Status response")?;
        let last = d[1];
        Ok(ChassisStatus {
            power_on: d[0] & 0x01 != 0,
            power_overload: d[0] & 0x02 != 0,
            power_interlock: d[0] & 0x04 != 0,
            main_power_fault: d[0] & 0x08 != 0,
            power_control_fault: d[0] & 0x10 != 0,
            power_restore_policy: match (d[0] >> 5) & 3 {
                0 => "always-off",
                1 => "previous",
                2 => "always-on",
                _ => "unknown",
            },
            last_power_event: if last & 0x10 != 0 {
                "command"
            } else if last & 0x08 != 0 {
                "fault"
            } else if last & 0x04 != 0 {
                "interlock"
            } else if last & 0x02 != 0 {
                "overload"
            } else if last & 0x01 != 0 {
                "ac-failed"
            } else {
                ""
            },
            intrusion: d[2] & 0x01 != 0,
            front_panel_lockout: d[2] & 0x02 != 0,
            drive_fault: d[2] & 0x04 != 0,
            cooling_fault: d[2] & 0x08 != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chassis_status_bits() {
        let s = ChassisStatus::parse(&[0x41, 0x10, 0x09]).expect("parses");
        assert!(s.power_on && s.intrusion && s.cooling_fault && !s.drive_fault);
        assert_eq!(
            (s.power_restore_policy, s.last_power_event),
            ("always-on", "command")
        );
        assert!(ChassisStatus::parse(&[0x41, 0x10]).is_err());
        assert_eq!(chassis_control(PowerAction::Soft).data, [5]);
    }
}
