//! `cargo xtask bench tsdb`: one fleet-shaped workload, encoded once as Prometheus
//! remote_write requests, sent over keep-alive connections to dcmon, `prometheus` and
//! `victoria-metrics` (Debian packages) in one run; prints each server's figures and
//! dcmon's ratio to each peer (DESIGN.md §10).
//!
//! Workload per host (200 series): 62 CPU-seconds counters at 0.01 s resolution, 20
//! integer temperatures as random walks, 8 fan RPMs quantised to 100, 4 power readings
//! with 3 decimals, 32 byte/packet counters with noisy rates, 16 full-precision float
//! gauges (8 %), 58 constants. Every host is scraped every `--step` with a few ms of
//! jitter, as a real scraper does.

use super::rng::Rng;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SERIES_PER_HOST: usize = 200;

struct Opts {
    hosts: usize,
    steps: usize,
    step_ms: i64,
    batch: usize,
    conns: usize,
    peers: Vec<Peer>,
    /// Query repetitions per latency figure.
    reps: usize,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self {
            hosts: 1000,
            steps: 360,
            step_ms: 10_000,
            batch: 2000,
            conns: 4,
            peers: vec![Peer::Dcmon, Peer::Prometheus, Peer::VictoriaMetrics],
            reps: 30,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .with_context(|| format!("{flag} needs a value"))
                    .cloned()
            };
            match flag.as_str() {
                "--hosts" => o.hosts = value()?.parse().context("--hosts")?,
                "--steps" => o.steps = value()?.parse().context("--steps")?,
                "--step" => {
                    o.step_ms = value()?
                        .trim_end_matches('s')
                        .parse::<i64>()
                        .context("--step takes seconds, e.g. 10s")?
                        * 1000
                }
                "--batch" => o.batch = value()?.parse().context("--batch")?,
                "--conns" => o.conns = value()?.parse().context("--conns")?,
                "--reps" => o.reps = value()?.parse().context("--reps")?,
                "--peers" => {
                    o.peers = value()?
                        .split(',')
                        .map(Peer::parse)
                        .collect::<Result<_>>()?
                }
                "-h" | "--help" => bail!(
                    "usage: cargo xtask bench tsdb [--hosts 1000] [--steps 360] [--step 10s] \
                     [--batch 2000] [--conns 4] [--reps 30] [--peers dcmon,prometheus,victoria-metrics]"
                ),
                other => bail!("unknown flag {other:?}; see --help"),
            }
        }
        if o.batch == 0 || !o.batch.is_multiple_of(SERIES_PER_HOST) {
            bail!("--batch must be a multiple of {SERIES_PER_HOST} (whole hosts per request)");
        }
        if o.hosts == 0 || o.steps == 0 || o.conns == 0 || o.reps == 0 {
            bail!("--hosts, --steps, --conns and --reps must be positive");
        }
        Ok(o)
    }

    fn samples(&self) -> u64 {
        (self.hosts * SERIES_PER_HOST * self.steps) as u64
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Peer {
    Dcmon,
    Prometheus,
    VictoriaMetrics,
}

impl Peer {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "dcmon" => Self::Dcmon,
            "prometheus" => Self::Prometheus,
            "victoria-metrics" | "vm" => Self::VictoriaMetrics,
            other => bail!("unknown peer {other:?}: dcmon, prometheus, victoria-metrics"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Dcmon => "dcmon",
            Self::Prometheus => "prometheus",
            Self::VictoriaMetrics => "victoria-metrics",
        }
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let opts = Opts::parse(args)?;
    if cfg!(debug_assertions) {
        return super::reexec_release("tsdb", args);
    }
    if opts.peers.contains(&Peer::Dcmon) {
        let mut build = super::super::cargo();
        build.args(["build", "--release", "--quiet", "-p", "dcmon"]);
        super::super::run(build)?;
    }
    for p in &opts.peers {
        let bin = match p {
            Peer::Dcmon => continue,
            Peer::Prometheus => "prometheus",
            Peer::VictoriaMetrics => "victoria-metrics",
        };
        if !super::super::have(bin) {
            bail!("`{bin}` is not installed: apt-get install -y --no-install-recommends {bin}");
        }
    }

    // reqwest is built without a default TLS provider; the tree uses ring everywhere.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let t = Instant::now();
    let workload = Workload::generate(&opts);
    let bytes: usize = workload.requests.iter().map(bytes::Bytes::len).sum();
    eprintln!(
        "workload: {} hosts × {SERIES_PER_HOST} series × {} steps = {} samples in {} requests \
         ({:.1} MB snappy, {:.2} B/sample), encoded in {:.1} s",
        opts.hosts,
        opts.steps,
        opts.samples(),
        workload.requests.len(),
        bytes as f64 / 1e6,
        bytes as f64 / opts.samples() as f64,
        t.elapsed().as_secs_f64()
    );

    let scratch = std::env::temp_dir().join(format!("dcmon-bench-tsdb-{}", std::process::id()));
    let mut results = Vec::new();
    for &peer in &opts.peers {
        let dir = scratch.join(peer.name());
        std::fs::create_dir_all(&dir)?;
        eprintln!("--- {}", peer.name());
        let r = measure(peer, &workload, &opts, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        results.push((peer, r?));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    print_table(&opts, &results);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Workload

/// How one series evolves, in integer state where the real source is integral.
enum Model {
    Constant(f64),
    /// Integer random walk within bounds (°C).
    Walk {
        v: i64,
        lo: i64,
        hi: i64,
    },
    /// RPM in steps of 100.
    Fan {
        hundreds: i64,
    },
    /// Milliwatts, printed with 3 decimals.
    Power {
        milli: i64,
    },
    /// Monotonic counter with a noisy rate per step.
    Counter {
        v: u64,
        mean: f64,
    },
    /// CPU seconds in hundredths.
    CpuSeconds {
        centi: u64,
        mean: f64,
    },
    /// A full-precision gauge in [0, 1).
    Float,
}

impl Model {
    fn next(&mut self, rng: &mut Rng) -> f64 {
        match self {
            Self::Constant(c) => *c,
            Self::Walk { v, lo, hi } => {
                *v = (*v + (rng.next() % 3) as i64 - 1).clamp(*lo, *hi);
                *v as f64
            }
            Self::Fan { hundreds } => {
                if rng.next().is_multiple_of(4) {
                    *hundreds = (*hundreds + (rng.next() % 3) as i64 - 1).clamp(15, 90);
                }
                (*hundreds * 100) as f64
            }
            Self::Power { milli } => {
                *milli = (*milli + (rng.next() % 4001) as i64 - 2000).clamp(50_000, 900_000);
                *milli as f64 / 1000.0
            }
            Self::Counter { v, mean } => {
                *v += rng.count(*mean);
                *v as f64
            }
            Self::CpuSeconds { centi, mean } => {
                *centi += rng.count(*mean);
                *centi as f64 / 100.0
            }
            Self::Float => rng.unit(),
        }
    }
}

struct SeriesDef {
    /// The series' label fields, protobuf-encoded once.
    labels: Vec<u8>,
    model: Model,
}

struct Host {
    rng: Rng,
    series: Vec<SeriesDef>,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn encode_labels(pairs: &mut [(String, String)]) -> Vec<u8> {
    pairs.sort();
    let mut out = Vec::new();
    for (n, v) in pairs.iter() {
        let inner = 2 + n.len() + 2 + v.len();
        out.push(0x0a);
        varint(&mut out, inner as u64);
        out.push(0x0a);
        varint(&mut out, n.len() as u64);
        out.extend_from_slice(n.as_bytes());
        out.push(0x12);
        varint(&mut out, v.len() as u64);
        out.extend_from_slice(v.as_bytes());
    }
    out
}

pub(crate) fn host_name(i: usize) -> String {
    format!("host-{i:04}")
}

impl Host {
    fn new(index: usize) -> Self {
        let mut rng = Rng(0x5eed ^ (index as u64).wrapping_mul(0x9e37_79b9));
        let host = host_name(index);
        let mut series = Vec::with_capacity(SERIES_PER_HOST);
        let mut add = |name: &str, extra: &[(&str, String)], model: Model| {
            let mut pairs = vec![
                ("__name__".to_owned(), name.to_owned()),
                ("host".to_owned(), host.clone()),
                ("instance".to_owned(), format!("{host}:9100")),
                ("job".to_owned(), "node".to_owned()),
            ];
            pairs.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
            series.push(SeriesDef {
                labels: encode_labels(&mut pairs),
                model,
            });
        };
        for cpu in 0..31 {
            for mode in ["user", "system"] {
                let mean = 100.0 + (rng.next() % 700) as f64;
                let centi = rng.next() % 100_000_000;
                add(
                    "node_cpu_seconds_total",
                    &[("cpu", cpu.to_string()), ("mode", mode.into())],
                    Model::CpuSeconds { centi, mean },
                );
            }
        }
        for sensor in 0..20 {
            let v = 35 + (rng.next() % 40) as i64;
            add(
                "node_hwmon_temp_celsius",
                &[("sensor", format!("temp{sensor}"))],
                Model::Walk { v, lo: 20, hi: 95 },
            );
        }
        for fan in 0..8 {
            let hundreds = 20 + (rng.next() % 40) as i64;
            add(
                "ipmi_fan_speed_rpm",
                &[("fan", format!("FAN{fan}"))],
                Model::Fan { hundreds },
            );
        }
        for psu in 0..4 {
            let milli = 200_000 + (rng.next() % 400_000) as i64;
            add(
                "ipmi_power_watts",
                &[("psu", psu.to_string())],
                Model::Power { milli },
            );
        }
        for dev in 0..8 {
            for dir in ["receive", "transmit"] {
                let bytes_mean = 1e4 * (1 + rng.next() % 10_000) as f64;
                add(
                    &format!("node_network_{dir}_bytes_total"),
                    &[("device", format!("eth{dev}"))],
                    Model::Counter {
                        v: rng.next() % (1 << 40),
                        mean: bytes_mean,
                    },
                );
                add(
                    &format!("node_network_{dir}_packets_total"),
                    &[("device", format!("eth{dev}"))],
                    Model::Counter {
                        v: rng.next() % (1 << 32),
                        mean: bytes_mean / 900.0,
                    },
                );
            }
        }
        for gpu in 0..16 {
            add(
                "dcgm_gpu_utilization_ratio",
                &[("gpu", gpu.to_string())],
                Model::Float,
            );
        }
        for i in 0..58 {
            let size = ((rng.next() % 4000) + 100) * (1 << 30);
            add(
                "node_filesystem_size_bytes",
                &[("mountpoint", format!("/data{i}"))],
                Model::Constant(size as f64),
            );
        }
        debug_assert_eq!(series.len(), SERIES_PER_HOST);
        Self { rng, series }
    }

    /// Appends this host's scrape at `ts` as TimeSeries fields of a WriteRequest.
    fn scrape_into(&mut self, ts: i64, out: &mut Vec<u8>) {
        let mut sample = [0u8; 20];
        for s in &mut self.series {
            let v = s.model.next(&mut self.rng);
            sample[0] = 0x09;
            sample[1..9].copy_from_slice(&v.to_le_bytes());
            sample[9] = 0x10;
            let mut tsv = Vec::with_capacity(10);
            varint(&mut tsv, ts as u64);
            sample[10..10 + tsv.len()].copy_from_slice(&tsv);
            let sample_len = 10 + tsv.len();
            let inner = s.labels.len() + 2 + sample_len;
            out.push(0x0a);
            varint(out, inner as u64);
            out.extend_from_slice(&s.labels);
            out.push(0x12);
            varint(out, sample_len as u64);
            out.extend_from_slice(&sample[..sample_len]);
        }
    }
}

struct Workload {
    /// Snappy-compressed WriteRequests in send order (time-major).
    requests: Arc<[bytes::Bytes]>,
    /// Requests per step: request `i` carries host group `i % groups`.
    groups: usize,
    /// Timestamp of the last step.
    last_ms: i64,
}

impl Workload {
    fn generate(opts: &Opts) -> Self {
        let hosts_per_req = opts.batch / SERIES_PER_HOST;
        let groups = opts.hosts.div_ceil(hosts_per_req);
        let now = super::unix_ms();
        // The last scrape 30 s ago: every peer accepts and shows it.
        let last_ms = (now - 30_000) / 1000 * 1000;
        let first_ms = last_ms - (opts.steps as i64 - 1) * opts.step_ms;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let mut requests: Vec<Vec<u8>> = vec![Vec::new(); groups * opts.steps];
        let parts: Vec<Vec<(usize, Vec<u8>)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        let mine: Vec<usize> = (0..groups).filter(|g| g % threads == t).collect();
                        let mut hosts: Vec<Vec<Host>> = mine
                            .iter()
                            .map(|&g| {
                                (g * hosts_per_req..((g + 1) * hosts_per_req).min(opts.hosts))
                                    .map(Host::new)
                                    .collect()
                            })
                            .collect();
                        let mut out = Vec::new();
                        let mut buf = Vec::new();
                        let mut snappy = snap::raw::Encoder::new();
                        for step in 0..opts.steps {
                            let base = first_ms + step as i64 * opts.step_ms;
                            for (gi, group) in hosts.iter_mut().enumerate() {
                                buf.clear();
                                for h in group.iter_mut() {
                                    let jitter = (h.rng.next() % 7) as i64 - 3;
                                    h.scrape_into(base + jitter, &mut buf);
                                }
                                let body = snappy
                                    .compress_vec(&buf)
                                    .expect("requests are far below snappy's 4 GiB limit");
                                out.push((step * groups + mine[gi], body));
                            }
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("generator threads do not panic"))
                .collect()
        });
        for (i, body) in parts.into_iter().flatten() {
            requests[i] = body;
        }
        Self {
            requests: requests.into_iter().map(bytes::Bytes::from).collect(),
            groups,
            last_ms,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Servers

pub(super) struct Server {
    peer: Peer,
    child: Child,
    pub(super) base: String,
    pub(super) http: reqwest::Client,
    /// Bearer token (dcmon only).
    pub(super) token: Option<String>,
    pub(super) data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release `dcmon` that `run` built (honours `CARGO_TARGET_DIR`).
pub(super) fn dcmon_binary() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::super::root().join("target"))
        .join("release")
        .join("dcmon")
}

pub(super) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn plain_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(64)
        .build()?)
}

/// A client that trusts exactly dcmon's self-signed certificate.
pub(super) fn pinned_client(cert: &Path) -> Result<reqwest::Client> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).context("reading the server certificate")? {
        roots.add(c?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .http1_only()
        .pool_max_idle_per_host(64)
        .build()?)
}

pub(super) fn start(peer: Peer, dir: &Path, rt: &tokio::runtime::Runtime) -> Result<Server> {
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let mut cmd = match peer {
        Peer::Dcmon => {
            let mut c = Command::new(dcmon_binary());
            c.args(["server", "--data-dir"]).arg(&data).args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log-level",
                "warn",
            ]);
            c
        }
        Peer::Prometheus => {
            let cfg = dir.join("prometheus.yml");
            std::fs::write(&cfg, "global:\n  scrape_interval: 1h\n")?;
            let mut c = Command::new("prometheus");
            c.arg(format!("--config.file={}", cfg.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .args([
                    "--web.enable-remote-write-receiver",
                    "--web.enable-admin-api",
                    "--storage.tsdb.retention.time=30d",
                    "--log.level=warn",
                ]);
            c
        }
        Peer::VictoriaMetrics => {
            let mut c = Command::new("victoria-metrics");
            c.arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                .arg(format!("-storageDataPath={}", data.display()))
                .args([
                    "-search.latencyOffset=0s",
                    "-search.disableCache",
                    "-retentionPeriod=1y",
                    "-loggerLevel=WARN",
                ]);
            c
        }
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", peer.name()))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (base, http, token) = match peer {
        Peer::Dcmon => {
            let cert = data.join("tls").join("server.crt");
            while !cert.exists() {
                if Instant::now() > deadline {
                    bail!(
                        "dcmon did not create its certificate; see {}",
                        dir.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(200));
            let out = Command::new(dcmon_binary())
                .args(["token", "create", "--role", "operator", "--data-dir"])
                .arg(&data)
                .output()?;
            if !out.status.success() {
                bail!(
                    "dcmon token create failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            (
                format!("https://127.0.0.1:{port}"),
                pinned_client(&cert)?,
                Some(String::from_utf8(out.stdout)?.trim().to_owned()),
            )
        }
        _ => (format!("http://127.0.0.1:{port}"), plain_client()?, None),
    };
    let mut server = Server {
        peer,
        child,
        base,
        http,
        token,
        data,
    };
    let ready = match peer {
        Peer::Dcmon => "/healthz",
        Peer::Prometheus => "/-/ready",
        Peer::VictoriaMetrics => "/health",
    };
    loop {
        let ok = rt.block_on(async {
            server
                .http
                .get(format!("{}{ready}", server.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        });
        if ok {
            break;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            bail!(
                "{} exited ({status}); log in {}",
                peer.name(),
                dir.display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not become ready; log in {}",
                peer.name(),
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(server)
}

pub(super) fn pid_cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat
        .rsplit_once(") ")
        .context("malformed /proc/PID/stat")?
        .1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

pub(super) fn pid_status_kib(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{key} missing from /proc/{pid}/status"))
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Name, PromQL, and `(start, end)` for a range query.
type BenchQuery = (&'static str, String, Option<(f64, f64)>);

#[derive(Default)]
struct Figures {
    samples_per_s: f64,
    cpu_s_per_m: f64,
    peak_rss_per_series: f64,
    steady_rss_per_series: f64,
    disk_bytes_per_sample: f64,
    failed_requests: u64,
    /// (name, median ms, result size).
    queries: Vec<(&'static str, f64, usize)>,
}

fn measure(peer: Peer, w: &Workload, opts: &Opts, dir: &Path) -> Result<Figures> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let server = start(peer, dir, &rt)?;
    let pid = server.child.id();
    let series = (opts.hosts * SERIES_PER_HOST) as f64;
    let mut f = Figures::default();

    // Ingest.
    let peak_kib = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak_kib.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok(kib) = pid_status_kib(pid, "VmRSS:") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let cpu0 = pid_cpu_seconds(pid)?;
    let t0 = Instant::now();
    let failed = send_all(&rt, &server, w, opts)?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = pid_cpu_seconds(pid)?;
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    f.failed_requests = failed;
    f.samples_per_s = opts.samples() as f64 / wall;
    f.cpu_s_per_m = (cpu1 - cpu0) / (opts.samples() as f64 / 1e6);
    let hwm = pid_status_kib(pid, "VmHWM:").unwrap_or(0);
    f.peak_rss_per_series = (peak_kib.load(Ordering::Relaxed).max(hwm) * 1024) as f64 / series;
    eprintln!(
        "ingest: {:.1} s wall, {:.1} CPU-s, {failed} failed requests",
        wall,
        cpu1 - cpu0
    );

    // Flush what the server buffers, then let it settle.
    flush(&rt, &server)?;
    std::thread::sleep(Duration::from_secs(5));
    f.steady_rss_per_series = (pid_status_kib(pid, "VmRSS:")? * 1024) as f64 / series;

    // Queries, at the last scrape.
    let end = w.last_ms as f64 / 1000.0;
    let h0 = host_name(0);
    let queries: [BenchQuery; 4] = [
        (
            "range: 1 series, 1 h at 10 s",
            format!("node_hwmon_temp_celsius{{host=\"{h0}\",sensor=\"temp0\"}}"),
            Some((end - 3600.0 + 10.0, end)),
        ),
        (
            "instant: 1,000 series",
            "ipmi_power_watts{psu=\"0\"}".to_owned(),
            None,
        ),
        (
            "max by (host) over 8,000 series",
            "max by (host) (ipmi_fan_speed_rpm)".to_owned(),
            None,
        ),
        (
            "rate() over one counter",
            format!("rate(node_network_receive_bytes_total{{host=\"{h0}\",device=\"eth0\"}}[5m])"),
            None,
        ),
    ];
    for (name, q, range) in queries {
        match time_query(&rt, &server, &q, end, range, opts.reps) {
            Ok((ms, size)) => {
                eprintln!("{name}: {ms:.3} ms median, {size} results");
                f.queries.push((name, ms, size));
            }
            Err(e) => {
                eprintln!("{name}: FAILED: {e}");
                f.queries.push((name, f64::NAN, 0));
            }
        }
    }

    // Bytes on disk after the server has compacted what it holds.
    f.disk_bytes_per_sample = disk_bytes(&rt, server)? as f64 / opts.samples() as f64;
    Ok(f)
}

/// Sends every request over `opts.conns` keep-alive connections; returns the failures.
fn send_all(rt: &tokio::runtime::Runtime, s: &Server, w: &Workload, opts: &Opts) -> Result<u64> {
    let failed = Arc::new(AtomicU64::new(0));
    let first_error: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let url = format!("{}/api/v1/write", s.base);
    rt.block_on(async {
        let mut tasks = Vec::new();
        for conn in 0..opts.conns {
            // One client per connection, so there are exactly `conns` connections.
            let http = match s.peer {
                Peer::Dcmon => pinned_client(&s.data.join("tls").join("server.crt"))?,
                _ => plain_client()?,
            };
            let (failed, first_error) = (failed.clone(), first_error.clone());
            let url = url.clone();
            let token = s.token.clone();
            let requests = w.requests.clone();
            // Like Prometheus' shards: each connection owns a fixed set of series and
            // sends them in time order, so no series ever arrives out of order.
            let groups = w.groups;
            let conns = opts.conns;
            tasks.push(tokio::spawn(async move {
                let mine = (0..requests.len()).filter(|i| (i % groups) % conns == conn);
                for i in mine {
                    let body = requests[i].clone();
                    let mut req = http
                        .post(&url)
                        .header("Content-Encoding", "snappy")
                        .header("Content-Type", "application/x-protobuf")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .body(body);
                    if let Some(t) = &token {
                        req = req.bearer_auth(t);
                    }
                    let outcome = match req.send().await {
                        Ok(r) if r.status().is_success() => continue,
                        Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
                        Err(e) => e.to_string(),
                    };
                    failed.fetch_add(1, Ordering::Relaxed);
                    first_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get_or_insert(outcome);
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        anyhow::Ok(())
    })?;
    if let Some(e) = first_error
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        eprintln!("first failed request: {e}");
    }
    Ok(failed.load(Ordering::Relaxed))
}

fn flush(rt: &tokio::runtime::Runtime, s: &Server) -> Result<()> {
    if s.peer == Peer::VictoriaMetrics {
        rt.block_on(
            s.http
                .get(format!("{}/internal/force_flush", s.base))
                .send(),
        )?;
    }
    Ok(())
}

/// Median latency of `q` (instant at `end`, or range with a 10 s step) and result size.
pub(super) fn time_query(
    rt: &tokio::runtime::Runtime,
    s: &Server,
    q: &str,
    end: f64,
    range: Option<(f64, f64)>,
    reps: usize,
) -> Result<(f64, usize)> {
    let mut params = vec![("query", q.to_owned())];
    let path = match range {
        Some((start, end)) => {
            params.push(("start", format!("{start}")));
            params.push(("end", format!("{end}")));
            params.push(("step", "10".to_owned()));
            "/api/v1/query_range"
        }
        None => {
            params.push(("time", format!("{end}")));
            "/api/v1/query"
        }
    };
    let url = reqwest::Url::parse_with_params(&format!("{}{path}", s.base), &params)?;
    let once = || async {
        let mut req = s.http.get(url.clone());
        if let Some(t) = &s.token {
            req = req.bearer_auth(t);
        }
        let t = Instant::now();
        let resp = req.send().await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if !status.is_success() {
            bail!("{} answered {status} to {q}: {body}", s.peer.name());
        }
        let result = &body["data"]["result"];
        let size = match range {
            Some(_) => result[0]["values"].as_array().map_or(0, Vec::len),
            None => result.as_array().map_or(0, Vec::len),
        };
        Ok((ms, size))
    };
    rt.block_on(async {
        for _ in 0..3 {
            once().await?;
        }
        let mut times = Vec::with_capacity(reps);
        let mut size = 0;
        for _ in 0..reps {
            let (ms, n) = once().await?;
            times.push(ms);
            size = n;
        }
        times.sort_by(f64::total_cmp);
        Ok((times[times.len() / 2], size))
    })
}

/// On-disk bytes once the server has written what it holds in memory:
/// Prometheus: a snapshot (head written as a block); VictoriaMetrics: after force_flush
/// and force_merge; dcmon: after a clean shutdown (head sealed into chunks).
fn disk_bytes(rt: &tokio::runtime::Runtime, mut s: Server) -> Result<u64> {
    match s.peer {
        Peer::Prometheus => {
            let r: serde_json::Value = rt.block_on(async {
                s.http
                    .post(format!("{}/api/v1/admin/tsdb/snapshot", s.base))
                    .send()
                    .await?
                    .json()
                    .await
            })?;
            let name = r["data"]["name"]
                .as_str()
                .with_context(|| format!("snapshot answer: {r}"))?;
            Ok(dir_bytes(&s.data.join("snapshots").join(name)))
        }
        Peer::VictoriaMetrics => {
            rt.block_on(async {
                s.http
                    .get(format!("{}/internal/force_merge", s.base))
                    .send()
                    .await
            })?;
            // force_merge runs in the background; wait until the size stops changing.
            let mut last = 0;
            for _ in 0..60 {
                std::thread::sleep(Duration::from_secs(1));
                let now = dir_bytes(&s.data.join("data"));
                if now == last {
                    break;
                }
                last = now;
            }
            Ok(last)
        }
        Peer::Dcmon => {
            // SIGTERM: a clean shutdown seals the head.
            let pid = s.child.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status()?;
            let deadline = Instant::now() + Duration::from_secs(120);
            while s.child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    bail!("dcmon did not stop within 120 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(dir_bytes(&s.data.join("tsdb")))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Report

fn print_table(opts: &Opts, results: &[(Peer, Figures)]) {
    println!(
        "\n## tsdb: {} hosts × {SERIES_PER_HOST} series × {} steps of {} s = {} samples, \
         remote_write requests of {} samples over {} connections\n",
        opts.hosts,
        opts.steps,
        opts.step_ms / 1000,
        opts.samples(),
        opts.batch,
        opts.conns
    );
    let dcmon = results
        .iter()
        .find(|(p, _)| *p == Peer::Dcmon)
        .map(|(_, f)| f);
    let peers: Vec<&(Peer, Figures)> = results.iter().filter(|(p, _)| *p != Peer::Dcmon).collect();
    let mut header = String::from("| what | target |");
    let mut rule = String::from("|---|---|");
    for (p, _) in results {
        header += &format!(" {} |", p.name());
        rule += "---|";
    }
    if dcmon.is_some() && !peers.is_empty() {
        for (p, _) in &peers {
            header += &format!(" dcmon vs {} |", p.name());
            rule += "---|";
        }
        header += " ahead of all peers |";
        rule += "---|";
    }
    println!("{header}\n{rule}");
    type Get = Box<dyn Fn(&Figures) -> f64>;
    // (name, target, getter, higher is better, decimals)
    let mut rows: Vec<(String, &str, Get, bool, usize)> = vec![
        (
            "ingest rate, samples/s".into(),
            "≥ 1.5 M",
            Box::new(|f: &Figures| f.samples_per_s),
            true,
            0,
        ),
        (
            "server CPU-s per 1 M samples".into(),
            "≤ 1.0",
            Box::new(|f: &Figures| f.cpu_s_per_m),
            false,
            2,
        ),
        (
            "peak RSS per active series, bytes".into(),
            "≤ 2× steady",
            Box::new(|f: &Figures| f.peak_rss_per_series),
            false,
            0,
        ),
        (
            "steady RSS per active series, bytes".into(),
            "≤ 1,000",
            Box::new(|f: &Figures| f.steady_rss_per_series),
            false,
            0,
        ),
        (
            "disk bytes per sample".into(),
            "≤ 2.0 lossless",
            Box::new(|f: &Figures| f.disk_bytes_per_sample),
            false,
            2,
        ),
    ];
    let targets = ["≤ 0.25 ms", "≤ 3 ms", "≤ 20 ms", "—"];
    if let Some((_, any)) = results.first() {
        for (i, (name, _, _)) in any.queries.iter().enumerate() {
            rows.push((
                format!("{name}, ms"),
                targets.get(i).copied().unwrap_or("—"),
                Box::new(move |f: &Figures| f.queries.get(i).map_or(f64::NAN, |q| q.1)),
                false,
                3,
            ));
        }
    }
    for (name, target, get, higher, decimals) in &rows {
        let mut line = format!("| {name} | {target} |");
        for (_, f) in results {
            line += &format!(" {:.*} |", *decimals, get(f));
        }
        if let Some(d) = dcmon.filter(|_| !peers.is_empty()) {
            let mut ahead = true;
            for (_, pf) in &peers {
                let (ours, theirs) = (get(d), get(pf));
                let ratio = if *higher {
                    ours / theirs
                } else {
                    theirs / ours
                };
                ahead &= ratio > 1.0;
                line += &format!(" {ratio:.2}× |");
            }
            line += if ahead { " yes |" } else { " **no** |" };
        }
        println!("{line}");
    }
    println!(
        "\n(× > 1 means dcmon is better. Failed requests: {}. Query latency: median of {} \
         client-side, keep-alive; dcmon over TLS, peers over plain HTTP. Result sizes: {}.)",
        results
            .iter()
            .map(|(p, f)| format!("{} {}", p.name(), f.failed_requests))
            .collect::<Vec<_>>()
            .join(", "),
        opts.reps,
        results
            .iter()
            .map(|(p, f)| format!(
                "{} {:?}",
                p.name(),
                f.queries.iter().map(|q| q.2).collect::<Vec<_>>()
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
}
