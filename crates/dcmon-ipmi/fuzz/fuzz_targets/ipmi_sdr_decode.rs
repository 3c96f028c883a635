//! Sensor Data Records (IPMI 2.0 §43) and reading conversion (§36.3): a record of
//! arbitrary bytes decodes or fails without panicking; a sensor record converts every
//! raw reading and threshold to a finite number or none. Then the same bytes drive the
//! whole `sdr list` path — Reserve SDR Repository, partial Get SDR reads and Get Sensor
//! Reading — through a scripted BMC.

#![no_main]

use dcmon_ipmi::client;
use dcmon_ipmi::cmd::sdr::{self, SdrRecord};
use dcmon_ipmi::cmd::sensor::SensorReading;
use dcmon_ipmi_fuzz::{Scripted, block_on};
use libfuzzer_sys::fuzz_target;

fn record(bytes: &[u8]) {
    let _ = sdr::parse_repository_info(bytes);
    let _ = sdr::parse_reservation(bytes);
    let _ = sdr::parse_get_sdr(bytes);
    let Ok(SdrRecord::Sensor(s)) = sdr::parse_record(bytes) else {
        return;
    };
    let _ = (s.is_analog(), s.unit_name());
    if let Some(c) = s.conversion {
        for raw in 0..=255 {
            if let Some(v) = c.convert(raw) {
                assert!(v.is_finite(), "{c:?} {raw}: {v}");
            }
        }
    }
    let t = s.thresholds;
    for raw in [
        t.lower_non_recoverable,
        t.lower_critical,
        t.lower_non_critical,
        t.upper_non_critical,
        t.upper_critical,
        t.upper_non_recoverable,
    ] {
        let _ = s.threshold(raw);
    }
    if let Ok(r) = SensorReading::parse(bytes.get(s.name.len()..).unwrap_or_default()) {
        let _ = (r.valid(), r.threshold_status().abbreviation());
    }
}

fuzz_target!(|data: &[u8]| {
    record(data);
    let bmc = Scripted::new(data);
    if let Ok(records) = block_on(client::sdr_records(&bmc)) {
        for r in &records {
            if let SdrRecord::Sensor(s) = r {
                assert!(s.owner_lun < 4);
            }
        }
        if let Ok(values) = block_on(client::read_sensors(&bmc, &records)) {
            for v in values {
                assert!(v.value.is_none_or(f64::is_finite));
            }
        }
    }
});
