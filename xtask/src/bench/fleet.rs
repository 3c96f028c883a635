//! `cargo xtask bench fleet`: the web UI's fleet table at N machines (default 10,000).
//!
//! A release `dcmon server` gets N registered agents, each pushing two collections of a
//! GPU server's table inputs (CPU counters and temperatures, GPUs, memory, file systems)
//! through the real agent protocol. The same samples go to `prometheus` by remote_write.
//! Measured: `GET /api/fleet` (its Server-Timing and the client's wall time), and the
//! ten PromQL queries a Grafana table panel of the same columns runs, on Prometheus and
//! on dcmon. Values of the fleet table are checked against Prometheus' answers.

use super::tsdb::{Peer, Server, start, time_query};
use anyhow::{Context, Result, bail, ensure};
use dcmon_wire::api::{PATH_PUSH, PATH_REGISTER, RegisterRequest, RegisterResponse};
use dcmon_wire::batch::Encoder;
use dcmon_wire::{Labels, MetricSample, Scrape, sign};
use ed25519_dalek::SigningKey;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str =
    "cargo xtask bench fleet [--hosts N] [--cpus N] [--gpus N] [--reps N] [--conns N]";

struct Opts {
    hosts: usize,
    cpus: usize,
    gpus: usize,
    reps: usize,
    conns: usize,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self {
            hosts: 10_000,
            cpus: 16,
            gpus: 8,
            reps: 30,
            conns: 16,
        };
        super::parse_numeric_flags(args, USAGE, |flag, n| {
            let n = n as usize;
            match flag {
                "--hosts" => o.hosts = n,
                "--cpus" => o.cpus = n,
                "--gpus" => o.gpus = n,
                "--reps" => o.reps = n,
                "--conns" => o.conns = n,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        ensure!(
            o.hosts >= 1 && o.reps >= 1 && o.conns >= 1,
            "{USAGE}: counts must be at least 1"
        );
        Ok(o)
    }
}

/// The ten columns as PromQL, in `/api/fleet` order.
const COLUMN_QUERIES: [(&str, &str); 10] = [
    (
        "cpu_temp",
        r#"max by (host) (node_hwmon_temp_celsius{chip=~".*coretemp.*"})"#,
    ),
    (
        "cpu_pct",
        r#"100 * (1 - sum by (host) (rate(node_cpu_seconds_total{mode=~"idle|iowait"}[1m])) / sum by (host) (rate(node_cpu_seconds_total[1m])))"#,
    ),
    (
        "vrm_temp",
        r#"max by (host) (ipmi_temperature_celsius{name=~".*VRM.*"})"#,
    ),
    ("gpu_temp", "max by (host) (DCGM_FI_DEV_GPU_TEMP)"),
    ("gpu_power", "sum by (host) (DCGM_FI_DEV_POWER_USAGE)"),
    ("gpu_limit", "sum by (host) (DCGM_FI_DEV_POWER_MGMT_LIMIT)"),
    ("gpu_fan", "max by (host) (DCGM_FI_DEV_FAN_SPEED)"),
    (
        "ram_pct",
        "100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)",
    ),
    (
        "root_pct",
        r#"100 * (1 - node_filesystem_avail_bytes{mountpoint="/"} / node_filesystem_size_bytes{mountpoint="/"})"#,
    ),
    (
        "docker_pct",
        r#"100 * (1 - node_filesystem_avail_bytes{mountpoint="/var/lib/docker"} / node_filesystem_size_bytes{mountpoint="/var/lib/docker"})"#,
    ),
];

fn host_name(i: usize) -> String {
    format!("fleet-{i:05}")
}

/// One collection of host `h` at `ts`; `k` = 0 or 1 (the second is 15 s later).
fn collection(opts: &Opts, h: usize, k: f64) -> Vec<MetricSample> {
    let mut out = Vec::new();
    let mut add = |name: &str, labels: &[(&str, &str)], value: f64| {
        if let Ok(l) = Labels::new(name, labels.iter().copied()) {
            out.push(MetricSample { labels: l, value });
        }
    };
    let f = (h % 97) as f64;
    add(
        "node_hwmon_chip_names",
        &[("chip", "platform_coretemp_0"), ("chip_name", "coretemp")],
        1.0,
    );
    for s in 0..4 {
        let sensor = format!("temp{}", s + 1);
        add(
            "node_hwmon_temp_celsius",
            &[("chip", "platform_coretemp_0"), ("sensor", &sensor)],
            35.0 + f / 3.0 + s as f64,
        );
    }
    add(
        "ipmi_temperature_celsius",
        &[("name", "CPU1 VRM Temp"), ("id", "7")],
        40.0 + f / 2.0,
    );
    add(
        "ipmi_temperature_celsius",
        &[("name", "Inlet Temp"), ("id", "3")],
        24.0,
    );
    for cpu in 0..opts.cpus {
        let c = cpu.to_string();
        for (mode, per_15s) in [
            ("idle", 9.0),
            ("iowait", 0.5),
            ("user", 4.0 + f / 40.0),
            ("system", 1.5),
        ] {
            add(
                "node_cpu_seconds_total",
                &[("cpu", &c), ("mode", mode)],
                1.0e5 + cpu as f64 * 10.0 + per_15s * k,
            );
        }
    }
    for g in 0..opts.gpus {
        let gpu = g.to_string();
        let uuid = format!("GPU-{h:05}-{g}");
        let l = [
            ("gpu", gpu.as_str()),
            ("UUID", uuid.as_str()),
            ("modelName", "NVIDIA H100 80GB HBM3"),
        ];
        add("DCGM_FI_DEV_GPU_TEMP", &l, 30.0 + f / 2.0 + g as f64);
        add("DCGM_FI_DEV_POWER_USAGE", &l, 100.0 + f * 5.0 + g as f64);
        add("DCGM_FI_DEV_POWER_MGMT_LIMIT", &l, 700.0);
        add("DCGM_FI_DEV_FAN_SPEED", &l, 30.0 + f / 2.0);
    }
    add("node_memory_MemTotal_bytes", &[], 512.0e9);
    add(
        "node_memory_MemAvailable_bytes",
        &[],
        512.0e9 * (1.0 - f / 100.0),
    );
    for (mount, size) in [("/", 1.0e12), ("/var/lib/docker", 4.0e12)] {
        let l = [
            ("mountpoint", mount),
            ("device", "/dev/nvme0n1p2"),
            ("fstype", "ext4"),
        ];
        add("node_filesystem_size_bytes", &l, size);
        add("node_filesystem_avail_bytes", &l, size * (0.9 - f / 200.0));
    }
    out
}

fn nonce(n: u64) -> String {
    format!("{:016x}{:016x}", n, super::unix_ms())
}

pub fn run(args: &[String]) -> Result<()> {
    let opts = Opts::parse(args)?;
    if cfg!(debug_assertions) {
        return super::reexec_release("fleet", args);
    }
    let mut build = super::super::cargo();
    build.args(["build", "--release", "--quiet", "-p", "dcmon"]);
    super::super::run(build)?;
    if !super::super::have("prometheus") {
        bail!(
            "`prometheus` is not installed: apt-get install -y --no-install-recommends prometheus"
        );
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let scratch = std::env::temp_dir().join(format!("dcmon-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    for d in ["dcmon", "prometheus"] {
        std::fs::create_dir_all(scratch.join(d))?;
    }

    let last = super::unix_ms() / 1000 * 1000 - 25_000;
    let times = [last - 15_000, last];
    let eval_s = (last + 5_000) as f64 / 1000.0;

    eprintln!(
        "--- dcmon: registering {} agents and pushing two collections each",
        opts.hosts
    );
    let dcmon = start(Peer::Dcmon, &scratch.join("dcmon"), &rt)?;
    let t = Instant::now();
    let pushed = populate_dcmon(&rt, &dcmon, &opts, times)?;
    eprintln!("    {pushed} samples in {:.1} s", t.elapsed().as_secs_f64());
    let prom = start(Peer::Prometheus, &scratch.join("prometheus"), &rt)?;
    let t = Instant::now();
    populate_prometheus(&rt, &prom, &opts, times)?;
    eprintln!(
        "--- prometheus: same samples by remote_write in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The fleet view is filled as pushes are stored; wait until every row has numbers.
    let deadline = Instant::now() + Duration::from_secs(120);
    let table = loop {
        let (_, _, _, body) = fetch_fleet(&rt, &dcmon)?;
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let filled = v["rows"].as_array().map_or(0, |rows| {
            rows.iter().filter(|r| !r["v"][1].is_null()).count()
        });
        if filled == opts.hosts {
            break v;
        }
        ensure!(
            Instant::now() < deadline,
            "the fleet table holds {filled} of {} filled rows after 2 minutes",
            opts.hosts
        );
        std::thread::sleep(Duration::from_millis(500));
    };

    let mut server_ms = Vec::new();
    let mut wall_ms = Vec::new();
    let mut bytes = 0;
    for _ in 0..opts.reps {
        let (server, wall, _, body) = fetch_fleet(&rt, &dcmon)?;
        server_ms.push(server);
        wall_ms.push(wall);
        bytes = body.len();
    }

    let mut prom_total = 0.0;
    let mut dcmon_total = 0.0;
    let mut mismatches = Vec::new();
    for (i, (key, q)) in COLUMN_QUERIES.iter().enumerate() {
        let (p_ms, p_n) = time_query(&rt, &prom, q, eval_s, None, 5)?;
        let (d_ms, d_n) = time_query(&rt, &dcmon, q, eval_s, None, 5)?;
        ensure!(
            p_n == opts.hosts && d_n == opts.hosts,
            "{key}: prometheus answered {p_n} hosts, dcmon {d_n}; expected {}",
            opts.hosts
        );
        prom_total += p_ms;
        dcmon_total += d_ms;
        let expect = first_host_value(&rt, &prom, q, eval_s)?;
        let got = table["rows"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["host"] == host_name(0)))
            .and_then(|r| r["v"][i].as_f64());
        if got.is_none_or(|g| (g - expect).abs() > 0.051) {
            mismatches.push(format!("{key}: fleet table {got:?}, prometheus {expect}"));
        }
    }
    ensure!(
        mismatches.is_empty(),
        "fleet table disagrees with Prometheus for {}: {}",
        host_name(0),
        mismatches.join("; ")
    );

    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    let server_p50 = pct(&mut server_ms, 0.5);
    let server_p95 = pct(&mut server_ms, 0.95);
    let wall_p50 = pct(&mut wall_ms, 0.5);
    println!();
    println!(
        "fleet table, {} machines × 12 columns ({} series per machine, values checked against Prometheus)",
        opts.hosts,
        collection(&opts, 0, 0.0).len()
    );
    println!("| figure | dcmon | prometheus | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| the whole table, client wall time (ms, p50; prometheus: its 10 column queries, sum of medians) | {wall_p50:.2} | {prom_total:.1} | {:.0}× |",
        prom_total / wall_p50
    );
    println!(
        "| server time for the table (ms, p50 / p95, Server-Timing) | {server_p50:.2} / {server_p95:.2} | | |"
    );
    println!("| response size (bytes) | {bytes} | | |");
    println!(
        "| the same 10 PromQL queries on dcmon (ms, sum of medians) | {dcmon_total:.1} | {prom_total:.1} | {:.2}× |",
        prom_total / dcmon_total
    );
    println!("\ncommand: cargo xtask bench fleet {}", args.join(" "));
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// `GET /api/fleet`: server time from Server-Timing, client wall time, status, body.
fn fetch_fleet(rt: &tokio::runtime::Runtime, s: &Server) -> Result<(f64, f64, u16, Vec<u8>)> {
    rt.block_on(async {
        let t = Instant::now();
        let mut req = s.http.get(format!("{}/api/fleet", s.base));
        if let Some(tok) = &s.token {
            req = req.bearer_auth(tok);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let timing = resp
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("dur=").nth(1))
            .and_then(|v| v.parse::<f64>().ok());
        let body = resp.bytes().await?.to_vec();
        let wall = t.elapsed().as_secs_f64() * 1e3;
        ensure!(
            status.is_success(),
            "GET /api/fleet answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        let server = timing.context("GET /api/fleet has no Server-Timing header")?;
        Ok((server, wall, status.as_u16(), body))
    })
}

/// The value Prometheus gives `q` for the first host.
fn first_host_value(rt: &tokio::runtime::Runtime, s: &Server, q: &str, at: f64) -> Result<f64> {
    let url = reqwest::Url::parse_with_params(
        &format!("{}/api/v1/query", s.base),
        &[("query", q.to_owned()), ("time", at.to_string())],
    )?;
    let body: serde_json::Value =
        rt.block_on(async { s.http.get(url).send().await?.json().await })?;
    body["data"]["result"]
        .as_array()
        .and_then(|r| r.iter().find(|s| s["metric"]["host"] == host_name(0)))
        .and_then(|s| s["value"][1].as_str())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("prometheus has no {} value for {q}", host_name(0)))
}

/// Registers every agent and pushes its two collections as one batch.
fn populate_dcmon(
    rt: &tokio::runtime::Runtime,
    s: &Server,
    opts: &Opts,
    times: [i64; 2],
) -> Result<usize> {
    let join = super::output(
        std::process::Command::new(super::tsdb::dcmon_binary())
            .args(["enroll", "create", "--quiet", "--ttl", "2h", "--uses"])
            .arg(opts.hosts.to_string())
            .arg("--data-dir")
            .arg(&s.data),
    )?;
    let token: Arc<str> = join.trim().into();
    let total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for conn in 0..opts.conns {
            let (http, base, token, total) =
                (s.http.clone(), s.base.clone(), token.clone(), total.clone());
            let mine: Vec<usize> = (conn..opts.hosts).step_by(opts.conns).collect();
            let scrapes: Vec<Vec<Scrape>> = mine
                .iter()
                .map(|&h| {
                    times
                        .iter()
                        .enumerate()
                        .map(|(k, &ts)| Scrape {
                            timestamp_ms: ts,
                            samples: collection(opts, h, k as f64),
                        })
                        .collect()
                })
                .collect();
            tasks.push(tokio::spawn(async move {
                for (&h, scrapes) in mine.iter().zip(scrapes) {
                    let mut seed = [0u8; 32];
                    seed[..8].copy_from_slice(&(h as u64 + 1).to_le_bytes());
                    let key = SigningKey::from_bytes(&seed);
                    let body = serde_json::to_vec(&RegisterRequest {
                        token: token.to_string(),
                        public_key: sign::public_key_to_text(&key.verifying_key()),
                        hostname: host_name(h),
                        machine_id: format!("{:032x}", h + 1),
                        agent_version: "bench".into(),
                    })?;
                    let resp =
                        send_signed(&http, &base, PATH_REGISTER, &key, None, h as u64 * 2, body)
                            .await?;
                    let reg: RegisterResponse = serde_json::from_slice(&resp)?;
                    let batch = Encoder::new(h as u64 + 1).encode(&scrapes)?;
                    send_signed(
                        &http,
                        &base,
                        PATH_PUSH,
                        &key,
                        Some(&reg.agent_id),
                        h as u64 * 2 + 1,
                        batch,
                    )
                    .await?;
                    total.fetch_add(
                        scrapes.iter().map(|s| s.samples.len()).sum(),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        anyhow::Ok(())
    })?;
    Ok(total.load(std::sync::atomic::Ordering::Relaxed))
}

async fn send_signed(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    key: &SigningKey,
    agent_id: Option<&str>,
    n: u64,
    body: Vec<u8>,
) -> Result<Vec<u8>> {
    let h = sign::sign(
        key,
        agent_id,
        "POST",
        path,
        super::unix_ms(),
        &nonce(n),
        &body,
    );
    let mut req = http
        .post(format!("{base}{path}"))
        .header(sign::HEADER_TIMESTAMP, h.timestamp_ms.to_string())
        .header(sign::HEADER_NONCE, h.nonce)
        .header(sign::HEADER_SIGNATURE, h.signature);
    if let Some(id) = agent_id {
        req = req.header(sign::HEADER_AGENT, id);
    }
    let resp = req.body(body).send().await?;
    let status = resp.status();
    let bytes = resp.bytes().await?.to_vec();
    ensure!(
        status.is_success(),
        "{path} answered {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(bytes)
}

/// The same samples, labelled as dcmon labels them (`host` = `instance` = the host).
fn populate_prometheus(
    rt: &tokio::runtime::Runtime,
    s: &Server,
    opts: &Opts,
    times: [i64; 2],
) -> Result<()> {
    use dcmon_wire::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
    const HOSTS_PER_REQUEST: usize = 50;
    let requests: Vec<Vec<u8>> = (0..opts.hosts)
        .step_by(HOSTS_PER_REQUEST)
        .map(|first| {
            let mut timeseries = Vec::new();
            for h in first..(first + HOSTS_PER_REQUEST).min(opts.hosts) {
                let host = host_name(h);
                let a = collection(opts, h, 0.0);
                let b = collection(opts, h, 1.0);
                for (x, y) in a.iter().zip(&b) {
                    let mut labels: Vec<Label> = x
                        .labels
                        .pairs()
                        .iter()
                        .filter(|(n, _)| n != "host" && n != "instance")
                        .map(|(n, v)| Label {
                            name: n.clone(),
                            value: v.clone(),
                        })
                        .collect();
                    labels.push(Label {
                        name: "host".into(),
                        value: host.clone(),
                    });
                    labels.push(Label {
                        name: "instance".into(),
                        value: host.clone(),
                    });
                    labels.sort_by(|p, q| p.name.cmp(&q.name));
                    timeseries.push(TimeSeries {
                        labels,
                        samples: vec![
                            Sample {
                                value: x.value,
                                timestamp: times[0],
                            },
                            Sample {
                                value: y.value,
                                timestamp: times[1],
                            },
                        ],
                    });
                }
            }
            encode(&WriteRequest { timeseries })
        })
        .collect();
    rt.block_on(async {
        for body in requests {
            let resp = s
                .http
                .post(format!("{}/api/v1/write", s.base))
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body)
                .send()
                .await?;
            let status = resp.status();
            ensure!(
                status.is_success(),
                "prometheus remote_write answered {status}: {}",
                resp.text().await.unwrap_or_default()
            );
        }
        anyhow::Ok(())
    })
}
