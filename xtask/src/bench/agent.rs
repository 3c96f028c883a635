//! `cargo xtask bench agent`: what the agent costs on a machine, beside
//! `prometheus-node-exporter` on the same machine in the same run.
//!
//! The agent runs for real: registered with a release `dcmon server` on loopback,
//! collecting and pushing (signed, compressed, over TLS) every interval. Its CPU per
//! collection cycle is the process's CPU time over the window divided by the collections
//! the server stored in it, so collection, encoding, signing and TLS are all counted.
//! node_exporter is scraped over HTTP at the same interval; its CPU per scrape is
//! counted the same way. RSS is read from `/proc/PID/status` at the end of each window.

use super::tsdb::{dcmon_binary, free_port, pid_cpu_seconds, pid_status_kib, pinned_client};
use super::{Running, output};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Opts {
    seconds: u64,
    interval_ms: u64,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Opts {
            seconds: 60,
            interval_ms: 1000,
        };
        super::parse_numeric_flags(
            args,
            "cargo xtask bench agent [--seconds 60] [--interval-ms 1000]\n\
             Measures the dcmon agent (pushing to a local dcmon server) and\n\
             prometheus-node-exporter (scraped at the same interval) over the same window.",
            |flag, n| {
                match flag {
                    "--seconds" => o.seconds = n.max(10),
                    "--interval-ms" => o.interval_ms = n.max(1000),
                    _ => return Ok(false),
                }
                Ok(true)
            },
        )?;
        Ok(o)
    }
}

fn agent_binary() -> PathBuf {
    dcmon_binary()
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("agent").join("dcmon-agent"))
        .unwrap_or_else(|| PathBuf::from("dcmon-agent"))
}

struct Figures {
    series: f64,
    cpu_ms_per_cycle: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
    cycles: f64,
}

pub fn run(args: &[String]) -> Result<()> {
    let opts = Opts::parse(args)?;
    if cfg!(debug_assertions) {
        return super::reexec_release("agent", args);
    }
    let mut build = super::super::cargo();
    build.args(["build", "--release", "--quiet", "-p", "dcmon"]);
    super::super::run(build)?;
    // The agent as shipped: the size-optimised `agent` profile.
    let mut build = super::super::cargo();
    build.args([
        "build",
        "--profile",
        "agent",
        "--quiet",
        "-p",
        "dcmon-agent",
    ]);
    super::super::run(build)?;
    let exporter = "prometheus-node-exporter";
    if !super::super::have(exporter) {
        bail!(
            "`{exporter}` is not installed: apt-get install -y --no-install-recommends {exporter}"
        );
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("dcmon-bench-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| -> Result<(Figures, Figures)> {
        let ours = measure_agent(&dir, &opts)?;
        let peer = measure_node_exporter(&dir, &opts)?;
        Ok((ours, peer))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let (ours, peer) = result?;
    println!(
        "\nagent bench: {} s window, one collection every {} ms (machine: {} cores)\n",
        opts.seconds,
        opts.interval_ms,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| what | dcmon-agent | node_exporter | dcmon / node_exporter | target |");
    println!("|---|---|---|---|---|");
    let row = |what: &str, a: f64, b: f64, digits: usize, target: &str| {
        println!(
            "| {what} | {a:.digits$} | {b:.digits$} | {:.2} | {target} |",
            a / b
        );
    };
    row("series per collection", ours.series, peer.series, 0, "~200");
    row(
        "CPU per collection (ms)",
        ours.cpu_ms_per_cycle,
        peer.cpu_ms_per_cycle,
        3,
        "≤ 2 ms",
    );
    row(
        "CPU per series (µs)",
        ours.cpu_ms_per_cycle * 1000.0 / ours.series,
        peer.cpu_ms_per_cycle * 1000.0 / peer.series,
        2,
        "",
    );
    row(
        "steady RSS (MiB)",
        ours.rss_mib,
        peer.rss_mib,
        1,
        "≤ 10 MiB",
    );
    row(
        "peak RSS (MiB)",
        ours.peak_rss_mib,
        peer.peak_rss_mib,
        1,
        "",
    );
    println!(
        "\ncollections counted: dcmon-agent {} (stored by the server), node_exporter {} (scrapes)",
        ours.cycles, peer.cycles
    );
    println!(
        "dcmon-agent's figures include pushing each collection (zstd, Ed25519 signature, TLS); node_exporter's include serving the scrape."
    );
    Ok(())
}

fn spawn(cmd: &mut Command, log: &Path) -> Result<Running> {
    let f = std::fs::File::create(log)?;
    Ok(Running(
        cmd.stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?,
    ))
}

fn measure_agent(dir: &Path, opts: &Opts) -> Result<Figures> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let data = dir.join("data");
    let port = free_port()?;
    let _server = spawn(
        Command::new(dcmon_binary())
            .args(["server", "--data-dir"])
            .arg(&data)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log-level",
                "warn",
            ]),
        &dir.join("server.log"),
    )?;
    let cert = super::wait_for_certificate(&data, dir)?;
    std::thread::sleep(Duration::from_millis(300));
    let join = output(
        Command::new(dcmon_binary())
            .args(["enroll", "create", "--data-dir"])
            .arg(&data),
    )?;
    let words: Vec<&str> = join.split_whitespace().collect();
    let arg = |name: &str| -> Result<String> {
        let i = words
            .iter()
            .position(|w| *w == name)
            .with_context(|| format!("no {name} in `dcmon enroll create` output:\n{join}"))?;
        Ok(words
            .get(i + 1)
            .context("truncated join command")?
            .to_string())
    };
    let (fingerprint, token) = (arg("--fingerprint")?, arg("--token")?);
    let viewer = output(
        Command::new(dcmon_binary())
            .args(["token", "create", "--role", "viewer", "--data-dir"])
            .arg(&data),
    )?
    .trim()
    .to_owned();
    let base = format!("https://127.0.0.1:{port}");
    let agent_dir = dir.join("agent");
    std::fs::create_dir_all(&agent_dir)?;
    let cfg = agent_dir.join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {}\nhostname: bench\ninterval: {}ms\n",
            agent_dir.join("state").display(),
            opts.interval_ms
        ),
    )?;
    output(
        Command::new(agent_binary())
            .arg("--config")
            .arg(&cfg)
            .args([
                "register",
                "--server",
                &base,
                "--token",
                &token,
                "--fingerprint",
                &fingerprint,
            ]),
    )?;
    let agent = spawn(
        Command::new(agent_binary())
            .arg("--config")
            .arg(&cfg)
            .args(["--log-level", "warn", "run"]),
        &dir.join("agent.log"),
    )?;
    let pid = agent.0.id();
    let http = pinned_client(&cert)?;
    let query = |q: &str| -> Result<f64> {
        rt.block_on(async {
            let mut url = reqwest::Url::parse(&format!("{base}/api/v1/query"))?;
            url.query_pairs_mut().append_pair("query", q);
            let v: serde_json::Value = http
                .get(url)
                .bearer_auth(&viewer)
                .send()
                .await?
                .json()
                .await?;
            v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("{q}: {v}"))
        })
    };
    // Warm-up: first collections read the SDR, open devices, fill caches.
    std::thread::sleep(Duration::from_secs(10));
    let cpu0 = pid_cpu_seconds(pid)?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(opts.seconds));
    let cpu1 = pid_cpu_seconds(pid)?;
    let window = started.elapsed().as_secs_f64();
    let rss = pid_status_kib(pid, "VmRSS:")? as f64 / 1024.0;
    let peak = pid_status_kib(pid, "VmHWM:")? as f64 / 1024.0;
    // Let the last push land before counting.
    std::thread::sleep(Duration::from_millis(opts.interval_ms + 500));
    let cycles = query(&format!(
        "count_over_time(dcmon_collector_up{{collector=\"os\",host=\"bench\"}}[{}ms])",
        (window * 1000.0) as u64 + opts.interval_ms
    ))?;
    let series = query("count({host=\"bench\"})")?;
    drop(agent);
    Ok(Figures {
        series,
        cpu_ms_per_cycle: (cpu1 - cpu0) * 1000.0 / cycles.max(1.0),
        rss_mib: rss,
        peak_rss_mib: peak,
        cycles,
    })
}

fn measure_node_exporter(dir: &Path, opts: &Opts) -> Result<Figures> {
    let port = free_port()?;
    let exporter = spawn(
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn"),
        &dir.join("node_exporter.log"),
    )?;
    let pid = exporter.0.id();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let scrape = || -> Result<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        use std::io::{Read, Write};
        write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        let (_, body) = answer
            .split_once("\r\n\r\n")
            .with_context(|| format!("{url}: no HTTP answer"))?;
        Ok(body.to_owned())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while scrape().is_err() {
        if Instant::now() > deadline {
            bail!("node_exporter did not answer on {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Same warm-up and cadence as the agent.
    let interval = Duration::from_millis(opts.interval_ms);
    let warm_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < warm_until {
        scrape()?;
        std::thread::sleep(interval);
    }
    let cpu0 = pid_cpu_seconds(pid)?;
    let started = Instant::now();
    let mut scrapes = 0u32;
    let mut last = String::new();
    let mut next = Instant::now();
    while started.elapsed() < Duration::from_secs(opts.seconds) {
        last = scrape()?;
        scrapes += 1;
        next += interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let cpu1 = pid_cpu_seconds(pid)?;
    let rss = pid_status_kib(pid, "VmRSS:")? as f64 / 1024.0;
    let peak = pid_status_kib(pid, "VmHWM:")? as f64 / 1024.0;
    let series = last
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count() as f64;
    Ok(Figures {
        series,
        cpu_ms_per_cycle: (cpu1 - cpu0) * 1000.0 / f64::from(scrapes.max(1)),
        rss_mib: rss,
        peak_rss_mib: peak,
        cycles: f64::from(scrapes),
    })
}
