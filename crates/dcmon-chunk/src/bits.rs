//! Bit streams packed from the least significant end: bit `i` of the stream is bit `i % 8`
//! of byte `i / 8`, and a field of `w` bits is written least significant bit first (so a
//! field read as a little-endian integer from the stream is its value).

/// Appends bits to a byte vector; [`BitWriter::finish`] pads the last byte with zeros.
pub(crate) struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    /// Bits held in `acc`, 0 to 63.
    held: u32,
}

impl<'a> BitWriter<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        Self {
            out,
            acc: 0,
            held: 0,
        }
    }

    /// Appends the low `width` bits of `value` (`width` ≤ 64; higher bits are ignored).
    #[inline]
    pub(crate) fn put(&mut self, value: u64, width: u32) {
        debug_assert!(width <= 64);
        if width == 0 {
            return;
        }
        let value = if width < 64 {
            value & ((1u64 << width) - 1)
        } else {
            value
        };
        self.acc |= value << self.held;
        let total = self.held + width;
        if total >= 64 {
            self.out.extend_from_slice(&self.acc.to_le_bytes());
            // The bits of `value` that did not fit (none when `held` was 0).
            self.acc = if self.held == 0 {
                0
            } else {
                value >> (64 - self.held)
            };
            self.held = total - 64;
        } else {
            self.held = total;
        }
    }

    /// Elias delta code of `x ≥ 1`: 1 bit for 1, 4 for 2–3, 5 for 4–7, 8 for 8–15, …,
    /// `L + 2·⌊log2 L⌋ - 1 + …` for an `L`-bit number, at most 76 bits.
    ///
    /// Stream order: `m - 1` zero bits and a one bit, where `m` is the bit length of `L`,
    /// the bit length of `x`; the low `m - 1` bits of `L`; the low `L - 1` bits of `x`.
    #[inline]
    pub(crate) fn put_elias(&mut self, x: u64) {
        debug_assert!(x >= 1);
        let len = 64 - x.leading_zeros();
        let m = 32 - len.leading_zeros();
        // `m - 1` zeros, then a one, then the low `m - 1` bits of `len`: m ≤ 7, one field.
        let head = (1u64 << (m - 1)) | (u64::from(len) & ((1u64 << (m - 1)) - 1)) << m;
        self.put(head, 2 * m - 1);
        self.put(x, len - 1);
    }

    /// Rice code of `x` with parameter `k` (≤ 63): `q = x >> k` zero bits and a one bit,
    /// then the low `k` bits of `x`; a quotient of [`RICE_ESCAPE`] or more is written as
    /// `RICE_ESCAPE` zeros, a one, then `Elias(q - RICE_ESCAPE + 1)`, so a huge `x` costs
    /// about `log2 x` bits rather than `x`.
    #[inline]
    pub(crate) fn put_rice(&mut self, x: u64, k: u32) {
        let q = if k >= 64 { 0 } else { x >> k };
        if q < RICE_ESCAPE {
            self.put(1u64 << q, q as u32 + 1);
        } else {
            self.put(1u64 << RICE_ESCAPE, RICE_ESCAPE as u32 + 1);
            self.put_elias(q - RICE_ESCAPE + 1);
        }
        self.put(x, k);
    }

    /// Flushes the held bits, the last byte padded with zeros.
    pub(crate) fn finish(self) {
        let bytes = self.held.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_le_bytes()[..bytes]);
    }
}

/// Bits of an Elias delta code of `x ≥ 1` (see [`BitWriter::put_elias`]).
#[inline]
pub(crate) fn elias_bits(x: u64) -> u64 {
    let len = 64 - x.leading_zeros();
    let m = 32 - len.leading_zeros();
    u64::from(2 * m - 1 + len - 1)
}

/// Quotients from this one on are written with an Elias code: see [`BitWriter::put_rice`].
pub(crate) const RICE_ESCAPE: u64 = 16;

/// Bits of a Rice code (see [`BitWriter::put_rice`]).
#[inline]
pub(crate) fn rice_bits(x: u64, k: u32) -> u64 {
    let q = x >> k;
    if q < RICE_ESCAPE {
        q + 1 + u64::from(k)
    } else {
        RICE_ESCAPE + 1 + elias_bits(q - RICE_ESCAPE + 1) + u64::from(k)
    }
}

/// Reads a bit stream; reading past the end yields zero bits and is reported by
/// [`BitReader::overrun`] (callers check it before trusting what they read).
pub(crate) struct BitReader<'a> {
    buf: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// The next 57 bits at least (64 at most), zero past the end.
    #[inline]
    fn peek(&self) -> u64 {
        let byte = self.pos >> 3;
        let word = match self.buf.get(byte..byte + 8) {
            Some(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")),
            None => {
                let mut b = [0u8; 8];
                if let Some(rest) = self.buf.get(byte..) {
                    b[..rest.len()].copy_from_slice(rest);
                }
                u64::from_le_bytes(b)
            }
        };
        word >> (self.pos & 7)
    }

    /// The next `width` bits (≤ 56).
    #[inline]
    pub(crate) fn read(&mut self, width: u32) -> u64 {
        debug_assert!(width <= 56);
        let v = self.peek() & ((1u64 << width) - 1);
        self.pos += width as usize;
        v
    }

    /// The next `width` bits (≤ 64).
    #[inline]
    pub(crate) fn read_wide(&mut self, width: u32) -> u64 {
        if width <= 56 {
            self.read(width)
        } else {
            let lo = self.read(32);
            lo | self.read(width - 32) << 32
        }
    }

    /// An Elias delta code (see [`BitWriter::put_elias`]); `None` when the bits are no
    /// such code (a length beyond 64 bits, or zeros past the end of the stream).
    #[inline]
    pub(crate) fn elias(&mut self) -> Option<u64> {
        let p = self.peek();
        let zeros = p.trailing_zeros();
        if zeros > 6 {
            return None;
        }
        let m = zeros + 1;
        let len = (1u64 << zeros) | ((p >> m) & ((1u64 << zeros) - 1));
        if len > 64 {
            return None;
        }
        self.pos += (2 * m - 1) as usize;
        let len = len as u32;
        Some((1u64 << (len - 1)) | self.read_wide(len - 1))
    }

    /// A Rice code (see [`BitWriter::put_rice`]); `None` when the bits are no such code.
    #[inline]
    pub(crate) fn rice(&mut self, k: u32) -> Option<u64> {
        let zeros = u64::from(self.peek().trailing_zeros());
        let q = if zeros < RICE_ESCAPE {
            self.pos += zeros as usize + 1;
            zeros
        } else if zeros == RICE_ESCAPE {
            self.pos += RICE_ESCAPE as usize + 1;
            (self.elias()? - 1).checked_add(RICE_ESCAPE)?
        } else {
            return None;
        };
        if k < 64 && q > u64::MAX >> k {
            return None;
        }
        let high = if k >= 64 { 0 } else { q << k };
        Some(high | self.read_wide(k))
    }

    /// Whether more bits were read than the stream holds.
    pub(crate) fn overrun(&self) -> bool {
        self.pos > self.buf.len() * 8
    }

    /// Bytes the bits read so far occupy (the last one partly, perhaps).
    pub(crate) fn bytes_used(&self) -> usize {
        self.pos.div_ceil(8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_elias_codes_round_trip() {
        let mut fields = vec![(0u64, 0u32), (1, 1), (5, 3), (u64::MAX, 64), (0x1234, 13)];
        for w in 0..=64 {
            fields.push((0xdead_beef_cafe_f00d, w));
        }
        let elias = [
            1u64,
            2,
            3,
            4,
            7,
            8,
            255,
            256,
            1 << 40,
            u64::MAX,
            u64::MAX - 1,
        ];
        let mut bytes = Vec::new();
        let mut w = BitWriter::new(&mut bytes);
        let mut bits = 0u64;
        for &(v, width) in &fields {
            w.put(v, width);
            bits += u64::from(width);
        }
        for &x in &elias {
            w.put_elias(x);
            bits += elias_bits(x);
        }
        w.finish();
        assert_eq!(bytes.len() as u64, bits.div_ceil(8));
        let mut r = BitReader::new(&bytes);
        for &(v, width) in &fields {
            let mask = if width == 64 {
                u64::MAX
            } else {
                (1 << width) - 1
            };
            assert_eq!(r.read_wide(width), v & mask, "width {width}");
        }
        for &x in &elias {
            assert_eq!(r.elias(), Some(x));
        }
        assert!(!r.overrun());
        assert_eq!(r.bytes_used(), bytes.len());
        // Past the end: zeros, which are no Elias code.
        assert_eq!(r.elias(), None);
    }

    #[test]
    fn rice_codes_round_trip() {
        let xs = [
            0u64,
            1,
            2,
            3,
            7,
            8,
            100,
            1000,
            1 << 20,
            1 << 40,
            u64::MAX >> 1,
            u64::MAX,
        ];
        for k in [0u32, 1, 3, 7, 20, 40, 63] {
            let mut bytes = Vec::new();
            let mut w = BitWriter::new(&mut bytes);
            let mut bits = 0;
            for &x in &xs {
                w.put_rice(x, k);
                bits += rice_bits(x, k);
            }
            w.finish();
            assert_eq!(bytes.len() as u64, bits.div_ceil(8), "k {k}");
            let mut r = BitReader::new(&bytes);
            for &x in &xs {
                assert_eq!(r.rice(k), Some(x), "x {x} k {k}");
            }
            assert!(!r.overrun());
        }
        assert_eq!(rice_bits(0, 0), 1);
        assert_eq!(rice_bits(5, 2), 4);
        assert_eq!(elias_bits(1), 1);
        assert_eq!(elias_bits(2), 4);
        assert_eq!(elias_bits(u64::MAX), 76);
    }
}
