//! Benchmarks: each prints a table, with peers measured in the same run where one exists.

mod agent;
mod bmc;
mod ipmi;
mod rng;
mod tsdb;
mod wire;

use anyhow::{Result, bail};

pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("wire") => wire::run(&args[1..]),
        Some("tsdb") => tsdb::run(&args[1..]),
        Some("ipmi") => ipmi::run(&args[1..]),
        Some("agent") => agent::run(&args[1..]),
        Some("bmc") => bmc::run(&args[1..]),
        Some(other) => {
            bail!("unknown benchmark {other:?}; available: wire, tsdb, ipmi, agent, bmc")
        }
        None => bail!("usage: cargo xtask bench <wire|tsdb|ipmi|agent|bmc> [flags]"),
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
