//! Live commands from the server to an agent (PROTOCOL.md §Commands): what can be asked,
//! and the bodies of the long-poll and result endpoints.

use serde::{Deserialize, Serialize};

/// Path of the long-poll an agent keeps open for commands.
pub const PATH_COMMANDS: &str = "/api/agent/commands";
/// Path where an agent reports a command's result.
pub const PATH_COMMAND_RESULT: &str = "/api/agent/commands/result";
/// Longest a poll is held open by the server when nothing is queued.
pub const MAX_POLL_WAIT_MS: u32 = 25_000;
/// Longest reboot delay accepted (one day).
pub const MAX_REBOOT_DELAY_S: u32 = 86_400;

/// What a command asks of the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "params", rename_all = "snake_case")]
pub enum CommandSpec {
    /// Read or change the BMC's fans.
    FanControl(FanControl),
    /// Reboot the machine after a delay, or cancel a reboot not yet done.
    Reboot(Reboot),
    /// Change the collection interval or switch collectors on and off; persisted.
    ConfigUpdate(ConfigUpdate),
    /// Collect and push at once, outside the interval.
    CollectNow,
}

/// `fan_control` parameters; the same JSON as `dcmon_ipmi::fans::FanAction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum FanControl {
    /// Mode, zone duties and fan speeds.
    Status,
    /// Show the fan mode, or set it (`standard`, `full`, `optimal`, `heavy_io`).
    Mode {
        #[serde(default)]
        mode: Option<String>,
    },
    /// Show a zone's duty, or set it in percent.
    Zone {
        zone: u8,
        #[serde(default)]
        duty: Option<u8>,
    },
}

/// `reboot` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reboot {
    /// Seconds to wait before rebooting (cancellable meanwhile).
    pub delay_s: u32,
    /// Cancel a scheduled reboot instead.
    pub cancel: bool,
}

/// `config_update` parameters; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigUpdate {
    /// New collection interval in seconds (at least 1).
    pub interval_s: Option<u32>,
    /// Collectors to switch on.
    pub enable: Vec<String>,
    /// Collectors to switch off.
    pub disable: Vec<String>,
    /// A fan curve for the agent to run (the JSON of `dcmon_ipmi::curve::CurveConfig`).
    pub fan_curve: Option<String>,
    /// Stop running a fan curve and hand the fans back to the BMC.
    pub remove_fan_curve: bool,
}

impl CommandSpec {
    /// The kind as stored and shown (`fan_control`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            CommandSpec::FanControl(_) => "fan_control",
            CommandSpec::Reboot(_) => "reboot",
            CommandSpec::ConfigUpdate(_) => "config_update",
            CommandSpec::CollectNow => "collect_now",
        }
    }

    /// Checks what can be checked before the command is queued; the message says
    /// which parameter is wrong and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            CommandSpec::FanControl(FanControl::Mode { mode: Some(m) })
                if !["standard", "full", "optimal", "heavy_io"].contains(&m.as_str()) =>
            {
                return Err(format!(
                    "fan_control mode {m:?}: use standard, full, optimal or heavy_io"
                ));
            }
            CommandSpec::FanControl(FanControl::Zone { duty: Some(d), .. }) if *d > 100 => {
                return Err(format!("fan_control duty {d}: must be 0 to 100 (percent)"));
            }
            CommandSpec::Reboot(r) if r.delay_s > MAX_REBOOT_DELAY_S => {
                return Err(format!(
                    "reboot delay_s {}: at most {MAX_REBOOT_DELAY_S} (one day)",
                    r.delay_s
                ));
            }
            CommandSpec::ConfigUpdate(c) => {
                if c.interval_s == Some(0) {
                    return Err("config_update interval_s: must be at least 1".into());
                }
                if c.interval_s.is_none()
                    && c.enable.is_empty()
                    && c.disable.is_empty()
                    && c.fan_curve.is_none()
                    && !c.remove_fan_curve
                {
                    return Err(
                        "config_update: nothing to change (give interval_s, enable, disable, fan_curve or remove_fan_curve)"
                            .into(),
                    );
                }
                if c.fan_curve.is_some() && c.remove_fan_curve {
                    return Err(
                        "config_update: fan_curve and remove_fan_curve exclude each other".into(),
                    );
                }
                if let Some(both) = c.enable.iter().find(|e| c.disable.contains(e)) {
                    return Err(format!(
                        "config_update: collector {both:?} is both enabled and disabled"
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// `POST /api/agent/commands` (signed): wait up to `wait_ms` for commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    pub wait_ms: u32,
}

/// One queued command as delivered to its agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCommand {
    pub id: i64,
    pub command: CommandSpec,
    pub created_ms: i64,
}

/// `POST /api/agent/commands/result` (signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandResult {
    pub id: i64,
    /// Whether the command did what it asked.
    pub ok: bool,
    /// One line for people ("Zone 0 duty set to 40 %", or the error).
    pub message: String,
    /// Structured output as JSON text (a fan report, the new settings), when there is one.
    #[serde(default)]
    pub output: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_bad_parameter() {
        let check = |spec: CommandSpec, expect: Option<&str>| {
            let got = spec.validate().err();
            match (expect, got) {
                (None, None) => {}
                (Some(e), Some(g)) => assert!(g.contains(e), "{g}"),
                (e, g) => panic!("{spec:?}: expected {e:?}, got {g:?}"),
            }
        };
        check(CommandSpec::CollectNow, None);
        check(
            CommandSpec::FanControl(FanControl::Mode {
                mode: Some("turbo".into()),
            }),
            Some("heavy_io"),
        );
        check(
            CommandSpec::FanControl(FanControl::Zone {
                zone: 0,
                duty: Some(101),
            }),
            Some("0 to 100"),
        );
        check(
            CommandSpec::Reboot(Reboot {
                delay_s: 90_000,
                cancel: false,
            }),
            Some("one day"),
        );
        check(
            CommandSpec::ConfigUpdate(ConfigUpdate::default()),
            Some("nothing to change"),
        );
        check(
            CommandSpec::ConfigUpdate(ConfigUpdate {
                interval_s: Some(0),
                ..Default::default()
            }),
            Some("at least 1"),
        );
    }
}
