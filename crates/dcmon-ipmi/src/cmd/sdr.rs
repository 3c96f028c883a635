//! Sensor Data Record repository (IPMI 2.0 §33, §43): repository info, reservation,
//! partial record reads, and the full (type 01h) and compact (type 02h) sensor records
//! with the reading conversion of §36.3. Other record types are kept as their type.

use super::{need, u16_le};
use crate::CodecError;
use crate::msg::{Request, netfn};

/// Bytes asked for per Get SDR call. 16 fits every BMC's message buffer; asking for a
/// whole record (FFh) fails with CAh on many.
pub const SDR_CHUNK: u8 = 16;
/// Record ID meaning "last record" in Next Record ID.
pub const LAST_RECORD: u16 = 0xFFFF;
/// SDR record header: record ID, version, type, remaining length (§43).
pub const HEADER_LEN: usize = 5;

/// Get SDR Repository Info (§33.9).
pub fn get_repository_info() -> Request {
    Request::new(netfn::STORAGE, 0x20, [])
}

/// Number of records from Get SDR Repository Info.
pub fn parse_repository_info(d: &[u8]) -> Result<u16, CodecError> {
    need(d, 3, "Get SDR Repository Info response")?;
    Ok(u16_le(&d[1..]))
}

/// Reserve SDR Repository (§33.11).
pub fn reserve_repository() -> Request {
    Request::new(netfn::STORAGE, 0x22, [])
}

/// Reservation ID from a Reserve SDR Repository or Reserve SEL response.
pub fn parse_reservation(d: &[u8]) -> Result<u16, CodecError> {
    need(d, 2, "reservation response")?;
    Ok(u16_le(d))
}

/// Get SDR (§33.12): `len` bytes of record `record_id` from `offset`.
pub fn get_sdr(reservation: u16, record_id: u16, offset: u8, len: u8) -> Request {
    let [r0, r1] = reservation.to_le_bytes();
    let [i0, i1] = record_id.to_le_bytes();
    Request::new(netfn::STORAGE, 0x23, [r0, r1, i0, i1, offset, len])
}

/// Next record ID and the bytes returned by Get SDR.
pub fn parse_get_sdr(d: &[u8]) -> Result<(u16, &[u8]), CodecError> {
    need(d, 2, "Get SDR response")?;
    Ok((u16_le(d), &d[2..]))
}

/// Analog data format of a sensor's raw reading (§43.1, Sensor Units 1 bits 7:6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum AnalogFormat {
    Unsigned,
    OnesComplement,
    TwosComplement,
    /// No analog reading (discrete sensors).
    None,
}

/// Linearisation function L of §36.3 (Table 43-1, byte 24).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Linearization {
    Linear,
    Ln,
    Log10,
    Log2,
    E,
    Exp10,
    Exp2,
    Inverse,
    Sqr,
    Cube,
    Sqrt,
    Cbrt,
    /// Non-linear (70h–7Fh) or reserved: readings cannot be converted with M and B.
    NonLinear(u8),
}

impl Linearization {
    fn from_code(c: u8) -> Self {
        match c & 0x7F {
            0 => Linearization::Linear,
            1 => Linearization::Ln,
            2 => Linearization::Log10,
            3 => Linearization::Log2,
            4 => Linearization::E,
            5 => Linearization::Exp10,
            6 => Linearization::Exp2,
            7 => Linearization::Inverse,
            8 => Linearization::Sqr,
            9 => Linearization::Cube,
            10 => Linearization::Sqrt,
            11 => Linearization::Cbrt,
            c => Linearization::NonLinear(c),
        }
    }

    fn apply(self, x: f64) -> Option<f64> {
        Some(match self {
            Linearization::Linear => x,
            Linearization::Ln => x.ln(),
            Linearization::Log10 => x.log10(),
            Linearization::Log2 => x.log2(),
            Linearization::E => x.exp(),
            Linearization::Exp10 => 10f64.powf(x),
            Linearization::Exp2 => x.exp2(),
            Linearization::Inverse => 1.0 / x,
            Linearization::Sqr => x * x,
            Linearization::Cube => x * x * x,
            Linearization::Sqrt => x.sqrt(),
            Linearization::Cbrt => x.cbrt(),
            Linearization::NonLinear(_) => return None,
        })
    }
}

/// The conversion factors of a full sensor record: y = L[(M·x + B·10^K1)·10^K2].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Conversion {
    pub format: AnalogFormat,
    pub linearization: Linearization,
    pub m: i16,
    pub b: i16,
    /// B exponent.
    pub k1: i8,
    /// Result exponent.
    pub k2: i8,
}

/// Sign-extends the low `bits` bits of `v`.
fn signed(v: u16, bits: u32) -> i16 {
    let shift = 16 - bits;
    ((v << shift) as i16) >> shift
}

impl Conversion {
    /// The reading in the sensor's units; `None` for sensors without analog readings,
    /// non-linear sensors and results that are not finite numbers.
    pub fn convert(&self, raw: u8) -> Option<f64> {
        let x = match self.format {
            AnalogFormat::Unsigned => f64::from(raw),
            // 1's complement: FFh is -0.
            AnalogFormat::OnesComplement => {
                if raw & 0x80 != 0 {
                    -f64::from(!raw)
                } else {
                    f64::from(raw)
                }
            }
            AnalogFormat::TwosComplement => f64::from(raw as i8),
            AnalogFormat::None => return None,
        };
        let y = (f64::from(self.m) * x + f64::from(self.b) * 10f64.powi(self.k1.into()))
            * 10f64.powi(self.k2.into());
        self.linearization.apply(y).filter(|v| v.is_finite())
    }
}

/// Threshold values of a full sensor record, raw, where readable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Thresholds {
    pub lower_non_recoverable: Option<u8>,
    pub lower_critical: Option<u8>,
    pub lower_non_critical: Option<u8>,
    pub upper_non_critical: Option<u8>,
    pub upper_critical: Option<u8>,
    pub upper_non_recoverable: Option<u8>,
}

/// A sensor described by a full or compact record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SensorRecord {
    pub record_id: u16,
    pub owner_id: u8,
    pub owner_lun: u8,
    pub number: u8,
    pub entity_id: u8,
    pub entity_instance: u8,
    /// Sensor type (§42.2, Table 42-3): 01h temperature, 02h voltage, 04h fan, …
    pub sensor_type: u8,
    /// Event/reading type code: 01h threshold, 02h–0Ch generic discrete, 6Fh
    /// sensor-specific.
    pub event_type: u8,
    /// Base unit code (Table 43-15).
    pub unit: u8,
    /// Only full records of threshold sensors carry one.
    pub conversion: Option<Conversion>,
    pub thresholds: Thresholds,
    pub name: String,
}

impl SensorRecord {
    /// Whether readings of this sensor are numbers (threshold-based, analog format).
    pub fn is_analog(&self) -> bool {
        self.conversion
            .is_some_and(|c| c.format != AnalogFormat::None && self.event_type == 0x01)
    }

    /// The unit name as ipmitool prints it.
    pub fn unit_name(&self) -> &'static str {
        unit_name(self.unit)
    }

    /// A raw threshold converted to the sensor's units.
    pub fn threshold(&self, raw: Option<u8>) -> Option<f64> {
        self.conversion?.convert(raw?)
    }
}

/// One record of the SDR repository.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum SdrRecord {
    Sensor(SensorRecord),
    /// FRU device locator (11h), MC device locator (12h), OEM (C0h), …: not sensors.
    Other {
        record_id: u16,
        record_type: u8,
    },
}

/// The ID string of a record: `tl` is the type/length byte (§43.15). 8-bit ASCII+Latin-1
/// and 6-bit packed ASCII are decoded; BCD+ and unicode strings are shown in hex.
fn id_string(tl: u8, bytes: &[u8]) -> String {
    let len = usize::from(tl & 0x1F).min(bytes.len());
    let bytes = &bytes[..len];
    match tl >> 6 {
        3 => bytes
            .iter()
            .take_while(|&&b| b != 0)
            .map(|&b| char::from(b))
            .collect(),
        2 => {
            // 6-bit packed ASCII: four characters in three bytes, little-endian bits.
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let mut v = 0u32;
                for (i, b) in chunk.iter().enumerate() {
                    v |= u32::from(*b) << (8 * i);
                }
                for i in 0..(chunk.len() * 8 / 6) {
                    out.push(char::from(0x20 + ((v >> (6 * i)) & 0x3F) as u8));
                }
            }
            out.trim_end().to_string()
        }
        _ => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Decodes one whole record (header included).
pub fn parse_record(r: &[u8]) -> Result<SdrRecord, CodecError> {
    need(r, HEADER_LEN, "SDR record header")?;
    let record_id = u16_le(r);
    let record_type = r[3];
    match record_type {
        0x01 => {
            need(r, 48, "full sensor record")?;
            let format = match r[20] >> 6 {
                0 => AnalogFormat::Unsigned,
                1 => AnalogFormat::OnesComplement,
                2 => AnalogFormat::TwosComplement,
                _ => AnalogFormat::None,
            };
            let conversion = Conversion {
                format,
                linearization: Linearization::from_code(r[23]),
                m: signed(u16::from(r[24]) | (u16::from(r[25] >> 6) << 8), 10),
                b: signed(u16::from(r[26]) | (u16::from(r[27] >> 6) << 8), 10),
                k1: signed(u16::from(r[29] & 0x0F), 4) as i8,
                k2: signed(u16::from(r[29] >> 4), 4) as i8,
            };
            // Readable threshold mask: byte 19 of Table 43-1 (offset 18).
            let readable = if r[13] == 0x01 { r[18] } else { 0 };
            let t = |bit: u8, at: usize| (readable & (1 << bit) != 0).then_some(r[at]);
            Ok(SdrRecord::Sensor(SensorRecord {
                record_id,
                owner_id: r[5],
                owner_lun: r[6] & 3,
                number: r[7],
                entity_id: r[8],
                entity_instance: r[9],
                sensor_type: r[12],
                event_type: r[13],
                unit: r[21],
                conversion: Some(conversion),
                thresholds: Thresholds {
                    upper_non_recoverable: t(5, 36),
                    upper_critical: t(4, 37),
                    upper_non_critical: t(3, 38),
                    lower_non_recoverable: t(2, 39),
                    lower_critical: t(1, 40),
                    lower_non_critical: t(0, 41),
                },
                name: id_string(r[47], &r[48..]),
            }))
        }
        0x02 => {
            need(r, 32, "compact sensor record")?;
            Ok(SdrRecord::Sensor(SensorRecord {
                record_id,
                owner_id: r[5],
                owner_lun: r[6] & 3,
                number: r[7],
                entity_id: r[8],
                entity_instance: r[9],
                sensor_type: r[12],
                event_type: r[13],
                unit: r[21],
                conversion: None,
                thresholds: Thresholds::default(),
                name: id_string(r[31], &r[32..]),
            }))
        }
        _ => Ok(SdrRecord::Other {
            record_id,
            record_type,
        }),
    }
}

/// Sensor unit names (IPMI 2.0 Table 43-15), spelt as ipmitool prints them.
pub fn unit_name(code: u8) -> &'static str {
    const UNITS: [&str; 93] = [
        "unspecified",
        "degrees C",
        "degrees F",
        "degrees K",
        "Volts",
        "Amps",
        "Watts",
        "Joules",
        "Coulombs",
        "VA",
        "Nits",
        "lumen",
        "lux",
        "Candela",
        "kPa",
        "PSI",
        "Newton",
        "CFM",
        "RPM",
        "Hz",
        "microsecond",
        "millisecond",
        "second",
        "minute",
        "hour",
        "day",
        "week",
        "mil",
        "inches",
        "feet",
        "cu in",
        "cu feet",
        "mm",
        "cm",
        "m",
        "cu cm",
        "cu m",
        "liters",
        "fluid ounce",
        "radians",
        "steradians",
        "revolutions",
        "cycles",
        "gravities",
        "ounce",
        "pound",
        "ft-lb",
        "oz-in",
        "gauss",
        "gilberts",
        "henry",
        "millihenry",
        "farad",
        "microfarad",
        "ohms",
        "siemens",
        "mole",
        "becquerel",
        "PPM",
        "reserved",
        "Decibels",
        "DbA",
        "DbC",
        "gray",
        "sievert",
        "color temp deg K",
        "bit",
        "kilobit",
        "megabit",
        "gigabit",
        "byte",
        "kilobyte",
        "megabyte",
        "gigabyte",
        "word",
        "dword",
        "qword",
        "line",
        "hit",
        "miss",
        "retry",
        "reset",
        "overflow",
        "underrun",
        "collision",
        "packets",
        "messages",
        "characters",
        "error",
        "correctable error",
        "uncorrectable error",
        "fatal error",
        "grams",
    ];
    UNITS.get(usize::from(code)).copied().unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn conversion(format: AnalogFormat, lin: u8, m: i16, b: i16, k1: i8, k2: i8) -> Conversion {
        Conversion {
            format,
            linearization: Linearization::from_code(lin),
            m,
            b,
            k1,
            k2,
        }
    }

    fn check(c: Conversion, raw: u8, expect: Option<f64>) {
        let got = c.convert(raw);
        match (got, expect) {
            (Some(g), Some(e)) => assert!((g - e).abs() < 1e-9, "{c:?} {raw}: {g} != {e}"),
            _ => assert_eq!(got, expect, "{c:?} {raw}"),
        }
    }

    #[test]
    fn reading_conversion() {
        use AnalogFormat::*;
        check(conversion(Unsigned, 0, 1, 0, 0, 0), 45, Some(45.0));
        // Fan: M=75 → 75 RPM per count.
        check(conversion(Unsigned, 0, 75, 0, 0, 0), 24, Some(1800.0));
        // 12 V rail: M=6, B=3, K1=1 (B·10), K2=-2.
        check(conversion(Unsigned, 0, 6, 3, 1, -2), 195, Some(12.0));
        check(conversion(TwosComplement, 0, 1, 0, 0, 0), 0xF6, Some(-10.0));
        check(conversion(OnesComplement, 0, 1, 0, 0, 0), 0xF5, Some(-10.0));
        check(conversion(OnesComplement, 0, 1, 0, 0, 0), 0xFF, Some(0.0));
        check(conversion(Unsigned, 7, 1, 0, 0, 0), 4, Some(0.25));
        check(conversion(Unsigned, 8, 1, 0, 0, 0), 3, Some(9.0));
        check(conversion(Unsigned, 10, 1, 0, 0, 0), 16, Some(4.0));
        check(conversion(Unsigned, 6, 1, 0, 0, 0), 10, Some(1024.0));
        check(conversion(Unsigned, 2, 1, 0, 0, 0), 100, Some(2.0));
        check(conversion(Unsigned, 7, 1, 0, 0, 0), 0, Option::None);
        check(conversion(Unsigned, 0x70, 1, 0, 0, 0), 1, Option::None);
        check(conversion(None, 0, 1, 0, 0, 0), 1, Option::None);
    }

    #[test]
    fn ten_bit_and_four_bit_fields_are_signed() {
        assert_eq!(signed(0x3FF, 10), -1);
        assert_eq!(signed(0x1FF, 10), 511);
        assert_eq!(signed(0xF, 4), -1);
        assert_eq!(signed(0x7, 4), 7);
    }

    /// A full record as `sdrcomp` writes it for a temperature sensor named "CPU Temp".
    fn full_record() -> Vec<u8> {
        let mut r = vec![0u8; 48];
        r[..5].copy_from_slice(&[0x01, 0x00, 0x51, 0x01, 51]);
        r[5] = 0x20;
        r[7] = 0x01;
        r[8] = 0x03;
        r[9] = 0x01;
        r[12] = 0x01;
        r[13] = 0x01;
        r[18] = 0x3F;
        r[21] = 0x01;
        r[24] = 1;
        r[27] = 0;
        r[29] = 0x00;
        r[36..42].copy_from_slice(&[100, 95, 85, 0, 5, 10]);
        r[47] = 0xC8;
        r.extend(b"CPU Temp");
        r
    }

    #[test]
    fn full_and_compact_records() {
        let SdrRecord::Sensor(s) = parse_record(&full_record()).expect("parses") else {
            panic!("a sensor record");
        };
        assert_eq!(
            (s.name.as_str(), s.unit_name(), s.number),
            ("CPU Temp", "degrees C", 1)
        );
        assert!(s.is_analog());
        assert_eq!(s.threshold(s.thresholds.upper_critical), Some(95.0));
        let mut compact = vec![0u8; 32];
        compact[..5].copy_from_slice(&[0x02, 0x00, 0x51, 0x02, 30]);
        compact[7] = 9;
        compact[12] = 0x08;
        compact[13] = 0x6F;
        compact[31] = 0xC3;
        compact.extend(b"PS1");
        let SdrRecord::Sensor(c) = parse_record(&compact).expect("parses") else {
            panic!("a sensor record");
        };
        assert_eq!(
            (c.name.as_str(), c.number, c.is_analog()),
            ("PS1", 9, false)
        );
        assert_eq!(
            parse_record(&[3, 0, 0x51, 0x12, 0]),
            Ok(SdrRecord::Other {
                record_id: 3,
                record_type: 0x12
            })
        );
        assert!(parse_record(&full_record()[..40]).is_err());
    }

    #[test]
    fn six_bit_packed_names() {
        // "AB" → 0x21, 0x22 packed: 0x21 | 0x22 << 6.
        let v: u32 = 0x21 | (0x22 << 6);
        assert_eq!(id_string(0x82, &v.to_le_bytes()[..2]), "AB");
        assert_eq!(id_string(0x83, &v.to_le_bytes()[..3]), "AB");
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_records_never_panics(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = parse_record(&b);
            let _ = parse_get_sdr(&b);
        }

        #[test]
        fn conversion_never_panics(m in -512i16..512, b in -512i16..512, k1 in -8i8..8, k2 in -8i8..8,
                                   lin in 0u8..0x80, raw: u8) {
            let _ = conversion(AnalogFormat::TwosComplement, lin, m, b, k1, k2).convert(raw);
        }
    }
}
