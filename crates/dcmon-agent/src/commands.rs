//! Live commands: a long-poll kept open to the server, so a command queued there reaches
//! this agent in well under a second; each command runs and its result goes back.
//!
//! - `collect_now`: the collection loop collects and pushes at once.
//! - `fan_control`: `dcmon_ipmi::fans` on this machine's BMC (`/dev/ipmi0`, or
//!   `bmc_lan` over RMCP+); duties below the vendor minimum are refused there.
//! - `reboot`: runs `commands.reboot_command` after the delay; a later `reboot` with
//!   `cancel` stops it. Tests point the command at something harmless.
//! - `config_update`: interval and collectors on/off, written to the config file
//!   atomically and applied without a restart.

use crate::client::ServerClient;
use crate::collectors::bmc_fan::SupermicroBoard;
use crate::collectors::ipmi::describe_open_error;
use crate::config::AgentConfig;
use crate::runner::Control;
use dcmon_ipmi::fans::{self, FanAction, FanOptions};
use dcmon_ipmi::transport::inband::InbandDevice;
use dcmon_ipmi::transport::lan::{LanConfig, LanSession, parse_target};
use dcmon_wire::command::{
    AgentCommand, CommandResult, CommandSpec, ConfigUpdate, FanControl, MAX_POLL_WAIT_MS, Reboot,
};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The command loop's state between commands.
struct Executor {
    cfg: AgentConfig,
    config_path: PathBuf,
    control: mpsc::Sender<Control>,
    /// A scheduled reboot, cancellable until it runs.
    reboot: Option<tokio::task::JoinHandle<()>>,
}

/// Polls for commands and runs them until the task is aborted.
pub async fn run(
    client: ServerClient,
    cfg: AgentConfig,
    config_path: PathBuf,
    control: mpsc::Sender<Control>,
) {
    let mut exec = Executor {
        cfg,
        config_path,
        control,
        reboot: None,
    };
    let mut backoff = Duration::from_secs(1);
    let mut failing = false;
    loop {
        match client.poll_commands(MAX_POLL_WAIT_MS).await {
            Ok(commands) => {
                if failing {
                    tracing::info!("command channel to the server is back");
                    failing = false;
                }
                backoff = Duration::from_secs(1);
                for c in commands {
                    let result = match c {
                        Ok(cmd) => exec.execute(cmd).await,
                        Err((id, why)) => CommandResult {
                            id,
                            ok: false,
                            message: why,
                            output: None,
                        },
                    };
                    report(&client, &result).await;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "command poll failed; retrying with back-off");
                    failing = true;
                }
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Spreads retries of many agents after a server restart.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let f = 0.5 + f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 2.0;
    d.mul_f64(f + 0.25)
}

/// Sends a result, retrying briefly: the server keeps the command `delivered` until then.
async fn report(client: &ServerClient, result: &CommandResult) {
    for attempt in 0..5u32 {
        match client.command_result(result).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(command = result.id, error = %e, attempt, "reporting a command result");
                tokio::time::sleep(Duration::from_millis(500) * (attempt + 1)).await;
            }
        }
    }
}

fn done(id: i64, message: impl Into<String>, output: Option<String>) -> CommandResult {
    CommandResult {
        id,
        ok: true,
        message: message.into(),
        output,
    }
}

fn failed(id: i64, message: impl std::fmt::Display) -> CommandResult {
    CommandResult {
        id,
        ok: false,
        message: message.to_string(),
        output: None,
    }
}

impl Executor {
    async fn execute(&mut self, cmd: AgentCommand) -> CommandResult {
        tracing::info!(
            command = cmd.id,
            kind = cmd.command.kind(),
            "running command"
        );
        let id = cmd.id;
        let result = match cmd.command {
            CommandSpec::CollectNow => self.collect_now(id).await,
            CommandSpec::FanControl(f) => self.fan_control(id, f).await,
            CommandSpec::Reboot(r) => self.reboot(id, r),
            CommandSpec::ConfigUpdate(c) => self.config_update(id, c).await,
        };
        if result.ok {
            tracing::info!(command = id, message = %result.message, "command done");
        } else {
            tracing::warn!(command = id, message = %result.message, "command failed");
        }
        result
    }

    async fn collect_now(&self, id: i64) -> CommandResult {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::CollectNow(tx)).await.is_err() {
            return failed(id, "the agent is stopping");
        }
        match rx.await {
            Ok(summary) => {
                let down: Vec<&str> = summary
                    .collectors
                    .iter()
                    .filter(|(_, up)| !up)
                    .map(|(n, _)| n.as_str())
                    .collect();
                let mut message = format!("collected {} samples", summary.samples);
                if !down.is_empty() {
                    message.push_str(&format!("; failing collectors: {}", down.join(", ")));
                }
                done(id, message, serde_json::to_string(&summary).ok())
            }
            Err(_) => failed(id, "the agent is stopping"),
        }
    }

    async fn fan_control(&self, id: i64, f: FanControl) -> CommandResult {
        let action = match f {
            FanControl::Status => FanAction::Status,
            FanControl::Mode { mode } => FanAction::Mode { mode },
            FanControl::Zone { zone, duty } => FanAction::Zone { zone, duty },
        };
        let outcome = match &self.cfg.bmc_lan {
            Some(lan) => {
                let password = match std::fs::read_to_string(&lan.password_file) {
                    Ok(p) => p.trim_end_matches(['\r', '\n']).to_owned(),
                    Err(e) => {
                        return failed(
                            id,
                            format!("bmc_lan.password_file {}: {e}", lan.password_file.display()),
                        );
                    }
                };
                let (host, port) = match parse_target(&lan.address) {
                    Ok(t) => t,
                    Err(e) => return failed(id, format!("bmc_lan.address: {e}")),
                };
                let mut config = LanConfig::new(host, lan.user.clone(), password);
                config.port = port;
                match LanSession::connect(config).await {
                    Ok(bmc) => {
                        let r = fans::execute_with(&bmc, &action, FanOptions::default()).await;
                        bmc.close().await;
                        r.map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            None => {
                let path = self.cfg.ipmi.device.to_string_lossy().into_owned();
                match InbandDevice::open(&path, self.cfg.ipmi.timeout) {
                    Ok(bmc) => {
                        let options = FanOptions {
                            supermicro_x9: SupermicroBoard::detect(&self.cfg.ipmi.sys_root)
                                .is_some_and(|b| b.is_x9()),
                        };
                        fans::execute_with(&bmc, &action, options)
                            .await
                            .map_err(|e| e.to_string())
                    }
                    Err(e) => Err(describe_open_error(&path, &e)),
                }
            }
        };
        match outcome {
            Ok(report) => {
                let mut message = report.message.clone();
                for w in &report.warnings {
                    message.push_str("; warning: ");
                    message.push_str(w);
                }
                done(id, message, serde_json::to_string(&report).ok())
            }
            Err(e) => failed(id, e),
        }
    }

    fn reboot(&mut self, id: i64, r: Reboot) -> CommandResult {
        let pending = self.reboot.take().filter(|h| !h.is_finished());
        if r.cancel {
            return match pending {
                Some(h) => {
                    h.abort();
                    done(id, "scheduled reboot cancelled", None)
                }
                None => failed(id, "no reboot is scheduled"),
            };
        }
        if let Some(h) = pending {
            h.abort();
        }
        let program = self.cfg.commands.reboot_command.clone();
        // Even "now" waits a moment, so this result reaches the server first.
        let delay = Duration::from_secs(u64::from(r.delay_s)).max(Duration::from_secs(2));
        self.reboot = Some(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            tracing::warn!(command = ?program, "rebooting as commanded");
            let Some((cmd, args)) = program.split_first() else {
                return;
            };
            match tokio::process::Command::new(cmd).args(args).status().await {
                Ok(s) if s.success() => {}
                Ok(s) => tracing::error!(status = %s, command = ?program, "reboot command failed"),
                Err(e) => {
                    tracing::error!(error = %e, command = ?program, "cannot run the reboot command")
                }
            }
        }));
        done(
            id,
            format!(
                "reboot in {} s (`{}`); cancel with a reboot command with cancel",
                delay.as_secs(),
                self.cfg.commands.reboot_command.join(" ")
            ),
            None,
        )
    }

    async fn config_update(&mut self, id: i64, c: ConfigUpdate) -> CommandResult {
        let mut next = self.cfg.clone();
        if let Some(s) = c.interval_s {
            next.interval = Duration::from_secs(u64::from(s));
        }
        next.collectors
            .disabled
            .retain(|d| !c.enable.iter().any(|e| e == d));
        for d in c.disable {
            if !next.collectors.disabled.contains(&d) {
                next.collectors.disabled.push(d);
            }
        }
        if let Some(text) = &c.fan_curve {
            match serde_json::from_str::<dcmon_ipmi::curve::CurveConfig>(text) {
                Ok(curve) => next.fan_curve = Some(curve),
                Err(e) => return failed(id, format!("fan_curve: {e}")),
            }
        }
        if c.remove_fan_curve {
            next.fan_curve = None;
        }
        if let Err(problems) = next.validate() {
            return failed(id, problems.join("; "));
        }
        if let Err(e) = next.save(&self.config_path) {
            return failed(
                id,
                format!("cannot write {}: {e:#}", self.config_path.display()),
            );
        }
        let (tx, rx) = oneshot::channel();
        if self
            .control
            .send(Control::Reconfigure(Box::new(next.clone()), tx))
            .await
            .is_err()
            || rx.await.is_err()
        {
            return failed(id, "the agent is stopping");
        }
        self.cfg = next;
        let output = serde_json::json!({
            "interval_s": self.cfg.interval.as_secs(),
            "disabled": self.cfg.collectors.disabled,
            "fan_curve": self.cfg.fan_curve,
        });
        done(
            id,
            format!(
                "interval {} s; fan curve {}; collectors off: {}",
                self.cfg.interval.as_secs(),
                if self.cfg.fan_curve.is_some() {
                    "on this agent"
                } else {
                    "none"
                },
                if self.cfg.collectors.disabled.is_empty() {
                    "none".to_owned()
                } else {
                    self.cfg.collectors.disabled.join(", ")
                }
            ),
            Some(output.to_string()),
        )
    }
}
