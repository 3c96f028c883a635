//! Command responses a console parses (IPMI 2.0 §20, §22, §28, §35; DCMI 1.5 §6.6.1;
//! Supermicro OEM fan commands): arbitrary response data decodes or fails without
//! panicking, and what decodes can be shown. Then the same bytes answer the one-shot
//! client calls (device ID, chassis status and control, DCMI power) through a scripted
//! BMC, so that completion codes other than 00h take the error path.

#![no_main]

use dcmon_ipmi::client;
use dcmon_ipmi::cmd::app::{self, ChannelAuthCapabilities, DeviceId};
use dcmon_ipmi::cmd::chassis::{ChassisStatus, PowerAction};
use dcmon_ipmi::cmd::dcmi::PowerReading;
use dcmon_ipmi::cmd::sensor::SensorReading;
use dcmon_ipmi::msg::CompletionCode;
use dcmon_ipmi::vendor::supermicro;
use dcmon_ipmi_fuzz::{Scripted, block_on};
use libfuzzer_sys::fuzz_target;

fn show_device_id(id: &DeviceId) {
    let _ = (id.vendor(), id.firmware(), id.ipmi_version_string());
    assert!(id.additional_support().len() <= 8);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = DeviceId::parse(data) {
        show_device_id(&id);
    }
    let _ = ChannelAuthCapabilities::parse(data);
    let _ = app::parse_session_privilege(data);
    let _ = ChassisStatus::parse(data);
    let _ = PowerReading::parse(data);
    if let Ok(r) = SensorReading::parse(data) {
        let _ = (r.valid(), r.threshold_status().abbreviation());
    }
    if let Ok(mode) = supermicro::parse_fan_mode(data) {
        let _ = mode.name();
    }
    let _ = supermicro::parse_zone_duty(data);
    if let Some(&code) = data.first() {
        let _ = CompletionCode(code).to_string();
    }

    let bmc = Scripted::new(data);
    if let Ok(id) = block_on(client::device_id(&bmc)) {
        show_device_id(&id);
    }
    let _ = block_on(client::chassis_status(&bmc));
    let _ = block_on(client::chassis_control(&bmc, PowerAction::Cycle));
    let _ = block_on(client::power_reading(&bmc));
    if let Err(e) = block_on(client::call(&bmc, &app::get_device_id(), "raw")) {
        let _ = (e.completion(), e.to_string());
    }
});
