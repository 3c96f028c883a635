//! IPMI commands as pure request builders and response parsers: each `fn` returns the
//! [`Request`](crate::msg::Request) to send, each `parse` takes the response data after
//! the completion code. [`crate::client`] strings them together over a transport.

pub mod app;
pub mod chassis;
pub mod dcmi;
pub mod sdr;
pub mod sel;
pub mod sensor;

use crate::CodecError;

/// Fails unless `data` has at least `n` bytes.
pub(crate) fn need(data: &[u8], n: usize, what: &'static str) -> Result<(), CodecError> {
    if data.len() < n {
        Err(CodecError::Truncated {
            what,
            need: n,
            got: data.len(),
        })
    } else {
        Ok(())
    }
}

pub(crate) fn u16_le(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

pub(crate) fn u32_le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
