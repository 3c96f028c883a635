//! `dcmon command send|list`: queue a live command for an agent in the control store
//! (a running server hands it to the agent's long-poll within a second) and wait for
//! its result; or show the command history.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use dcmon_server::commands::{CommandRecord, DEFAULT_TTL_MS};
use dcmon_server::control::ControlDb;
use dcmon_wire::command::{CommandSpec, ConfigUpdate, FanControl, Reboot};
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub(crate) enum CommandCommand {
    /// Queue a command for one agent and wait for its result.
    Send(SendArgs),
    /// Show recent commands and their results, newest first.
    List {
        /// Only this agent's (id or host).
        #[arg(long)]
        host: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub(crate) struct SendArgs {
    /// The agent: id, host label or hostname.
    #[arg(long)]
    host: String,
    /// How long to wait for the result (0s: do not wait).
    #[arg(long, default_value = "30s")]
    wait: humantime::Duration,
    /// How long the command waits for an offline agent before it expires.
    #[arg(long, default_value = "10m")]
    ttl: humantime::Duration,
    /// Print the command record as JSON.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    kind: KindArg,
}

#[derive(Subcommand)]
enum KindArg {
    /// Collect and push at once.
    #[command(name = "collect_now", alias = "collect-now")]
    CollectNow,
    /// BMC fans: status, mode [standard|full|optimal|heavy_io], zone <0|1> [duty%].
    #[command(name = "fan_control", alias = "fan-control")]
    FanControl {
        #[command(subcommand)]
        action: FanArg,
    },
    /// Reboot the machine after a delay, or cancel a scheduled reboot.
    Reboot {
        /// Wait this long first (cancellable meanwhile).
        #[arg(long, default_value = "0s")]
        delay: humantime::Duration,
        #[arg(long, conflicts_with = "delay")]
        cancel: bool,
    },
    /// Change the agent's interval or switch collectors on and off (persisted).
    #[command(name = "config_update", alias = "config-update")]
    ConfigUpdate {
        #[arg(long)]
        interval: Option<humantime::Duration>,
        /// Collector to switch on (repeatable).
        #[arg(long)]
        enable: Vec<String>,
        /// Collector to switch off (repeatable).
        #[arg(long)]
        disable: Vec<String>,
        /// A fan curve (YAML or JSON) for the agent to run on its own BMC.
        #[arg(long, value_name = "FILE")]
        fan_curve: Option<std::path::PathBuf>,
        /// Stop the agent's fan curve and hand the fans back to the BMC.
        #[arg(long, conflicts_with = "fan_curve")]
        remove_fan_curve: bool,
    },
}

#[derive(Subcommand)]
enum FanArg {
    Status,
    Mode { mode: Option<String> },
    Zone { zone: u8, duty: Option<u8> },
}

impl KindArg {
    fn spec(&self) -> Result<CommandSpec> {
        Ok(match self {
            KindArg::CollectNow => CommandSpec::CollectNow,
            KindArg::FanControl { action } => CommandSpec::FanControl(match action {
                FanArg::Status => FanControl::Status,
                FanArg::Mode { mode } => FanControl::Mode { mode: mode.clone() },
                FanArg::Zone { zone, duty } => FanControl::Zone {
                    zone: *zone,
                    duty: *duty,
                },
            }),
            KindArg::Reboot { delay, cancel } => CommandSpec::Reboot(Reboot {
                delay_s: u32::try_from(Duration::from(*delay).as_secs())
                    .map_err(|_| anyhow::anyhow!("--delay is too long"))?,
                cancel: *cancel,
            }),
            KindArg::ConfigUpdate {
                interval,
                enable,
                disable,
                fan_curve,
                remove_fan_curve,
            } => CommandSpec::ConfigUpdate(ConfigUpdate {
                fan_curve: fan_curve.as_deref().map(read_curve).transpose()?,
                remove_fan_curve: *remove_fan_curve,
                interval_s: interval
                    .map(|i| u32::try_from(Duration::from(i).as_secs()))
                    .transpose()
                    .map_err(|_| anyhow::anyhow!("--interval is too long"))?,
                enable: enable.clone(),
                disable: disable.clone(),
            }),
        })
    }
}

/// Reads and validates a fan curve file; returns it as the JSON the agent takes.
fn read_curve(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let curve: dcmon_ipmi::curve::CurveConfig =
        serde_norway::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    curve
        .validate()
        .map_err(|p| anyhow::anyhow!("{}: {}", path.display(), p.join("; ")))?;
    Ok(serde_json::to_string(&curve)?)
}

pub(crate) fn run(db: &ControlDb, command: CommandCommand, actor: &str) -> Result<()> {
    match command {
        CommandCommand::Send(args) => send(db, &args, actor),
        CommandCommand::List { host, limit, json } => {
            let list = db.list_commands(host.as_deref(), limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            println!(
                "{:<6} {:<20} {:<14} {:<10} {:<24} MESSAGE",
                "ID", "HOST", "KIND", "STATUS", "CREATED BY"
            );
            for c in list {
                println!(
                    "{:<6} {:<20} {:<14} {:<10} {:<24} {}",
                    c.id,
                    c.host,
                    c.kind,
                    c.status,
                    c.created_by,
                    c.message.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }
    }
}

fn send(db: &ControlDb, args: &SendArgs, actor: &str) -> Result<()> {
    let spec = args.kind.spec()?;
    let ttl_ms = i64::try_from(Duration::from(args.ttl).as_millis()).unwrap_or(DEFAULT_TTL_MS);
    let queued = db.queue_command(&args.host, &spec, actor, None, ttl_ms)?;
    let wait = Duration::from(args.wait);
    if wait.is_zero() {
        return print(&queued, args.json, false);
    }
    let deadline = Instant::now() + wait;
    loop {
        let c = db
            .command(queued.id)?
            .ok_or_else(|| anyhow::anyhow!("command {} disappeared", queued.id))?;
        if c.is_final() || Instant::now() >= deadline {
            let timed_out = !c.is_final();
            print(&c, args.json, timed_out)?;
            if timed_out {
                bail!(
                    "no result within {} (status {}); see `dcmon command list --host {}`",
                    args.wait,
                    c.status,
                    c.host
                );
            }
            if c.status != "succeeded" {
                bail!("command {} {}", c.id, c.status);
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn print(c: &CommandRecord, json: bool, timed_out: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(c)?);
        return Ok(());
    }
    match (c.status.as_str(), timed_out) {
        ("queued", false) => println!("command {} queued for {}", c.id, c.host),
        _ => println!(
            "command {} on {}: {}{}",
            c.id,
            c.host,
            c.status,
            c.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
    }
    if let Some(out) = &c.output {
        if c.kind == "fan_control" {
            println!("{}", serde_json::to_string_pretty(out)?);
        }
    }
    Ok(())
}
