//! Pure decoders of the two NVMe admin data structures the collector reads: the
//! SMART / Health Information log page (Log Identifier 02h) and the Identify Controller
//! data structure (CNS 01h), both as laid out in the NVM Express Base Specification 2.0
//! (§5.16.1.3, Figure 207; §5.17.2.1, Figure 275). Bytes in, values out: no device here.

/// Length of the SMART / Health Information log page.
pub(super) const SMART_LOG_LEN: usize = 512;
/// Length of the Identify Controller data structure.
pub(super) const IDENTIFY_LEN: usize = 4096;

/// Bytes per NVMe "data unit": the spec counts thousands of 512-byte units (§5.16.1.3).
const DATA_UNIT_BYTES: f64 = 512.0 * 1000.0;

/// The fields of the SMART / Health log the collector reports.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SmartLog {
    /// Bit field: spare below threshold, temperature, reliability, read-only, backup.
    pub critical_warning: u8,
    /// Composite temperature in Kelvin.
    pub composite_temperature_k: u16,
    /// Remaining spare capacity, normalised percent.
    pub available_spare: u8,
    pub available_spare_threshold: u8,
    /// Vendor estimate of life used; may exceed 100.
    pub percentage_used: u8,
    pub data_units_read: u128,
    pub data_units_written: u128,
    pub power_cycles: u128,
    pub power_on_hours: u128,
    pub unsafe_shutdowns: u128,
    pub media_errors: u128,
    pub error_log_entries: u128,
    /// Temperature sensors 1-8 in Kelvin; 0 means the sensor is not implemented.
    pub temperature_sensors_k: [u16; 8],
}

impl SmartLog {
    /// Bytes read by the host, as the spec's data units times 512 000.
    pub fn bytes_read(&self) -> f64 {
        self.data_units_read as f64 * DATA_UNIT_BYTES
    }

    pub fn bytes_written(&self) -> f64 {
        self.data_units_written as f64 * DATA_UNIT_BYTES
    }
}

/// Converts a spec temperature to Celsius the way smartctl and nvme-cli print it
/// (K - 273), so the values match what an operator sees with those tools.
pub(super) fn kelvin_to_celsius(k: u16) -> f64 {
    f64::from(k) - 273.0
}

/// Decodes a SMART / Health log page; `page` must hold at least the 512 bytes of it.
pub(super) fn parse_smart_log(page: &[u8]) -> Result<SmartLog, String> {
    let page: &[u8; SMART_LOG_LEN] = page
        .get(..SMART_LOG_LEN)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| {
            format!(
                "SMART / Health log page is {} bytes, expected {SMART_LOG_LEN}",
                page.len()
            )
        })?;
    let u16_at = |at: usize| u16::from_le_bytes([page[at], page[at + 1]]);
    let u128_at = |at: usize| {
        let mut b = [0u8; 16];
        b.copy_from_slice(&page[at..at + 16]);
        u128::from_le_bytes(b)
    };
    let mut temperature_sensors_k = [0u16; 8];
    for (i, t) in temperature_sensors_k.iter_mut().enumerate() {
        *t = u16_at(200 + 2 * i);
    }
    Ok(SmartLog {
        critical_warning: page[0],
        composite_temperature_k: u16_at(1),
        available_spare: page[3],
        available_spare_threshold: page[4],
        percentage_used: page[5],
        data_units_read: u128_at(32),
        data_units_written: u128_at(48),
        power_cycles: u128_at(112),
        power_on_hours: u128_at(128),
        unsafe_shutdowns: u128_at(144),
        media_errors: u128_at(160),
        error_log_entries: u128_at(176),
        temperature_sensors_k,
    })
}

/// What Identify Controller tells about the drive, for `smartctl_device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ControllerIdentity {
    pub serial_number: String,
    pub model_name: String,
    pub firmware_version: String,
}

/// Decodes serial number (bytes 4-23), model number (24-63) and firmware revision
/// (64-71) of an Identify Controller data structure. The spec pads them with spaces;
/// some firmware pads with NULs instead, so both are trimmed.
pub(super) fn parse_identify_controller(data: &[u8]) -> Result<ControllerIdentity, String> {
    if data.len() < IDENTIFY_LEN {
        return Err(format!(
            "Identify Controller data is {} bytes, expected {IDENTIFY_LEN}",
            data.len()
        ));
    }
    let text = |range: std::ops::Range<usize>| {
        String::from_utf8_lossy(&data[range])
            .trim_matches(|c: char| c == ' ' || c == '\0')
            .to_owned()
    };
    Ok(ControllerIdentity {
        serial_number: text(4..24),
        model_name: text(24..64),
        firmware_version: text(64..72),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A page with the given `(offset, little-endian bytes)` fields set, zero elsewhere.
    pub(in crate::collectors::nvme) fn page(fields: &[(usize, &[u8])]) -> Vec<u8> {
        let mut p = vec![0u8; SMART_LOG_LEN];
        for (at, bytes) in fields {
            p[*at..*at + bytes.len()].copy_from_slice(bytes);
        }
        p
    }

    fn check(input: &[u8], expect: &str) {
        let got = match parse_smart_log(input) {
            Ok(log) => format!("{log:?}"),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect);
    }

    #[test]
    fn smart_log_fields_at_their_spec_offsets() {
        check(
            &page(&[
                (0, &[0x04]),
                (1, &310u16.to_le_bytes()),
                (3, &[97, 10, 3]),
                (32, &1_234_567u128.to_le_bytes()),
                (48, &7_654_321u128.to_le_bytes()),
                (112, &42u128.to_le_bytes()),
                (128, &8_760u128.to_le_bytes()),
                (144, &11u128.to_le_bytes()),
                (160, &2u128.to_le_bytes()),
                (176, &(u128::MAX).to_le_bytes()),
                (200, &305u16.to_le_bytes()),
                (214, &330u16.to_le_bytes()),
            ]),
            "SmartLog { critical_warning: 4, composite_temperature_k: 310, available_spare: 97, \
             available_spare_threshold: 10, percentage_used: 3, data_units_read: 1234567, \
             data_units_written: 7654321, power_cycles: 42, power_on_hours: 8760, \
             unsafe_shutdowns: 11, media_errors: 2, \
             error_log_entries: 340282366920938463463374607431768211455, \
             temperature_sensors_k: [305, 0, 0, 0, 0, 0, 0, 330] }",
        );
        check(
            &[0u8; 511],
            "error: SMART / Health log page is 511 bytes, expected 512",
        );
        check(
            &[],
            "error: SMART / Health log page is 0 bytes, expected 512",
        );
    }

    #[test]
    fn data_units_are_thousands_of_512_byte_blocks() {
        let log = parse_smart_log(&page(&[(32, &[1]), (48, &[3])])).unwrap();
        assert_eq!(log.bytes_read(), 512_000.0);
        assert_eq!(log.bytes_written(), 1_536_000.0);
        assert_eq!(kelvin_to_celsius(312), 39.0);
    }

    /// The first 98 bytes of a SMART / Health page as dumped by `nvme get-log -i 0x2
    /// -l 0x100 -vv` in nvme-cli issue #2759 (the post shows no more); bytes after those
    /// are zero in the fixture.
    #[test]
    fn captured_page_decodes_as_nvme_cli_shows_it() {
        let hex: String = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src/collectors/nvme/testdata/smart_log_nvme_cli_2759.hex"),
        )
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .collect();
        let bytes = hex::decode(hex).unwrap();
        assert_eq!(bytes.len(), SMART_LOG_LEN);
        let log = parse_smart_log(&bytes).unwrap();
        assert_eq!(kelvin_to_celsius(log.composite_temperature_k), 39.0);
        assert_eq!(
            (
                log.critical_warning,
                log.available_spare,
                log.available_spare_threshold,
                log.percentage_used
            ),
            (0, 100, 10, 1)
        );
        assert_eq!(log.data_units_read, 0x0828_bc3a);
        assert_eq!(log.data_units_written, 0x034c_fcc4);
    }

    #[test]
    fn identify_controller_strings_are_trimmed() {
        let mut data = vec![0u8; IDENTIFY_LEN];
        data[4..24].copy_from_slice(b"S4EWNX0R123456      ");
        data[24..64].copy_from_slice(b"Samsung SSD 980 PRO 1TB\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        data[64..72].copy_from_slice(b"5B2QGXA7");
        assert_eq!(
            parse_identify_controller(&data),
            Ok(ControllerIdentity {
                serial_number: "S4EWNX0R123456".into(),
                model_name: "Samsung SSD 980 PRO 1TB".into(),
                firmware_version: "5B2QGXA7".into(),
            })
        );
        assert_eq!(
            parse_identify_controller(&data[..100]),
            Err("Identify Controller data is 100 bytes, expected 4096".into())
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let smart = parse_smart_log(&bytes);
            prop_assert_eq!(smart.is_ok(), bytes.len() >= SMART_LOG_LEN);
            if let Err(e) = smart {
                prop_assert!(e.contains(&format!("{} bytes", bytes.len())), "{}", e);
            }
            let id = parse_identify_controller(&bytes);
            prop_assert_eq!(id.is_ok(), bytes.len() >= IDENTIFY_LEN);
        }
    }
}
