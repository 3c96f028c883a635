//! Errors at the crate's two boundaries: bytes that do not decode ([`CodecError`]) and
//! a conversation with a BMC that did not succeed ([`IpmiError`]).

use crate::msg::CompletionCode;
use crate::rakp::RakpStatus;
use std::time::Duration;

/// Bytes that are not what the IPMI specification says they should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("{what} truncated: need {need} bytes, got {got}")]
    Truncated {
        what: &'static str,
        need: usize,
        got: usize,
    },
    #[error("{what}: bad checksum")]
    Checksum { what: &'static str },
    #[error("{what}: unexpected value 0x{value:X}")]
    Field { what: &'static str, value: u32 },
    #[error("session packet AuthCode does not match (wrong key or altered packet)")]
    Integrity,
    #[error("encrypted payload malformed: {0}")]
    Confidentiality(&'static str),
}

/// A request to a BMC that failed. Every variant names the BMC.
#[derive(Debug, thiserror::Error)]
pub enum IpmiError {
    /// The BMC refused the user name or password, or a RAKP HMAC did not match (the
    /// password is wrong). Never retried.
    #[error("{host}: authentication failed: {reason}")]
    Authentication { host: String, reason: String },
    /// Session establishment was refused for another reason (cipher suite, privilege).
    #[error("{host}: session refused: {status}")]
    SessionRefused { host: String, status: RakpStatus },
    /// No (valid) answer within the total time budget.
    #[error("{host}: no response within {budget:?} ({attempts} attempts)")]
    Timeout {
        host: String,
        budget: Duration,
        attempts: u32,
    },
    /// The command completed with a completion code other than 00h.
    #[error("{host}: {command}: {code}")]
    Completion {
        host: String,
        command: String,
        code: CompletionCode,
    },
    /// The BMC answered with bytes that do not decode.
    #[error("{host}: malformed response: {source}")]
    Malformed {
        host: String,
        #[source]
        source: CodecError,
    },
    /// A response decoded but its content made no sense for the command.
    #[error("{host}: {command}: unexpected response: {detail}")]
    Unexpected {
        host: String,
        command: String,
        detail: String,
    },
    /// The vendor does not offer this over IPMI (HPE fan control, for one).
    #[error("{host}: {what} is not available over IPMI on {vendor}")]
    Unsupported {
        host: String,
        vendor: String,
        what: String,
    },
    #[error("{host}: {context}: {source}")]
    Io {
        host: String,
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl IpmiError {
    /// The completion code when the BMC answered with one.
    pub fn completion(&self) -> Option<CompletionCode> {
        match self {
            IpmiError::Completion { code, .. } => Some(*code),
            _ => None,
        }
    }
}
