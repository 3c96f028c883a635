//! `cargo xtask bench ipmi`: what reading BMCs costs.
//!
//! 1. One BMC, all sensors: `ipmitool sdr list` (a process per call, as today's fan and
//!    monitoring scripts run it) against `dcmon ipmi sdr list` (also a process per call)
//!    and against the `dcmon-ipmi` library in a long-lived process, as the server's poller
//!    uses it (session kept, SDR read once and cached).
//! 2. A fleet of simulated BMCs (`dcmon bmc-sim --count N`, default 1,000): sessions
//!    opened per second, memory per open session, and one full poll of every BMC's
//!    sensors over a few shared sockets (`LanPool`), against the target of 1,000 BMC polls
//!    per 30 s from one server and ≤ 1 MiB per session.
//!
//! Everything runs on this machine: the simulator's CPU is reported beside ours.

use super::tsdb::{dcmon_binary, pid_cpu_seconds, pid_status_kib};
use anyhow::{Context, Result, bail};
use dcmon_ipmi::client;
use dcmon_ipmi::transport::lan::{LanConfig, LanPool, LanSession};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Opts {
    bmcs: usize,
    reps: usize,
    sockets: usize,
    concurrency: usize,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self {
            bmcs: 1000,
            reps: 20,
            sockets: 4,
            concurrency: 200,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || -> Result<usize> {
                it.next()
                    .with_context(|| format!("{flag} needs a value"))?
                    .parse()
                    .with_context(|| format!("{flag} takes a number"))
            };
            match flag.as_str() {
                "--bmcs" => o.bmcs = value()?.max(1),
                "--reps" => o.reps = value()?.max(1),
                "--sockets" => o.sockets = value()?.max(1),
                "--concurrency" => o.concurrency = value()?.max(1),
                "--help" | "-h" => {
                    println!(
                        "cargo xtask bench ipmi [--bmcs 1000] [--reps 20] [--sockets 4] [--concurrency 200]"
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown flag {other:?}; see --help"),
            }
        }
        Ok(o)
    }
}

pub(super) const USER: &str = "admin";
pub(super) const PASSWORD: &str = "s3cret";

/// A running `dcmon bmc-sim`; killed on drop.
pub(super) struct Sim {
    pub(super) child: Child,
    pub(super) base_port: u16,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_ports(n: usize) -> Result<u16> {
    for _ in 0..100 {
        let base = std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        if usize::from(base) + n < 65_000
            && (0..n).all(|i| std::net::UdpSocket::bind(("127.0.0.1", base + i as u16)).is_ok())
        {
            return Ok(base);
        }
    }
    bail!("no block of {n} free UDP ports on 127.0.0.1")
}

pub(super) fn start_sim(count: usize) -> Result<Sim> {
    let base_port = free_udp_ports(count)?;
    let mut child = Command::new(dcmon_binary())
        .args(["bmc-sim", "--count", &count.to_string()])
        .args(["--base-port", &base_port.to_string()])
        .args([
            "--user",
            USER,
            "--password",
            PASSWORD,
            "--log-level",
            "warn",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting dcmon bmc-sim")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("bmc-sim stdout")?).read_line(&mut line)?;
    if !line.contains("listening") {
        let _ = child.kill();
        bail!("bmc-sim did not start: {line:?}");
    }
    Ok(Sim { child, base_port })
}

/// CPU seconds of this process (utime + stime) and of its waited-for children.
fn own_cpu() -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let rest = stat
        .rsplit_once(") ")
        .context("malformed /proc/self/stat")?
        .1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| -> Result<f64> { Ok(f[i].parse::<u64>()? as f64 / 100.0) };
    Ok((t(11)? + t(12)?, t(13)? + t(14)?))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn lan_config(port: u16) -> LanConfig {
    let mut c = LanConfig::new("127.0.0.1", USER, PASSWORD);
    c.port = port;
    c.timeout = Duration::from_secs(10);
    c
}

/// Runs `cmd` `reps` times: (median wall ms, child CPU ms per call, lines of the last).
fn per_process(reps: usize, cmd: impl Fn() -> Command) -> Result<(f64, f64, usize)> {
    let mut walls = Vec::with_capacity(reps);
    let (_, c0) = own_cpu()?;
    let mut lines = 0;
    for _ in 0..reps {
        let t = Instant::now();
        let out = cmd().output().context("running the reader")?;
        walls.push(t.elapsed().as_secs_f64() * 1000.0);
        if !out.status.success() {
            bail!(
                "{:?} failed: {}",
                cmd(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        lines = out.stdout.iter().filter(|b| **b == b'\n').count();
    }
    let (_, c1) = own_cpu()?;
    Ok((median(walls), (c1 - c0) * 1000.0 / reps as f64, lines))
}

pub fn run(args: &[String]) -> Result<()> {
    let opts = Opts::parse(args)?;
    if cfg!(debug_assertions) {
        return super::reexec_release("ipmi", args);
    }
    let mut build = super::super::cargo();
    build.args(["build", "--release", "--quiet", "-p", "dcmon"]);
    super::super::run(build)?;
    if !super::super::have("ipmitool") {
        bail!("`ipmitool` is not installed: apt-get install -y --no-install-recommends ipmitool");
    }
    let rt = tokio::runtime::Runtime::new()?;

    // 1. One BMC.
    let one = start_sim(1)?;
    let port = one.base_port.to_string();
    let (ipmitool_ms, ipmitool_cpu, ipmitool_lines) = per_process(opts.reps, || {
        let mut c = Command::new("ipmitool");
        c.args(["-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", &port])
            .args(["-U", USER, "-P", PASSWORD, "sdr", "list"]);
        c
    })?;
    let target = format!("127.0.0.1:{port}");
    let (cli_ms, cli_cpu, cli_lines) = per_process(opts.reps, || {
        let mut c = Command::new(dcmon_binary());
        c.args(["ipmi", "-H", &target, "-U", USER, "-P", PASSWORD, "-C", "3"])
            .args(["sdr", "list"]);
        c
    })?;
    let (first_ms, lib_ms, lib_cpu, sensors) = rt.block_on(async {
        let s = LanSession::connect(lan_config(one.base_port)).await?;
        let t = Instant::now();
        let records = client::sdr_records(&s).await?;
        let values = client::read_sensors(&s, &records).await?;
        let first = t.elapsed().as_secs_f64() * 1000.0;
        // Enough reads that CPU time is well above the 10 ms tick of /proc.
        let reads = opts.reps.max(200);
        let (c0, _) = own_cpu()?;
        let mut walls = Vec::new();
        for _ in 0..reads {
            let t = Instant::now();
            client::read_sensors(&s, &records).await?;
            walls.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (c1, _) = own_cpu()?;
        s.close().await;
        anyhow::Ok((
            first,
            median(walls),
            (c1 - c0) * 1000.0 / reads as f64,
            values.len(),
        ))
    })?;
    drop(one);

    // 2. The fleet.
    let sim = start_sim(opts.bmcs)?;
    let sim_pid = sim.child.id();
    let fleet = rt.block_on(fleet(&opts, &sim, sim_pid))?;
    drop(sim);

    println!();
    println!(
        "### One BMC, all {sensors} sensors (median of {} process runs; in-process: of {} reads)",
        opts.reps,
        opts.reps.max(200)
    );
    println!();
    println!("| reader | wall ms | CPU ms | vs ipmitool (wall) |");
    println!("|---|---|---|---|");
    println!(
        "| `ipmitool -I lanplus sdr list` (process per call, {ipmitool_lines} lines) | {ipmitool_ms:.1} | {ipmitool_cpu:.1} | 1.00× |"
    );
    println!(
        "| `dcmon ipmi sdr list` (process per call, {cli_lines} lines) | {cli_ms:.1} | {cli_cpu:.1} | {:.1}× faster |",
        ipmitool_ms / cli_ms
    );
    println!(
        "| dcmon-ipmi in the poller: new session + SDR + readings | {first_ms:.1} | | {:.1}× faster |",
        ipmitool_ms / first_ms
    );
    println!(
        "| dcmon-ipmi in the poller: readings, session and SDR cached | {lib_ms:.2} | {lib_cpu:.2} | {:.0}× faster |",
        ipmitool_ms / lib_ms
    );
    println!();
    println!(
        "### {} simulated BMCs, {} shared sockets, {} requests in flight",
        opts.bmcs, opts.sockets, opts.concurrency
    );
    println!();
    println!("| figure | value | target |");
    println!("|---|---|---|");
    println!(
        "| sessions opened | {:.0}/s ({} in {:.2} s) | |",
        fleet.sessions as f64 / fleet.open_s,
        fleet.sessions,
        fleet.open_s
    );
    println!(
        "| memory per open session (RSS of the polling process) | {:.1} KiB | ≤ 1,024 KiB |",
        fleet.rss_per_session_kib
    );
    println!(
        "| full poll: every BMC's SDR + all sensors, fresh sessions | {:.2} s ({:.0} BMC polls/s) | 1,000 polls ≤ 30 s |",
        fleet.first_poll_s,
        fleet.sessions as f64 / fleet.first_poll_s
    );
    println!(
        "| steady poll: all sensors, sessions and SDR cached | {:.2} s ({:.0} BMC polls/s) | 1,000 polls ≤ 30 s |",
        fleet.poll_s,
        fleet.sessions as f64 / fleet.poll_s
    );
    println!(
        "| CPU per steady BMC poll: poller / simulator | {:.2} ms / {:.2} ms | |",
        fleet.poll_cpu_ms, fleet.sim_cpu_ms
    );
    println!("| failed polls | {} | 0 |", fleet.failures);
    Ok(())
}

struct Fleet {
    sessions: usize,
    open_s: f64,
    rss_per_session_kib: f64,
    first_poll_s: f64,
    poll_s: f64,
    poll_cpu_ms: f64,
    sim_cpu_ms: f64,
    failures: usize,
}

async fn fleet(opts: &Opts, sim: &Sim, sim_pid: u32) -> Result<Fleet> {
    let me = std::process::id();
    let pool = LanPool::new(opts.sockets, false).await?;
    let rss0 = pid_status_kib(me, "VmRSS:")?;
    let gate = Arc::new(tokio::sync::Semaphore::new(opts.concurrency));
    let mut sessions = Vec::with_capacity(opts.bmcs);
    for i in 0..opts.bmcs {
        let port = sim.base_port + i as u16;
        sessions.push(Arc::new(pool.session(lan_config(port)).await?));
    }
    // Open every session (the first request establishes it).
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for s in &sessions {
        let (s, gate) = (s.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            client::device_id(&*s).await.map(drop)
        });
    }
    let opened = tasks.join_all().await;
    let open_s = t.elapsed().as_secs_f64();
    let failed_open = opened.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = opened.iter().find(|r| r.is_err()) {
        eprintln!("{failed_open} sessions failed to open, e.g.: {e}");
    }
    let rss1 = pid_status_kib(me, "VmRSS:")?;

    // First poll: read each BMC's SDR, then its sensors.
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for s in &sessions {
        let (s, gate) = (s.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let records = client::sdr_records(&*s).await?;
            client::read_sensors(&*s, &records).await?;
            anyhow::Ok(records)
        });
    }
    let sdrs: Vec<Result<Vec<_>>> = tasks.join_all().await;
    let first_poll_s = t.elapsed().as_secs_f64();

    // Steady poll: sensors only.
    let (c0, _) = own_cpu()?;
    let s0 = pid_cpu_seconds(sim_pid)?;
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (s, sdr) in sessions.iter().zip(sdrs) {
        let (s, gate) = (s.clone(), gate.clone());
        tasks.spawn(async move {
            let records = sdr?;
            let _permit = gate.acquire_owned().await;
            client::read_sensors(&*s, &records).await?;
            anyhow::Ok(())
        });
    }
    let polled = tasks.join_all().await;
    let poll_s = t.elapsed().as_secs_f64();
    let (c1, _) = own_cpu()?;
    let s1 = pid_cpu_seconds(sim_pid)?;
    let failures = polled.iter().filter(|r| r.is_err()).count();
    let n = sessions.len() as f64;
    drop(sessions);
    Ok(Fleet {
        sessions: opts.bmcs,
        open_s,
        rss_per_session_kib: rss1.saturating_sub(rss0) as f64 / n,
        first_poll_s,
        poll_s,
        poll_cpu_ms: (c1 - c0) * 1000.0 / n,
        sim_cpu_ms: (s1 - s0) * 1000.0 / n,
        failures: failures + failed_open,
    })
}
