//! `cargo xtask bench alerts`: alert-to-notification latency (DESIGN §10: < 2 s from a
//! rule's `for:` elapsing to the channel) and the cost of evaluating rules.
//!
//! A release `dcmon server` holds 10,000 series (`bench_metric_{0..9}` for 1,000 hosts,
//! written through remote_write) and 100 rules imported from a Prometheus rule file
//! (`bench_metric_{r % 10} > 90`, `for: 5s`), notifying a local webhook receiver (plain
//! HTTP on loopback). Each round raises every metric of one host to 100, so 100 rules
//! fire for it; the receiver stamps each message on arrival. The latency of an alert is
//! its arrival minus (its `active_since` from `/api/alerts` + `for:`). Evaluation cost
//! is the server's own `dcmon_alerts_evaluation_seconds` per full cycle.

use super::tsdb::{dcmon_binary, free_port, pid_cpu_seconds, pinned_client};
use super::{Running, output};
use anyhow::{Context, Result, bail};
use dcmon_wire::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const METRICS: usize = 10;
const FOR_S: u64 = 5;

struct Opts {
    hosts: usize,
    rules: usize,
    rounds: usize,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Opts {
            hosts: 1000,
            rules: 100,
            rounds: 10,
        };
        super::parse_numeric_flags(
            args,
            "cargo xtask bench alerts [--hosts 1000] [--rules 100] [--rounds 10]\n\
             10 series per host, --rules rules over them, --rounds hosts raised one after\n\
             another (each fires every rule); prints the for:-to-webhook latency.",
            |flag, n| {
                match flag {
                    "--hosts" => o.hosts = usize::try_from(n)?.clamp(10, 100_000),
                    "--rules" => o.rules = usize::try_from(n)?.clamp(1, 10_000),
                    "--rounds" => o.rounds = usize::try_from(n)?.clamp(1, 100),
                    _ => return Ok(false),
                }
                Ok(true)
            },
        )?;
        if o.rounds > o.hosts {
            bail!("--rounds must not exceed --hosts");
        }
        Ok(o)
    }
}

fn host(i: usize) -> String {
    format!("bench-{i:05}")
}

/// One message as it arrived: when, and the (rule, host) of each alert in it.
struct Arrival {
    at_ms: i64,
    alerts: Vec<(String, String)>,
}

/// A minimal HTTP/1.1 receiver: reads each request, answers 200, stamps its arrival.
async fn receiver(listener: tokio::net::TcpListener, log: Arc<Mutex<Vec<Arrival>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let log = log.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            loop {
                let mut len = 0usize;
                let mut line = String::new();
                let mut started = false;
                loop {
                    line.clear();
                    match r.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == "\r\n" && started {
                        break;
                    }
                    started = true;
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).await.is_err() {
                    return;
                }
                let at_ms = super::unix_ms();
                let alerts = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["alerts"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter(|a| a["status"] == "firing")
                    .map(|a| {
                        (
                            a["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
                            a["labels"]["host"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect();
                log.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(Arrival { at_ms, alerts });
                if w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

/// remote_write of every metric of `hosts` at `value` (all of them: `None`).
fn write_samples(opts: &Opts, hosts: Option<usize>, value: f64) -> Vec<u8> {
    let t = super::unix_ms();
    let range = match hosts {
        Some(h) => h..h + 1,
        None => 0..opts.hosts,
    };
    let mut timeseries = Vec::new();
    for h in range {
        for m in 0..METRICS {
            timeseries.push(TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: format!("bench_metric_{m}"),
                    },
                    Label {
                        name: "host".into(),
                        value: host(h),
                    },
                ],
                samples: vec![Sample {
                    value,
                    timestamp: t,
                }],
            });
        }
    }
    encode(&WriteRequest { timeseries })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn run(args: &[String]) -> Result<()> {
    let opts = Opts::parse(args)?;
    if cfg!(debug_assertions) {
        return super::reexec_release("alerts", args);
    }
    let mut build = super::super::cargo();
    build.args(["build", "--release", "--quiet", "-p", "dcmon"]);
    super::super::run(build)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("dcmon-bench-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&dir, &opts);
    if result.is_err() {
        eprintln!("server log kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn measure(dir: &Path, opts: &Opts) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let arrivals: Arc<Mutex<Vec<Arrival>>> = Arc::default();
    let hook_port = free_port()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", hook_port)))?;
    rt.spawn(receiver(listener, arrivals.clone()));

    let data = dir.join("data");
    let port = free_port()?;
    let config = dir.join("server.yaml");
    // Built-in rules off: they would only add the bench host's own alerts.
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\nlog:\n  level: warn\nalerts:\n  group_interval: 1s\n  builtins:\n{}",
            data.display(),
            [
                "MachineOffline",
                "BmcUnreachable",
                "GpuTemperatureHigh",
                "CpuTemperatureHigh",
                "GpuXidErrors",
                "GpuPcieLinkDegraded",
                "GpuEccUncorrectable",
                "DiskAlmostFull",
                "NvmeWearHigh",
                "NvmeCriticalWarning",
                "MemoryErrors",
                "PsuFailure",
                "ChassisIntrusion",
                "BmcAccountLockout",
                "RebootRequired",
                "FanBelowLowerCritical",
            ]
            .iter()
            .map(|n| format!("    {n}:\n      enabled: false\n"))
            .collect::<String>()
        ),
    )?;
    let dcmon = |args: &[&str]| -> Result<String> {
        output(
            Command::new(dcmon_binary())
                .args(args)
                .arg("--config")
                .arg(&config),
        )
    };
    let mut rules = String::from("groups:\n  - name: bench\n    rules:\n");
    for r in 0..opts.rules {
        rules += &format!(
            "      - alert: Bench{r:04}\n        expr: bench_metric_{} > 90\n        for: {FOR_S}s\n",
            r % METRICS
        );
    }
    let rule_file = dir.join("rules.yml");
    std::fs::write(&rule_file, rules)?;
    dcmon(&[
        "rules",
        "import",
        rule_file.to_str().context("temp path is UTF-8")?,
    ])?;
    let mut hook = Command::new(dcmon_binary());
    hook.args([
        "channels",
        "add",
        "--name",
        "bench",
        "--type",
        "webhook",
        "--url-env",
        "BENCH_HOOK",
        "--config",
    ])
    .arg(&config)
    .env("BENCH_HOOK", format!("http://127.0.0.1:{hook_port}/hook"));
    output(&mut hook)?;

    let log = std::fs::File::create(dir.join("server.log"))?;
    let server = Running(
        Command::new(dcmon_binary())
            .args(["server", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting dcmon server")?,
    );
    let pid = server.0.id();
    let cert = super::wait_for_certificate(&data, dir)?;
    let token = dcmon(&["token", "create", "--role", "operator"])?
        .trim()
        .to_owned();
    let http = pinned_client(&cert)?;
    let base = format!("https://127.0.0.1:{port}");
    let post = |body: Vec<u8>| -> Result<()> {
        rt.block_on(async {
            let resp = http
                .post(format!("{base}/api/v1/write"))
                .bearer_auth(&token)
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .body(body)
                .send()
                .await?;
            if !resp.status().is_success() {
                bail!("remote_write answered {}", resp.status());
            }
            Ok(())
        })
    };
    let get = |path: &str| -> Result<serde_json::Value> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut url = reqwest::Url::parse(&format!("{base}{path}"))?;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            url.query_pairs_mut().append_pair(k, v);
        }
        rt.block_on(async {
            Ok(http
                .get(url)
                .bearer_auth(&token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while get("/healthz").is_err() {
        if Instant::now() > deadline {
            bail!("dcmon server did not become healthy");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    post(write_samples(opts, None, 50.0))?;
    // Two evaluation cycles over the quiet fleet before the first round.
    std::thread::sleep(Duration::from_secs(20));
    let cpu_before = pid_cpu_seconds(pid)?;
    let started = Instant::now();
    for round in 0..opts.rounds {
        post(write_samples(
            opts,
            Some(round * (opts.hosts / opts.rounds)),
            100.0,
        ))?;
        std::thread::sleep(Duration::from_secs(4));
    }
    let expected = opts.rounds * opts.rules;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got: usize = arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|a| a.alerts.len())
            .sum();
        if got >= expected {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {got} of {expected} alerts arrived within 2 minutes; see {}",
                dir.join("server.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let window_s = started.elapsed().as_secs_f64();
    let cpu_s = pid_cpu_seconds(pid)? - cpu_before;
    let alerts = get("/api/alerts?state=firing&limit=10000")?;
    let since: HashMap<(String, String), i64> = alerts["alerts"]
        .as_array()
        .context("/api/alerts: no alerts array")?
        .iter()
        .filter_map(|a| {
            Some((
                (
                    a["rule"].as_str()?.to_owned(),
                    a["labels"]["host"].as_str()?.to_owned(),
                ),
                a["active_since_ms"].as_i64()?,
            ))
        })
        .collect();
    let mut latencies: Vec<f64> = Vec::new();
    let mut messages = 0;
    for a in arrivals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
    {
        messages += 1;
        for key in &a.alerts {
            if let Some(s) = since.get(key) {
                latencies.push((a.at_ms - s - FOR_S as i64 * 1000) as f64 / 1000.0);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let eval = get("/api/v1/query?query=max_over_time(dcmon_alerts_evaluation_seconds[5m])")?;
    let eval_avg = get("/api/v1/query?query=avg_over_time(dcmon_alerts_evaluation_seconds[5m])")?;
    let value = |v: &serde_json::Value| -> f64 {
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN)
    };
    drop(server);
    println!(
        "\nalerts bench: {} series ({} hosts × {METRICS} metrics), {} rules (for: {FOR_S}s, imported from YAML), {} rounds, webhook on loopback (machine: {} cores)\n",
        opts.hosts * METRICS,
        opts.hosts,
        opts.rules,
        opts.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| what | dcmon server | target |");
    println!("|---|---|---|");
    println!(
        "| alerts delivered | {} in {messages} messages | {expected} |",
        latencies.len()
    );
    println!(
        "| for: elapsed → webhook received, p50 | {:.3} s | < 2 s |",
        percentile(&latencies, 0.5)
    );
    println!(
        "| for: elapsed → webhook received, p95 | {:.3} s | < 2 s |",
        percentile(&latencies, 0.95)
    );
    println!(
        "| for: elapsed → webhook received, max | {:.3} s | < 2 s |",
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| evaluation of all rules per cycle, mean (max) | {:.1} ms ({:.1} ms) | — |",
        value(&eval_avg) * 1000.0,
        value(&eval) * 1000.0
    );
    println!(
        "| server CPU during the rounds | {:.1} % of one core over {window_s:.0} s | — |",
        cpu_s * 100.0 / window_s
    );
    Ok(())
}
