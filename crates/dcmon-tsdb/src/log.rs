//! The ingest-log payload: every sample one commit group accepted, in the order it was
//! applied to the head, so replaying rows in `seq` order rebuilds the head exactly.
//!
//! Layout (see `FORMAT.md`): a version byte, then per sample the zigzag varint of the
//! series id minus the previous sample's, the zigzag varint of the timestamp minus the
//! previous sample's, and the value's IEEE-754 bits as 8 little-endian bytes. Samples of
//! one request share timestamps and run over neighbouring ids, so a sample costs 10 to 11
//! bytes and building it is a few shifts and stores: no allocation per sample.

use crate::SeriesId;

const VERSION: u8 = 1;

/// Why a log row could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("ingest log row is empty")]
    Empty,
    #[error("ingest log row has version {0}; this dcmon reads version {VERSION}")]
    Version(u8),
    #[error("ingest log row is truncated at byte {0}")]
    Truncated(usize),
}

/// Builds one log row.
pub(crate) struct LogEncoder {
    buf: Vec<u8>,
    prev_id: SeriesId,
    prev_t: i64,
}

impl LogEncoder {
    pub(crate) fn new() -> Self {
        Self {
            buf: vec![VERSION],
            prev_id: 0,
            prev_t: 0,
        }
    }

    pub(crate) fn push(&mut self, id: SeriesId, t: i64, value: f64) {
        put_varint(&mut self.buf, zigzag(id.wrapping_sub(self.prev_id)));
        put_varint(&mut self.buf, zigzag(t.wrapping_sub(self.prev_t)));
        self.buf.extend_from_slice(&value.to_bits().to_le_bytes());
        self.prev_id = id;
        self.prev_t = t;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.len() == 1
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Decodes one log row into `(series, timestamp, value)` samples.
pub fn decode(bytes: &[u8]) -> Result<Vec<(SeriesId, i64, f64)>, LogError> {
    let (&version, mut rest) = bytes.split_first().ok_or(LogError::Empty)?;
    if version != VERSION {
        return Err(LogError::Version(version));
    }
    // Each sample takes at least 10 bytes; bound the allocation by the input.
    let mut out = Vec::with_capacity(rest.len() / 10);
    let (mut id, mut t) = (0i64, 0i64);
    while !rest.is_empty() {
        let at = bytes.len() - rest.len();
        let (d_id, r) = get_varint(rest).ok_or(LogError::Truncated(at))?;
        let (d_t, r) = get_varint(r).ok_or(LogError::Truncated(at))?;
        let (bits, r) = r.split_first_chunk::<8>().ok_or(LogError::Truncated(at))?;
        id = id.wrapping_add(unzigzag(d_id));
        t = t.wrapping_add(unzigzag(d_t));
        out.push((id, t, f64::from_bits(u64::from_le_bytes(*bits))));
        rest = r;
    }
    Ok(out)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some((v, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(samples: &[(SeriesId, i64, f64)]) -> Vec<u8> {
        let mut e = LogEncoder::new();
        for &(id, t, v) in samples {
            e.push(id, t, v);
        }
        e.bytes().to_vec()
    }

    fn check(bytes: &[u8], expect: Result<usize, LogError>) {
        assert_eq!(decode(bytes).map(|s| s.len()), expect, "{bytes:?}");
    }

    #[test]
    fn bad_rows_are_errors() {
        check(&[], Err(LogError::Empty));
        check(&[2], Err(LogError::Version(2)));
        check(&[1], Ok(0));
        check(&[1, 2, 0, 0], Err(LogError::Truncated(1)));
        check(&[1, 0x80], Err(LogError::Truncated(1)));
    }

    #[test]
    fn a_request_costs_about_ten_bytes_a_sample() {
        let samples: Vec<_> = (0..2000).map(|i| (i + 1, 1_700_000_000_000, 0.5)).collect();
        let row = encode(&samples);
        assert!(row.len() <= 2000 * 10 + 8, "{}", row.len());
    }

    proptest! {
        #[test]
        fn round_trips(samples in proptest::collection::vec((any::<i64>(), any::<i64>(), any::<u64>()), 0..64)) {
            let samples: Vec<_> = samples.into_iter().map(|(id, t, b)| (id, t, f64::from_bits(b))).collect();
            let back = decode(&encode(&samples)).unwrap();
            prop_assert_eq!(back.len(), samples.len());
            for (a, b) in back.iter().zip(&samples) {
                prop_assert_eq!((a.0, a.1, a.2.to_bits()), (b.0, b.1, b.2.to_bits()));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }
    }
}
