//! The Alerts pages in a real browser: `tests/web/alerts.mjs` drives Debian's Chromium
//! through playwright-core against a real server that evaluates rules every second over
//! a series written here through remote_write, and a webhook receiver started here
//! (plain HTTP on 127.0.0.1, which channels accept for a receiver on the same machine).
//! Everything is done through the pages: a webhook channel with a test message, a
//! refused rule, a rule that fires, acknowledging, silencing and expiring the silence.
//! Without Chromium or playwright-core this test fails with how to get them (it never
//! passes by skipping).

use super::web_ui::{BROWSER, first_admin, playwright, run_scenarios};
use super::{OperatorServer, dcmon, run, stdout};
use dcmon_wire::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Rules evaluated every second, notifications grouped for a second.
const FAST: &str = "alerts:\n  interval: 1s\n  group_interval: 1s\n  retry_initial: 200ms\n  retry_max: 2s\n  retry_attempts: 8\n";
/// The series the scenario's rule watches, and its value: above the rule's threshold.
const METRIC: &str = "webui_gpu_temp";
const HOST: &str = "web-gpu07";
const VALUE: f64 = 95.0;

/// A webhook receiver: `POST /hook` records the JSON body; `GET /received` lists them
/// (for the scenario, which checks what arrived).
struct Hook {
    _rt: tokio::runtime::Runtime,
    port: u16,
    got: Arc<Mutex<Vec<Value>>>,
}

impl Hook {
    fn start() -> Self {
        use axum::routing::{get, post};
        let got = Arc::new(Mutex::new(Vec::new()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (g1, g2) = (got.clone(), got.clone());
        let app = axum::Router::new()
            .route(
                "/hook",
                post(move |body: axum::body::Bytes| async move {
                    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    g1.lock().unwrap().push(v);
                    "ok"
                }),
            )
            .route(
                "/received",
                get(move || async move { axum::Json(Value::Array(g2.lock().unwrap().clone())) }),
            );
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        rt.spawn(async move { axum::serve(listener, app).await });
        Self { _rt: rt, port, got }
    }

    fn received(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }
}

/// Writes `webui_gpu_temp{host="web-gpu07"} 95` now, as Prometheus' remote_write would.
fn put_sample(s: &OperatorServer) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let label = |name: &str, value: &str| Label {
        name: name.into(),
        value: value.into(),
    };
    let body = encode(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![label("__name__", METRIC), label("host", HOST)],
            samples: vec![Sample {
                value: VALUE,
                timestamp: now,
            }],
        }],
    });
    let status = s.http.rt.block_on(async {
        s.http
            .http
            .post(format!("{}/api/v1/write", s.base))
            .bearer_auth(&s.token)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 204, "remote_write");
}

#[test]
fn web_alerts_in_chromium_channel_test_refused_rule_firing_ack_silence_viewer() {
    playwright();
    let _one_browser = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let server = OperatorServer::start_with(dir.path(), FAST);
    let hook = Hook::start();
    let (_, password) = first_admin(&server);

    // The series stays fresh (a sample every 2 s) while the browser works.
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                put_sample(&server);
                std::thread::sleep(Duration::from_secs(2));
            }
        });
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_scenarios(
                &server,
                "alerts.mjs",
                password,
                &[
                    ("DCMON_HOOK", format!("http://127.0.0.1:{}", hook.port)),
                    ("DCMON_METRIC", METRIC.to_owned()),
                    ("DCMON_HOST", HOST.to_owned()),
                    ("DCMON_VALUE", VALUE.to_string()),
                ],
                |name| name.starts_with("alerts"),
            );
        }));
        stop.store(true, Ordering::Relaxed);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    });

    // What the browser did, as the server and the receiver recorded it.
    let received = hook.received();
    assert!(
        received.iter().any(|b| b["groupKey"] == "test"),
        "no test message: {received:#?}"
    );
    assert!(
        received.iter().any(|b| b["status"] == "firing"
            && b["alerts"][0]["labels"]["alertname"] == "WebGpuHot"
            && b["alerts"][0]["labels"]["host"] == HOST),
        "the firing alert was not delivered: {received:#?}"
    );
    let get = |path: &str| {
        let (status, body) = server
            .http
            .get(&format!("{}{path}", server.base), Some(&server.token))
            .unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    let rules = get("/api/rules");
    let names: Vec<&str> = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["WebGpuHot"],
        "the refused rule is not stored: {rules}"
    );
    assert_eq!(rules["rules"][0]["updated_by"], "admin", "{rules}");
    let alerts = get("/api/alerts?state=firing");
    let alert = &alerts["alerts"][0];
    assert_eq!(alert["rule"], "WebGpuHot", "{alerts}");
    assert_eq!(alert["acked_by"], "admin", "{alerts}");
    let silences = get("/api/silences?all=true");
    let silence = &silences["silences"][0];
    assert_eq!(silence["author"], "admin", "{silences}");
    assert!(
        silence["matchers"]
            .as_array()
            .unwrap()
            .contains(&Value::from(format!("host=\"{HOST}\""))),
        "{silences}"
    );
    assert!(
        get("/api/silences")["silences"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the silence was expired through the page"
    );
    let channels = get("/api/channels");
    assert_eq!(channels["channels"][0]["name"], "ops-hook", "{channels}");
    assert!(
        !channels.to_string().contains("/hook"),
        "a channel's URL is a secret: {channels}"
    );
    let audit = stdout(&run(Command::new(dcmon()).args([
        "audit",
        "--limit",
        "1000",
        "--config",
        &server.cfg,
    ])));
    assert!(
        !audit.contains("/hook"),
        "the webhook URL is in the audit log: {audit}"
    );
}
