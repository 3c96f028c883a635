//! The fan-curve engine (DESIGN §8): temperatures, fan speeds and the BMC's state in,
//! fan writes out, each with the reason a person can read. No IO and no clock: the
//! caller passes the time, so the same engine runs the agent's in-band loop and the
//! server's agentless loop over RMCP+, and tests and fuzzers drive it directly.
//!
//! One [`Controller`] per server, built for its vendor from a [`CurveConfig`]; each run
//! of the control loop (one cycle, [`CurveConfig::interval_s`]) calls
//! [`Controller::step`] with fresh [`Inputs`] and carries out the returned
//! [`FanWrite`]s with [`fans::execute`](crate::fans::execute), in order.
//!
//! What one step decides, first match wins:
//! 1. **Fail-safe** when the BMC did not answer the reads, the loop has not run for two
//!    intervals, or a zone has no fresh, plausible reading among its sensors (a reading
//!    older than [`CurveConfig::max_reading_age`] counts as missing). Supermicro goes to
//!    Full mode with both zones at 100 %; Dell goes back to the iDRAC's automatic
//!    control. These writes are repeated every step while the condition lasts: a write
//!    lost to an unreachable BMC then lands as soon as it answers, and nobody can talk
//!    the fans down meanwhile. Entering, changing reason and leaving raise an [`Event`].
//! 2. **Zephyr preset**: zone 0 at 0x18 (24 %, raised to the vendor minimum) while the
//!    hottest CPU is at or below 50 °C and a fan is above 2050 RPM; above 50 °C the
//!    fans are handed back to the BMC.
//! 3. **Curves**: per zone, the hottest selected reading through the piecewise-linear
//!    curve, held by hysteresis and dwell, bounded by per-fan overrides, raised to the
//!    vendor minimum. On Dell every fan gets the highest zone duty.
//!
//! Outside fail-safe a write is emitted only when it changes something: a duty that
//! differs from what the BMC reports (or, when it reports nothing, from what this
//! controller wrote last), or a hand-back while the fans are under manual control.

mod config;
pub mod sensors;

pub use config::{
    CurveConfig, FanOverride, Preset, SensorKind, SensorSelector, ZoneCurve, glob_match,
};

use crate::fans::{FanAction, ZoneDuty};
use crate::vendor::Vendor;
use crate::vendor::supermicro::FanMode;
use config::{ZEPHYR_DUTY, ZEPHYR_FAN_RPM, ZEPHYR_MAX_CPU_C, curve_at};
use serde::Serialize;
use std::fmt;

/// Readings outside this range come from a sensor that is absent or broken (IPMI
/// sensors read 0 or 255 raw, hwmon reports -273 for an unconnected probe) and would
/// otherwise steer the fans.
const PLAUSIBLE_C: std::ops::RangeInclusive<f64> = -40.0..=200.0;

/// One temperature, from the BMC's SDR or from the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub name: String,
    pub kind: SensorKind,
    pub celsius: f64,
    /// When it was read, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// One fan's speed as the BMC reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct FanRpm {
    pub name: String,
    /// The zone the fan belongs to, when known (Supermicro FAN1… zone 0, FANA… zone 1):
    /// a per-fan override of one zone then ignores the other zone's fans.
    pub zone: Option<u8>,
    pub rpm: f64,
    pub at_ms: i64,
}

/// What the BMC said about its fans this cycle (from [`FanAction::Status`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CurrentFans {
    /// Supermicro's fan mode; `None` where the BMC reports none (Dell).
    pub mode: Option<FanMode>,
    pub zones: Vec<ZoneDuty>,
}

/// Everything one decision looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    /// Now, in milliseconds since the Unix epoch.
    pub now_ms: i64,
    pub temps: Vec<Reading>,
    pub fans: Vec<FanRpm>,
    /// `None` when the fan status was not read this cycle.
    pub current: Option<CurrentFans>,
    /// Whether the BMC answered this cycle's reads.
    pub bmc_reachable: bool,
    /// When the loop last completed a cycle, as the caller knows it (it may outlive the
    /// controller); the controller also remembers its own last step.
    pub last_run_ms: Option<i64>,
}

/// One write to the BMC. [`FanWrite::action`] gives the [`FanAction`] that carries it
/// out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "write", rename_all = "snake_case")]
pub enum FanWrite {
    /// Supermicro Full mode: every fan at 100 % until a zone duty is written.
    FullMode,
    /// The fans back to the BMC's own control: Supermicro Standard mode, Dell automatic.
    HandBack,
    /// A zone's duty in percent. Supermicro applies it in Full mode only;
    /// [`fans::execute`](crate::fans::execute) switches to Full first when needed. Dell
    /// sets every fan (zone 0) and takes manual control.
    Duty { zone: u8, duty: u8 },
}

impl FanWrite {
    pub fn action(self) -> FanAction {
        match self {
            FanWrite::FullMode => FanAction::Mode {
                mode: Some(FanMode::Full.name()),
            },
            FanWrite::HandBack => FanAction::Mode {
                mode: Some(FanMode::Standard.name()),
            },
            FanWrite::Duty { zone, duty } => FanAction::Zone {
                zone,
                duty: Some(duty),
            },
        }
    }
}

/// Why the fans are in fail-safe.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum FailSafeReason {
    /// The BMC did not answer this cycle's reads.
    BmcUnreachable,
    /// The loop last ran `since_ms` ago, two intervals or more.
    LoopLate { since_ms: i64, interval_s: u64 },
    /// No fresh, plausible reading among a zone's sensors.
    NoTemperature { zone: u8, sensors: String },
}

impl fmt::Display for FailSafeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailSafeReason::BmcUnreachable => f.write_str("the BMC did not answer"),
            FailSafeReason::LoopLate {
                since_ms,
                interval_s,
            } => write!(
                f,
                "the control loop last ran {} s ago, two intervals of {interval_s} s or more",
                since_ms / 1000
            ),
            FailSafeReason::NoTemperature { zone, sensors } => write!(
                f,
                "zone {zone}: no fresh temperature from its sensors ({sensors})"
            ),
        }
    }
}

/// Something the operator should hear about (an alert, an audit line).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Fail-safe began, or its reason changed.
    FailSafeEntered { reason: FailSafeReason },
    /// The reason that had held is gone; the curve or preset is back in control.
    FailSafeCleared { reason: FailSafeReason },
}

/// The outcome of one step: what to write, and why.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Decision {
    /// To carry out in order; empty when nothing needs to change.
    pub writes: Vec<FanWrite>,
    /// The duty each controlled zone should be at after the writes (Dell: zone 0 for
    /// every fan). Empty in fail-safe and when the fans are left to the BMC.
    pub duties: Vec<ZoneDuty>,
    pub fail_safe: Option<FailSafeReason>,
    /// One line per fact that led to the decision.
    pub explanation: Vec<String>,
    pub events: Vec<Event>,
}

/// Per zone curve: the duty that hysteresis and dwell hold.
#[derive(Debug, Clone, PartialEq)]
struct ZoneState {
    held: u8,
    /// The temperature that set `held`: the duty falls only once the temperature is
    /// hysteresis below it.
    basis_c: f64,
    changed_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct State {
    /// Parallel to the configured zones; `None` until a zone's first decision and after
    /// fail-safe, so that the curve takes over at once.
    zones: Vec<Option<ZoneState>>,
    /// The duty last written per zone (index = zone); Dell uses index 0.
    written: [Option<u8>; 2],
    /// The fans are (as far as this controller knows) under manual control.
    manual: bool,
    fail_safe: Option<FailSafeReason>,
    last_step_ms: Option<i64>,
}

/// The fan-curve engine of one server. See the module documentation.
#[derive(Debug, Clone)]
pub struct Controller {
    vendor: Vendor,
    config: CurveConfig,
    min_duty: u8,
    state: State,
}

impl Controller {
    /// Refuses configurations that [`CurveConfig::validate_for`] refuses, among them
    /// every configuration for vendors without fan control over IPMI (HPE, unknown).
    pub fn new(vendor: Vendor, config: CurveConfig) -> Result<Self, Vec<String>> {
        config.validate_for(vendor)?;
        let min_duty = vendor.minimum_duty_percent().ok_or_else(|| {
            vec![format!(
                "no minimum duty known for {vendor}: fan control is offered for Supermicro and Dell BMCs"
            )]
        })?;
        let state = State {
            zones: vec![None; config.zones.len()],
            ..State::default()
        };
        Ok(Self {
            vendor,
            config,
            min_duty,
            state,
        })
    }

    /// Decides this cycle and remembers it (held duties, what was written, fail-safe).
    pub fn step(&mut self, inputs: &Inputs) -> Decision {
        let (decision, state) = self.decide(inputs);
        self.state = state;
        decision
    }

    /// What [`step`](Self::step) would decide now, without remembering it: the dry run
    /// behind "what would it set now and why".
    pub fn dry_run(&self, inputs: &Inputs) -> Decision {
        self.decide(inputs).0
    }

    /// The writes that give the fans back to the BMC when the loop stops for good.
    /// Always the hand-back: after a restart the controller cannot know whether an
    /// earlier run left manual control behind, and handing back is harmless when none
    /// was.
    pub fn shutdown(&self) -> Vec<FanWrite> {
        vec![FanWrite::HandBack]
    }

    fn max_age_ms(&self) -> i64 {
        seconds_ms(self.config.max_reading_age())
    }

    fn decide(&self, inputs: &Inputs) -> (Decision, State) {
        let mut st = self.state.clone();
        let mut d = Decision::default();
        let now = inputs.now_ms;
        let last = inputs.last_run_ms.max(st.last_step_ms);
        st.last_step_ms = Some(now);

        let reason = self.fail_safe_reason(inputs, last, &mut d.explanation);
        if let Some(reason) = reason {
            self.fail_safe(reason, &mut st, &mut d);
            return (d, st);
        }
        if let Some(reason) = st.fail_safe.take() {
            d.explanation
                .push(format!("fail-safe cleared: no longer true that {reason}"));
            d.events.push(Event::FailSafeCleared { reason });
        }
        match self.config.preset {
            Some(Preset::Zephyr) => self.zephyr(inputs, &mut st, &mut d),
            None => self.curves(inputs, &mut st, &mut d),
        }
        (d, st)
    }

    fn fail_safe_reason(
        &self,
        inputs: &Inputs,
        last: Option<i64>,
        notes: &mut Vec<String>,
    ) -> Option<FailSafeReason> {
        if !inputs.bmc_reachable {
            return Some(FailSafeReason::BmcUnreachable);
        }
        let interval_ms = seconds_ms(self.config.interval_s);
        if let Some(last) = last {
            let since_ms = inputs.now_ms.saturating_sub(last);
            if since_ms >= interval_ms.saturating_mul(2) {
                return Some(FailSafeReason::LoopLate {
                    since_ms,
                    interval_s: self.config.interval_s,
                });
            }
        }
        let gates: Vec<(u8, SensorSelector)> = match self.config.preset {
            Some(Preset::Zephyr) => vec![(0, SensorSelector::cpu_temps())],
            None => self
                .config
                .zones
                .iter()
                .map(|z| (z.zone, z.sensors.clone()))
                .collect(),
        };
        // Skipped readings are explained here only when they cause the fail-safe; the
        // curve explains them otherwise.
        gates.into_iter().find_map(|(zone, sensors)| {
            let mut skipped = Vec::new();
            self.hottest(&sensors, inputs, &mut skipped)
                .is_none()
                .then(|| {
                    notes.append(&mut skipped);
                    FailSafeReason::NoTemperature {
                        zone,
                        sensors: sensors.describe(),
                    }
                })
        })
    }

    fn fail_safe(&self, reason: FailSafeReason, st: &mut State, d: &mut Decision) {
        if !st
            .fail_safe
            .as_ref()
            .is_some_and(|held| same_cause(held, &reason))
        {
            d.events.push(Event::FailSafeEntered {
                reason: reason.clone(),
            });
        }
        match self.vendor {
            Vendor::Dell => {
                d.writes.push(FanWrite::HandBack);
                d.explanation.push(format!(
                    "FAIL-SAFE: {reason}: fans handed back to the iDRAC's automatic control"
                ));
                st.manual = false;
            }
            _ => {
                // The zone duties are written too, so the result does not depend on
                // whether this board's mode write resets duties written earlier.
                d.writes.extend([
                    FanWrite::FullMode,
                    FanWrite::Duty { zone: 0, duty: 100 },
                    FanWrite::Duty { zone: 1, duty: 100 },
                ]);
                d.explanation.push(format!(
                    "FAIL-SAFE: {reason}: Full mode, both zones at 100 %"
                ));
                st.manual = true;
            }
        }
        st.zones.iter_mut().for_each(|z| *z = None);
        st.written = [None; 2];
        d.fail_safe = Some(reason.clone());
        st.fail_safe = Some(reason);
    }

    /// The hottest fresh, plausible reading among those `sensors` selects, with the
    /// number of such readings; skipped readings are noted.
    fn hottest<'a>(
        &self,
        sensors: &SensorSelector,
        inputs: &'a Inputs,
        notes: &mut Vec<String>,
    ) -> Option<(&'a Reading, usize)> {
        let max_age_ms = self.max_age_ms();
        let mut best: Option<&Reading> = None;
        let mut count = 0;
        for r in inputs
            .temps
            .iter()
            .filter(|r| sensors.selects(&r.name, r.kind))
        {
            let age_ms = inputs.now_ms.saturating_sub(r.at_ms);
            if age_ms > max_age_ms {
                notes.push(format!(
                    "{}: reading is {} s old (more than {} s), ignored",
                    r.name,
                    age_ms / 1000,
                    max_age_ms / 1000
                ));
                continue;
            }
            if !(r.celsius.is_finite() && PLAUSIBLE_C.contains(&r.celsius)) {
                notes.push(format!(
                    "{}: {} °C is not a plausible temperature, ignored",
                    r.name, r.celsius
                ));
                continue;
            }
            count += 1;
            if best.is_none_or(|b| r.celsius > b.celsius) {
                best = Some(r);
            }
        }
        best.map(|b| (b, count))
    }

    /// Fresh fan readings with a usable speed.
    fn fresh_fans<'a>(&self, inputs: &'a Inputs) -> impl Iterator<Item = &'a FanRpm> {
        let max_age_ms = self.max_age_ms();
        inputs.fans.iter().filter(move |f| {
            inputs.now_ms.saturating_sub(f.at_ms) <= max_age_ms && f.rpm.is_finite() && f.rpm >= 0.0
        })
    }

    fn zephyr(&self, inputs: &Inputs, st: &mut State, d: &mut Decision) {
        let mut notes = Vec::new();
        let Some((cpu, _)) = self.hottest(&SensorSelector::cpu_temps(), inputs, &mut notes) else {
            // fail_safe_reason has checked for a CPU reading already.
            return;
        };
        d.explanation.append(&mut notes);
        if cpu.celsius > ZEPHYR_MAX_CPU_C {
            d.explanation.push(format!(
                "zephyr: {} {} °C is above {ZEPHYR_MAX_CPU_C} °C: the fans belong to the BMC",
                cpu.name, cpu.celsius
            ));
            self.hand_back(inputs, st, d);
            return;
        }
        let fastest = self
            .fresh_fans(inputs)
            .max_by(|a, b| a.rpm.total_cmp(&b.rpm));
        let Some(fan) = fastest.filter(|f| f.rpm > ZEPHYR_FAN_RPM) else {
            d.explanation.push(format!(
                "zephyr: {} {} °C is at or below {ZEPHYR_MAX_CPU_C} °C but no fan is above {ZEPHYR_FAN_RPM} RPM{}: nothing to do",
                cpu.name,
                cpu.celsius,
                fastest.map_or(String::new(), |f| format!(" (fastest {} at {} RPM)", f.name, f.rpm)),
            ));
            return;
        };
        // Should a profile's minimum ever exceed 0x18, fans::execute would refuse it:
        // the preset then runs at the minimum and says so.
        let duty = ZEPHYR_DUTY.max(self.min_duty);
        d.duties.push(ZoneDuty {
            zone: 0,
            duty_percent: duty,
        });
        let raised = if duty > ZEPHYR_DUTY {
            format!(
                " ({ZEPHYR_DUTY} % raised to {}'s minimum of {} %)",
                self.vendor, self.min_duty
            )
        } else {
            String::new()
        };
        let in_effect = inputs
            .current
            .as_ref()
            .is_some_and(|c| c.mode == Some(FanMode::Full) && reported_duty(c, 0) == Some(duty));
        if in_effect {
            d.explanation.push(format!(
                "zephyr: {} {} °C, {} at {} RPM, but zone 0 is at {duty} % in Full mode already",
                cpu.name, cpu.celsius, fan.name, fan.rpm
            ));
            return;
        }
        d.explanation.push(format!(
            "zephyr: {} {} °C is at or below {ZEPHYR_MAX_CPU_C} °C and {} runs at {} RPM, above {ZEPHYR_FAN_RPM}: zone 0 to {duty} %{raised}",
            cpu.name, cpu.celsius, fan.name, fan.rpm
        ));
        d.writes.push(FanWrite::Duty { zone: 0, duty });
        st.written[0] = Some(duty);
        st.manual = true;
    }

    /// Hands the fans back when they are under manual control: Full mode as reported,
    /// or, when the BMC reports no mode, as this controller left them.
    fn hand_back(&self, inputs: &Inputs, st: &mut State, d: &mut Decision) {
        let manual = match inputs.current.as_ref().and_then(|c| c.mode) {
            Some(mode) => mode == FanMode::Full,
            None => st.manual,
        };
        if manual {
            d.writes.push(FanWrite::HandBack);
            d.explanation
                .push("fans handed back to the BMC (Standard mode)".into());
        } else {
            d.explanation
                .push("the BMC controls the fans already: nothing to do".into());
        }
        st.manual = false;
        st.written = [None; 2];
    }

    fn curves(&self, inputs: &Inputs, st: &mut State, d: &mut Decision) {
        let mut finals = Vec::with_capacity(self.config.zones.len());
        for (i, z) in self.config.zones.iter().enumerate() {
            let prev = st.zones.get(i).cloned().flatten();
            let Some((held, duty)) = self.zone_duty(z, prev, inputs, st, d) else {
                continue;
            };
            if let Some(slot) = st.zones.get_mut(i) {
                *slot = Some(held);
            }
            finals.push((z.zone, duty));
        }
        // Supermicro out of Full mode (the BMC, a person or a reboot changed it): every
        // duty is written again, Full mode first.
        let mode_lost = inputs
            .current
            .as_ref()
            .and_then(|c| c.mode)
            .filter(|&m| m != FanMode::Full);
        let targets: Vec<(u8, u8)> = match self.vendor {
            Vendor::Dell => {
                let Some(&(_, duty)) = finals.iter().max_by_key(|(_, duty)| *duty) else {
                    return;
                };
                if finals.len() > 1 {
                    d.explanation.push(format!(
                        "Dell has no zones: every fan at the highest zone duty, {duty} %"
                    ));
                }
                vec![(0, duty)]
            }
            _ => finals,
        };
        for (zone, duty) in targets {
            d.duties.push(ZoneDuty {
                zone,
                duty_percent: duty,
            });
            let known = inputs
                .current
                .as_ref()
                .and_then(|c| reported_duty(c, zone))
                .or(written(st, zone));
            let target = match self.vendor {
                Vendor::Dell => "all fans".to_owned(),
                _ => format!("zone {zone}"),
            };
            if let Some(mode) = mode_lost {
                d.explanation.push(format!(
                    "{target}: set {duty} %, after Full mode (the BMC is in {} mode)",
                    mode.name()
                ));
                d.writes.push(FanWrite::Duty { zone, duty });
            } else if known != Some(duty) || !st.manual {
                let was = known.map_or("unknown".to_owned(), |k| format!("{k} %"));
                d.explanation
                    .push(format!("{target}: set {duty} % (was {was})"));
                d.writes.push(FanWrite::Duty { zone, duty });
            } else {
                d.explanation
                    .push(format!("{target}: at {duty} % already, nothing written"));
            }
            if let Some(slot) = st.written.get_mut(usize::from(zone)) {
                *slot = Some(duty);
            }
        }
        st.manual = true;
    }

    /// One zone's new held state and final duty, explained. `None` only for a zone
    /// without readings, which fail-safe has caught before.
    fn zone_duty(
        &self,
        z: &ZoneCurve,
        prev: Option<ZoneState>,
        inputs: &Inputs,
        st: &State,
        d: &mut Decision,
    ) -> Option<(ZoneState, u8)> {
        let zone = z.zone;
        let now = inputs.now_ms;
        let (hot, count) = self.hottest(&z.sensors, inputs, &mut d.explanation)?;
        let t = hot.celsius;
        let curve = curve_at(&z.points, t)?;
        let of = if count > 1 {
            format!(" (hottest of {count})")
        } else {
            String::new()
        };
        d.explanation.push(format!(
            "zone {zone}: {} {t} °C{of} → {} % {}",
            hot.name, curve.duty, curve.segment
        ));
        let held = match prev {
            None => ZoneState {
                held: curve.duty,
                basis_c: t,
                changed_ms: now,
            },
            Some(p) if curve.duty > p.held => {
                d.explanation
                    .push(format!("zone {zone}: rising from {} %", p.held));
                ZoneState {
                    held: curve.duty,
                    basis_c: t,
                    changed_ms: now,
                }
            }
            Some(p) if curve.duty == p.held => p,
            Some(p) if t > p.basis_c - z.hysteresis_c => {
                d.explanation.push(format!(
                    "zone {zone}: holding {} %: {t} °C is within the {} °C hysteresis of {} °C that set it",
                    p.held, z.hysteresis_c, p.basis_c
                ));
                p
            }
            Some(p) => {
                let dwell_ms = seconds_ms(z.min_dwell_s);
                let elapsed = now.saturating_sub(p.changed_ms);
                // A clock stepped back would otherwise hold the duty until it caught up.
                if (0..dwell_ms).contains(&elapsed) {
                    d.explanation.push(format!(
                        "zone {zone}: holding {} %: set {} s ago, the minimum dwell is {} s",
                        p.held,
                        elapsed / 1000,
                        z.min_dwell_s
                    ));
                    p
                } else {
                    d.explanation
                        .push(format!("zone {zone}: falling from {} %", p.held));
                    ZoneState {
                        held: curve.duty,
                        basis_c: t,
                        changed_ms: now,
                    }
                }
            }
        };
        let duty = self.bounded(z, held.held, inputs, st, d);
        Some((held, duty))
    }

    /// Applies the per-fan bounds and the vendor minimum to a held duty.
    fn bounded(
        &self,
        z: &ZoneCurve,
        held: u8,
        inputs: &Inputs,
        st: &State,
        d: &mut Decision,
    ) -> u8 {
        let zone = z.zone;
        let mut floor: Option<(u8, String)> = None;
        let mut ceiling: Option<(u8, String)> = None;
        let raise = |b: &mut Option<(u8, String)>, duty: u8, why: String| {
            if b.as_ref().is_none_or(|(d, _)| duty > *d) {
                *b = Some((duty, why));
            }
        };
        let lower = |b: &mut Option<(u8, String)>, duty: u8, why: String| {
            if b.as_ref().is_none_or(|(d, _)| duty < *d) {
                *b = Some((duty, why));
            }
        };
        // Dell's fans share one duty, written as zone 0.
        let duty_zone = if self.vendor == Vendor::Dell { 0 } else { zone };
        let present = inputs
            .current
            .as_ref()
            .and_then(|c| reported_duty(c, duty_zone))
            .or(written(st, duty_zone));
        for o in &z.fans {
            if let Some(lo) = o.min_duty {
                raise(&mut floor, lo, format!("{} min_duty {lo} %", o.fan));
            }
            if let Some(hi) = o.max_duty {
                lower(&mut ceiling, hi, format!("{} max_duty {hi} %", o.fan));
            }
            if o.min_rpm.is_none() && o.max_rpm.is_none() {
                continue;
            }
            let fans: Vec<&FanRpm> = self
                .fresh_fans(inputs)
                // A fan known to sit in another Supermicro zone does not bound this one,
                // whatever the pattern matches.
                .filter(|f| glob_match(&o.fan, &f.name) && f.rpm > 0.0)
                .filter(|f| self.vendor == Vendor::Dell || f.zone.is_none_or(|fz| fz == zone))
                .collect();
            let Some(present) = present.filter(|&p| p > 0) else {
                d.explanation.push(format!(
                    "zone {zone}: {}: the zone's present duty is unknown, its RPM bounds wait a cycle",
                    o.fan
                ));
                continue;
            };
            if fans.is_empty() {
                d.explanation.push(format!(
                    "zone {zone}: {}: no fresh speed reading, its RPM bounds are not applied",
                    o.fan
                ));
            }
            for f in fans {
                let per_rpm = f64::from(present) / f.rpm;
                if let Some(lo) = o.min_rpm {
                    let duty = (lo * per_rpm).ceil().clamp(0.0, 100.0) as u8;
                    let why = format!("{} min_rpm {lo} ({} RPM at {present} %)", f.name, f.rpm);
                    raise(&mut floor, duty, why);
                }
                if let Some(hi) = o.max_rpm {
                    let duty = (hi * per_rpm).floor().clamp(0.0, 100.0) as u8;
                    let why = format!("{} max_rpm {hi} ({} RPM at {present} %)", f.name, f.rpm);
                    lower(&mut ceiling, duty, why);
                }
            }
        }
        let mut duty = held;
        if let Some((hi, why)) = ceiling
            && duty > hi
        {
            d.explanation
                .push(format!("zone {zone}: lowered to {hi} % by {why}"));
            duty = hi;
        }
        if let Some((lo, why)) = floor
            && duty < lo
        {
            d.explanation
                .push(format!("zone {zone}: raised to {lo} % by {why}"));
            duty = lo;
        }
        if duty < self.min_duty {
            d.explanation.push(format!(
                "zone {zone}: {duty} % raised to {}'s minimum of {} %",
                self.vendor, self.min_duty
            ));
            duty = self.min_duty;
        }
        duty.min(100)
    }
}

/// Whether two reasons are the same fail-safe (a late loop stays one fail-safe however
/// late it gets), so that only a new cause raises an event.
fn same_cause(a: &FailSafeReason, b: &FailSafeReason) -> bool {
    match (a, b) {
        (FailSafeReason::LoopLate { .. }, FailSafeReason::LoopLate { .. }) => true,
        _ => a == b,
    }
}

fn reported_duty(c: &CurrentFans, zone: u8) -> Option<u8> {
    c.zones
        .iter()
        .find(|z| z.zone == zone)
        .map(|z| z.duty_percent)
}

fn written(st: &State, zone: u8) -> Option<u8> {
    st.written.get(usize::from(zone)).copied().flatten()
}

fn seconds_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
