//! Application commands (IPMI 2.0 §20, §22): Get Device ID, Get Channel
//! Authentication Capabilities, Set Session Privilege Level, Close Session.

use super::{need, u16_le, u32_le};
use crate::CodecError;
use crate::msg::{Request, netfn};
use crate::rakp::Privilege;
use crate::vendor::Vendor;

/// Get Device ID (§20.1).
pub fn get_device_id() -> Request {
    Request::new(netfn::APP, 0x01, [])
}

/// What Get Device ID tells (§20.1, Table 20-2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceId {
    pub device_id: u8,
    pub device_revision: u8,
    pub provides_sdrs: bool,
    pub available: bool,
    pub firmware_major: u8,
    /// BCD-encoded minor revision, as a number (`0x73` is "73").
    pub firmware_minor: u8,
    /// IPMI version, BCD: `0x02` major in the low nibble, minor in the high.
    pub ipmi_version: u8,
    pub additional: u8,
    pub manufacturer_id: u32,
    pub product_id: u16,
    pub aux_firmware: Option<[u8; 4]>,
}

impl DeviceId {
    pub fn parse(d: &[u8]) -> Result<Self, CodecError> {
        need(d, 11, "Get Device ID response")?;
        Ok(DeviceId {
            device_id: d[0],
            device_revision: d[1] & 0x0F,
            provides_sdrs: d[1] & 0x80 != 0,
            available: d[2] & 0x80 == 0,
            firmware_major: d[2] & 0x7F,
            firmware_minor: d[3],
            ipmi_version: d[4],
            additional: d[5],
            manufacturer_id: u32_le(&[d[6], d[7], d[8], 0]) & 0x0F_FFFF,
            product_id: u16_le(&d[9..]),
            aux_firmware: d.get(11..15).map(|a| [a[0], a[1], a[2], a[3]]),
        })
    }

    pub fn vendor(&self) -> Vendor {
        Vendor::from_manufacturer_id(self.manufacturer_id)
    }

    /// "1.73", as ipmitool prints the firmware revision.
    pub fn firmware(&self) -> String {
        format!("{}.{:02x}", self.firmware_major, self.firmware_minor)
    }

    /// "2.0".
    pub fn ipmi_version_string(&self) -> String {
        format!("{}.{}", self.ipmi_version & 0x0F, self.ipmi_version >> 4)
    }

    /// Names of the additional device support bits (Table 20-2, byte 6), as ipmitool
    /// prints them.
    pub fn additional_support(&self) -> Vec<&'static str> {
        const NAMES: [&str; 8] = [
            "Sensor Device",
            "SDR Repository Device",
            "SEL Device",
            "FRU Inventory Device",
            "IPMB Event Receiver",
            "IPMB Event Generator",
            "Bridge",
            "Chassis Device",
        ];
        (0..8)
            .filter(|b| self.additional & (1 << b) != 0)
            .map(|b| NAMES[b])
            .collect()
    }
}

/// Get Channel Authentication Capabilities (§22.13) for the channel in use (0Eh),
/// asking for IPMI 2.0 extended data.
pub fn get_channel_auth_capabilities(privilege: Privilege) -> Request {
    Request::new(netfn::APP, 0x38, [0x8E, privilege.code()])
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelAuthCapabilities {
    pub channel: u8,
    /// IPMI 2.0 (RMCP+) sessions supported.
    pub ipmi20: bool,
    pub anonymous_login: bool,
    pub null_users: bool,
    pub non_null_users: bool,
    /// Bit mask of IPMI 1.5 auth types (bit 0 none, 1 MD2, 2 MD5, 4 password).
    pub auth_types: u8,
}

impl ChannelAuthCapabilities {
    pub fn parse(d: &[u8]) -> Result<Self, CodecError> {
        need(d, 8, "Get Channel Authentication Capabilities response")?;
        Ok(ChannelAuthCapabilities {
            channel: d[0],
            ipmi20: d[1] & 0x80 != 0 && d[3] & 0x02 != 0,
            anonymous_login: d[2] & 0x01 != 0,
            null_users: d[2] & 0x02 != 0,
            non_null_users: d[2] & 0x04 != 0,
            auth_types: d[1] & 0x3F,
        })
    }
}

/// Set Session Privilege Level (§22.18).
pub fn set_session_privilege(privilege: Privilege) -> Request {
    Request::new(netfn::APP, 0x3B, [privilege.code()])
}

/// The privilege the BMC granted.
pub fn parse_session_privilege(d: &[u8]) -> Result<u8, CodecError> {
    need(d, 1, "Set Session Privilege Level response")?;
    Ok(d[0] & 0x0F)
}

/// Close Session (§22.19) of the BMC's session `bmc_session_id`.
pub fn close_session(bmc_session_id: u32) -> Request {
    Request::new(netfn::APP, 0x3C, bmc_session_id.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(data: &[u8], expect: (&str, Vendor, &str, u16)) {
        let id = DeviceId::parse(data).expect("parses");
        assert_eq!(
            (
                id.firmware().as_str(),
                id.vendor(),
                id.ipmi_version_string().as_str(),
                id.product_id
            ),
            expect
        );
    }

    #[test]
    fn device_id_vendors_and_versions() {
        check(
            &[
                0x20, 0x81, 0x01, 0x73, 0x02, 0xBF, 0x7C, 0x2A, 0x00, 0x12, 0x1B,
            ],
            ("1.73", Vendor::Supermicro, "2.0", 0x1B12),
        );
        check(
            &[
                0x20, 0x81, 0x03, 0x30, 0x02, 0xBF, 0xA2, 0x02, 0x00, 0x00, 0x01, 1, 2, 3, 4,
            ],
            ("3.30", Vendor::Dell, "2.0", 0x0100),
        );
        check(
            &[0, 0, 2, 0x10, 0x51, 0, 0x0B, 0, 0, 0, 0],
            ("2.10", Vendor::Hpe, "1.5", 0),
        );
        assert!(DeviceId::parse(&[0; 10]).is_err());
    }

    #[test]
    fn channel_auth_caps() {
        let caps =
            ChannelAuthCapabilities::parse(&[1, 0x95, 0x04, 0x02, 0, 0, 0, 0]).expect("parses");
        assert!(caps.ipmi20 && caps.non_null_users && !caps.anonymous_login);
        assert_eq!(caps.auth_types, 0x15);
    }
}
