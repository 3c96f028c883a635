//! The unsealed samples of one head, kept compressed in memory.
//!
//! A head holds up to a chunk's worth of samples (120 by default) for every active
//! series, so its representation decides most of the store's memory per series. As
//! `(i64, f64)` pairs that is 16 B a sample plus growth slack; here a sample takes 2–4 B
//! for typical data and appending costs a few nanoseconds:
//!
//! - time: the delta-of-delta to the previous sample, zigzag varint (1 B when regular);
//! - value: a header byte, then what it says, whichever form is shortest:
//!   - `0x00`: the previous value's bits again;
//!   - `0b01ttt nnn`: the XOR with the previous value's bits, without its ttt whole
//!     trailing zero bytes, nnn + 1 bytes following, little end first;
//!   - `0b1kk zzzzz`: a decimal with k (0–3) digits after the point, as the difference
//!     of `round(value × 10^k)` to the same of the previous value, zigzag: in zzzzz when
//!     below 31, else 31 there and the rest as a varint. Chosen only when dividing the
//!     integer by 10^k gives the value's bits back, so counters, integer readings and
//!     values parsed from short decimals (40.5 °C, 1.25 kW) take 1–3 B where their XOR
//!     takes 3–8.
//!
//! Appends are in time order; the rare out-of-order insert into the head re-encodes it.
//!
//! [`SampleBuf`] is what a head appends to; [`FrozenBuf`] holds samples that never change
//! (a head's tail of sealed samples) in the encoding alone, without room to grow.

/// Most bytes one sample can take: a 10-byte varint, the value header, 8 value bytes.
const MAX_SAMPLE_BYTES: usize = 19;

/// Compressed, time-ordered samples.
///
/// 48 bytes inline (asserted in the tests): the encoding sits in a boxed slice whose
/// spare end is the room to append, so no `Vec` capacity word, and the oldest time is
/// read back from the first varint instead of being kept.
#[derive(Default, Clone)]
pub(crate) struct SampleBuf {
    /// `bytes[..used]` holds the samples; the rest is room for the next ones.
    bytes: Box<[u8]>,
    /// A head holds a few chunks' worth at most: far below 4 GiB.
    used: u32,
    len: u32,
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

/// The scales of the decimal form: up to three digits after the point.
const SCALES: [f64; 4] = [1.0, 10.0, 100.0, 1000.0];

/// `round(v × SCALES[k])`, when it is an integer that an f64 holds exactly.
fn scaled(v: f64, k: usize) -> Option<i64> {
    let s = (v * SCALES[k]).round();
    // Also false for NaN and the infinities.
    (s.abs() < 9_007_199_254_740_992.0).then_some(s as i64)
}

/// The value `v` in the decimal form after `prev`: the scale and the zigzag difference,
/// when some scale gives `v`'s bits back exactly.
fn decimal_form(prev: f64, v: f64) -> Option<(usize, u64)> {
    (0..SCALES.len()).find_map(|k| {
        let c = scaled(v, k)?;
        if ((c as f64) / SCALES[k]).to_bits() != v.to_bits() {
            return None;
        }
        // Both below 2^53 in magnitude: no overflow.
        Some((k, zigzag(c - scaled(prev, k)?)))
    })
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut [u8], pos: &mut usize, mut v: u64) {
    while v >= 0x80 {
        out[*pos] = v as u8 | 0x80;
        *pos += 1;
        v >>= 7;
    }
    out[*pos] = v as u8;
    *pos += 1;
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// The time of the first sample of an encoding (its first varint is the time itself).
fn first_time_of(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() {
        return None;
    }
    let mut it = Iter::new(bytes);
    Some(unzigzag(it.varint()))
}

impl SampleBuf {
    pub(crate) fn from_slice(samples: &[(i64, f64)]) -> Self {
        let mut b = Self::default();
        for &(t, v) in samples {
            b.push(t, v);
        }
        b.shrink();
        b
    }

    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn encoded(&self) -> &[u8] {
        &self.bytes[..self.used as usize]
    }

    /// The oldest sample's time.
    pub(crate) fn first_time(&self) -> Option<i64> {
        first_time_of(self.encoded())
    }

    /// The newest sample.
    pub(crate) fn last(&self) -> Option<(i64, f64)> {
        (self.len > 0).then(|| (self.last_t, f64::from_bits(self.last_bits)))
    }

    /// Heap bytes held.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Resizes the box to `used + spare` bytes, keeping the samples.
    fn resize(&mut self, spare: usize) {
        let used = self.used as usize;
        let mut v = std::mem::take(&mut self.bytes).into_vec();
        v.truncate(used);
        if spare == 0 {
            v.shrink_to_fit();
        } else {
            v.reserve_exact(spare);
            v.resize(v.capacity(), 0);
        }
        self.bytes = v.into_boxed_slice();
    }

    /// Gives the room to append back.
    fn shrink(&mut self) {
        if self.bytes.len() > self.used as usize {
            self.resize(0);
        }
    }

    /// Appends a sample newer than every sample held.
    pub(crate) fn push(&mut self, t: i64, v: f64) {
        debug_assert!(
            self.len == 0 || t > self.last_t,
            "appends are in time order"
        );
        let mut pos = self.used as usize;
        // Grow by a quarter (at least 32 B) rather than doubling: heads are many and small.
        if self.bytes.len() - pos < MAX_SAMPLE_BYTES {
            self.resize((pos / 4).max(32));
        }
        let out = &mut self.bytes[..];
        let bits = v.to_bits();
        if self.len == 0 {
            put_varint(out, &mut pos, zigzag(t));
            self.last_delta = 0;
        } else {
            let delta = t.wrapping_sub(self.last_t);
            put_varint(out, &mut pos, zigzag(delta.wrapping_sub(self.last_delta)));
            self.last_delta = delta;
        }
        let prev = if self.len == 0 { 0 } else { self.last_bits };
        let x = bits ^ prev;
        if x == 0 {
            out[pos] = 0;
            pos += 1;
        } else {
            let tz = x.trailing_zeros() / 8;
            let lz = x.leading_zeros() / 8;
            let n = (8 - tz - lz) as usize;
            let decimal = decimal_form(f64::from_bits(prev), v)
                .filter(|&(_, z)| z < 31 || varint_len(z - 31) < n);
            if let Some((k, z)) = decimal {
                out[pos] = 0x80 | ((k as u8) << 5) | z.min(31) as u8;
                pos += 1;
                if z >= 31 {
                    put_varint(out, &mut pos, z - 31);
                }
            } else {
                out[pos] = 0x40 | ((tz as u8) << 3) | (n as u8 - 1);
                let sig = (x >> (8 * tz)).to_le_bytes();
                out[pos + 1..pos + 1 + n].copy_from_slice(&sig[..n]);
                pos += 1 + n;
            }
        }
        self.used = pos as u32;
        self.last_t = t;
        self.last_bits = bits;
        self.len += 1;
    }

    pub(crate) fn iter(&self) -> Iter<'_> {
        Iter::new(self.encoded())
    }

    pub(crate) fn to_vec(&self) -> Vec<(i64, f64)> {
        let mut v = Vec::with_capacity(self.len());
        v.extend(self.iter());
        v
    }

    /// Appends the samples within `[start, end]` to `out`.
    pub(crate) fn read(&self, start: i64, end: i64, out: &mut Vec<(i64, f64)>) {
        if self.len == 0 || start > self.last_t {
            return;
        }
        read_into(self.iter(), start, end, out);
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

    /// The samples as a [`FrozenBuf`], without room to grow.
    pub(crate) fn freeze(mut self) -> FrozenBuf {
        self.shrink();
        FrozenBuf { bytes: self.bytes }
    }
}

fn read_into(iter: Iter<'_>, start: i64, end: i64, out: &mut Vec<(i64, f64)>) {
    for (t, v) in iter {
        if t > end {
            break;
        }
        if t >= start {
            out.push((t, v));
        }
    }
}

/// Samples that never change once built, in [`SampleBuf`]'s encoding: 16 bytes inline
/// and the encoded bytes on the heap, nothing else (what a head's tail of sealed samples
/// needs; it is read a few times, rebuilt at a seal).
#[derive(Default, Clone)]
pub(crate) struct FrozenBuf {
    bytes: Box<[u8]>,
}

impl std::fmt::Debug for FrozenBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl FrozenBuf {
    pub(crate) fn from_slice(samples: &[(i64, f64)]) -> Self {
        SampleBuf::from_slice(samples).freeze()
    }

    /// The oldest sample's time.
    pub(crate) fn first_time(&self) -> Option<i64> {
        first_time_of(&self.bytes)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(crate) fn iter(&self) -> Iter<'_> {
        Iter::new(&self.bytes)
    }

    pub(crate) fn to_vec(&self) -> Vec<(i64, f64)> {
        self.iter().collect()
    }

    /// Appends the samples within `[start, end]` to `out`.
    pub(crate) fn read(&self, start: i64, end: i64, out: &mut Vec<(i64, f64)>) {
        read_into(self.iter(), start, end, out);
    }
}

/// Decodes an encoding front to back; it ends where the bytes end.
pub(crate) struct Iter<'a> {
    bytes: &'a [u8],
    pos: usize,
    t: i64,
    delta: i64,
    bits: u64,
    first: bool,
}

impl<'a> Iter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Iter {
            bytes,
            pos: 0,
            t: 0,
            delta: 0,
            bits: 0,
            first: true,
        }
    }

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
        if self.pos >= self.bytes.len() {
            return None;
        }
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
        if header & 0x80 != 0 {
            let k = usize::from((header >> 5) & 3);
            let mut z = u64::from(header & 0x1f);
            if z == 31 {
                z += self.varint();
            }
            let c = scaled(f64::from_bits(self.bits), k)?.checked_add(unzigzag(z))?;
            self.bits = ((c as f64) / SCALES[k]).to_bits();
        } else if header != 0 {
            let tz = u32::from((header >> 3) & 7);
            let n = usize::from(header & 7) + 1;
            let mut sig = [0u8; 8];
            sig[..n].copy_from_slice(self.bytes.get(self.pos..self.pos + n)?);
            self.pos += n;
            self.bits ^= u64::from_le_bytes(sig) << (8 * tz);
        }
        Some((self.t, f64::from_bits(self.bits)))
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

    /// Bytes a sample for 120 samples of `value(i)` at a regular 10 s interval.
    fn bytes_per_sample(value: impl Fn(i64) -> f64) -> f64 {
        let s: Vec<(i64, f64)> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 10_000, value(i)))
            .collect();
        let b = SampleBuf::from_slice(&s);
        assert_eq!(b, s);
        b.heap_bytes() as f64 / 120.0
    }

    #[test]
    fn decimals_and_integers_take_the_short_form() {
        // With the XOR form alone these take 8.4, 8.1, 5.5, 3.7 and 7.7 B a sample.
        let walk = |i: i64| ((i * 7919) % 13 - 6) as f64;
        let check = |what: &str, value: &dyn Fn(i64) -> f64, most: f64| {
            let got = bytes_per_sample(value);
            assert!(
                got <= most,
                "{what}: {got:.2} B a sample, expected at most {most}"
            );
        };
        check(
            "temperature, one decimal, parsed",
            &|i| format!("{:.1}", 40.0 + walk(i) * 0.1).parse().unwrap(),
            2.2,
        );
        check(
            "power, three decimals, parsed",
            &|i| format!("{:.3}", 250.0 + walk(i) * 0.037).parse().unwrap(),
            3.3,
        );
        check(
            "byte counter, varying rate",
            &|i| (i * 1_000_003 + walk(i) as i64 * 4096) as f64,
            5.2,
        );
        check(
            "fan rpm, steps of 100",
            &|i| (4000 + 100 * (i % 3)) as f64,
            4.0,
        );
        check(
            "cpu seconds, 0.01 resolution",
            &|i| {
                format!("{:.2}", 123456.0 + i as f64 * 9.87)
                    .parse()
                    .unwrap()
            },
            4.2,
        );
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

    #[test]
    fn inline_sizes_stay_small() {
        // Every active series holds one of each: a regression here costs memory per series.
        assert_eq!(std::mem::size_of::<SampleBuf>(), 48);
        assert_eq!(std::mem::size_of::<FrozenBuf>(), 16);
    }

    #[test]
    fn frozen_keeps_the_samples_and_no_spare_room() {
        let s: Vec<(i64, f64)> = (0..40).map(|i| (i * 10, i as f64 * 0.25)).collect();
        let mut grown = SampleBuf::default();
        for &(t, v) in &s {
            grown.push(t, v);
        }
        let exact = SampleBuf::from_slice(&s).heap_bytes();
        assert!(grown.heap_bytes() > exact, "a growing buffer keeps room");
        let frozen = grown.freeze();
        assert_eq!(frozen.to_vec(), s);
        assert_eq!(frozen.bytes.len(), exact);
        assert_eq!(frozen.first_time(), Some(0));
        let mut out = Vec::new();
        frozen.read(95, 120, &mut out);
        assert_eq!(out, s[10..13].to_vec());
        assert_eq!(FrozenBuf::default().first_time(), None);
        assert!(FrozenBuf::default().to_vec().is_empty());
    }

    fn any_value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            (-1_000_000_000i64..1_000_000_000, 0u32..6)
                .prop_map(|(i, k)| i as f64 / 10f64.powi(k as i32)),
            (-1_000_000_000i64..1_000_000_000, 0usize..6).prop_map(|(i, k)| format!(
                "{:.*}",
                k,
                i as f64 * 0.001
            )
            .parse()
            .unwrap()),
            Just(-0.0),
            Just(0.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(9_007_199_254_740_993.0),
            Just(-9_007_199_254_740_992.0),
            Just(4.5e15),
            Just(f64::MIN_POSITIVE),
        ]
    }

    proptest! {
        #[test]
        fn round_trips_decimals_and_neighbours_bit_for_bit(
            values in prop::collection::vec(any_value(), 1..200),
        ) {
            let s: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, v)| (i as i64, *v)).collect();
            let b = SampleBuf::from_slice(&s);
            prop_assert!(b == s, "{:?} != {:?}", b, s);
        }

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
            prop_assert_eq!(grown.first_time(), s.first().map(|x| x.0));
            let frozen = grown.freeze().to_vec();
            prop_assert_eq!(frozen.len(), s.len());
            prop_assert!(frozen.iter().zip(&s).all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits()));
        }
    }
}
