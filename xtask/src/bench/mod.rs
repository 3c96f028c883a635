//! Benchmarks: each prints a table, with peers measured in the same run where one exists.

mod agent;
mod alerts;
mod bmc;
mod fleet;
mod ipmi;
mod rng;
mod tsdb;
mod wire;

use anyhow::{Context, Result, bail};
use std::process::{Child, Command};

pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("wire") => wire::run(&args[1..]),
        Some("tsdb") => tsdb::run(&args[1..]),
        Some("ipmi") => ipmi::run(&args[1..]),
        Some("agent") => agent::run(&args[1..]),
        Some("bmc") => bmc::run(&args[1..]),
        Some("fleet") => fleet::run(&args[1..]),
        Some("alerts") => alerts::run(&args[1..]),
        Some(other) => {
            bail!(
                "unknown benchmark {other:?}; available: wire, tsdb, ipmi, agent, bmc, fleet, alerts"
            )
        }
        None => bail!("usage: cargo xtask bench <wire|tsdb|ipmi|agent|bmc|fleet|alerts> [flags]"),
    }
}

/// Runs `cargo xtask bench NAME ARGS` again, optimised: a load generator that shares two
/// cores with the servers it measures must not be a debug build.
fn reexec_release(name: &str, args: &[String]) -> Result<()> {
    let mut c = super::cargo();
    c.args([
        "run",
        "--release",
        "--quiet",
        "-p",
        "xtask",
        "--",
        "bench",
        name,
    ])
    .args(args);
    super::run(c)
}

/// A process the benchmark started; killed when dropped, however the benchmark ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Waits up to a minute for a starting `dcmon server` on `data` to write its certificate
/// (it does so before it listens); its path. `dir` holds the server's log.
fn wait_for_certificate(
    data: &std::path::Path,
    dir: &std::path::Path,
) -> Result<std::path::PathBuf> {
    let cert = data.join("tls").join("server.crt");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cert.exists() {
        if std::time::Instant::now() > deadline {
            bail!(
                "dcmon server did not start; see {}",
                dir.join("server.log").display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(cert)
}

/// Runs `cmd` to completion; its standard output, or an error with its standard error.
fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reads `--flag N` pairs: `set(flag, n)` stores a known flag and returns `false` for an
/// unknown one; `--help` prints `usage` and exits.
fn parse_numeric_flags(
    args: &[String],
    usage: &str,
    mut set: impl FnMut(&str, u64) -> Result<bool>,
) -> Result<()> {
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{usage}");
            std::process::exit(0);
        }
        let value: u64 = it
            .next()
            .with_context(|| format!("{flag} needs a value"))?
            .parse()
            .with_context(|| format!("{flag}: expected a whole number"))?;
        if !set(flag, value)? {
            bail!("unknown flag {flag:?}; see --help");
        }
    }
    Ok(())
}
