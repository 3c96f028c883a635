//! `dcmon tsdb`: offline tools for the time-series store.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::path::Path;

#[derive(Subcommand)]
pub(crate) enum TsdbCommand {
    /// Verify the store: schema, every chunk's checksum, index consistency, ingest-log
    /// rows. Prints a report; exits non-zero when anything is damaged.
    Check,
}

pub(crate) fn run(data_dir: &Path, command: TsdbCommand) -> Result<()> {
    match command {
        TsdbCommand::Check => {
            let dir = data_dir.join("tsdb");
            let report = dcmon_tsdb::check(&dir)
                .with_context(|| format!("checking the tsdb in {}", dir.display()))?;
            println!("tsdb {}", dir.display());
            print!("{report}");
            if !report.is_ok() {
                bail!(
                    "the tsdb in {} is damaged ({} problem(s)); damaged chunks are skipped by queries",
                    dir.display(),
                    report.problems.len()
                );
            }
            Ok(())
        }
    }
}
