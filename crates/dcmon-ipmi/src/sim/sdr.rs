//! The simulated BMC's sensors and its SDR repository: full sensor records (IPMI 2.0
//! §43.1) with linear conversion factors and thresholds, and an MC device locator
//! record (§43.9).

use super::bmc::Vendor;
use std::sync::OnceLock;

/// Owner of every sensor: the BMC itself at IPMB slave address 20h (IPMI 2.0 §43.1
/// byte 6).
const BMC_SLAVE_ADDRESS: u8 = 0x20;
/// SDR version 51h: IPMI 1.5 / 2.0 records (§43, byte 3).
pub(crate) const SDR_VERSION: u8 = 0x51;

/// What a sensor measures in the thermal model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quantity {
    CpuTemp,
    SystemTemp,
    PeripheralTemp,
    InletTemp,
    /// Fan tachometer, by index into the thermal model's fans.
    Fan(usize),
    Rail12V,
    Rail5V,
    Rail3V3,
    PsuStatus,
    ChassisIntrusion,
}

/// `y = (M·x + B·10^K1) · 10^K2` (IPMI 2.0 §36.3), with linearization "linear".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Linear {
    pub m: i16,
    pub b: i16,
    /// K1, the B exponent.
    pub b_exp: i8,
    /// K2, the result exponent.
    pub r_exp: i8,
}

impl Linear {
    #[cfg(test)]
    pub(crate) fn value(self, raw: u8) -> f64 {
        (f64::from(self.m) * f64::from(raw) + f64::from(self.b) * 10f64.powi(self.b_exp.into()))
            * 10f64.powi(self.r_exp.into())
    }

    /// The raw reading closest to `value`, saturated to 0..=255 (unsigned format).
    pub(crate) fn raw(self, value: f64) -> u8 {
        let x = (value / 10f64.powi(self.r_exp.into())
            - f64::from(self.b) * 10f64.powi(self.b_exp.into()))
            / f64::from(self.m);
        // Saturating float→int cast; NaN becomes 0.
        x.round().clamp(0.0, 255.0) as u8
    }
}

/// Raw threshold bytes in the order of Get Sensor Thresholds (IPMI 2.0 §35.9):
/// lower non-critical, lower critical, lower non-recoverable, upper non-critical,
/// upper critical, upper non-recoverable.
pub(crate) type Thresholds = [u8; 6];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// Event/reading type 01h: an analog reading compared with thresholds.
    Threshold {
        /// Sensor Units 2 base unit code (IPMI 2.0 Table 43-15).
        unit: u8,
        linear: Linear,
        /// Raw nominal reading (§43.1 byte 32).
        nominal: u8,
        thresholds: Thresholds,
    },
    /// Event/reading type 6Fh (sensor-specific), states as a bit mask.
    Discrete {
        /// The states the sensor can assert (Table 42-3 offsets for its sensor type).
        states: u16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SensorDef {
    pub number: u8,
    pub name: &'static str,
    /// Entity ID (IPMI 2.0 Table 43-13).
    pub entity: u8,
    /// Sensor type code (Table 42-3).
    pub sensor_type: u8,
    pub quantity: Quantity,
    pub reading: Reading,
}

/// Base unit codes (IPMI 2.0 Table 43-15).
const UNIT_DEGREES_C: u8 = 1;
const UNIT_VOLTS: u8 = 4;
const UNIT_RPM: u8 = 18;

/// Sensor type codes (Table 42-3).
pub(crate) const TYPE_TEMPERATURE: u8 = 0x01;
pub(crate) const TYPE_VOLTAGE: u8 = 0x02;
pub(crate) const TYPE_FAN: u8 = 0x04;
pub(crate) const TYPE_PHYSICAL_SECURITY: u8 = 0x05;
pub(crate) const TYPE_POWER_SUPPLY: u8 = 0x08;

/// Entity IDs (Table 43-13).
const ENTITY_PROCESSOR: u8 = 0x03;
const ENTITY_SYSTEM_BOARD: u8 = 0x07;
const ENTITY_POWER_SUPPLY: u8 = 0x0A;
const ENTITY_CHASSIS: u8 = 0x17;
const ENTITY_FAN: u8 = 0x1D;
const ENTITY_AIR_INLET: u8 = 0x37;
const ENTITY_MANAGEMENT_CONTROLLER: u8 = 0x06;

/// 1 °C per count, no offset.
const DEGREES: Linear = Linear {
    m: 1,
    b: 0,
    b_exp: 0,
    r_exp: 0,
};

/// 100 RPM per count, as Supermicro X10/X11 BMCs report fans.
pub(crate) const FAN_LINEAR: Linear = Linear {
    m: 100,
    b: 0,
    b_exp: 0,
    r_exp: 0,
};

/// Fan thresholds: lower 700/500/300 RPM (the Supermicro defaults), upper 25300/25400/25500.
pub(crate) const FAN_THRESHOLDS: Thresholds = [7, 5, 3, 253, 254, 255];

const fn temperature(
    number: u8,
    name: &'static str,
    entity: u8,
    quantity: Quantity,
    upper: [u8; 3],
) -> SensorDef {
    SensorDef {
        number,
        name,
        entity,
        sensor_type: TYPE_TEMPERATURE,
        quantity,
        reading: Reading::Threshold {
            unit: UNIT_DEGREES_C,
            linear: DEGREES,
            nominal: 40,
            thresholds: [5, 5, 5, upper[0], upper[1], upper[2]],
        },
    }
}

const fn fan(number: u8, name: &'static str, index: usize) -> SensorDef {
    SensorDef {
        number,
        name,
        entity: ENTITY_FAN,
        sensor_type: TYPE_FAN,
        quantity: Quantity::Fan(index),
        reading: Reading::Threshold {
            unit: UNIT_RPM,
            linear: FAN_LINEAR,
            nominal: 30,
            thresholds: FAN_THRESHOLDS,
        },
    }
}

const fn rail(
    number: u8,
    name: &'static str,
    quantity: Quantity,
    linear: Linear,
    nominal: u8,
    thresholds: Thresholds,
) -> SensorDef {
    SensorDef {
        number,
        name,
        entity: ENTITY_SYSTEM_BOARD,
        sensor_type: TYPE_VOLTAGE,
        quantity,
        reading: Reading::Threshold {
            unit: UNIT_VOLTS,
            linear,
            nominal,
            thresholds,
        },
    }
}

/// 12 V rail: 0.05 V per count from a 1.00 V offset (B = 100, K2 = -2), so the
/// offset term of the conversion is exercised: 12.00 V is raw 220.
const RAIL_12V: Linear = Linear {
    m: 5,
    b: 100,
    b_exp: 0,
    r_exp: -2,
};
/// 5 V rail: 0.03 V per count.
const RAIL_5V: Linear = Linear {
    m: 3,
    b: 0,
    b_exp: 0,
    r_exp: -2,
};
/// 3.3 V rail: 0.02 V per count.
const RAIL_3V3: Linear = Linear {
    m: 2,
    b: 0,
    b_exp: 0,
    r_exp: -2,
};

/// The sensors every simulated BMC has; names follow Supermicro X11 boards. Fans 0–3
/// are zone 0 (CPU/system), fan 4 (FANA) is zone 1 (peripheral).
pub(crate) const SENSORS: &[SensorDef] = &[
    temperature(
        0x01,
        "CPU Temp",
        ENTITY_PROCESSOR,
        Quantity::CpuTemp,
        [85, 90, 95],
    ),
    temperature(
        0x0B,
        "System Temp",
        ENTITY_SYSTEM_BOARD,
        Quantity::SystemTemp,
        [80, 85, 90],
    ),
    temperature(
        0x0C,
        "Peripheral Temp",
        ENTITY_SYSTEM_BOARD,
        Quantity::PeripheralTemp,
        [80, 85, 90],
    ),
    temperature(
        0x0D,
        "Inlet Temp",
        ENTITY_AIR_INLET,
        Quantity::InletTemp,
        [40, 42, 45],
    ),
    fan(0x41, "FAN1", 0),
    fan(0x42, "FAN2", 1),
    fan(0x43, "FAN3", 2),
    fan(0x44, "FAN4", 3),
    fan(0x45, "FANA", 4),
    // 10.40/10.60/11.00 V below, 13.00/13.40/13.60 V above.
    rail(
        0x30,
        "12V",
        Quantity::Rail12V,
        RAIL_12V,
        220,
        [200, 192, 188, 240, 248, 252],
    ),
    // 4.74/4.62/4.50 V below, 5.25/5.37/5.49 V above.
    rail(
        0x31,
        "5VCC",
        Quantity::Rail5V,
        RAIL_5V,
        167,
        [158, 154, 150, 175, 179, 183],
    ),
    // 3.12/3.04/2.96 V below, 3.48/3.56/3.64 V above.
    rail(
        0x32,
        "3.3VCC",
        Quantity::Rail3V3,
        RAIL_3V3,
        165,
        [156, 152, 148, 174, 178, 182],
    ),
    SensorDef {
        number: 0xC8,
        name: "PS1 Status",
        entity: ENTITY_POWER_SUPPLY,
        sensor_type: TYPE_POWER_SUPPLY,
        quantity: Quantity::PsuStatus,
        // Offsets 0 presence detected, 1 failure detected, 3 input lost (Table 42-3).
        reading: Reading::Discrete { states: 0x000B },
    },
    SensorDef {
        number: 0xAA,
        name: "Chassis Intru",
        entity: ENTITY_CHASSIS,
        sensor_type: TYPE_PHYSICAL_SECURITY,
        quantity: Quantity::ChassisIntrusion,
        // Offset 0: general chassis intrusion.
        reading: Reading::Discrete { states: 0x0001 },
    },
];

pub(crate) fn sensor(number: u8) -> Option<&'static SensorDef> {
    SENSORS.iter().find(|s| s.number == number)
}

/// First record ID; 0000h in Get SDR means "first record" (IPMI 2.0 §33.12), so the
/// IDs start above it.
const FIRST_RECORD_ID: u16 = 1;

/// The repository of one vendor's BMC: every record, complete with its header, in
/// record ID order starting at [`FIRST_RECORD_ID`].
pub(crate) struct Repository {
    pub records: Vec<Vec<u8>>,
}

impl Repository {
    fn build(vendor: Vendor) -> Self {
        let mut records: Vec<Vec<u8>> = SENSORS.iter().map(full_record).collect();
        records.push(mc_locator(vendor.controller_name()));
        for (i, r) in records.iter_mut().enumerate() {
            let id = FIRST_RECORD_ID + i as u16;
            r[0..2].copy_from_slice(&id.to_le_bytes());
        }
        Self { records }
    }

    /// The record with `id` (0000h = first, FFFFh = last) and the ID of the next one
    /// (FFFFh after the last).
    pub(crate) fn get(&self, id: u16) -> Option<(&[u8], u16)> {
        let index = match id {
            0x0000 => 0,
            0xFFFF => self.records.len().checked_sub(1)?,
            id => usize::from(id.checked_sub(FIRST_RECORD_ID)?),
        };
        let record = self.records.get(index)?;
        let next = if index + 1 < self.records.len() {
            FIRST_RECORD_ID + index as u16 + 1
        } else {
            0xFFFF
        };
        Some((record, next))
    }
}

/// The repository for `vendor`, built once per process: it never changes, so a
/// thousand simulated BMCs share three.
pub(crate) fn repository(vendor: Vendor) -> &'static Repository {
    static REPOS: [OnceLock<Repository>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = match vendor {
        Vendor::Supermicro => 0,
        Vendor::Dell => 1,
        Vendor::Generic => 2,
    };
    REPOS[slot].get_or_init(|| Repository::build(vendor))
}

/// Type/length byte of an 8-bit ASCII + Latin-1 ID string (IPMI 2.0 §43.15), up to 16
/// bytes.
fn id_string(name: &str) -> Vec<u8> {
    let bytes = &name.as_bytes()[..name.len().min(16)];
    let mut out = vec![0xC0 | bytes.len() as u8];
    out.extend_from_slice(bytes);
    out
}

/// Assertion/deassertion masks of a threshold sensor (IPMI 2.0 §43.1 bytes 15–18):
/// going-low events of the three lower and going-high events of the three upper
/// thresholds, plus the "threshold comparison returned" bits 14:12.
const THRESHOLD_EVENT_MASK: u16 = 0x7A95;
/// Readable thresholds: all six (§43.1 byte 19 bits 5:0); none settable (byte 20).
const READABLE_THRESHOLDS: u8 = 0x3F;

/// Full sensor record, type 01h (IPMI 2.0 §43.1). Bytes are numbered as in the spec's
/// table, from 1.
fn full_record(s: &SensorDef) -> Vec<u8> {
    let mut r = vec![0, 0, SDR_VERSION, 0x01, 0]; // 1–5: ID (set later), version, type, length
    r.push(BMC_SLAVE_ADDRESS); // 6: owner ID
    r.push(0x00); // 7: channel 0, LUN 0
    r.push(s.number); // 8
    r.push(s.entity); // 9
    r.push(0x01); // 10: entity instance 1, physical
    // 11: initialization: scanning, events, thresholds, hysteresis, type; events and
    // scanning enabled.
    r.push(0x7F);
    match s.reading {
        Reading::Threshold {
            unit,
            linear,
            nominal,
            thresholds,
        } => {
            // 12: auto re-arm, hysteresis readable, thresholds readable, per-threshold
            // event enables.
            r.push(0x54);
            r.push(s.sensor_type); // 13
            r.push(0x01); // 14: event/reading type threshold
            r.extend_from_slice(&THRESHOLD_EVENT_MASK.to_le_bytes()); // 15–16
            r.extend_from_slice(&THRESHOLD_EVENT_MASK.to_le_bytes()); // 17–18
            r.extend_from_slice(&[READABLE_THRESHOLDS, 0x00]); // 19–20
            r.push(0x00); // 21: unsigned analog format, no rate, no modifier
            r.push(unit); // 22
            r.push(0x00); // 23: no modifier unit
            r.push(0x00); // 24: linear
            let m = (linear.m as u16) & 0x3FF;
            let b = (linear.b as u16) & 0x3FF;
            r.push(m as u8); // 25: M low 8 bits
            r.push(((m >> 2) & 0xC0) as u8); // 26: M high 2 bits, tolerance 0
            r.push(b as u8); // 27: B low 8 bits
            r.push(((b >> 2) & 0xC0) as u8); // 28: B high 2 bits, accuracy low bits 0
            r.push(0x00); // 29: accuracy high bits, exponent, direction unspecified
            r.push(((linear.r_exp as u8 & 0x0F) << 4) | (linear.b_exp as u8 & 0x0F)); // 30
            r.push(0x01); // 31: nominal reading specified
            r.push(nominal); // 32
            r.push(0x00); // 33: normal maximum (not specified)
            r.push(0x00); // 34: normal minimum (not specified)
            r.push(0xFF); // 35: sensor maximum reading
            r.push(0x00); // 36: sensor minimum reading
            let [lnc, lc, lnr, unc, uc, unr] = thresholds;
            r.extend_from_slice(&[unr, uc, unc, lnr, lc, lnc]); // 37–42
            r.extend_from_slice(&[1, 1]); // 43–44: hysteresis one count each way
        }
        Reading::Discrete { states } => {
            r.push(0x40); // 12: auto re-arm, no thresholds
            r.push(s.sensor_type); // 13
            r.push(0x6F); // 14: sensor-specific
            r.extend_from_slice(&states.to_le_bytes()); // 15–16
            r.extend_from_slice(&states.to_le_bytes()); // 17–18
            r.extend_from_slice(&states.to_le_bytes()); // 19–20
            r.push(0xC0); // 21: no analog reading
            r.push(0x00); // 22
            r.push(0x00); // 23
            r.push(0x00); // 24
            r.extend_from_slice(&[0; 20]); // 25–44: no conversion, thresholds or hysteresis
        }
    }
    r.extend_from_slice(&[0, 0, 0]); // 45–46 reserved, 47 OEM
    r.extend(id_string(s.name)); // 48…
    r[4] = (r.len() - 5) as u8;
    r
}

/// Management controller device locator record, type 12h (IPMI 2.0 §43.9).
fn mc_locator(name: &str) -> Vec<u8> {
    let mut r = vec![0, 0, SDR_VERSION, 0x12, 0];
    r.push(BMC_SLAVE_ADDRESS); // 6: device slave address
    r.push(0x00); // 7: channel 0
    r.push(0x00); // 8: power state notification / global initialization
    // 9: chassis device, IPMB event generator and receiver, FRU, SEL, SDR repository,
    // sensor device.
    r.push(0xBF);
    r.extend_from_slice(&[0, 0, 0]); // 10–12 reserved
    r.push(ENTITY_MANAGEMENT_CONTROLLER); // 13
    r.push(0x01); // 14: entity instance
    r.push(0x00); // 15: OEM
    r.extend(id_string(name)); // 16…
    r[4] = (r.len() - 5) as u8;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes the fields of a full sensor record that ipmitool prints.
    struct Decoded {
        number: u8,
        name: String,
        unit: u8,
        linear: Linear,
        /// LNC, LC, LNR, UNC, UC, UNR as values.
        thresholds: [f64; 6],
    }

    fn sign_extend(v: u16, bits: u32) -> i16 {
        let shift = 16 - bits;
        ((v << shift) as i16) >> shift
    }

    fn decode(r: &[u8]) -> Decoded {
        assert_eq!(r[2], 0x51);
        assert_eq!(r[3], 0x01);
        assert_eq!(usize::from(r[4]) + 5, r.len(), "length byte");
        let b = |n: usize| r[n - 1]; // spec numbering from 1
        let m = sign_extend(u16::from(b(25)) | (u16::from(b(26) & 0xC0) << 2), 10);
        let bb = sign_extend(u16::from(b(27)) | (u16::from(b(28) & 0xC0) << 2), 10);
        let r_exp = sign_extend(u16::from(b(30) >> 4), 4) as i8;
        let b_exp = sign_extend(u16::from(b(30) & 0x0F), 4) as i8;
        let linear = Linear {
            m,
            b: bb,
            b_exp,
            r_exp,
        };
        let len = usize::from(b(48) & 0x1F);
        let name = String::from_utf8(r[48..48 + len].to_vec()).unwrap();
        let t = |n: usize| linear.value(b(n));
        Decoded {
            number: b(8),
            name,
            unit: b(22),
            linear,
            thresholds: [t(42), t(41), t(40), t(39), t(38), t(37)],
        }
    }

    fn check(name: &str, unit: u8, reading: f64, thresholds: [f64; 6]) {
        let repo = repository(Vendor::Supermicro);
        let record = repo
            .records
            .iter()
            .find(|r| r[3] == 0x01 && r.ends_with(name.as_bytes()))
            .unwrap_or_else(|| panic!("no record {name}"));
        let d = decode(record);
        assert_eq!(d.name, name);
        assert_eq!(d.unit, unit, "{name} unit");
        let def = sensor(d.number).unwrap();
        let Reading::Threshold { linear, .. } = def.reading else {
            panic!("{name} is not a threshold sensor")
        };
        assert_eq!(d.linear, linear, "{name} factors");
        let back = d.linear.value(d.linear.raw(reading));
        let step = d.linear.value(1) - d.linear.value(0);
        assert!(
            (back - reading).abs() <= step / 2.0 + 1e-9,
            "{name}: {reading} → {back}"
        );
        for (got, want) in d.thresholds.iter().zip(thresholds) {
            assert!(
                (got - want).abs() < 1e-9,
                "{name} thresholds {:?}",
                d.thresholds
            );
        }
    }

    #[test]
    fn full_records_decode_to_the_intended_names_units_and_thresholds() {
        check("CPU Temp", 1, 47.0, [5.0, 5.0, 5.0, 85.0, 90.0, 95.0]);
        check("Inlet Temp", 1, 24.0, [5.0, 5.0, 5.0, 40.0, 42.0, 45.0]);
        check(
            "FAN1",
            18,
            3600.0,
            [700.0, 500.0, 300.0, 25300.0, 25400.0, 25500.0],
        );
        check(
            "FANA",
            18,
            1800.0,
            [700.0, 500.0, 300.0, 25300.0, 25400.0, 25500.0],
        );
        check("12V", 4, 12.0, [11.0, 10.6, 10.4, 13.0, 13.4, 13.6]);
        check("5VCC", 4, 5.01, [4.74, 4.62, 4.5, 5.25, 5.37, 5.49]);
        check("3.3VCC", 4, 3.3, [3.12, 3.04, 2.96, 3.48, 3.56, 3.64]);
    }

    #[test]
    fn twelve_volt_rail_uses_the_offset_term() {
        assert_eq!(RAIL_12V.raw(12.0), 220);
        assert!((RAIL_12V.value(0) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn records_are_chained_from_first_to_last() {
        let repo = repository(Vendor::Dell);
        let mut id = 0;
        let mut seen = 0;
        while id != 0xFFFF {
            let (record, next) = repo.get(id).unwrap();
            assert_eq!(record[2], SDR_VERSION);
            seen += 1;
            id = next;
        }
        assert_eq!(seen, SENSORS.len() + 1);
        let (last, next) = repo.get(0xFFFF).unwrap();
        assert_eq!((last[3], next), (0x12, 0xFFFF));
        assert!(last.ends_with(b"iDRAC"));
        assert!(repo.get(0x7FFF).is_none());
    }

    #[test]
    fn discrete_records_carry_no_analog_reading() {
        let repo = repository(Vendor::Generic);
        let psu = repo
            .records
            .iter()
            .find(|r| r.ends_with(b"PS1 Status"))
            .unwrap();
        assert_eq!((psu[13], psu[20]), (0x6F, 0xC0));
    }
}
