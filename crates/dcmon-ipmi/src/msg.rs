//! IPMI messages as carried inside LAN sessions (IPMI 2.0 §13.8, Tables 13-4 and 13-5):
//! responder and requester addresses, network function and LUN, the two checksums,
//! the requester's sequence number, the command and its data. Both directions are
//! encoded and decoded so a console and a BMC can share this module.

use crate::CodecError;
use std::fmt;

/// Network functions (IPMI 2.0 Table 5-1). Requests use the even code; the response
/// carries the same code plus one.
pub mod netfn {
    pub const CHASSIS: u8 = 0x00;
    pub const SENSOR_EVENT: u8 = 0x04;
    pub const APP: u8 = 0x06;
    pub const STORAGE: u8 = 0x0A;
    pub const TRANSPORT: u8 = 0x0C;
    /// Group extension (DCMI uses it with defining body code DCh).
    pub const GROUP_EXTENSION: u8 = 0x2C;
    /// First OEM/group network function; Supermicro and Dell fan commands live here.
    pub const OEM: u8 = 0x30;
}

/// Slave address of the BMC on IPMB (IPMI 2.0 §5.5).
pub const BMC_ADDR: u8 = 0x20;
/// Software ID used by remote consoles (IPMI 2.0 §5.5, Table 5-4: 81h, "remote console").
pub const REMOTE_CONSOLE_ADDR: u8 = 0x81;

/// A request: what a console asks of a BMC, without addressing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Request network function (even, 6 bits).
    pub netfn: u8,
    pub cmd: u8,
    pub data: Vec<u8>,
}

impl Request {
    pub fn new(netfn: u8, cmd: u8, data: impl Into<Vec<u8>>) -> Self {
        Request {
            netfn,
            cmd,
            data: data.into(),
        }
    }
}

/// A response: completion code and data, for the request's network function and command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Response network function (the request's plus one).
    pub netfn: u8,
    pub cmd: u8,
    pub completion: CompletionCode,
    pub data: Vec<u8>,
}

impl Response {
    /// The response a BMC gives to `req`.
    pub fn to(req: &Request, completion: CompletionCode, data: impl Into<Vec<u8>>) -> Self {
        Response {
            netfn: req.netfn | 1,
            cmd: req.cmd,
            completion,
            data: data.into(),
        }
    }

    /// The data when the command completed normally, else its completion code.
    pub fn ok(&self) -> Result<&[u8], CompletionCode> {
        if self.completion == CompletionCode::OK {
            Ok(&self.data)
        } else {
            Err(self.completion)
        }
    }
}

/// Completion code of a response (IPMI 2.0 §5.2, Table 5-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CompletionCode(pub u8);

impl CompletionCode {
    pub const OK: Self = Self(0x00);
    pub const NODE_BUSY: Self = Self(0xC0);
    pub const INVALID_COMMAND: Self = Self(0xC1);
    pub const INVALID_FOR_LUN: Self = Self(0xC2);
    pub const TIMEOUT: Self = Self(0xC3);
    pub const OUT_OF_SPACE: Self = Self(0xC4);
    pub const RESERVATION_CANCELLED: Self = Self(0xC5);
    pub const DATA_TRUNCATED: Self = Self(0xC6);
    pub const DATA_LENGTH_INVALID: Self = Self(0xC7);
    pub const DATA_LENGTH_EXCEEDED: Self = Self(0xC8);
    pub const PARAMETER_OUT_OF_RANGE: Self = Self(0xC9);
    pub const CANNOT_RETURN_BYTES: Self = Self(0xCA);
    pub const NOT_PRESENT: Self = Self(0xCB);
    pub const INVALID_DATA_FIELD: Self = Self(0xCC);
    pub const ILLEGAL_FOR_RECORD: Self = Self(0xCD);
    pub const NO_RESPONSE: Self = Self(0xCE);
    pub const DUPLICATE_REQUEST: Self = Self(0xCF);
    pub const SDR_UPDATE_MODE: Self = Self(0xD0);
    pub const FIRMWARE_UPDATE_MODE: Self = Self(0xD1);
    pub const BMC_INITIALIZING: Self = Self(0xD2);
    pub const DESTINATION_UNAVAILABLE: Self = Self(0xD3);
    pub const INSUFFICIENT_PRIVILEGE: Self = Self(0xD4);
    pub const NOT_SUPPORTED_IN_STATE: Self = Self(0xD5);
    pub const SUBFUNCTION_UNAVAILABLE: Self = Self(0xD6);
    pub const UNSPECIFIED: Self = Self(0xFF);

    /// The spec's name of the code, or its class for OEM and command-specific codes.
    pub fn name(self) -> &'static str {
        match self.0 {
            0x00 => "command completed normally",
            0xC0 => "node busy",
            0xC1 => "invalid command",
            0xC2 => "command invalid for given LUN",
            0xC3 => "timeout while processing command",
            0xC4 => "out of space",
            0xC5 => "reservation cancelled or invalid reservation ID",
            0xC6 => "request data truncated",
            0xC7 => "request data length invalid",
            0xC8 => "request data field length limit exceeded",
            0xC9 => "parameter out of range",
            0xCA => "cannot return number of requested data bytes",
            0xCB => "requested sensor, data, or record not present",
            0xCC => "invalid data field in request",
            0xCD => "command illegal for specified sensor or record type",
            0xCE => "command response could not be provided",
            0xCF => "cannot execute duplicated request",
            0xD0 => "SDR repository in update mode",
            0xD1 => "device in firmware update mode",
            0xD2 => "BMC initialization in progress",
            0xD3 => "destination unavailable",
            0xD4 => "insufficient privilege level",
            0xD5 => "command not supported in present state",
            0xD6 => "command sub-function disabled or unavailable",
            0xFF => "unspecified error",
            0x01..=0x7E => "OEM completion code",
            0x80..=0xBE => "command-specific completion code",
            _ => "reserved completion code",
        }
    }
}

impl fmt::Display for CompletionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02X})", self.name(), self.0)
    }
}

/// Addresses and sequence number of one exchange (IPMI 2.0 §13.8). The response
/// repeats the request's values, so one struct describes both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addressing {
    pub rs_addr: u8,
    /// 2 bits.
    pub rs_lun: u8,
    pub rq_addr: u8,
    /// 2 bits.
    pub rq_lun: u8,
    /// 6 bits; lets a console match a response to its request.
    pub rq_seq: u8,
}

impl Addressing {
    /// A remote console talking to the BMC, LUN 0.
    pub fn console_to_bmc(rq_seq: u8) -> Self {
        Addressing {
            rs_addr: BMC_ADDR,
            rs_lun: 0,
            rq_addr: REMOTE_CONSOLE_ADDR,
            rq_lun: 0,
            rq_seq: rq_seq & 0x3F,
        }
    }
}

/// Two's-complement checksum: the bytes plus it sum to zero (IPMI 2.0 §13.8).
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

fn frame(first: [u8; 2], second: [u8; 2], cmd: u8, code: Option<u8>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    out.extend_from_slice(&first);
    out.push(checksum(&first));
    out.extend_from_slice(&second);
    out.push(cmd);
    out.extend(code);
    out.extend_from_slice(data);
    out.push(checksum(&out[3..]));
    out
}

/// Splits a message into its two checksummed parts, checking both sums.
fn unframe(bytes: &[u8], min: usize) -> Result<(), CodecError> {
    if bytes.len() < min {
        return Err(CodecError::Truncated {
            what: "IPMI message",
            need: min,
            got: bytes.len(),
        });
    }
    if checksum(&bytes[..3]) != 0 {
        return Err(CodecError::Checksum {
            what: "IPMI message header",
        });
    }
    if checksum(&bytes[3..]) != 0 {
        return Err(CodecError::Checksum {
            what: "IPMI message data",
        });
    }
    Ok(())
}

/// A request as sent by a console: `rsAddr, netFn/rsLUN, chk1, rqAddr, rqSeq/rqLUN,
/// cmd, data, chk2`.
pub fn encode_request(addr: &Addressing, req: &Request) -> Vec<u8> {
    frame(
        [addr.rs_addr, (req.netfn << 2) | (addr.rs_lun & 3)],
        [addr.rq_addr, (addr.rq_seq << 2) | (addr.rq_lun & 3)],
        req.cmd,
        None,
        &req.data,
    )
}

/// Inverse of [`encode_request`], as a BMC reads it.
pub fn decode_request(bytes: &[u8]) -> Result<(Addressing, Request), CodecError> {
    unframe(bytes, 7)?;
    let addr = Addressing {
        rs_addr: bytes[0],
        rs_lun: bytes[1] & 3,
        rq_addr: bytes[3],
        rq_lun: bytes[4] & 3,
        rq_seq: bytes[4] >> 2,
    };
    let req = Request::new(bytes[1] >> 2, bytes[5], &bytes[6..bytes.len() - 1]);
    Ok((addr, req))
}

/// A response as sent by a BMC: `rqAddr, netFn/rqLUN, chk1, rsAddr, rqSeq/rsLUN, cmd,
/// completion code, data, chk2`.
pub fn encode_response(addr: &Addressing, rsp: &Response) -> Vec<u8> {
    frame(
        [addr.rq_addr, (rsp.netfn << 2) | (addr.rq_lun & 3)],
        [addr.rs_addr, (addr.rq_seq << 2) | (addr.rs_lun & 3)],
        rsp.cmd,
        Some(rsp.completion.0),
        &rsp.data,
    )
}

/// Inverse of [`encode_response`], as a console reads it.
pub fn decode_response(bytes: &[u8]) -> Result<(Addressing, Response), CodecError> {
    unframe(bytes, 8)?;
    let addr = Addressing {
        rq_addr: bytes[0],
        rq_lun: bytes[1] & 3,
        rs_addr: bytes[3],
        rs_lun: bytes[4] & 3,
        rq_seq: bytes[4] >> 2,
    };
    let rsp = Response {
        netfn: bytes[1] >> 2,
        cmd: bytes[5],
        completion: CompletionCode(bytes[6]),
        data: bytes[7..bytes.len() - 1].to_vec(),
    };
    Ok((addr, rsp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_request(seq: u8, req: Request, expect: &[u8]) {
        let bytes = encode_request(&Addressing::console_to_bmc(seq), &req);
        assert_eq!(bytes, expect);
        assert_eq!(
            decode_request(&bytes),
            Ok((Addressing::console_to_bmc(seq), req))
        );
    }

    #[test]
    fn requests_match_captured_bytes() {
        // Get Channel Authentication Capabilities as FreeIPMI sends it (channel Eh,
        // v2.0 data, operator): checksums C8h and 5Eh at rqSeq 16h.
        check_request(
            0x16,
            Request::new(netfn::APP, 0x38, [0x8E, 0x03]),
            &[0x20, 0x18, 0xC8, 0x81, 0x58, 0x38, 0x8E, 0x03, 0x5E],
        );
    }

    #[test]
    fn bad_checksums_and_short_frames_are_errors() {
        let good = encode_request(&Addressing::console_to_bmc(1), &Request::new(6, 1, []));
        let mut bad = good.clone();
        bad[2] ^= 1;
        assert!(matches!(
            decode_request(&bad),
            Err(CodecError::Checksum { .. })
        ));
        let mut bad = good.clone();
        bad[6] ^= 1;
        assert!(matches!(
            decode_request(&bad),
            Err(CodecError::Checksum { .. })
        ));
        assert!(matches!(
            decode_response(&good),
            Err(CodecError::Truncated { .. })
        ));
    }

    #[test]
    fn completion_codes_have_names() {
        assert_eq!(CompletionCode(0xC1).to_string(), "invalid command (0xC1)");
        assert_eq!(CompletionCode(0xD4).name(), "insufficient privilege level");
        assert_eq!(CompletionCode(0xCC).name(), "invalid data field in request");
        assert_eq!(
            CompletionCode(0x81).name(),
            "command-specific completion code"
        );
    }

    fn addressing() -> impl Strategy<Value = Addressing> {
        (any::<u8>(), 0u8..4, any::<u8>(), 0u8..4, 0u8..64).prop_map(
            |(rs_addr, rs_lun, rq_addr, rq_lun, rq_seq)| Addressing {
                rs_addr,
                rs_lun,
                rq_addr,
                rq_lun,
                rq_seq,
            },
        )
    }

    proptest! {
        #[test]
        fn request_round_trips(addr in addressing(), netfn in 0u8..64, cmd: u8,
                               data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let req = Request::new(netfn, cmd, data);
            prop_assert_eq!(decode_request(&encode_request(&addr, &req)), Ok((addr, req)));
        }

        #[test]
        fn response_round_trips(addr in addressing(), netfn in 0u8..64, cmd: u8, cc: u8,
                                data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let rsp = Response { netfn, cmd, completion: CompletionCode(cc), data };
            prop_assert_eq!(decode_response(&encode_response(&addr, &rsp)), Ok((addr, rsp)));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode_request(&bytes);
            let _ = decode_response(&bytes);
        }
    }
}
