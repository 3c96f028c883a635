//! Runtime control of a running simulator: faults, load and power, one text line per
//! command (the server reads them from stdin). Parsing only; the server applies them.
//!
//! ```text
//! fault <bmcs> silent|garbage|reject-credentials|lose-temperatures on|off
//! fault <bmcs> delay <milliseconds>
//! load <bmcs> <0.0–1.0>
//! power <bmcs> on|off
//! status <bmcs>
//! ```
//! `<bmcs>` is `all`, an index (`3`) or an inclusive range (`0-9`); BMC `i` listens on
//! base port + `i`.

use std::ops::RangeInclusive;
use std::time::Duration;
use thiserror::Error;

/// Faults of one BMC's LAN channel; all off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Drop every datagram: an unreachable or hung BMC.
    pub silent: bool,
    /// Answer every datagram after this long.
    pub delay: Duration,
    /// Answer with random bytes instead of RMCP.
    pub garbage: bool,
    /// Refuse every user name at RAKP 1.
    pub reject_credentials: bool,
    /// Temperature sensors answer "reading unavailable".
    pub lose_temperatures: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Silent(bool),
    Delay(Duration),
    Garbage(bool),
    RejectCredentials(bool),
    LoseTemperatures(bool),
    Load(f64),
    Power(bool),
}

impl Faults {
    /// Applies a fault change; `false` for changes that are not faults.
    pub fn apply(&mut self, change: &Change) -> bool {
        match *change {
            Change::Silent(on) => self.silent = on,
            Change::Delay(d) => self.delay = d,
            Change::Garbage(on) => self.garbage = on,
            Change::RejectCredentials(on) => self.reject_credentials = on,
            Change::LoseTemperatures(on) => self.lose_temperatures = on,
            Change::Load(_) | Change::Power(_) => return false,
        }
        true
    }
}

/// One parsed control line.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Change(Targets, Change),
    Status(Targets),
}

/// Which BMCs a command addresses, by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    All,
    Range(RangeInclusive<usize>),
}

impl Targets {
    pub fn contains(&self, index: usize) -> bool {
        match self {
            Targets::All => true,
            Targets::Range(r) => r.contains(&index),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ControlError {
    #[error("empty line")]
    Empty,
    #[error("unknown command {0:?} (fault, load, power, status)")]
    UnknownCommand(String),
    #[error("{0:?}: expected all, N or N-M")]
    Targets(String),
    #[error("unknown fault {0:?} (silent, delay, garbage, reject-credentials, lose-temperatures)")]
    UnknownFault(String),
    #[error("{0:?}: expected on or off")]
    Switch(String),
    #[error("{0:?}: expected a number {1}")]
    Number(String, &'static str),
    #[error("missing argument: {0}")]
    Missing(&'static str),
    #[error("unexpected {0:?} at the end")]
    Trailing(String),
}

pub fn parse(line: &str) -> Result<Command, ControlError> {
    let mut words = line.split_whitespace();
    let verb = words.next().ok_or(ControlError::Empty)?;
    let mut next = |what| words.next().ok_or(ControlError::Missing(what));
    let command = match verb {
        "status" => Command::Status(targets(next("BMCs")?)?),
        "load" => {
            let t = targets(next("BMCs")?)?;
            let v = next("load")?;
            let load: f64 = v
                .parse()
                .ok()
                .filter(|l| (0.0..=1.0).contains(l))
                .ok_or_else(|| ControlError::Number(v.into(), "from 0 to 1"))?;
            Command::Change(t, Change::Load(load))
        }
        "power" => Command::Change(
            targets(next("BMCs")?)?,
            Change::Power(switch(next("on|off")?)?),
        ),
        "fault" => {
            let t = targets(next("BMCs")?)?;
            let change = match next("fault name")? {
                "delay" => {
                    let v = next("milliseconds")?;
                    let ms: u64 = v
                        .parse()
                        .map_err(|_| ControlError::Number(v.into(), "of milliseconds"))?;
                    Change::Delay(Duration::from_millis(ms))
                }
                "silent" => Change::Silent(switch(next("on|off")?)?),
                "garbage" => Change::Garbage(switch(next("on|off")?)?),
                "reject-credentials" => Change::RejectCredentials(switch(next("on|off")?)?),
                "lose-temperatures" => Change::LoseTemperatures(switch(next("on|off")?)?),
                other => return Err(ControlError::UnknownFault(other.into())),
            };
            Command::Change(t, change)
        }
        other => return Err(ControlError::UnknownCommand(other.into())),
    };
    match words.next() {
        Some(extra) => Err(ControlError::Trailing(extra.into())),
        None => Ok(command),
    }
}

fn targets(word: &str) -> Result<Targets, ControlError> {
    let bad = || ControlError::Targets(word.into());
    if word == "all" {
        return Ok(Targets::All);
    }
    let (from, to) = word.split_once('-').unwrap_or((word, word));
    let from: usize = from.parse().map_err(|_| bad())?;
    let to: usize = to.parse().map_err(|_| bad())?;
    if from > to {
        return Err(bad());
    }
    Ok(Targets::Range(from..=to))
}

fn switch(word: &str) -> Result<bool, ControlError> {
    match word {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(ControlError::Switch(word.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expect: Result<Command, ControlError>) {
        assert_eq!(parse(line), expect, "{line:?}");
    }

    #[test]
    fn lines_parse_to_commands() {
        use Change::*;
        let all = Targets::All;
        check(
            "fault all silent on",
            Ok(Command::Change(all.clone(), Silent(true))),
        );
        check(
            "fault 2 delay 1500",
            Ok(Command::Change(
                Targets::Range(2..=2),
                Delay(Duration::from_millis(1500)),
            )),
        );
        check(
            "  fault 0-9 lose-temperatures off ",
            Ok(Command::Change(
                Targets::Range(0..=9),
                LoseTemperatures(false),
            )),
        );
        check("load all 0.9", Ok(Command::Change(all.clone(), Load(0.9))));
        check(
            "power 1 off",
            Ok(Command::Change(Targets::Range(1..=1), Power(false))),
        );
        check("status all", Ok(Command::Status(all)));
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        check("", Err(ControlError::Empty));
        check(
            "reboot all",
            Err(ControlError::UnknownCommand("reboot".into())),
        );
        check(
            "fault 3-1 silent on",
            Err(ControlError::Targets("3-1".into())),
        );
        check(
            "fault all melt on",
            Err(ControlError::UnknownFault("melt".into())),
        );
        check(
            "fault all silent yes",
            Err(ControlError::Switch("yes".into())),
        );
        check(
            "load all 2",
            Err(ControlError::Number("2".into(), "from 0 to 1")),
        );
        check("power all", Err(ControlError::Missing("on|off")));
        check("status all now", Err(ControlError::Trailing("now".into())));
    }

    #[test]
    fn faults_apply_only_fault_changes() {
        let mut f = Faults::default();
        assert!(f.apply(&Change::Garbage(true)));
        assert!(!f.apply(&Change::Load(0.5)));
        assert_eq!(
            f,
            Faults {
                garbage: true,
                ..Faults::default()
            }
        );
    }
}
