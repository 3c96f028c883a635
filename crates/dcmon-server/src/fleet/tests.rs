use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut l = Labels::default();
    for (k, v) in pairs {
        l.set(k, v);
    }
    l
}

fn agent(id: &str, host: &str, status: AgentStatus) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        machine_id: format!("m-{id}"),
        hostname: host.into(),
        host: host.into(),
        public_key: String::new(),
        status,
        agent_version: "test".into(),
        created_ms: 0,
        last_seen_ms: None,
        remote_addr: None,
    }
}

fn check_classify(seq: &[&[(&str, &str)]], expect: Option<Input>) {
    let mut c = Classifier::default();
    let mut last = None;
    for l in seq {
        last = c.classify(&labels(l));
    }
    assert_eq!(last, expect, "{seq:?}");
}

#[test]
fn series_feed_the_columns_they_name() {
    use Input::*;
    let temp = |chip| {
        vec![
            ("__name__", "node_hwmon_temp_celsius"),
            ("chip", chip),
            ("sensor", "temp1"),
        ]
    };
    check_classify(&[&temp("platform_coretemp_0")], Some(CpuTemp));
    check_classify(&[&temp("pci0000:00_0000:00:18_3")], None);
    check_classify(
        &[
            &[
                ("__name__", "node_hwmon_chip_names"),
                ("chip", "pci0000:00_0000:00:18_3"),
                ("chip_name", "k10temp"),
            ],
            &temp("pci0000:00_0000:00:18_3"),
        ],
        Some(CpuTemp),
    );
    check_classify(
        &[&[
            ("__name__", "ipmi_temperature_celsius"),
            ("name", "CPU1 VRM Temp"),
        ]],
        Some(VrmTemp),
    );
    check_classify(
        &[&[
            ("__name__", "ipmi_temperature_celsius"),
            ("name", "CPU Temp"),
        ]],
        Some(CpuTemp),
    );
    check_classify(
        &[&[
            ("__name__", "ipmi_temperature_celsius"),
            ("name", "Inlet Temp"),
        ]],
        None,
    );
    check_classify(
        &[&[
            ("__name__", "node_cpu_seconds_total"),
            ("cpu", "0"),
            ("mode", "iowait"),
        ]],
        Some(CpuIdle),
    );
    check_classify(
        &[&[
            ("__name__", "node_cpu_seconds_total"),
            ("cpu", "0"),
            ("mode", "user"),
        ]],
        Some(CpuBusy),
    );
    check_classify(
        &[&[
            ("__name__", "node_filesystem_avail_bytes"),
            ("mountpoint", "/var/lib/docker"),
        ]],
        Some(DockerAvail),
    );
    check_classify(
        &[&[
            ("__name__", "node_filesystem_size_bytes"),
            ("mountpoint", "/"),
        ]],
        Some(RootSize),
    );
    check_classify(
        &[&[
            ("__name__", "node_filesystem_size_bytes"),
            ("mountpoint", "/boot"),
        ]],
        None,
    );
    check_classify(
        &[&[("__name__", "DCGM_FI_DEV_POWER_MGMT_LIMIT"), ("gpu", "0")]],
        Some(GpuLimit),
    );
    check_classify(&[&[("__name__", "node_load1")]], None);
}

fn ui() -> UiConfig {
    UiConfig::default()
}

fn row_values(view: &FleetView, now: i64) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&view.snapshot_json(&ui(), now)).unwrap();
    v["rows"].as_array().unwrap().clone()
}

/// Two collections 10 s apart of a 2-core host with 2 GPUs, memory and file systems.
fn two_collections() -> Vec<Observation> {
    use Input::*;
    let mut obs = Vec::new();
    for (t, k) in [(1_000, 0.0), (11_000, 1.0)] {
        // Per core, per 10 s: idle +6, iowait +1, user +2, system +1: 30 % busy.
        obs.push((1, CpuIdle, t, 100.0 + 6.0 * k));
        obs.push((2, CpuIdle, t, 10.0 + 1.0 * k));
        obs.push((3, CpuBusy, t, 50.0 + 2.0 * k));
        obs.push((4, CpuBusy, t, 20.0 + 1.0 * k));
        obs.push((5, CpuIdle, t, 100.0 + 6.0 * k));
        obs.push((6, CpuIdle, t, 10.0 + 1.0 * k));
        obs.push((7, CpuBusy, t, 50.0 + 2.0 * k));
        obs.push((8, CpuBusy, t, 20.0 + 1.0 * k));
    }
    obs.extend([
        (10, CpuTemp, 11_000, 51.0),
        (11, CpuTemp, 11_000, 55.0),
        (12, GpuTemp, 11_000, 61.0),
        (13, GpuTemp, 11_000, 67.0),
        (14, GpuPower, 11_000, 250.0),
        (15, GpuPower, 11_000, 300.5),
        (16, GpuLimit, 11_000, 700.0),
        (17, GpuLimit, 11_000, 700.0),
        (18, GpuFan, 11_000, 40.0),
        (20, MemTotal, 11_000, 1000.0),
        (21, MemAvailable, 11_000, 250.0),
        (22, RootSize, 11_000, 200.0),
        (23, RootAvail, 11_000, 150.0),
    ]);
    obs
}

#[test]
fn a_push_fills_its_row_with_maxima_sums_rates_and_shares() {
    let view = FleetView::default();
    let a = agent("a1", "gpu01", AgentStatus::Approved);
    view.observe(&a, &two_collections(), 11_500);
    let rows = row_values(&view, 12_000);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["host"], "gpu01");
    assert_eq!(rows[0]["status"], "online");
    assert_eq!(
        rows[0]["v"],
        serde_json::json!([55, 30, null, 67, 550.5, 1400, 40, 75, 25, null])
    );
}

#[test]
fn a_counter_reset_gives_no_cpu_figure_instead_of_a_wrong_one() {
    let view = FleetView::default();
    let a = agent("a1", "gpu01", AgentStatus::Approved);
    view.observe(
        &a,
        &[
            (1, Input::CpuIdle, 1_000, 500.0),
            (1, Input::CpuIdle, 2_000, 3.0),
        ],
        2_000,
    );
    assert_eq!(row_values(&view, 2_000)[0]["v"][1], serde_json::Value::Null);
}

#[test]
fn status_follows_the_last_push() {
    let view = FleetView::default();
    view.observe(&agent("a1", "h", AgentStatus::Approved), &[], 0);
    let status = |now| row_values(&view, now)[0]["status"].clone();
    assert_eq!(status(60_000), "online");
    assert_eq!(status(61_000), "stale");
    assert_eq!(status(181_000), "offline");
    let snap: serde_json::Value = serde_json::from_str(&view.snapshot_json(&ui(), 0)).unwrap();
    assert_eq!(
        (snap["total"].clone(), snap["online"].clone()),
        (1.into(), 1.into())
    );
    assert_eq!(snap["columns"].as_array().unwrap().len(), 10);
    assert_eq!(
        snap["thresholds"]["cpu_temp"],
        serde_json::json!([45.0, 70.0, 85.0])
    );
    assert!(snap["thresholds"].get("gpu_power").is_none());
}

#[test]
fn configured_thresholds_replace_the_defaults() {
    let mut ui = ui();
    ui.thresholds
        .insert("gpu_power".into(), [100.0, 300.0, 600.0]);
    let view = FleetView::default();
    let snap: serde_json::Value = serde_json::from_str(&view.snapshot_json(&ui, 0)).unwrap();
    assert_eq!(
        snap["thresholds"]["gpu_power"],
        serde_json::json!([100.0, 300.0, 600.0])
    );
}

#[test]
fn sync_keeps_a_row_per_approved_agent_only() {
    let view = FleetView::default();
    view.sync(&[
        agent("a1", "h1", AgentStatus::Approved),
        agent("a2", "h2", AgentStatus::Pending),
        agent("a3", "h3", AgentStatus::Approved),
    ]);
    assert_eq!(view.len(), 2);
    view.sync(&[
        agent("a3", "h3-renamed", AgentStatus::Approved),
        agent("a1", "h1", AgentStatus::Revoked),
    ]);
    let rows = row_values(&view, 0);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["host"], "h3-renamed");
}

fn event(view: &FleetView, cursor: &mut StreamCursor, now: i64) -> Option<serde_json::Value> {
    view.changes_json(cursor, &ui(), now)
        .map(|s| serde_json::from_str(&s).unwrap())
}

#[test]
fn a_stream_sends_changed_rows_status_moves_and_removals_once() {
    let view = FleetView::default();
    view.observe(&agent("a1", "h1", AgentStatus::Approved), &[], 0);
    view.observe(&agent("a2", "h2", AgentStatus::Approved), &[], 0);

    let mut fresh = view.cursor(0, &ui(), 0);
    assert_eq!(
        event(&view, &mut fresh, 0).unwrap()["rows"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(event(&view, &mut fresh, 1_000).is_none(), "nothing changed");

    // A client that loaded the snapshot first gets nothing until something changes.
    let snap: serde_json::Value = serde_json::from_str(&view.snapshot_json(&ui(), 0)).unwrap();
    let mut after_snapshot = view.cursor(snap["version"].as_u64().unwrap(), &ui(), 0);
    assert!(event(&view, &mut after_snapshot, 0).is_none());

    view.observe(
        &agent("a2", "h2", AgentStatus::Approved),
        &[(1, Input::GpuTemp, 30_000, 70.0)],
        30_000,
    );
    let e = event(&view, &mut after_snapshot, 30_000).unwrap();
    let rows = e["rows"].as_array().unwrap();
    assert_eq!((rows.len(), rows[0]["agent_id"].clone()), (1, "a2".into()));
    assert_eq!(rows[0]["v"][3], 70.0);

    // Time alone makes a1 stale: sent once.
    let e = event(&view, &mut after_snapshot, 70_000).unwrap();
    assert_eq!(e["rows"][0]["agent_id"], "a1");
    assert_eq!(e["rows"][0]["status"], "stale");
    assert!(event(&view, &mut after_snapshot, 71_000).is_none());

    view.sync(&[agent("a2", "h2", AgentStatus::Approved)]);
    let e = event(&view, &mut after_snapshot, 72_000).unwrap();
    assert_eq!(e["removed"], serde_json::json!(["a1"]));
    assert_eq!(e["total"], 1);
}

#[test]
fn rows_are_seeded_from_the_store_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(dir.path()).unwrap();
    let series = [
        labels(&[
            ("__name__", "node_hwmon_chip_names"),
            ("host", "h1"),
            ("chip", "c0"),
            ("chip_name", "k10temp"),
        ]),
        labels(&[
            ("__name__", "node_hwmon_temp_celsius"),
            ("host", "h1"),
            ("chip", "c0"),
            ("sensor", "temp1"),
        ]),
        labels(&[
            ("__name__", "node_cpu_seconds_total"),
            ("host", "h1"),
            ("cpu", "0"),
            ("mode", "idle"),
        ]),
        labels(&[
            ("__name__", "node_cpu_seconds_total"),
            ("host", "h1"),
            ("cpu", "0"),
            ("mode", "user"),
        ]),
        labels(&[("__name__", "node_load1"), ("host", "h1")]),
        labels(&[
            ("__name__", "DCGM_FI_DEV_GPU_TEMP"),
            ("host", "elsewhere"),
            ("gpu", "0"),
        ]),
    ];
    let ids = tsdb.resolve(&series).unwrap();
    let now = 1_700_000_000_000;
    let mut samples = Vec::new();
    for (k, t) in [now - 20_000, now - 10_000].into_iter().enumerate() {
        let k = k as f64;
        samples.extend([
            (ids[0], t, 1.0),
            (ids[1], t, 48.0 + k),
            (ids[2], t, 100.0 + 5.0 * k),
            (ids[3], t, 10.0 + 5.0 * k),
            (ids[4], t, 3.0),
            (ids[5], t, 80.0),
        ]);
    }
    tsdb.append(&samples).unwrap();

    let view = FleetView::default();
    let mut a = agent("a1", "h1", AgentStatus::Approved);
    a.last_seen_ms = Some(now - 10_000);
    view.sync(&[a]);
    view.seed(&tsdb, now, 5 * 60_000).unwrap();
    let rows = row_values(&view, now);
    assert_eq!(rows.len(), 1, "hosts without an agent get no row");
    assert_eq!(rows[0]["v"][0], 49.0);
    assert_eq!(rows[0]["v"][1], 50.0);
    assert_eq!(rows[0]["last_seen_ms"], now - 10_000);
}
