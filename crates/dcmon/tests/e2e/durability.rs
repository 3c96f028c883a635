//! Durability of acknowledged writes: heavy remote_write ingest from several connections,
//! the server killed with SIGKILL in the middle, restarted; every sample that was answered
//! 204 must be readable afterwards.

use super::{OperatorServer, PinnedHttp, dcmon, form_encode, run, stdout};
use dcmon_wire::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const WRITERS: usize = 4;
const SERIES: usize = 50;
/// Samples per series per request: 50 × 40 = 2,000 samples a request.
const STEPS: i64 = 40;
const STEP_MS: i64 = 100;

fn value(writer: usize, series: usize, t: i64) -> f64 {
    (t % 100_000) as f64 * 0.25 + (writer * 1000 + series) as f64
}

fn request(writer: usize, first_t: i64) -> WriteRequest {
    WriteRequest {
        timeseries: (0..SERIES)
            .map(|s| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "durability_probe".into(),
                    },
                    Label {
                        name: "host".into(),
                        value: format!("w{writer}"),
                    },
                    Label {
                        name: "series".into(),
                        value: s.to_string(),
                    },
                ],
                samples: (0..STEPS)
                    .map(|k| {
                        let t = first_t + k * STEP_MS;
                        Sample {
                            value: value(writer, s, t),
                            timestamp: t,
                        }
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// POSTs one remote_write body; `Ok(status)` or the transport error.
fn post(http: &PinnedHttp, url: &str, token: &str, body: Vec<u8>) -> Result<u16, String> {
    http.rt.block_on(async {
        let resp = http
            .http
            .post(url)
            .bearer_auth(token)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        Ok(resp.status().as_u16())
    })
}

#[test]
fn every_acknowledged_sample_survives_sigkill_mid_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = OperatorServer::start(dir.path());
    let (base, token, fingerprint) = (
        server.base.clone(),
        server.token.clone(),
        server.fingerprint.clone(),
    );

    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = now_ms - 20 * 60 * 1000;
    let url = format!("{base}/api/v1/write");
    let killed = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (fingerprint, token, url, killed) = (
                fingerprint.clone(),
                token.clone(),
                url.clone(),
                killed.clone(),
            );
            std::thread::spawn(move || {
                let http = PinnedHttp::new(&fingerprint);
                let mut acked = Vec::new();
                let mut failed_after_kill = false;
                for n in 0i64.. {
                    let first_t = t0 + n * STEPS * STEP_MS;
                    match post(&http, &url, &token, encode(&request(w, first_t))) {
                        Ok(204) => acked.push(first_t),
                        Ok(status) if !killed.load(Ordering::SeqCst) => {
                            panic!("writer {w}: request {n} answered {status}")
                        }
                        _ => {
                            failed_after_kill = killed.load(Ordering::SeqCst);
                            break;
                        }
                    }
                }
                (acked, failed_after_kill)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    killed.store(true, Ordering::SeqCst);
    // SIGKILL: no shutdown path runs, heads are not sealed.
    server.kill();
    let results: Vec<(Vec<i64>, bool)> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    let acked_requests: usize = results.iter().map(|r| r.0.len()).sum();
    assert!(
        results.iter().any(|r| r.1),
        "the kill did not interrupt ingest: {acked_requests} requests acknowledged"
    );
    assert!(
        acked_requests >= WRITERS,
        "too few requests acknowledged: {acked_requests}"
    );

    // The data dir is intact offline, with unsealed samples in the ingest log.
    let check = run(Command::new(dcmon()).args(["tsdb", "check", "--config", &server.cfg]));
    assert!(
        stdout(&check).contains("OK: no damage found"),
        "{}",
        stdout(&check)
    );

    server.restart();
    let http = &server.http;
    let at = (now_ms + 60_000) as f64 / 1000.0;
    for (w, (acked, _)) in results.iter().enumerate() {
        let query = format!("durability_probe{{host=\"w{w}\"}}[30m]");
        let (status, body) = http
            .get(
                &format!(
                    "{base}/api/v1/query?query={}&time={at}",
                    form_encode(&query)
                ),
                Some(&token),
            )
            .unwrap();
        assert_eq!(status, 200, "{body}");
        let mut stored: HashMap<String, HashMap<i64, String>> = HashMap::new();
        for series in body["data"]["result"].as_array().unwrap() {
            let name = series["metric"]["series"].as_str().unwrap().to_owned();
            let points = stored.entry(name).or_default();
            for p in series["values"].as_array().unwrap() {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                points.insert(t, p[1].as_str().unwrap().to_owned());
            }
        }
        let mut missing = 0;
        for &first_t in acked {
            for s in 0..SERIES {
                for k in 0..STEPS {
                    let t = first_t + k * STEP_MS;
                    let got = stored.get(&s.to_string()).and_then(|p| p.get(&t));
                    if got.map(|v| v.parse::<f64>().unwrap()) != Some(value(w, s, t)) {
                        missing += 1;
                    }
                }
            }
        }
        assert_eq!(
            missing,
            0,
            "writer {w}: {missing} acknowledged samples lost or changed out of {}",
            acked.len() * SERIES * STEPS as usize
        );
    }
    eprintln!(
        "durability: {acked_requests} requests ({} samples) acknowledged before SIGKILL, all readable after restart",
        acked_requests * SERIES * STEPS as usize
    );
}
