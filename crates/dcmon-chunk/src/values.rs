//! The value column codecs (FORMAT.md § Value column).

use crate::bits::{BitReader, BitWriter};
use crate::{ChunkError, Reader, ValueCodec, corrupt, put_varint, unzigzag, zigzag};

// ---------------------------------------------------------------------------------------
// Choosing.

/// pco on decimal mantissas is tried on chunks of at least this many values: below, its
/// ~20 bytes of metadata eat what its entropy coding saves over block packing (measured
/// with `examples/measure.rs --candidates`: at 360 values it is larger on average on every
/// shape, at 1024 it is smaller on every shape) ...
pub(crate) const PCO_DECIMAL_MIN_N: usize = 1024;
/// ... or of at least this many values whose decimal column takes at most
/// [`PCO_DECIMAL_FEW_BITS`] bits a value: block packing wastes most on small residuals
/// (a temperature moving by 0 or ±1 takes 2 bits a value packed, about 1.2 entropy coded).
pub(crate) const PCO_DECIMAL_MIN_N_FEW_BITS: usize = 512;
pub(crate) const PCO_DECIMAL_FEW_BITS: usize = 3;

/// Whether pco may beat the decimal `plan` for `n` values.
fn try_pco_decimal(n: usize, plan: &DecimalPlan) -> bool {
    n >= PCO_DECIMAL_MIN_N
        || (n >= PCO_DECIMAL_MIN_N_FEW_BITS && plan.bytes * 8 <= n * PCO_DECIMAL_FEW_BITS)
}

/// pco on floats is tried on chunks of at least this many values ...
pub(crate) const PCO_FLOAT_MIN_N: usize = 64;
/// ... whose Gorilla or raw column takes at least this many bits per value.
pub(crate) const PCO_FLOAT_MIN_BITS: usize = 32;

/// Writes the value column of `values` in the smallest codec; returns it.
pub(crate) fn encode_best(values: &[f64], out: &mut Vec<u8>) -> ValueCodec {
    let n = values.len();
    let Some(first) = values.first() else {
        return ValueCodec::Constant;
    };
    if values.iter().all(|v| v.to_bits() == first.to_bits()) {
        encode_constant(*first, out);
        return ValueCodec::Constant;
    }
    let mut ks = Vec::new();
    let decimal = decimals(values, &mut ks).map(|scale| plan_decimal(&ks, scale));
    // Gorilla for floats, and for decimals where it might win (values far apart that
    // repeat, say).
    let (gorilla, close) = match decimal {
        Some(plan) if !plan.gorilla_may_win(n) => (usize::MAX, false),
        _ => gorilla_bytes(values),
    };
    let raw = 8 * n;
    let decimal_bytes = decimal.map_or(usize::MAX, |plan| plan.bytes);
    let cheap = decimal_bytes.min(gorilla).min(raw);
    let start = out.len();
    match decimal {
        Some(plan) if try_pco_decimal(n, &plan) => {
            if encode_pco_decimal(&ks, &plan, out) && out.len() - start < cheap {
                return ValueCodec::PcoDecimal;
            }
            out.truncate(start);
        }
        None if n >= PCO_FLOAT_MIN_N && cheap * 8 >= n * PCO_FLOAT_MIN_BITS => {
            if pco_compress(values, u8::from(close), out) && out.len() - start < cheap {
                return ValueCodec::PcoFloat;
            }
            out.truncate(start);
        }
        _ => {}
    }
    match decimal {
        Some(plan) if plan.bytes == cheap => {
            encode_decimal(&ks, &plan, out);
            ValueCodec::Decimal
        }
        _ if gorilla == cheap => {
            encode_gorilla(values, out);
            ValueCodec::Gorilla
        }
        _ => {
            encode_raw(values, out);
            ValueCodec::Raw
        }
    }
}

/// Writes the value column in `codec`; false (and `out` as it was) when it cannot hold
/// `values`.
pub(crate) fn encode_with(values: &[f64], codec: ValueCodec, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let Some(first) = values.first() else {
        return codec == ValueCodec::Constant;
    };
    let mut ks = Vec::new();
    let ok = match codec {
        ValueCodec::Constant => {
            let ok = values.iter().all(|v| v.to_bits() == first.to_bits());
            if ok {
                encode_constant(*first, out);
            }
            ok
        }
        ValueCodec::Decimal | ValueCodec::PcoDecimal if values.len() < 2 => false,
        ValueCodec::Decimal => match decimals(values, &mut ks) {
            Some(scale) => {
                encode_decimal(&ks, &plan_decimal(&ks, scale), out);
                true
            }
            None => false,
        },
        ValueCodec::PcoDecimal => match decimals(values, &mut ks) {
            Some(scale) => encode_pco_decimal(&ks, &plan_decimal(&ks, scale), out),
            None => false,
        },
        ValueCodec::Gorilla => {
            encode_gorilla(values, out);
            true
        }
        ValueCodec::PcoFloat => pco_compress(values, u8::from(gorilla_bytes(values).1), out),
        ValueCodec::Raw => {
            encode_raw(values, out);
            true
        }
    };
    if !ok {
        out.truncate(start);
    }
    ok
}

/// Reads a value column of `n ≥ 1` values into `out` (which has room for them); returns
/// how many bytes of `col` it took.
pub(crate) fn decode(
    codec: ValueCodec,
    col: &[u8],
    n: usize,
    out: &mut Vec<f64>,
) -> Result<usize, ChunkError> {
    debug_assert!(n >= 1);
    match codec {
        ValueCodec::Constant => {
            let (v, used) = decode_constant(col)?;
            out.resize(out.len() + n, v);
            Ok(used)
        }
        ValueCodec::Raw => {
            let Some(b) = col.get(..8 * n) else {
                return Err(crate::truncated("raw values", 8 * n, col.len()));
            };
            out.extend(
                b.chunks_exact(8)
                    .map(|b| f64::from_bits(u64::from_le_bytes(b.try_into().expect("8 bytes")))),
            );
            Ok(8 * n)
        }
        ValueCodec::Decimal => decode_decimal(col, n, out),
        ValueCodec::Gorilla => {
            // At least 64 bits, then one per further value.
            if (col.len() as u64) * 8 < 63 + n as u64 {
                return Err(crate::truncated(
                    "gorilla column",
                    (63 + n).div_ceil(8),
                    col.len(),
                ));
            }
            decode_gorilla(col, n, out)
        }
        ValueCodec::PcoDecimal => decode_pco_decimal(col, n, out).map(|()| col.len()),
        ValueCodec::PcoFloat => {
            let start = out.len();
            out.resize(start + n, 0.0);
            pco_decompress(col, n, &mut out[start..]).map(|()| col.len())
        }
    }
}

/// The constant column: the value as a decimal `k / 10^scale` when that is shorter than 8
/// bytes (the scale byte, then `zigzag(k)` as a varint), else its 8 bytes; the column's
/// length tells which.
fn encode_constant(v: f64, out: &mut Vec<u8>) {
    let mut k = Vec::new();
    if let Some(scale) = decimals(&[v], &mut k) {
        if 1 + varint_len(zigzag(k[0])) < 8 {
            out.push(scale);
            put_varint(out, zigzag(k[0]));
            return;
        }
    }
    out.extend(v.to_bits().to_le_bytes());
}

fn decode_constant(col: &[u8]) -> Result<(f64, usize), ChunkError> {
    if let Ok(bits) = <[u8; 8]>::try_from(col) {
        return Ok((f64::from_bits(u64::from_le_bytes(bits)), 8));
    }
    let mut r = Reader { buf: col, pos: 0 };
    let scale = r.take(1, "constant scale")?[0];
    if scale > MAX_SCALE {
        return Err(corrupt(format!(
            "constant column: scale {scale} out of range"
        )));
    }
    let k = unzigzag(r.varint("constant mantissa")?);
    Ok((from_mantissa(k, scale), r.pos))
}

fn encode_raw(values: &[f64], out: &mut Vec<u8>) {
    out.reserve(values.len() * 8);
    for v in values {
        out.extend(v.to_bits().to_le_bytes());
    }
}

/// Most decimal places the decimal codecs consider.
pub(crate) const MAX_SCALE: u8 = 9;
const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// Integers up to 2^53 are exact in an f64, and so is 10^d: `k / 10^d` is one correctly
/// rounded division of exact operands, the same bits on every machine.
const MAX_MANTISSA: i64 = 1 << 53;
/// Residuals per bit-packed block of the decimal codec.
pub(crate) const BLOCK: usize = 32;
/// Bits of a block's width field.
const WIDTH_BITS: u32 = 6;

// ---------------------------------------------------------------------------------------
// Exact decimals.

/// The integer `k` with `v == k / 10^scale` bit for bit, if any (|k| ≤ 2^53). `-0.0`,
/// NaNs and infinities have none. `k` is guessed (no libm call), then checked: a wrong
/// guess can only miss a decimal, never make one up.
#[inline]
fn mantissa(v: f64, scale: u8) -> Option<i64> {
    if scale == 0 {
        // `as` saturates (NaN to 0): the check below refuses what is not an integer.
        let k = v as i64;
        return (k.unsigned_abs() <= MAX_MANTISSA as u64 && (k as f64).to_bits() == v.to_bits())
            .then_some(k);
    }
    let p = POW10[usize::from(scale)];
    let x = v * p;
    let k = (x + 0.5f64.copysign(x)) as i64;
    if k.unsigned_abs() > MAX_MANTISSA as u64 {
        return None;
    }
    if (k as f64 / p).to_bits() == v.to_bits() {
        return Some(k);
    }
    // Near 2^53 the product can be a unit or two off.
    if k.unsigned_abs() < 1 << 50 {
        return None;
    }
    [k - 1, k + 1, k - 2, k + 2].into_iter().find(|&k| {
        k.unsigned_abs() <= MAX_MANTISSA as u64 && (k as f64 / p).to_bits() == v.to_bits()
    })
}

#[inline]
fn from_mantissa(k: i64, scale: u8) -> f64 {
    k as f64 / POW10[usize::from(scale)]
}

/// The smallest scale `d ≤ MAX_SCALE` at which every value is an exact decimal `k / 10^d`,
/// with the mantissas written to `ks`; `None` when there is none.
///
/// One check per value at the scale found so far; a value that needs more places raises
/// the scale (at most 9 times), and the mantissas so far are multiplied by 10 for each
/// place added: `10k / 10^(d+1)` is the same real number as `k / 10^d`, so the correctly
/// rounded quotient is the same f64.
pub(crate) fn decimals(values: &[f64], ks: &mut Vec<i64>) -> Option<u8> {
    ks.clear();
    ks.reserve(values.len());
    let mut scale = 0u8;
    for &v in values {
        let k = loop {
            if let Some(k) = mantissa(v, scale) {
                break k;
            }
            if scale == MAX_SCALE {
                return None;
            }
            scale += 1;
            for k in ks.iter_mut() {
                *k *= 10;
                if k.abs() > MAX_MANTISSA {
                    return None;
                }
            }
        };
        ks.push(k);
    }
    Some(scale)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

/// How the residuals of a decimal column are formed: the order of differences of the
/// quotients `q = (k - k0) / step`, and how a signed residual becomes unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// `q` itself, minus the smallest `q`.
    Offset = 0,
    /// Deltas of `q`, zigzag.
    Delta = 1,
    /// Deltas of deltas of `q`, zigzag.
    Delta2 = 2,
    /// Deltas of `q` minus the smallest delta (a counter at a noisy rate).
    DeltaFor = 3,
    /// Deltas of deltas minus the smallest.
    Delta2For = 4,
}

impl Variant {
    const ALL: [Variant; 5] = [
        Self::Offset,
        Self::Delta,
        Self::Delta2,
        Self::DeltaFor,
        Self::Delta2For,
    ];

    fn order(self) -> u8 {
        match self {
            Self::Offset => 0,
            Self::Delta | Self::DeltaFor => 1,
            Self::Delta2 | Self::Delta2For => 2,
        }
    }

    /// Frame of reference (minus the minimum) rather than zigzag.
    fn for_(self) -> bool {
        matches!(self, Self::Offset | Self::DeltaFor | Self::Delta2For)
    }
}

/// How a chunk of decimal mantissas is coded: FORMAT.md § Decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecimalPlan {
    pub(crate) scale: u8,
    pub(crate) variant: Variant,
    /// The common step of the mantissas (≥ 1).
    pub(crate) step: u64,
    /// The smallest residual of the variant (its frame of reference).
    pub(crate) min: i64,
    /// Exact size of the column.
    pub(crate) bytes: usize,
    /// How many values equal the one before.
    pub(crate) repeats: usize,
}

impl DecimalPlan {
    /// Whether Gorilla might be smaller: it takes 64 bits for the first value, 1 for a
    /// repeat and 3 at least for any other.
    fn gorilla_may_win(&self, n: usize) -> bool {
        let changes = n - 1 - self.repeats;
        (64 + self.repeats + 3 * changes).div_ceil(8) < self.bytes
    }

    pub(crate) fn order(&self) -> u8 {
        self.variant.order()
    }
}

fn varint_len(x: u64) -> usize {
    (64 - x.leading_zeros()).max(1).div_ceil(7) as usize
}

/// Bits of a block of `len` residuals whose OR is `or` ([`put_blocks`]).
#[inline]
fn block_bits(or: u64, len: usize) -> u64 {
    u64::from(WIDTH_BITS) + u64::from(64 - or.leading_zeros()) * len as u64
}

/// The residuals of every order of mantissas `ks` (n ≥ 2) with common step `step`, as
/// `f(q_i, delta_i, dod_i)` for i in 1..n, where `q_i = (k_i - k_0) / step`, `delta_i =
/// q_i - q_(i-1)` and `dod_i = delta_i - delta_(i-1)`, except `dod_1 = 0` (order 2 codes
/// `delta_1` in the column header, and this keeps every order at n - 1 residuals).
/// Mantissas are within ±2^53, so nothing here overflows.
#[inline]
fn residuals(ks: &[i64], step: i64, mut f: impl FnMut(i64, i64, i64)) {
    let mut q = 0i64;
    let mut prev_delta = if step == 1 {
        ks[1] - ks[0]
    } else {
        (ks[1] - ks[0]) / step
    };
    for w in ks.windows(2) {
        let delta = if step == 1 {
            w[1] - w[0]
        } else {
            (w[1] - w[0]) / step
        };
        q += delta;
        f(q, delta, delta - prev_delta);
        prev_delta = delta;
    }
}

/// The smallest coding of mantissas `ks` (n ≥ 2, at `scale`): variant and step, with its
/// exact size. Two passes: the step and the minima, then the block costs of every variant.
pub(crate) fn plan_decimal(ks: &[i64], scale: u8) -> DecimalPlan {
    debug_assert!(ks.len() >= 2);
    let k0 = ks[0];
    let mut step = 0u64;
    let (mut min0, mut min1, mut min2) = (i64::MAX, i64::MAX, 0);
    let mut prev_delta = ks[1] - k0;
    for w in ks.windows(2) {
        let delta = w[1] - w[0];
        if step != 1 && delta != 0 {
            step = gcd(step, delta.unsigned_abs());
        }
        min0 = min0.min(w[1] - k0);
        min1 = min1.min(delta);
        min2 = min2.min(delta - prev_delta);
        prev_delta = delta;
    }
    let step = step.max(1);
    let s = step as i64;
    let mins = [min0 / s, 0, 0, min1 / s, min2 / s];
    let mut bits = [0u64; 5];
    let mut ors = [0u64; 5];
    let mut len = 0;
    let mut repeats = 0;
    residuals(ks, s, |q, delta, dod| {
        repeats += usize::from(delta == 0);
        ors[0] |= (q - mins[0]) as u64;
        ors[1] |= zigzag(delta);
        ors[2] |= zigzag(dod);
        ors[3] |= (delta - mins[3]) as u64;
        ors[4] |= (dod - mins[4]) as u64;
        len += 1;
        if len == BLOCK {
            for v in 0..5 {
                bits[v] += block_bits(ors[v], BLOCK);
            }
            ors = [0; 5];
            len = 0;
        }
    });
    if len > 0 {
        for v in 0..5 {
            bits[v] += block_bits(ors[v], len);
        }
    }
    let first_delta = (ks[1] - ks[0]) / s;
    let head = 1 + varint_len(step) + varint_len(zigzag(k0));
    let (variant, bytes) = Variant::ALL
        .iter()
        .map(|&v| {
            let mut bytes = head + bits[v as usize].div_ceil(8) as usize;
            if v.order() == 2 {
                bytes += varint_len(zigzag(first_delta));
            }
            if v.for_() {
                bytes += varint_len(zigzag(mins[v as usize]));
            }
            (v, bytes)
        })
        .min_by_key(|&(_, bytes)| bytes)
        .expect("five variants");
    DecimalPlan {
        scale,
        variant,
        step,
        min: mins[variant as usize],
        bytes,
        repeats,
    }
}

/// Bit-packs `residuals` in blocks of [`BLOCK`]: each block's width `w` (6 bits, the bit
/// length of its largest residual), then its residuals in `w` bits each.
fn put_blocks(out: &mut Vec<u8>, residuals: &[u64]) {
    let mut w = BitWriter::new(out);
    for block in residuals.chunks(BLOCK) {
        let or = block.iter().fold(0, |a, &z| a | z);
        let width = 64 - or.leading_zeros();
        w.put(u64::from(width), WIDTH_BITS);
        if width > 0 {
            for &z in block {
                w.put(z, width);
            }
        }
    }
    w.finish();
}

/// Writes the decimal column for `plan`: the scale and variant byte, the step, `zigzag(k0)`,
/// for order 2 `zigzag(delta_1)`, for frames of reference `zigzag(min)` (varints), then
/// the blocks.
pub(crate) fn encode_decimal(ks: &[i64], plan: &DecimalPlan, out: &mut Vec<u8>) {
    let start = out.len();
    let step = plan.step as i64;
    let v = plan.variant;
    out.push(plan.scale | (v as u8) << 4);
    put_varint(out, plan.step);
    put_varint(out, zigzag(ks[0]));
    if v.order() == 2 {
        put_varint(out, zigzag((ks[1] - ks[0]) / step));
    }
    if v.for_() {
        put_varint(out, zigzag(plan.min));
    }
    let mut scratch = Vec::with_capacity(ks.len());
    let min = plan.min;
    residuals(ks, step, |q, delta, dod| {
        scratch.push(match v {
            Variant::Offset => (q - min) as u64,
            Variant::Delta => zigzag(delta),
            Variant::DeltaFor => (delta - min) as u64,
            Variant::Delta2 => zigzag(dod),
            Variant::Delta2For => (dod - min) as u64,
        })
    });
    put_blocks(out, &scratch);
    debug_assert_eq!(out.len() - start, plan.bytes, "{plan:?}");
}

/// Reads `n` residuals in blocks, calling `f` with each; returns the bytes they took.
fn read_blocks(col: &[u8], n: usize, mut f: impl FnMut(u64)) -> Result<usize, ChunkError> {
    let mut r = BitReader::new(col);
    let mut left = n;
    while left > 0 {
        let len = left.min(BLOCK);
        let width = r.read(WIDTH_BITS) as u32;
        if r.overrun() {
            return Err(corrupt("decimal column truncated"));
        }
        if width == 0 {
            for _ in 0..len {
                f(0);
            }
        } else {
            for _ in 0..len {
                f(r.read_wide(width));
            }
        }
        left -= len;
    }
    if r.overrun() {
        return Err(corrupt("decimal column truncated"));
    }
    Ok(r.bytes_used())
}

/// Reads a decimal column of `n ≥ 1` values into `out`; returns the bytes it took.
pub(crate) fn decode_decimal(
    col: &[u8],
    n: usize,
    out: &mut Vec<f64>,
) -> Result<usize, ChunkError> {
    let mut r = Reader { buf: col, pos: 0 };
    let head = r.take(1, "decimal column header")?[0];
    let scale = head & 0x0f;
    let Some(&v) = Variant::ALL.get(usize::from(head >> 4)) else {
        return Err(corrupt(format!(
            "decimal column: unknown variant {}",
            head >> 4
        )));
    };
    if scale > MAX_SCALE {
        return Err(corrupt(format!(
            "decimal column: scale {scale} out of range"
        )));
    }
    // Wrapping arithmetic from here: valid columns never wrap, and corrupt ones must not
    // panic.
    let step = r.varint("decimal step")? as i64;
    let k0 = unzigzag(r.varint("first mantissa")?);
    let mut delta = if v.order() == 2 {
        unzigzag(r.varint("first delta")?)
    } else {
        0
    };
    let min = if v.for_() {
        unzigzag(r.varint("decimal minimum")?)
    } else {
        0
    };
    let residual = |u: u64| {
        if v.for_() {
            min.wrapping_add(u as i64)
        } else {
            unzigzag(u)
        }
    };
    out.push(from_mantissa(k0, scale));
    let mut q = 0i64;
    let mut push = |q: i64| out.push(from_mantissa(k0.wrapping_add(q.wrapping_mul(step)), scale));
    let used = match v.order() {
        0 => read_blocks(&col[r.pos..], n - 1, |u| push(residual(u)))?,
        1 => read_blocks(&col[r.pos..], n - 1, |u| {
            q = q.wrapping_add(residual(u));
            push(q);
        })?,
        _ => read_blocks(&col[r.pos..], n - 1, |u| {
            delta = delta.wrapping_add(residual(u));
            q = q.wrapping_add(delta);
            push(q);
        })?,
    };
    Ok(r.pos + used)
}

// ---------------------------------------------------------------------------------------
// Gorilla XOR.

/// Exact size in bytes of the Gorilla column of `values` (n ≥ 1), and whether
/// consecutive values are close (their XORs have 16 leading zero bits or more on
/// average: the same sign, exponent and first mantissa bits), so that pco should code
/// their deltas.
pub(crate) fn gorilla_bytes(values: &[f64]) -> (usize, bool) {
    let mut bits = 64u64;
    let mut leading = 0u64;
    let mut prev = values[0].to_bits();
    // No window yet: lead 64 never fits.
    let (mut lead, mut trail) = (64u32, 0u32);
    for v in &values[1..] {
        let x = v.to_bits() ^ prev;
        prev = v.to_bits();
        let lz = x.leading_zeros();
        leading += u64::from(lz);
        if x == 0 {
            bits += 1;
            continue;
        }
        let tz = x.trailing_zeros();
        if lz >= lead && tz >= trail {
            bits += 2 + u64::from(64 - lead - trail);
        } else {
            bits += 2 + 12 + u64::from(64 - lz - tz);
            (lead, trail) = (lz, tz);
        }
    }
    let close = leading >= 16 * (values.len() as u64 - 1);
    (bits.div_ceil(8) as usize, close)
}

/// Writes the Gorilla column: the first value's bits, then per value `0` (same bits), or
/// `1 0` and the XOR's bits inside the last window, or `1 1`, 6 bits of leading zeros, 6
/// bits of length - 1 and the XOR's bits in that new window.
pub(crate) fn encode_gorilla(values: &[f64], out: &mut Vec<u8>) {
    let mut w = BitWriter::new(out);
    let mut prev = values[0].to_bits();
    w.put(prev, 64);
    let (mut lead, mut trail) = (64u32, 0u32);
    for v in &values[1..] {
        let x = v.to_bits() ^ prev;
        prev = v.to_bits();
        if x == 0 {
            w.put(0, 1);
            continue;
        }
        let (lz, tz) = (x.leading_zeros(), x.trailing_zeros());
        if lz >= lead && tz >= trail {
            w.put(0b01, 2);
            w.put(x >> trail, 64 - lead - trail);
        } else {
            let len = 64 - lz - tz;
            w.put(0b11 | u64::from(lz) << 2 | u64::from(len - 1) << 8, 14);
            w.put(x >> tz, len);
            (lead, trail) = (lz, tz);
        }
    }
    w.finish();
}

pub(crate) fn decode_gorilla(
    col: &[u8],
    n: usize,
    out: &mut Vec<f64>,
) -> Result<usize, ChunkError> {
    let mut r = BitReader::new(col);
    let mut prev = r.read_wide(64);
    out.push(f64::from_bits(prev));
    let (mut lead, mut trail) = (64u32, 0u32);
    for _ in 1..n {
        if r.read(1) == 1 {
            if r.read(1) == 1 {
                let lz = r.read(6) as u32;
                let len = r.read(6) as u32 + 1;
                if lz + len > 64 {
                    return Err(corrupt(format!(
                        "gorilla column: window of {lz} leading zeros and {len} bits"
                    )));
                }
                (lead, trail) = (lz, 64 - lz - len);
            } else if lead == 64 {
                return Err(corrupt("gorilla column: reuses a window before any"));
            }
            prev ^= r.read_wide(64 - lead - trail) << trail;
        }
        out.push(f64::from_bits(prev));
        if r.overrun() {
            return Err(corrupt("gorilla column truncated"));
        }
    }
    if r.overrun() {
        return Err(corrupt("gorilla column truncated"));
    }
    Ok(r.bytes_used())
}

// ---------------------------------------------------------------------------------------
// pcodec.

/// pco's compression level (0 to 12): 4 is within 0.5 % of 8 on these chunks, in half
/// the time (FORMAT.md § Choosing the value codec).
pub(crate) const PCO_LEVEL: usize = 4;

/// A wrapped pco file of one chunk of one page (header, chunk metadata, page), in pco's
/// classic mode with deltas of the given order: both picked here, since pco's own search
/// for them costs 3–10 times the compression itself on chunks this small.
pub(crate) fn pco_compress<T: pco::data_types::Number>(
    nums: &[T],
    delta_order: u8,
    out: &mut Vec<u8>,
) -> bool {
    let delta = match delta_order {
        0 => pco::DeltaSpec::NoOp,
        order => pco::DeltaSpec::TryConsecutive(usize::from(order)),
    };
    let config = pco::ChunkConfig::default()
        .with_compression_level(PCO_LEVEL)
        .with_mode_spec(pco::ModeSpec::Classic)
        .with_delta_spec(delta)
        .with_paging_spec(pco::PagingSpec::Exact(vec![nums.len()]));
    let fc = pco::wrapped::FileCompressor::default();
    let start = out.len();
    let ok = (|| -> pco::errors::PcoResult<()> {
        fc.write_header(&mut *out)?;
        let mut cc = fc.chunk_compressor(nums, &config)?;
        cc.write_meta(&mut *out)?;
        cc.write_page(0, &mut *out)?;
        Ok(())
    })()
    .is_ok();
    if !ok {
        out.truncate(start);
    }
    ok
}

/// Reads a pco column of exactly `n` numbers that fills `col`.
pub(crate) fn pco_decompress<T: pco::data_types::Number>(
    col: &[u8],
    n: usize,
    dst: &mut [T],
) -> Result<(), ChunkError> {
    debug_assert_eq!(dst.len(), n);
    let err = |e: pco::errors::PcoError| corrupt(format!("pco column: {e}"));
    let (fd, rest) = pco::wrapped::FileDecompressor::new(col).map_err(err)?;
    let (mut cd, rest) = fd.chunk_decompressor::<T, _>(rest).map_err(err)?;
    let mut pd = cd.page_decompressor(rest, n).map_err(err)?;
    let progress = pd.read(dst).map_err(err)?;
    if !progress.finished || progress.n_processed != n {
        return Err(corrupt("pco column: fewer numbers than the count"));
    }
    let rest = pd.into_src();
    if !rest.is_empty() {
        return Err(corrupt(format!(
            "pco column: {} unread bytes at the end",
            rest.len()
        )));
    }
    Ok(())
}

/// The pco-decimal column: the scale byte, the step and the first mantissa `k0` (varints),
/// then pco of `(k - k0) / step`, with the delta order of the decimal plan.
pub(crate) fn encode_pco_decimal(ks: &[i64], plan: &DecimalPlan, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let k0 = ks[0];
    let step = plan.step as i64;
    out.push(plan.scale);
    put_varint(out, plan.step);
    put_varint(out, zigzag(k0));
    let qs: Vec<i64> = ks.iter().map(|&k| (k - k0) / step).collect();
    if !pco_compress(&qs, plan.order(), out) {
        out.truncate(start);
        return false;
    }
    true
}

pub(crate) fn decode_pco_decimal(
    col: &[u8],
    n: usize,
    out: &mut Vec<f64>,
) -> Result<(), ChunkError> {
    let mut r = Reader { buf: col, pos: 0 };
    let scale = r.take(1, "pco-decimal scale")?[0];
    if scale > MAX_SCALE {
        return Err(corrupt(format!(
            "pco-decimal column: scale {scale} out of range"
        )));
    }
    let step = r.varint("pco-decimal step")? as i64;
    let k0 = unzigzag(r.varint("pco-decimal first mantissa")?);
    let mut qs = vec![0i64; n];
    pco_decompress(&col[r.pos..], n, &mut qs)?;
    out.extend(
        qs.iter()
            .map(|&q| from_mantissa(k0.wrapping_add(q.wrapping_mul(step)), scale)),
    );
    Ok(())
}
