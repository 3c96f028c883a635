//! `cargo xtask bench bmc`: the server's agentless BMC poller against 1,000 simulated
//! BMCs (`dcmon bmc-sim --count 1000`), imported with `dcmon bmc import` at a 30 s
//! interval (DESIGN §10: 1,000 BMC sessions per 30 s from one server, ≤ 1 MiB RSS per
//! BMC session).
//!
//! A release `dcmon server` runs with its default `bmc_poll` settings. After every BMC
//! has been polled once (SDR caches full), the window starts: polls are counted from the
//! `dcmon_bmc_up` samples the server stored in the window (one per poll, stamped with
//! the poll's start), failures from those that are 0; server CPU is read from
//! `/proc/PID/stat`, RSS from `/proc/PID/status`. RSS per BMC is the growth over the
//! server's RSS before the import, divided by the BMCs. The simulator shares the
//! machine's cores and its CPU is shown too.

use super::ipmi::{PASSWORD, USER, start_sim};
use super::tsdb::{dcmon_binary, free_port, pid_cpu_seconds, pid_status_kib, pinned_client};
use super::{Running, output};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Opts {
    count: usize,
    seconds: u64,
    interval_s: u64,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Opts {
            count: 1000,
            seconds: 60,
            interval_s: 30,
        };
        super::parse_numeric_flags(
            args,
            "cargo xtask bench bmc [--count 1000] [--seconds 60] [--interval 30]\n\
             Polls --count simulated BMCs every --interval seconds with a release\n\
             dcmon server and measures it over --seconds after a warm-up poll of each.",
            |flag, n| {
                match flag {
                    "--count" => o.count = usize::try_from(n)?.clamp(1, 5000),
                    "--seconds" => o.seconds = n.max(30),
                    "--interval" => o.interval_s = n.max(10),
                    _ => return Ok(false),
                }
                Ok(true)
            },
        )?;
        Ok(o)
    }
}

struct Figures {
    polls: f64,
    failures: f64,
    window_s: f64,
    server_cpu_s: f64,
    sim_cpu_s: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
    base_rss_mib: f64,
    warmup_s: f64,
    mean_poll_s: f64,
}

pub fn run(args: &[String]) -> Result<()> {
    let opts = Opts::parse(args)?;
    if cfg!(debug_assertions) {
        return super::reexec_release("bmc", args);
    }
    let mut build = super::super::cargo();
    build.args(["build", "--release", "--quiet", "-p", "dcmon"]);
    super::super::run(build)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("dcmon-bench-bmc-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&dir, &opts);
    let _ = std::fs::remove_dir_all(&dir);
    let f = result?;
    let per_30s = f.polls * 30.0 / f.window_s;
    let rss_per_bmc_kib = (f.rss_mib - f.base_rss_mib).max(0.0) * 1024.0 / opts.count as f64;
    println!(
        "\nbmc bench: {} simulated BMCs every {} s, {:.0} s window after a {:.0} s warm-up (machine: {} cores)\n",
        opts.count,
        opts.interval_s,
        f.window_s,
        f.warmup_s,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| what | dcmon server | target |");
    println!("|---|---|---|");
    println!("| polls completed per 30 s | {per_30s:.0} | ≥ 1,000 (2 cores) |");
    println!(
        "| sessions per second | {:.1} | ≥ 33.3 |",
        f.polls / f.window_s
    );
    println!(
        "| failed polls in the window | {:.0} of {:.0} | 0 |",
        f.failures, f.polls
    );
    println!(
        "| server CPU per poll | {:.2} ms | — |",
        f.server_cpu_s * 1000.0 / f.polls.max(1.0)
    );
    println!(
        "| server CPU share | {:.1} % of one core | — |",
        f.server_cpu_s * 100.0 / f.window_s
    );
    println!(
        "| simulator CPU share (same machine) | {:.1} % of one core | — |",
        f.sim_cpu_s * 100.0 / f.window_s
    );
    println!(
        "| mean poll duration | {:.1} ms | — |",
        f.mean_poll_s * 1000.0
    );
    println!(
        "| server RSS (peak) | {:.1} MiB ({:.1} MiB) | — |",
        f.rss_mib, f.peak_rss_mib
    );
    println!(
        "| RSS per BMC (over {:.1} MiB before the import) | {rss_per_bmc_kib:.1} KiB | ≤ 1,024 KiB |",
        f.base_rss_mib
    );
    Ok(())
}

fn measure(dir: &Path, opts: &Opts) -> Result<Figures> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sim = start_sim(opts.count)?;
    let data = dir.join("data");
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let server = Running(
        Command::new(dcmon_binary())
            .args(["server", "--data-dir"])
            .arg(&data)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log-level",
                "warn",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting dcmon server")?,
    );
    let pid = server.0.id();
    let cert = super::wait_for_certificate(&data, dir)?;
    std::thread::sleep(Duration::from_secs(1));
    let base_rss = pid_status_kib(pid, "VmRSS:")? as f64 / 1024.0;
    let viewer = output(
        Command::new(dcmon_binary())
            .args(["token", "create", "--role", "viewer", "--data-dir"])
            .arg(&data),
    )?
    .trim()
    .to_owned();
    let csv = dir.join("bmcs.csv");
    let mut text = String::from("name,address,user,password,interval\n");
    for i in 0..opts.count {
        text += &format!(
            "bmc{i:04},127.0.0.1:{},{USER},{PASSWORD},{}s\n",
            usize::from(sim.base_port) + i,
            opts.interval_s
        );
    }
    std::fs::write(&csv, text)?;
    let imported = Instant::now();
    output(
        Command::new(dcmon_binary())
            .args(["bmc", "import"])
            .arg(&csv)
            .arg("--data-dir")
            .arg(&data),
    )?;
    let base = format!("https://127.0.0.1:{port}");
    let http = pinned_client(&cert)?;
    let query = |q: &str, at: Option<f64>| -> Result<f64> {
        rt.block_on(async {
            let mut url = reqwest::Url::parse(&format!("{base}/api/v1/query"))?;
            url.query_pairs_mut().append_pair("query", q);
            if let Some(t) = at {
                url.query_pairs_mut()
                    .append_pair("time", &format!("{t:.3}"));
            }
            let v: serde_json::Value = http
                .get(url)
                .bearer_auth(&viewer)
                .send()
                .await?
                .json()
                .await?;
            Ok(v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0.0))
        })
    };
    // Warm-up: every BMC polled once (its SDR read and cached).
    let warm_deadline = Instant::now() + Duration::from_secs(opts.interval_s * 4);
    while query("count(dcmon_bmc_up)", None)? < opts.count as f64 {
        if Instant::now() > warm_deadline {
            bail!(
                "not every BMC was polled within {} s; see {}",
                opts.interval_s * 4,
                dir.join("server.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let warmup_s = imported.elapsed().as_secs_f64();
    let now_s = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let cpu0 = pid_cpu_seconds(pid)?;
    let sim_cpu0 = pid_cpu_seconds(sim.child.id())?;
    let t0 = now_s();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(opts.seconds));
    let cpu1 = pid_cpu_seconds(pid)?;
    let sim_cpu1 = pid_cpu_seconds(sim.child.id())?;
    let window_s = started.elapsed().as_secs_f64();
    let t1 = now_s();
    let rss = pid_status_kib(pid, "VmRSS:")? as f64 / 1024.0;
    let peak = pid_status_kib(pid, "VmHWM:")? as f64 / 1024.0;
    // Polls started in the window land within their timeout and one write period.
    std::thread::sleep(Duration::from_secs(8));
    let range = format!("[{}ms]", ((t1 - t0) * 1000.0) as u64);
    let polls = query(
        &format!("sum(count_over_time(dcmon_bmc_up{range}))"),
        Some(t1),
    )?;
    let ups = query(
        &format!("sum(sum_over_time(dcmon_bmc_up{range}))"),
        Some(t1),
    )?;
    let mean_poll_s = query(
        &format!("avg(avg_over_time(dcmon_bmc_poll_duration_seconds{range}))"),
        Some(t1),
    )?;
    drop(server);
    drop(sim);
    Ok(Figures {
        polls,
        failures: polls - ups,
        window_s,
        server_cpu_s: cpu1 - cpu0,
        sim_cpu_s: sim_cpu1 - sim_cpu0,
        rss_mib: rss,
        peak_rss_mib: peak,
        base_rss_mib: base_rss,
        warmup_s,
        mean_poll_s,
    })
}
