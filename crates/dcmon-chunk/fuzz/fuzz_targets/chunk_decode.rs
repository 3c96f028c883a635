//! Decoding arbitrary bytes never panics nor allocates without bound: as they are (most
//! stop at the checksum), and sealed as a version-1 chunk with a matching CRC (FORMAT.md:
//! the input's bytes after the version byte, then their CRC32), so they reach the
//! timestamp and value column decoders. Whatever decodes must be a valid chunk: as many
//! values as timestamps, timestamps strictly increasing, and it must re-encode to a chunk
//! that decodes to the same samples.

#![no_main]

use dcmon_chunk::{VERSION, decode, encode, info};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    let _ = info(bytes);
    if let Ok((ts, vals)) = decode(bytes) {
        assert_eq!(ts.len(), vals.len());
        assert!(ts.windows(2).all(|w| w[0] < w[1]));
        let (ts2, vals2) = decode(&encode(&ts, &vals)).expect("a re-encoded chunk decodes");
        assert_eq!(ts, ts2);
        assert!(vals.iter().zip(&vals2).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut sealed = Vec::with_capacity(data.len() + 5);
    sealed.push(VERSION);
    sealed.extend_from_slice(data.get(1..).unwrap_or_default());
    let crc = crc32(&sealed);
    sealed.extend(crc.to_le_bytes());
    check(&sealed);
});

/// CRC32 (IEEE), bitwise: the fuzz crate does not depend on crc32fast.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
