//! System Event Log records (IPMI 2.0 §31, §32) and their text: Get SEL Info, Get SEL
//! Entry and Clear SEL responses of arbitrary bytes decode or fail without panicking,
//! and every decoded system event has a description and a sensor type name. Then the
//! same bytes drive `sel list` — Get SEL Info and the Next Record ID chain of Get SEL
//! Entry — through a scripted BMC.

#![no_main]

use dcmon_ipmi::client;
use dcmon_ipmi::cmd::sel::{self, SelEntry, SelInfo};
use dcmon_ipmi_fuzz::{Scripted, block_on};
use libfuzzer_sys::fuzz_target;

fn describe(e: &SelEntry) {
    assert_eq!(e.event.is_some(), e.record_type == 0x02);
    if let Some(ev) = &e.event {
        assert!(!ev.description().is_empty());
        let _ = sel::sensor_type_name(ev.sensor_type);
        assert!(ev.offset() < 16);
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = SelInfo::parse(data);
    let _ = sel::parse_clear(data);
    if let Ok(e) = SelEntry::parse(data) {
        describe(&e);
    }
    if let Ok((_, e)) = sel::parse_get_entry(data) {
        describe(&e);
    }
    if let Ok(entries) = block_on(client::sel_entries(&Scripted::new(data))) {
        entries.iter().for_each(describe);
    }
});
