//! The unsealed samples of one head, kept compressed in memory.
//!
//! A head holds up to a chunk's worth of samples (120 by default) for every active
//! series, so its representation decides most of the store's memory per series. As
//! `(i64, f64)` pairs that is 16 B a sample plus growth slack; here a sample takes 2–4 B
//! for typical data and appending costs a few nanoseconds:
//!
//! - time: the delta-of-delta to the previous sample, zigzag varint (1 B when regular);
//! - value: the XOR with the previous value's bits; `0x00` when equal, else a header
//!   byte `0b01ttt nnn` (ttt = whole trailing zero bytes, nnn + 1 = bytes that follow)
//!   and the significant bytes, little end first.
//!
//! Appends are in time order; the rare out-of-order insert into the head re-encodes it.

/// Compressed, time-ordered samples.
#[derive(Default, Clone)]
pub(crate) struct SampleBuf {
    bytes: Vec<u8>,
    len: u32,
    first_t: i64,
    last_t: i64,
    last_delta: i64,
    last_bits: u64,
}

impl std::fmt::Debug for SampleBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq<Vec<(i64, f64)>> for SampleBuf {
    fn eq(&self, other: &Vec<(i64, f64)>) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .zip(other)
                .all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits())
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

impl SampleBuf {
    pub(crate) fn from_slice(samples: &[(i64, f64)]) -> Self {
        let mut b = Self::default();
        for &(t, v) in samples {
            b.push(t, v);
        }
        b.bytes.shrink_to_fit();
        b
    }

    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The oldest sample's time.
    pub(crate) fn first_time(&self) -> Option<i64> {
        (self.len > 0).then_some(self.first_t)
    }

    /// The newest sample.
    pub(crate) fn last(&self) -> Option<(i64, f64)> {
        (self.len > 0).then(|| (self.last_t, f64::from_bits(self.last_bits)))
    }

    /// Heap bytes held.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    /// Appends a sample newer than every sample held.
    pub(crate) fn push(&mut self, t: i64, v: f64) {
        debug_assert!(
            self.len == 0 || t > self.last_t,
            "appends are in time order"
        );
        // Grow by a quarter (at least 32 B) rather than doubling: heads are many and small.
        if self.bytes.capacity() - self.bytes.len() < 20 {
            let more = (self.bytes.len() / 4).max(32);
            self.bytes.reserve_exact(more);
        }
        let bits = v.to_bits();
        if self.len == 0 {
            put_varint(&mut self.bytes, zigzag(t));
            self.first_t = t;
            self.last_delta = 0;
        } else {
            let delta = t.wrapping_sub(self.last_t);
            put_varint(&mut self.bytes, zigzag(delta.wrapping_sub(self.last_delta)));
            self.last_delta = delta;
        }
        let x = bits ^ if self.len == 0 { 0 } else { self.last_bits };
        if x == 0 {
            self.bytes.push(0);
        } else {
            let tz = x.trailing_zeros() / 8;
            let lz = x.leading_zeros() / 8;
            let n = 8 - tz - lz;
            self.bytes.push(0x40 | ((tz as u8) << 3) | (n as u8 - 1));
            let sig = (x >> (8 * tz)).to_le_bytes();
            self.bytes.extend_from_slice(&sig[..n as usize]);
        }
        self.last_t = t;
        self.last_bits = bits;
        self.len += 1;
    }

    pub(crate) fn iter(&self) -> Iter<'_> {
        Iter {
            bytes: &self.bytes,
            pos: 0,
            left: self.len,
            t: 0,
            delta: 0,
            bits: 0,
            first: true,
        }
    }

    pub(crate) fn to_vec(&self) -> Vec<(i64, f64)> {
        let mut v = Vec::with_capacity(self.len());
        v.extend(self.iter());
        v
    }

    /// Appends the samples within `[start, end]` to `out`.
    pub(crate) fn read(&self, start: i64, end: i64, out: &mut Vec<(i64, f64)>) {
        if self.len == 0 || end < self.first_t || start > self.last_t {
            return;
        }
        for (t, v) in self.iter() {
            if t > end {
                break;
            }
            if t >= start {
                out.push((t, v));
            }
        }
    }

    /// Rebuilds the buffer from `samples` (ascending).
    pub(crate) fn replace(&mut self, samples: &[(i64, f64)]) {
        *self = Self::from_slice(samples);
    }

    /// Drops the oldest `n` samples.
    pub(crate) fn drain_front(&mut self, n: usize) {
        if n >= self.len() {
            *self = Self::default();
        } else if n > 0 {
            let rest: Vec<(i64, f64)> = self.iter().skip(n).collect();
            self.replace(&rest);
        }
    }
}

pub(crate) struct Iter<'a> {
    bytes: &'a [u8],
    pos: usize,
    left: u32,
    t: i64,
    delta: i64,
    bits: u64,
    first: bool,
}

impl Iter<'_> {
    fn varint(&mut self) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        while let Some(&b) = self.bytes.get(self.pos) {
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        v
    }
}

impl Iterator for Iter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let raw = unzigzag(self.varint());
        if self.first {
            self.t = raw;
            self.first = false;
        } else {
            self.delta = self.delta.wrapping_add(raw);
            self.t = self.t.wrapping_add(self.delta);
        }
        let header = *self.bytes.get(self.pos)?;
        self.pos += 1;
        if header != 0 {
            let tz = u32::from((header >> 3) & 7);
            let n = usize::from(header & 7) + 1;
            let mut sig = [0u8; 8];
            sig[..n].copy_from_slice(self.bytes.get(self.pos..self.pos + n)?);
            self.pos += n;
            self.bits ^= u64::from_le_bytes(sig) << (8 * tz);
        }
        Some((self.t, f64::from_bits(self.bits)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn typical_series_are_small() {
        let counter: Vec<(i64, f64)> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 10_000, (i * 37) as f64))
            .collect();
        let b = SampleBuf::from_slice(&counter);
        assert_eq!(b, counter);
        assert!(b.heap_bytes() <= 120 * 5, "{} B", b.heap_bytes());
        let constant: Vec<(i64, f64)> = (0..120).map(|i| (i * 10_000, 1.0)).collect();
        assert!(SampleBuf::from_slice(&constant).heap_bytes() <= 120 * 2 + 16);
    }

    #[test]
    fn drain_and_read() {
        let s: Vec<(i64, f64)> = (0..10).map(|i| (i * 10, i as f64 * 0.5)).collect();
        let mut b = SampleBuf::from_slice(&s);
        let mut out = Vec::new();
        b.read(25, 60, &mut out);
        assert_eq!(out, s[3..7].to_vec());
        b.drain_front(4);
        assert_eq!(b, s[4..].to_vec());
        assert_eq!(b.first_time(), Some(40));
        assert_eq!(b.last(), Some((90, 4.5)));
        b.push(100, f64::NAN);
        assert_eq!(b.len(), 7);
        b.drain_front(7);
        assert!(b.is_empty() && b.last().is_none());
    }

    proptest! {
        #[test]
        fn round_trips_any_bits(
            start in any::<i64>(),
            deltas in prop::collection::vec(1i64..1_000_000_000, 0..200),
            values in prop::collection::vec(any::<u64>(), 200),
        ) {
            let mut t = start / 2;
            let mut s = Vec::new();
            for (d, v) in deltas.iter().zip(&values) {
                s.push((t, f64::from_bits(*v)));
                t = t.saturating_add(*d);
            }
            s.dedup_by_key(|x| x.0);
            let b = SampleBuf::from_slice(&s);
            prop_assert!(b == s);
            let mut grown = SampleBuf::default();
            for (t, v) in &s {
                grown.push(*t, *v);
            }
            prop_assert!(grown == s);
        }
    }
}
