use super::*;
use crate::bmcs::NewBmc;
use crate::config::ServerConfig;
use crate::events::EventFilter;
use crate::secrets::Secret;
use crate::state::SystemClock;
use dcmon_ipmi::sim::{Fleet, SimConfig, Vendor as SimVendor, parse_control};
use std::time::Instant;

fn record(name: &str, entity_id: u8) -> SensorRecord {
    SensorRecord {
        record_id: 1,
        owner_id: 0x20,
        owner_lun: 0,
        number: 1,
        entity_id,
        entity_instance: 1,
        sensor_type: SENSOR_TYPE_TEMPERATURE,
        event_type: 0x01,
        unit: UNIT_CELSIUS,
        conversion: None,
        thresholds: Default::default(),
        name: name.into(),
    }
}

#[test]
fn sensors_are_classified_by_entity_and_name() {
    let check = |name: &str, entity: u8, expect: SensorKind| {
        assert_eq!(sensor_kind(&record(name, entity)), expect, "{name}");
    };
    check("CPU Temp", 0x07, SensorKind::CpuTemp);
    check("CPU2 Temp", 0x07, SensorKind::CpuTemp);
    // Dell names the processor sensors "Temp"; the entity tells.
    check("Temp", ENTITY_PROCESSOR, SensorKind::CpuTemp);
    check("CPU1 VRM Temp", 0x14, SensorKind::Other);
    check("GPU3 Temp", 0x07, SensorKind::GpuTemp);
    check("NVMe_1 Temp", 0x07, SensorKind::NvmeTemp);
    check("Inlet Temp", 0x07, SensorKind::Other);
}

#[test]
fn supermicro_fans_fall_into_zones_by_name() {
    let check = |vendor, name: &str, expect: Option<u8>| {
        assert_eq!(fan_zone(vendor, name), expect, "{name}");
    };
    check(Vendor::Supermicro, "FAN1", Some(0));
    check(Vendor::Supermicro, "fan4", Some(0));
    check(Vendor::Supermicro, "FANA", Some(1));
    check(Vendor::Supermicro, "FANB", Some(1));
    check(Vendor::Supermicro, "FAN", None);
    check(Vendor::Supermicro, "Fé", None);
    check(Vendor::Supermicro, "PUMP1", None);
    check(Vendor::Dell, "FAN1", None);
}

#[test]
fn writes_are_described_with_old_and_new_values() {
    let current = CurrentFans {
        mode: Some(dcmon_ipmi::vendor::supermicro::FanMode::Standard),
        zones: vec![ZoneDuty {
            zone: 0,
            duty_percent: 50,
        }],
    };
    let check = |w, vendor, current: Option<&CurrentFans>, expect: (&str, &str, &str)| {
        let (c, o, n) = describe(w, vendor, current);
        assert_eq!((c.as_str(), o.as_str(), n.as_str()), expect, "{w:?}");
    };
    let duty = |zone, duty| FanWrite::Duty { zone, duty };
    check(
        duty(0, 24),
        Vendor::Supermicro,
        Some(&current),
        ("set zone 0 duty", "50 %", "24 %"),
    );
    check(
        duty(1, 100),
        Vendor::Supermicro,
        Some(&current),
        ("set zone 1 duty", "unknown", "100 %"),
    );
    check(
        FanWrite::FullMode,
        Vendor::Supermicro,
        Some(&current),
        ("set fan mode", "standard", "full"),
    );
    check(
        FanWrite::HandBack,
        Vendor::Dell,
        None,
        ("set fan mode", "unknown", "automatic"),
    );
}

#[test]
fn the_ipmi_timeout_is_half_an_interval_within_bounds() {
    assert_eq!(ipmi_timeout(1), Duration::from_secs(1));
    assert_eq!(ipmi_timeout(4), Duration::from_secs(2));
    assert_eq!(ipmi_timeout(30), Duration::from_secs(5));
    assert_eq!(ipmi_timeout(u64::MAX), Duration::from_secs(5));
}

/// Polls `f` every 100 ms until it is true; the time it took, or a panic with `what`.
async fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

fn fan_writes(db: &ControlDb) -> Vec<String> {
    db.audit_tail(1000)
        .unwrap()
        .into_iter()
        .rev()
        .filter(|e| e.action == AUDIT_ACTION)
        .map(|e| {
            assert_eq!((e.actor.as_str(), e.target.as_str()), ("curve:sim", "sim"));
            e.detail
        })
        .collect()
}

fn events(db: &ControlDb, kind: &str) -> usize {
    let filter = EventFilter {
        kind: Some(kind.into()),
        ..Default::default()
    };
    db.list_events(&filter, 100).unwrap().len()
}

/// The loop against the simulator's BMC over RMCP+: the curve's writes, the fail-safe
/// when the temperatures go, its end when they come back, every write audited, and the
/// hand-back when the loop stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_controls_a_simulated_bmc_fails_safe_and_hands_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    let control_db = ControlDb::open(dir.path()).unwrap();
    let tsdb = dcmon_tsdb::Tsdb::open(&dir.path().join("tsdb")).unwrap();
    let state = AppState::new(config, control_db, tsdb, Arc::new(SystemClock), "x".into());
    let fleet = Fleet::start(SimConfig {
        load: Some(0.3),
        ..SimConfig::loopback(SimVendor::Supermicro, "admin", "s3cret")
    })
    .await
    .unwrap();
    let secrets = SecretBox::open_with(dir.path(), None).unwrap();
    let new = NewBmc {
        name: "sim".into(),
        address: fleet.addrs()[0].to_string(),
        user: "admin".into(),
        password: Secret::new("s3cret"),
        interval: None,
        agent: None,
        vendor: None,
    };
    let db = state.control.clone();
    db.add_bmc(&secrets, &new, "t", None).unwrap();
    let curve: CurveConfig = serde_json::from_value(serde_json::json!({
        "interval_s": 1,
        "zones": [{"zone": 0, "points": [[20, 30], [40, 45], [60, 100]]}]
    }))
    .unwrap();
    db.set_fan_curve("sim", &curve, true, "t", None).unwrap();

    let fans = FanLoop::start(state.clone());
    wait_until("the curve's first write", Duration::from_secs(15), || {
        fan_writes(&db)
            .iter()
            .any(|d| d.contains("set zone 0 duty") && d.contains("result=ok"))
    })
    .await;
    assert_eq!(
        db.bmc("sim").unwrap().vendor.as_deref(),
        Some("supermicro"),
        "detected and recorded"
    );
    let view = fan_view(&state, "sim".into(), None, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(view.reachable, "{view:?}");
    assert_eq!(view.mode.as_deref(), Some("full"));
    let fan1 = view.fans.iter().find(|f| f.name == "FAN1").unwrap();
    assert!(
        fan1.limits
            .lower_critical
            .is_some_and(|c| c > 0.0 && c < fan1.rpm),
        "the SDR's lower thresholds come with each fan: {fan1:?}"
    );
    // A preview decides with the proposed curve, and refuses what the vendor refuses.
    let flat: CurveConfig = serde_json::from_value(serde_json::json!({
        "interval_s": 1, "zones": [{"zone": 0, "points": [[20, 77]]}]
    }))
    .unwrap();
    let preview = fan_view(&state, "sim".into(), Some(flat), Duration::from_secs(5))
        .await
        .unwrap();
    let duties = preview.decision.map(|d| d.duties).unwrap_or_default();
    assert!(
        duties.iter().any(|d| d.zone == 0 && d.duty_percent == 77),
        "{duties:?}"
    );
    let low: CurveConfig = serde_json::from_value(serde_json::json!({
        "zones": [{"zone": 0, "points": [[20, 15]]}]
    }))
    .unwrap();
    let preview = fan_view(&state, "sim".into(), Some(low), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        preview
            .curve_error
            .as_deref()
            .is_some_and(|e| e.contains("below Supermicro's minimum")),
        "{:?}",
        preview.curve_error
    );
    assert!(
        view.temperatures
            .iter()
            .any(|t| t.name == "CPU Temp" && t.kind == SensorKind::CpuTemp),
        "{view:?}"
    );
    let decision = view.decision.unwrap();
    assert_eq!(decision.fail_safe, None);
    assert!(decision.explanation.iter().any(|l| l.contains("CPU Temp")));

    let before = fan_writes(&db).len();
    let fault = |line: &str| parse_control(line).unwrap();
    assert_eq!(
        fleet
            .execute(fault("fault 0 lose-temperatures on"))
            .await
            .trim(),
        "ok"
    );
    let took = wait_until(
        "fail-safe after the temperatures went",
        Duration::from_secs(5),
        || events(&db, "fan_fail_safe") == 1,
    )
    .await;
    eprintln!("fault to fail-safe event: {took:?} (interval 1 s)");
    assert!(
        took < Duration::from_millis(2500),
        "one interval of 1 s: {took:?}"
    );
    wait_until("the fail-safe writes", Duration::from_secs(3), || {
        fan_writes(&db)[before..]
            .iter()
            .filter(|d| d.contains("new=\"100 %\"") || d.contains("new=\"full\""))
            .count()
            >= 3
    })
    .await;
    assert_eq!(
        fleet
            .execute(fault("fault 0 lose-temperatures off"))
            .await
            .trim(),
        "ok"
    );
    wait_until("fail-safe cleared", Duration::from_secs(5), || {
        events(&db, "fan_fail_safe_cleared") == 1
    })
    .await;
    assert_eq!(events(&db, "fan_fail_safe"), 1, "entered once");

    // A BMC that stops answering: fail-safe, its first write tried (and audited as
    // failed), the rest left for the next cycle.
    let tried = fan_writes(&db).len();
    assert_eq!(fleet.execute(fault("fault 0 silent on")).await.trim(), "ok");
    wait_until(
        "fail-safe: the BMC did not answer",
        Duration::from_secs(10),
        || {
            let filter = EventFilter {
                kind: Some("fan_fail_safe".into()),
                ..Default::default()
            };
            db.list_events(&filter, 10)
                .unwrap()
                .iter()
                .any(|e| e.detail["reason"]["reason"] == "bmc_unreachable")
        },
    )
    .await;
    wait_until(
        "a failed Full write audited",
        Duration::from_secs(10),
        || {
            fan_writes(&db)[tried..].iter().any(|d| {
                d.contains("result=failed")
                    && d.contains("no response")
                    && d.contains("new=\"full\"")
            })
        },
    )
    .await;
    // Only the first write of each silent cycle was tried: Full mode. A write already
    // in flight when the BMC fell silent may fail before the fail-safe's first.
    let failed: Vec<String> = fan_writes(&db)[tried..]
        .iter()
        .filter(|d| d.contains("result=failed"))
        .cloned()
        .collect();
    assert!(
        failed.iter().skip(1).all(|d| d.contains("new=\"full\"")),
        "{failed:#?}"
    );
    assert_eq!(
        fleet.execute(fault("fault 0 silent off")).await.trim(),
        "ok"
    );
    wait_until(
        "fail-safe cleared after the silence",
        Duration::from_secs(10),
        || events(&db, "fan_fail_safe_cleared") == 2,
    )
    .await;

    fans.shutdown().await;
    let last = fan_writes(&db).pop().unwrap();
    assert!(
        last.contains("new=\"standard\"") && last.contains("result=ok"),
        "{last}"
    );
    let target = db.bmc_target(&secrets, "sim").unwrap();
    let session = LanSession::connect(target.lan_config(Duration::from_secs(5)))
        .await
        .unwrap();
    let mode = fans::execute(&session, &FanAction::Mode { mode: None })
        .await
        .unwrap();
    assert_eq!(mode.mode.as_deref(), Some("standard"));
    session.close().await;
    fleet.shutdown().await;
}
