//! `dcmon fans curve set|show|remove`, `dcmon fans preset zephyr`, `dcmon fans dry-run`:
//! fan curves of agentless BMCs in the control store. A running server's control loop
//! picks changes up within a second (see `dcmon_server::fanloop`).

use anyhow::{Context, Result};
use clap::Subcommand;
use dcmon_ipmi::curve::{CurveConfig, FanWrite, glob_match};
use dcmon_server::control::ControlDb;
use dcmon_server::fan_curves::StoredCurve;
use dcmon_server::fanloop::{FanView, dry_run};
use dcmon_server::secrets::SecretBox;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub(crate) enum FansCommand {
    /// A BMC's fan curve: set, show, remove.
    Curve {
        #[command(subcommand)]
        command: CurveCommand,
    },
    /// Set a ready-made policy as the BMC's curve.
    Preset {
        #[command(subcommand)]
        preset: PresetCommand,
    },
    /// Contact the BMC now and print what its curve would set and why, without writing.
    DryRun {
        /// The BMC (name or id).
        #[arg(long)]
        bmc: String,
        /// Give up on the BMC after this long per exchange.
        #[arg(long, default_value = "5s")]
        timeout: humantime::Duration,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum CurveCommand {
    /// Store a curve from a YAML or JSON file (refused when it does not validate for
    /// the BMC's vendor, e.g. a duty below its minimum).
    Set {
        /// The BMC (name or id), or a group of them by pattern (`rack1-*`, `gpu??`).
        #[arg(long)]
        bmc: String,
        #[arg(long)]
        file: PathBuf,
        /// Store it without running it (try it with `dcmon fans dry-run` first).
        #[arg(long)]
        disabled: bool,
    },
    /// Print the BMC's curve (YAML, or JSON with --json).
    Show {
        #[arg(long)]
        bmc: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove the BMC's curve; a running server hands its fans back to the BMC.
    Remove {
        /// The BMC (name or id), or a group of them by pattern.
        #[arg(long)]
        bmc: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum PresetCommand {
    /// Zephyr's rule for Supermicro boards: CPU at or below 50 °C and a fan above
    /// 2050 RPM: zone 0 to 0x18 (24 %); above 50 °C the BMC's Standard mode.
    Zephyr {
        /// The BMC (name or id), or a group of them by pattern.
        #[arg(long)]
        bmc: String,
        /// Seconds between two runs of the control loop.
        #[arg(long, default_value_t = 30)]
        interval: u64,
    },
}

/// Reads a curve configuration from YAML or JSON (JSON is YAML too).
fn read_curve(file: &Path) -> Result<CurveConfig> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    serde_norway::from_str(&text).with_context(|| {
        format!(
            "{}: not a fan curve (expected `preset: zephyr`, or `interval_s` and `zones` with `zone` and `points: [[°C, duty %], ...]`)",
            file.display()
        )
    })
}

/// The BMCs `--bmc` names: one by name or id, or every BMC whose name matches a
/// pattern with `*` or `?` (a group: `rack1-*`).
fn targets(db: &ControlDb, bmc: &str) -> Result<Vec<String>> {
    if !bmc.contains(['*', '?']) {
        return Ok(vec![bmc.to_owned()]);
    }
    let names: Vec<String> = db
        .list_bmcs()?
        .into_iter()
        .map(|b| b.name)
        .filter(|n| glob_match(bmc, n))
        .collect();
    if names.is_empty() {
        anyhow::bail!("no BMC name matches {bmc:?}; see `dcmon bmc list`");
    }
    Ok(names)
}

/// Stores `config` on every target; stops at the first refusal, saying which got it.
fn set_all(
    db: &ControlDb,
    bmc: &str,
    config: &CurveConfig,
    enabled: bool,
    actor: &str,
) -> Result<Vec<StoredCurve>> {
    let mut done = Vec::new();
    for name in targets(db, bmc)? {
        match db.set_fan_curve(&name, config, enabled, actor, None) {
            Ok(c) => done.push(c),
            Err(e) if done.is_empty() => return Err(e.into()),
            Err(e) => anyhow::bail!(
                "BMC {name}: {e}; the curve was already set on {}",
                done.iter()
                    .map(|c| c.bmc.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(done)
}

fn print_stored(c: &StoredCurve) -> Result<()> {
    let state = if c.enabled { "enabled" } else { "disabled" };
    println!(
        "# BMC {}: fan curve {state}, set by {} at {} ms",
        c.bmc, c.updated_by, c.updated_ms
    );
    print!("{}", serde_norway::to_string(&c.config)?);
    Ok(())
}

pub(crate) fn run(
    data_dir: &Path,
    db: &ControlDb,
    command: FansCommand,
    actor: &str,
) -> Result<()> {
    match command {
        FansCommand::Curve {
            command:
                CurveCommand::Set {
                    bmc,
                    file,
                    disabled,
                },
        } => {
            let config = read_curve(&file)?;
            let how = if disabled {
                "stored disabled; try it with `dcmon fans dry-run`"
            } else {
                "a running server, or the BMC's agent, applies it within a second"
            };
            for c in set_all(db, &bmc, &config, !disabled, actor)? {
                println!("fan curve of BMC {} set ({how})", c.bmc);
            }
            Ok(())
        }
        FansCommand::Curve {
            command: CurveCommand::Show { bmc, json },
        } => {
            let Some(c) = db.fan_curve(&bmc)? else {
                anyhow::bail!(
                    "BMC {bmc} has no fan curve; set one with `dcmon fans curve set --bmc {bmc} --file F` or `dcmon fans preset zephyr --bmc {bmc}`"
                );
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&c)?);
                Ok(())
            } else {
                print_stored(&c)
            }
        }
        FansCommand::Curve {
            command: CurveCommand::Remove { bmc },
        } => {
            for bmc in targets(db, &bmc)? {
                match db.remove_fan_curve(&bmc, actor, None)? {
                    Some(_) => println!(
                        "fan curve of BMC {bmc} removed; its fans are handed back to the BMC"
                    ),
                    None => println!("BMC {bmc} had no fan curve"),
                }
            }
            Ok(())
        }
        FansCommand::Preset {
            preset: PresetCommand::Zephyr { bmc, interval },
        } => {
            let config = CurveConfig {
                interval_s: interval,
                ..CurveConfig::default()
            };
            for c in set_all(db, &bmc, &config, true, actor)? {
                println!(
                    "Zephyr preset set on BMC {} (every {} s)",
                    c.bmc, c.config.interval_s
                );
            }
            Ok(())
        }
        FansCommand::DryRun { bmc, timeout, json } => {
            let view = dry_run(db, &SecretBox::open(data_dir)?, &bmc, timeout.into())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print_view(&view);
            }
            match view.error {
                Some(e) if !view.reachable => {
                    anyhow::bail!("BMC {} did not answer: {e}", view.bmc)
                }
                _ => Ok(()),
            }
        }
    }
}

fn write_text(w: FanWrite) -> String {
    match w {
        FanWrite::FullMode => "fan mode full".into(),
        FanWrite::HandBack => "fans back to the BMC (standard or automatic mode)".into(),
        FanWrite::Duty { zone, duty } => format!("zone {zone} duty {duty} %"),
    }
}

fn print_view(v: &FanView) {
    println!(
        "BMC {} ({}): {}",
        v.bmc,
        v.vendor.as_deref().unwrap_or("vendor unknown"),
        if v.reachable { "answered" } else { "no answer" }
    );
    if let Some(mode) = &v.mode {
        println!("Fan mode: {mode}");
    }
    for z in &v.zones {
        println!("Zone {} duty: {} %", z.zone, z.duty_percent);
    }
    for t in &v.temperatures {
        println!("{:<16} | {:>6.1} °C", t.name, t.celsius);
    }
    for f in &v.fans {
        println!("{:<16} | {:>6.0} RPM", f.name, f.rpm);
    }
    match (&v.curve, &v.decision, &v.curve_error) {
        (None, ..) => println!("No fan curve: the BMC controls the fans."),
        (Some(_), _, Some(e)) => println!("The curve cannot run: {e}"),
        (Some(c), Some(d), None) => {
            let state = if c.enabled { "" } else { " (disabled)" };
            println!("Decision{state}:");
            if let Some(reason) = &d.fail_safe {
                println!("  FAIL-SAFE: {reason}");
            }
            for z in &d.duties {
                println!("  zone {}: {} %", z.zone, z.duty_percent);
            }
            if d.writes.is_empty() {
                println!("  nothing to write");
            }
            for &w in &d.writes {
                println!("  would write: {}", write_text(w));
            }
            println!("Why:");
            for line in &d.explanation {
                println!("  {line}");
            }
        }
        (Some(_), None, None) => println!("No decision."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcmon_server::bmcs::NewBmc;
    use dcmon_server::secrets::Secret;

    #[test]
    fn a_pattern_sets_a_group_and_a_refusal_names_what_was_set() {
        let dir = tempfile::tempdir().unwrap();
        let db = ControlDb::open(dir.path()).unwrap();
        let secrets = SecretBox::from_key(&[7; 32]);
        for (name, vendor) in [
            ("rack1-a", "supermicro"),
            ("rack1-b", "supermicro"),
            ("rack2-a", "supermicro"),
        ] {
            let bmc = NewBmc {
                name: name.into(),
                address: "127.0.0.1".into(),
                user: "admin".into(),
                password: Secret::new("pw"),
                interval: None,
                agent: None,
                vendor: Some(vendor.into()),
            };
            db.add_bmc(&secrets, &bmc, "test", None).unwrap();
        }
        assert_eq!(targets(&db, "rack1-*").unwrap(), ["rack1-a", "rack1-b"]);
        assert_eq!(targets(&db, "rack2-a").unwrap(), ["rack2-a"]);
        assert!(
            targets(&db, "rack9-*")
                .unwrap_err()
                .to_string()
                .contains("no BMC")
        );
        let set = set_all(&db, "rack1-?", &CurveConfig::default(), true, "test").unwrap();
        assert_eq!(set.len(), 2);
        assert!(db.fan_curve("rack1-b").unwrap().is_some());
        assert!(db.fan_curve("rack2-a").unwrap().is_none());
    }
}
