//! Benchmarks: each prints a table, with peers measured in the same run where one exists.

mod rng;
mod tsdb;
mod wire;

use anyhow::{Result, bail};

pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("wire") => wire::run(&args[1..]),
        Some("tsdb") => tsdb::run(&args[1..]),
        Some(other) => bail!("unknown benchmark {other:?}; available: wire, tsdb"),
        None => bail!("usage: cargo xtask bench <wire|tsdb> [flags]"),
    }
}
