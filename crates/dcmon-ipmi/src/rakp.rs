//! RMCP+ session establishment messages (IPMI 2.0 §13.17–13.23): Open Session
//! Request/Response and RAKP messages 1 to 4. Bodies only; [`crate::crypto`] computes
//! their authentication codes.
//!
//! Responses carrying an error status may be cut short by the BMC after the session
//! ID; they decode with the missing fields zeroed. Encoding always writes every field.

use crate::CodecError;
use std::fmt;

/// RMCP+ and RAKP message status codes (IPMI 2.0 §13.24, Table 13-15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RakpStatus(pub u8);

impl RakpStatus {
    pub const OK: Self = Self(0x00);
    pub const INVALID_SESSION_ID: Self = Self(0x02);
    pub const INVALID_ROLE: Self = Self(0x09);
    pub const UNAUTHORIZED_ROLE: Self = Self(0x0A);
    pub const UNAUTHORIZED_NAME: Self = Self(0x0D);
    pub const INVALID_INTEGRITY_CHECK: Self = Self(0x0F);
    pub const NO_CIPHER_SUITE_MATCH: Self = Self(0x11);

    pub fn name(self) -> &'static str {
        match self.0 {
            0x00 => "no errors",
            0x01 => "insufficient resources to create a session",
            0x02 => "invalid session ID",
            0x03 => "invalid payload type",
            0x04 => "invalid authentication algorithm",
            0x05 => "invalid integrity algorithm",
            0x06 => "no matching authentication payload",
            0x07 => "no matching integrity payload",
            0x08 => "inactive session ID",
            0x09 => "invalid role",
            0x0A => "unauthorized role or privilege level requested",
            0x0B => "insufficient resources to create a session at the requested role",
            0x0C => "invalid name length",
            0x0D => "unauthorized name",
            0x0E => "unauthorized GUID",
            0x0F => "invalid integrity check value",
            0x10 => "invalid confidentiality algorithm",
            0x11 => "no cipher suite match with proposed security algorithms",
            0x12 => "illegal or unrecognized parameter",
            _ => "reserved status code",
        }
    }

    /// Statuses that mean "this user or password is not accepted": retrying cannot help.
    pub fn is_authentication_failure(self) -> bool {
        matches!(self.0, 0x0C..=0x0F)
    }
}

impl fmt::Display for RakpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02X})", self.name(), self.0)
    }
}

/// Session privilege levels (IPMI 2.0 §6.8; codes of Table 22-24).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Privilege {
    Callback = 1,
    User = 2,
    Operator = 3,
    Administrator = 4,
    Oem = 5,
}

impl Privilege {
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code & 0x0F {
            1 => Privilege::Callback,
            2 => Privilege::User,
            3 => Privilege::Operator,
            4 => Privilege::Administrator,
            5 => Privilege::Oem,
            _ => return None,
        })
    }
}

/// Bit of RAKP 1's role byte selecting name-only user lookup (§13.20); set by
/// ipmitool and FreeIPMI, and by us.
pub const NAME_ONLY_LOOKUP: u8 = 0x10;

/// Open Session Request (§13.17), console to BMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSessionRequest {
    pub tag: u8,
    /// Requested maximum privilege; 0 asks for the highest the cipher suite allows.
    pub max_privilege: u8,
    pub console_session_id: u32,
    pub authentication: u8,
    pub integrity: u8,
    pub confidentiality: u8,
}

/// Open Session Response (§13.18), BMC to console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSessionResponse {
    pub tag: u8,
    pub status: RakpStatus,
    pub max_privilege: u8,
    pub console_session_id: u32,
    pub bmc_session_id: u32,
    pub authentication: u8,
    pub integrity: u8,
    pub confidentiality: u8,
}

/// RAKP Message 1 (§13.20), console to BMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp1 {
    pub tag: u8,
    pub bmc_session_id: u32,
    pub console_random: [u8; 16],
    /// Requested privilege with the lookup bit ([`NAME_ONLY_LOOKUP`]); enters the HMACs
    /// as sent.
    pub role: u8,
    /// At most 16 bytes.
    pub username: Vec<u8>,
}

/// RAKP Message 2 (§13.21), BMC to console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp2 {
    pub tag: u8,
    pub status: RakpStatus,
    pub console_session_id: u32,
    pub bmc_random: [u8; 16],
    pub bmc_guid: [u8; 16],
    /// Key exchange authentication code: 20 bytes (SHA-1) or 32 (SHA-256).
    pub auth_code: Vec<u8>,
}

/// RAKP Message 3 (§13.22), console to BMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp3 {
    pub tag: u8,
    pub status: RakpStatus,
    pub bmc_session_id: u32,
    pub auth_code: Vec<u8>,
}

/// RAKP Message 4 (§13.23), BMC to console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp4 {
    pub tag: u8,
    pub status: RakpStatus,
    pub console_session_id: u32,
    /// Integrity check value: 12 bytes (HMAC-SHA1-96) or 16 (HMAC-SHA256-128).
    pub integrity_check: Vec<u8>,
}

fn need(b: &[u8], n: usize, what: &'static str) -> Result<(), CodecError> {
    if b.len() < n {
        Err(CodecError::Truncated {
            what,
            need: n,
            got: b.len(),
        })
    } else {
        Ok(())
    }
}

fn u32_le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// `b[at..at + 16]`, zeros where `b` is shorter.
fn array16(b: &[u8], at: usize) -> [u8; 16] {
    let mut out = [0u8; 16];
    if let Some(src) = b.get(at..at + 16) {
        out.copy_from_slice(src);
    }
    out
}

/// The three 8-byte algorithm payloads of Open Session messages (§13.17, Table 13-17).
fn push_algorithms(out: &mut Vec<u8>, auth: u8, integrity: u8, confidentiality: u8) {
    for (kind, alg) in [(0u8, auth), (1, integrity), (2, confidentiality)] {
        out.extend_from_slice(&[kind, 0, 0, 8, alg, 0, 0, 0]);
    }
}

/// Algorithm numbers from the three payloads at `b[0..24]`; zero when absent.
fn read_algorithms(b: &[u8]) -> Result<(u8, u8, u8), CodecError> {
    if b.len() < 24 {
        return Ok((0, 0, 0));
    }
    let mut algs = [0u8; 3];
    for (kind, chunk) in b.chunks_exact(8).take(3).enumerate() {
        if usize::from(chunk[0]) != kind {
            return Err(CodecError::Field {
                what: "open session algorithm payload type",
                value: chunk[0].into(),
            });
        }
        algs[kind] = chunk[4] & 0x3F;
    }
    Ok((algs[0], algs[1], algs[2]))
}

impl OpenSessionRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.tag, self.max_privilege, 0, 0];
        out.extend_from_slice(&self.console_session_id.to_le_bytes());
        push_algorithms(
            &mut out,
            self.authentication,
            self.integrity,
            self.confidentiality,
        );
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, CodecError> {
        need(b, 32, "open session request")?;
        let (authentication, integrity, confidentiality) = read_algorithms(&b[8..])?;
        Ok(OpenSessionRequest {
            tag: b[0],
            max_privilege: b[1] & 0x0F,
            console_session_id: u32_le(&b[4..]),
            authentication,
            integrity,
            confidentiality,
        })
    }
}

impl OpenSessionResponse {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.tag, self.status.0, self.max_privilege, 0];
        out.extend_from_slice(&self.console_session_id.to_le_bytes());
        out.extend_from_slice(&self.bmc_session_id.to_le_bytes());
        push_algorithms(
            &mut out,
            self.authentication,
            self.integrity,
            self.confidentiality,
        );
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, CodecError> {
        let status = RakpStatus(*b.get(1).unwrap_or(&0));
        need(
            b,
            if status == RakpStatus::OK { 36 } else { 8 },
            "open session response",
        )?;
        let (authentication, integrity, confidentiality) =
            read_algorithms(b.get(12..).unwrap_or_default())?;
        Ok(OpenSessionResponse {
            tag: b[0],
            status,
            max_privilege: b[2] & 0x0F,
            console_session_id: u32_le(&b[4..]),
            bmc_session_id: b.get(8..12).map_or(0, u32_le),
            authentication,
            integrity,
            confidentiality,
        })
    }
}

impl Rakp1 {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.tag, 0, 0, 0];
        out.extend_from_slice(&self.bmc_session_id.to_le_bytes());
        out.extend_from_slice(&self.console_random);
        let name = &self.username[..self.username.len().min(16)];
        out.extend_from_slice(&[self.role, 0, 0, name.len() as u8]);
        out.extend_from_slice(name);
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, CodecError> {
        need(b, 28, "RAKP message 1")?;
        let len = usize::from(b[27]);
        if len > 16 {
            return Err(CodecError::Field {
                what: "RAKP 1 user name length",
                value: b[27].into(),
            });
        }
        need(b, 28 + len, "RAKP message 1 user name")?;
        Ok(Rakp1 {
            tag: b[0],
            bmc_session_id: u32_le(&b[4..]),
            console_random: array16(b, 8),
            role: b[24],
            username: b[28..28 + len].to_vec(),
        })
    }
}

impl Rakp2 {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.tag, self.status.0, 0, 0];
        out.extend_from_slice(&self.console_session_id.to_le_bytes());
        out.extend_from_slice(&self.bmc_random);
        out.extend_from_slice(&self.bmc_guid);
        out.extend_from_slice(&self.auth_code);
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, CodecError> {
        let status = RakpStatus(*b.get(1).unwrap_or(&0));
        need(
            b,
            if status == RakpStatus::OK { 40 } else { 8 },
            "RAKP message 2",
        )?;
        Ok(Rakp2 {
            tag: b[0],
            status,
            console_session_id: u32_le(&b[4..]),
            bmc_random: array16(b, 8),
            bmc_guid: array16(b, 24),
            auth_code: b.get(40..).unwrap_or_default().to_vec(),
        })
    }
}

impl Rakp3 {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.tag, self.status.0, 0, 0];
        out.extend_from_slice(&self.bmc_session_id.to_le_bytes());
        out.extend_from_slice(&self.auth_code);
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, CodecError> {
        need(b, 8, "RAKP message 3")?;
        Ok(Rakp3 {
            tag: b[0],
            status: RakpStatus(b[1]),
            bmc_session_id: u32_le(&b[4..]),
            auth_code: b[8..].to_vec(),
        })
    }
}

impl Rakp4 {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.tag, self.status.0, 0, 0];
        out.extend_from_slice(&self.console_session_id.to_le_bytes());
        out.extend_from_slice(&self.integrity_check);
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, CodecError> {
        need(b, 8, "RAKP message 4")?;
        Ok(Rakp4 {
            tag: b[0],
            status: RakpStatus(b[1]),
            console_session_id: u32_le(&b[4..]),
            integrity_check: b[8..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn open_session_request_layout() {
        let req = OpenSessionRequest {
            tag: 0,
            max_privilege: 4,
            console_session_id: 0xA0A2A3A4,
            authentication: 1,
            integrity: 1,
            confidentiality: 1,
        };
        let bytes = req.encode();
        assert_eq!(
            bytes,
            [
                0, 4, 0, 0, 0xA4, 0xA3, 0xA2, 0xA0, 0, 0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 8, 1, 0, 0, 0,
                2, 0, 0, 8, 1, 0, 0, 0
            ]
        );
        assert_eq!(OpenSessionRequest::decode(&bytes), Ok(req));
    }

    #[test]
    fn short_error_responses_decode_with_zeroed_fields() {
        let rsp = OpenSessionResponse::decode(&[3, 0x11, 0, 0, 1, 0, 0, 0]).expect("decodes");
        assert_eq!(rsp.status, RakpStatus::NO_CIPHER_SUITE_MATCH);
        assert_eq!((rsp.console_session_id, rsp.bmc_session_id), (1, 0));
        let rakp2 = Rakp2::decode(&[1, 0x0D, 0, 0, 1, 0, 0, 0]).expect("decodes");
        assert!(rakp2.status.is_authentication_failure());
        assert!(OpenSessionResponse::decode(&[3, 0, 0, 0, 1, 0, 0, 0]).is_err());
        assert!(Rakp1::decode(&[0; 27]).is_err());
        let mut long_name = [0u8; 28];
        long_name[27] = 17;
        assert!(Rakp1::decode(&long_name).is_err());
    }

    fn status() -> impl Strategy<Value = RakpStatus> {
        any::<u8>().prop_map(RakpStatus)
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    proptest! {
        #[test]
        fn open_session_round_trips(tag: u8, p in 0u8..16, c: u32, b: u32, a in 0u8..64,
                                    i in 0u8..64, k in 0u8..64, s in status()) {
            let req = OpenSessionRequest { tag, max_privilege: p, console_session_id: c,
                authentication: a, integrity: i, confidentiality: k };
            prop_assert_eq!(OpenSessionRequest::decode(&req.encode()), Ok(req));
            let rsp = OpenSessionResponse { tag, status: s, max_privilege: p,
                console_session_id: c, bmc_session_id: b, authentication: a, integrity: i,
                confidentiality: k };
            prop_assert_eq!(OpenSessionResponse::decode(&rsp.encode()), Ok(rsp));
        }

        #[test]
        fn rakp_messages_round_trip(tag: u8, s in status(), id: u32, r: [u8; 16], g: [u8; 16],
                                    role: u8, name in bytes(17), code in bytes(33)) {
            let m1 = Rakp1 { tag, bmc_session_id: id, console_random: r, role, username: name };
            prop_assert_eq!(Rakp1::decode(&m1.encode()), Ok(m1));
            let m2 = Rakp2 { tag, status: s, console_session_id: id, bmc_random: r, bmc_guid: g,
                auth_code: code.clone() };
            prop_assert_eq!(Rakp2::decode(&m2.encode()), Ok(m2));
            let m3 = Rakp3 { tag, status: s, bmc_session_id: id, auth_code: code.clone() };
            prop_assert_eq!(Rakp3::decode(&m3.encode()), Ok(m3));
            let m4 = Rakp4 { tag, status: s, console_session_id: id, integrity_check: code };
            prop_assert_eq!(Rakp4::decode(&m4.encode()), Ok(m4));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(b in bytes(64)) {
            let _ = OpenSessionRequest::decode(&b);
            let _ = OpenSessionResponse::decode(&b);
            let _ = Rakp1::decode(&b);
            let _ = Rakp2::decode(&b);
            let _ = Rakp3::decode(&b);
            let _ = Rakp4::decode(&b);
        }
    }
}
