use super::*;

const T0: Duration = Duration::from_secs(1_700_000_000);

fn bmc(vendor: Vendor) -> Bmc {
    Bmc::new(
        BmcConfig {
            vendor,
            seed: 1,
            dell_refuses_manual_fans: false,
        },
        T0,
    )
}

/// Sends one request as an administrator at `T0 + at` and compares the answer.
fn check(bmc: &mut Bmc, at: u64, raw: &[u8], expect: (u8, &[u8])) {
    check_as(bmc, Privilege::Administrator, at, raw, expect);
}

fn check_as(bmc: &mut Bmc, privilege: Privilege, at: u64, raw: &[u8], expect: (u8, &[u8])) {
    let resp = send(bmc, privilege, at, raw);
    assert_eq!(
        (resp.completion.0, resp.data.as_slice()),
        expect,
        "request {raw:02x?}"
    );
}

fn send(bmc: &mut Bmc, privilege: Privilege, at: u64, raw: &[u8]) -> Response {
    let req = Request {
        netfn: raw[0],
        cmd: raw[1],
        data: &raw[2..],
        privilege,
    };
    bmc.handle(&req, T0 + Duration::from_secs(at))
}

fn data(bmc: &mut Bmc, at: u64, raw: &[u8]) -> Vec<u8> {
    let resp = send(bmc, Privilege::Administrator, at, raw);
    assert_eq!(resp.completion.0, 0, "request {raw:02x?}");
    resp.data
}

fn fan1_rpm(bmc: &mut Bmc, at: u64) -> f64 {
    let d = data(bmc, at, &[0x04, 0x2D, 0x41]);
    sdr::FAN_LINEAR.value(d[0])
}

#[test]
fn device_id_names_the_vendor() {
    let manufacturer = |v| data(&mut bmc(v), 0, &[0x06, 0x01])[6..9].to_vec();
    assert_eq!(manufacturer(Vendor::Supermicro), [0x7C, 0x2A, 0x00]);
    assert_eq!(manufacturer(Vendor::Dell), [0xA2, 0x02, 0x00]);
    assert_eq!(manufacturer(Vendor::Generic), [0, 0, 0]);
}

#[test]
fn unknown_commands_and_foreign_oem_commands_answer_c1() {
    check(&mut bmc(Vendor::Generic), 0, &[0x06, 0x99], (0xC1, &[]));
    check(
        &mut bmc(Vendor::Generic),
        0,
        &[0x30, 0x45, 0x00],
        (0xC1, &[]),
    );
    check(&mut bmc(Vendor::Dell), 0, &[0x30, 0x45, 0x00], (0xC1, &[]));
    check(
        &mut bmc(Vendor::Supermicro),
        0,
        &[0x30, 0x30, 0x01, 0x00],
        (0xC1, &[]),
    );
}

#[test]
fn supermicro_duties_take_effect_in_full_mode_only() {
    let mut b = bmc(Vendor::Supermicro);
    check(&mut b, 0, &[0x30, 0x45, 0x00], (0, &[0]));
    // Standard mode: the duty is stored, the BMC keeps its own curve (floor 50 %).
    check(&mut b, 0, &[0x30, 0x70, 0x66, 0x01, 0x00, 0x20], (0, &[]));
    assert!(fan1_rpm(&mut b, 30) > 3300.0);
    // Full mode: 100 % until a duty is set, then that duty.
    check(&mut b, 30, &[0x30, 0x45, 0x01, 0x01], (0, &[]));
    check(&mut b, 30, &[0x30, 0x70, 0x66, 0x00, 0x00], (0, &[100]));
    assert!(fan1_rpm(&mut b, 60) > 7000.0);
    check(&mut b, 60, &[0x30, 0x70, 0x66, 0x01, 0x00, 0x18], (0, &[]));
    check(&mut b, 61, &[0x30, 0x70, 0x66, 0x00, 0x00], (0, &[0x18]));
    // 24 % of ~7500 RPM, within the per-fan spread and one count.
    let rpm = fan1_rpm(&mut b, 90);
    assert!((1600.0..=2000.0).contains(&rpm), "{rpm}");
    // Zone 1 kept its 100 %.
    let fana = data(&mut b, 90, &[0x04, 0x2D, 0x45])[0];
    assert!(fana >= 70, "FANA raw {fana}");
}

#[test]
fn supermicro_refuses_malformed_fan_commands() {
    let mut b = bmc(Vendor::Supermicro);
    check(&mut b, 0, &[0x30, 0x45, 0x01, 0x03], (0xCC, &[]));
    check(
        &mut b,
        0,
        &[0x30, 0x70, 0x66, 0x01, 0x00, 0x65],
        (0xC9, &[]),
    );
    check(
        &mut b,
        0,
        &[0x30, 0x70, 0x66, 0x01, 0x02, 0x30],
        (0xC9, &[]),
    );
    // The seed's stray byte.
    check(
        &mut b,
        0,
        &[0x30, 0x70, 0x66, 0x01, 0x00, 0x00, 0x18],
        (0xC7, &[]),
    );
    check(&mut b, 0, &[0x30, 0x70, 0x0C], (0xC1, &[]));
}

#[test]
fn supermicro_cycles_all_fans_to_full_when_one_drops_below_lower_critical() {
    let mut b = bmc(Vendor::Supermicro);
    let events_before = b.sel.len();
    check(&mut b, 0, &[0x30, 0x45, 0x01, 0x01], (0, &[]));
    // 5 % ≈ 375 RPM: below the 500 RPM lower critical threshold.
    check(&mut b, 0, &[0x30, 0x70, 0x66, 0x01, 0x00, 0x05], (0, &[]));
    let mut low = 0;
    let mut high = 0;
    for s in 1..=120 {
        let rpm = fan1_rpm(&mut b, s);
        if rpm <= 700.0 {
            low += 1;
        }
        if rpm > 6000.0 {
            high += 1;
        }
    }
    assert!(low > 0 && high > 0, "low {low}, high {high}: no cycling");
    // FANA (zone 1, at 100 %) went to full with the others; every excursion logged.
    assert!(b.sel.len() >= events_before + 2, "{} events", b.sel.len());
    let last = data(&mut b, 120, &[0x0A, 0x43, 0, 0, 0xFF, 0xFF, 0, 0xFF]);
    assert_eq!(&last[12..15], &[0x04, 0x41, 0x01], "fan threshold event");
    // A duty the fans can hold ends the cycling.
    check(&mut b, 120, &[0x30, 0x70, 0x66, 0x01, 0x00, 0x18], (0, &[]));
    let rpm = fan1_rpm(&mut b, 200);
    assert!((1600.0..=2000.0).contains(&rpm), "{rpm}");
}

#[test]
fn dell_manual_mode_sets_every_fan() {
    let mut b = bmc(Vendor::Dell);
    check(&mut b, 0, &[0x30, 0x30, 0x02, 0xFF, 0x50], (0, &[]));
    let auto = fan1_rpm(&mut b, 30);
    check(&mut b, 30, &[0x30, 0x30, 0x01, 0x00], (0, &[]));
    let manual = fan1_rpm(&mut b, 60);
    assert!(
        manual > 5500.0 && auto < manual - 1000.0,
        "{auto} → {manual}"
    );
    let fana = sdr::FAN_LINEAR.value(data(&mut b, 60, &[0x04, 0x2D, 0x45])[0]);
    assert!(fana > 5500.0, "{fana}");
    check(&mut b, 60, &[0x30, 0x30, 0x01, 0x01], (0, &[]));
    assert!(fan1_rpm(&mut b, 90) < manual - 1000.0);
    check(&mut b, 90, &[0x30, 0x30, 0x02, 0x03, 0x50], (0xCC, &[]));
}

#[test]
fn newer_idrac_refuses_manual_fan_control_with_d4() {
    let mut b = Bmc::new(
        BmcConfig {
            vendor: Vendor::Dell,
            seed: 1,
            dell_refuses_manual_fans: true,
        },
        T0,
    );
    check(&mut b, 0, &[0x30, 0x30, 0x01, 0x00], (0xD4, &[]));
    check(&mut b, 0, &[0x30, 0x30, 0x02, 0xFF, 0x20], (0xD4, &[]));
}

#[test]
fn writes_need_operator_privilege() {
    let mut b = bmc(Vendor::Supermicro);
    check_as(
        &mut b,
        Privilege::User,
        0,
        &[0x30, 0x45, 0x01, 0x01],
        (0xD4, &[]),
    );
    check_as(&mut b, Privilege::User, 0, &[0x30, 0x45, 0x00], (0, &[0]));
    check_as(&mut b, Privilege::User, 0, &[0x00, 0x02, 0x00], (0xD4, &[]));
    check_as(
        &mut b,
        Privilege::Operator,
        0,
        &[0x30, 0x45, 0x01, 0x01],
        (0, &[]),
    );
}

#[test]
fn more_load_heats_the_cpu_and_the_automatic_curve_answers() {
    let mut b = bmc(Vendor::Supermicro);
    let cool = b.cpu_temperature();
    let rpm_cool = fan1_rpm(&mut b, 0);
    b.set_load(1.0);
    b.advance(T0 + Duration::from_secs(600));
    assert!(
        b.cpu_temperature() > cool + 10.0,
        "{cool} → {}",
        b.cpu_temperature()
    );
    assert!(fan1_rpm(&mut b, 600) > rpm_cool + 500.0);
}

#[test]
fn lost_temperatures_read_unavailable() {
    let mut b = bmc(Vendor::Generic);
    let cpu = data(&mut b, 0, &[0x04, 0x2D, 0x01]);
    assert_eq!(cpu[1] & 0x20, 0);
    assert!((20..80).contains(&cpu[0]), "CPU {} °C", cpu[0]);
    b.set_temperatures_lost(true);
    check(&mut b, 1, &[0x04, 0x2D, 0x01], (0, &[0, 0xE0, 0, 0x80]));
    // Fans still read.
    assert_eq!(data(&mut b, 1, &[0x04, 0x2D, 0x41])[1] & 0x20, 0);
}

#[test]
fn sensor_thresholds_and_discrete_states() {
    let mut b = bmc(Vendor::Generic);
    check(
        &mut b,
        0,
        &[0x04, 0x27, 0x41],
        (0, &[0x3F, 7, 5, 3, 253, 254, 255]),
    );
    check(&mut b, 0, &[0x04, 0x27, 0xC8], (0xC1, &[]));
    check(&mut b, 0, &[0x04, 0x2D, 0xC8], (0, &[0, 0xC0, 0x01, 0x80]));
    check(&mut b, 0, &[0x04, 0x2D, 0x99], (0xCB, &[]));
}

#[test]
fn partial_sdr_reads_need_the_current_reservation() {
    let mut b = bmc(Vendor::Supermicro);
    let header = data(&mut b, 0, &[0x0A, 0x23, 0, 0, 0, 0, 0, 5]);
    assert_eq!(&header[2..6], &[1, 0, 0x51, 0x01]);
    check(&mut b, 0, &[0x0A, 0x23, 0, 0, 1, 0, 5, 8], (0xC5, &[]));
    let r = data(&mut b, 0, &[0x0A, 0x22]);
    let body = data(&mut b, 0, &[0x0A, 0x23, r[0], r[1], 1, 0, 5, 3]);
    assert_eq!(&body[2..], &[0x20, 0x00, 0x01], "owner, LUN, sensor number");
    // A second reservation cancels the first.
    data(&mut b, 0, &[0x0A, 0x22]);
    check(
        &mut b,
        0,
        &[0x0A, 0x23, r[0], r[1], 1, 0, 5, 3],
        (0xC5, &[]),
    );
}

#[test]
fn clear_sel_takes_reservation_and_clr() {
    let mut b = bmc(Vendor::Supermicro);
    assert_eq!(data(&mut b, 0, &[0x0A, 0x40])[1], 1, "boot event logged");
    let r = data(&mut b, 0, &[0x0A, 0x42]);
    check(
        &mut b,
        0,
        &[0x0A, 0x47, r[0], r[1], b'C', b'L', b'X', 0xAA],
        (0xCC, &[]),
    );
    check(
        &mut b,
        0,
        &[0x0A, 0x47, 9, 9, b'C', b'L', b'R', 0xAA],
        (0xC5, &[]),
    );
    check(
        &mut b,
        0,
        &[0x0A, 0x47, r[0], r[1], b'C', b'L', b'R', 0xAA],
        (0, &[1]),
    );
    check(
        &mut b,
        0,
        &[0x0A, 0x47, r[0], r[1], b'C', b'L', b'R', 0x00],
        (0, &[1]),
    );
    assert_eq!(data(&mut b, 0, &[0x0A, 0x40])[1], 0);
    let mut record = [0u8; 18];
    record[..2].copy_from_slice(&[0x0A, 0x44]);
    record[4] = 0x02;
    check(&mut b, 5, &record, (0, &[2, 0]));
    let entry = data(&mut b, 5, &[0x0A, 0x43, 0, 0, 0, 0, 0, 0xFF]);
    let expect_time = (T0.as_secs() as u32 + 5).to_le_bytes();
    assert_eq!(&entry[5..9], &expect_time);
}

#[test]
fn chassis_control_powers_off_and_on() {
    let mut b = bmc(Vendor::Supermicro);
    check(&mut b, 0, &[0x00, 0x01], (0, &[0x21, 0, 0]));
    check(&mut b, 0, &[0x00, 0x02, 0x00], (0, &[]));
    check(&mut b, 1, &[0x00, 0x01], (0, &[0x20, 0, 0]));
    check(&mut b, 1, &[0x04, 0x2D, 0x41], (0, &[0, 0xE0, 0, 0x80]));
    check(&mut b, 2, &[0x00, 0x02, 0x01], (0, &[]));
    check(&mut b, 2, &[0x00, 0x01], (0, &[0x21, 0x10, 0]));
    check(&mut b, 2, &[0x00, 0x07], (0, &[0x01, 0x01]));
    check(&mut b, 2, &[0x00, 0x02, 0x09], (0xCC, &[]));
}

#[test]
fn dcmi_power_reading_reports_watts() {
    let mut b = bmc(Vendor::Generic);
    let d = data(&mut b, 60, &[0x2C, 0x02, 0xDC, 0x01, 0, 0]);
    assert_eq!(d.len(), 18);
    let current = u16::from_le_bytes([d[1], d[2]]);
    assert!((80..400).contains(&current), "{current} W");
    assert_eq!(d[17], 0x40);
    check(&mut b, 60, &[0x2C, 0x02, 0xDD, 0x01, 0, 0], (0xCC, &[]));
}

#[test]
fn channel_discovery_lists_suites_3_and_17() {
    let mut b = bmc(Vendor::Generic);
    check_as(
        &mut b,
        Privilege::Callback,
        0,
        &[0x06, 0x38, 0x8E, 0x04],
        (0, &[0x01, 0x80, 0x04, 0x02, 0, 0, 0, 0]),
    );
    check_as(
        &mut b,
        Privilege::Callback,
        0,
        &[0x06, 0x54, 0x0E, 0x00, 0x80],
        (
            0,
            &[
                0x01, 0xC0, 0x03, 0x01, 0x41, 0x81, 0xC0, 0x11, 0x03, 0x44, 0x81,
            ],
        ),
    );
    check(&mut b, 0, &[0x06, 0x54, 0x0E, 0x00, 0x81], (0, &[0x01]));
}

#[test]
fn same_seed_same_readings() {
    let mut a = bmc(Vendor::Supermicro);
    let mut b = bmc(Vendor::Supermicro);
    for s in [0, 10, 100] {
        assert_eq!(
            data(&mut a, s, &[0x04, 0x2D, 0x01]),
            data(&mut b, s, &[0x04, 0x2D, 0x01])
        );
    }
}

/// Sends one of the crate's console-side requests as an administrator at `T0 + at`.
fn ask(bmc: &mut Bmc, at: u64, req: &crate::msg::Request) -> Vec<u8> {
    let mut raw = vec![req.netfn, req.cmd];
    raw.extend_from_slice(&req.data);
    data(bmc, at, &raw)
}

#[test]
fn the_crates_console_decoders_read_the_model() {
    use crate::cmd::{app, chassis, dcmi, sdr as sdr_cmd, sel as sel_cmd, sensor};
    for (vendor, expect) in [
        (Vendor::Supermicro, crate::vendor::Vendor::Supermicro),
        (Vendor::Dell, crate::vendor::Vendor::Dell),
    ] {
        let mut b = bmc(vendor);
        let id = app::DeviceId::parse(&ask(&mut b, 0, &app::get_device_id())).unwrap();
        assert_eq!(id.vendor(), expect);
        let status = chassis::ChassisStatus::parse(&ask(&mut b, 0, &chassis::get_chassis_status()));
        assert_eq!(
            status.map(|s| (s.power_on, s.power_restore_policy)),
            Ok((true, "previous"))
        );
        let power =
            dcmi::PowerReading::parse(&ask(&mut b, 30, &dcmi::get_power_reading())).unwrap();
        assert!(
            power.active && (80..400).contains(&power.current_watts),
            "{power:?}"
        );
        let info = sel_cmd::SelInfo::parse(&ask(&mut b, 30, &sel_cmd::get_info())).unwrap();
        assert_eq!(info.entries, 1);
        let (next, _entry) =
            sel_cmd::parse_get_entry(&ask(&mut b, 30, &sel_cmd::get_entry(0))).unwrap();
        assert_eq!(next, 0xFFFF);

        // Walk the repository as a console does: header first, then the body in
        // reserved partial reads of 16 bytes.
        let reservation =
            sdr_cmd::parse_reservation(&ask(&mut b, 30, &sdr_cmd::reserve_repository())).unwrap();
        let mut id = 0u16;
        let mut sensors = Vec::new();
        while id != 0xFFFF {
            let head = ask(&mut b, 30, &sdr_cmd::get_sdr(reservation, id, 0, 5));
            let (next, header) = sdr_cmd::parse_get_sdr(&head).unwrap();
            let mut record = header.to_vec();
            let total = 5 + usize::from(header[4]);
            while record.len() < total {
                let len = (total - record.len()).min(16) as u8;
                let part = ask(
                    &mut b,
                    30,
                    &sdr_cmd::get_sdr(reservation, id, record.len() as u8, len),
                );
                record.extend_from_slice(sdr_cmd::parse_get_sdr(&part).unwrap().1);
            }
            if let sdr_cmd::SdrRecord::Sensor(s) = sdr_cmd::parse_record(&record).unwrap() {
                sensors.push(s);
            }
            id = next;
        }
        assert_eq!(sensors.len(), sdr::SENSORS.len());
        for s in sensors.iter().filter(|s| s.is_analog()) {
            let raw = ask(&mut b, 30, &sensor::get_sensor_reading(s.number));
            let reading = sensor::SensorReading::parse(&raw).unwrap();
            assert!(reading.valid(), "{}", s.name);
            let value = s.conversion.and_then(|c| c.convert(reading.raw)).unwrap();
            let plausible = match s.unit_name() {
                "degrees C" => (15.0..80.0).contains(&value),
                "RPM" => (1000.0..8000.0).contains(&value),
                "Volts" => (3.0..13.0).contains(&value),
                other => panic!("{}: unit {other}", s.name),
            };
            assert!(plausible, "{} reads {value} {}", s.name, s.unit_name());
            let lower_critical = s.threshold(s.thresholds.lower_critical).unwrap();
            assert!(
                value > lower_critical,
                "{}: {value} ≤ {lower_critical}",
                s.name
            );
        }
    }
}
