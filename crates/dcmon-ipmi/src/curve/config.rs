//! The fan-curve configuration of one server or group (DESIGN §8) and its validation.
//!
//! A configuration is either the Zephyr preset or a list of zone curves. Everything that
//! does not depend on the BMC is checked by [`CurveConfig::validate`]; the vendor's
//! minimum duty and whether the vendor offers fan control at all by
//! [`CurveConfig::validate_for`], once Get Device ID has told the vendor. Duties below
//! the vendor minimum are refused here, with the setting's path, rather than raised
//! silently at run time: a curve that says 15 % but runs at 25 % misleads whoever reads
//! it.

use crate::vendor::{Vendor, hpe};
use serde::{Deserialize, Serialize};

/// What a temperature reading measures. Zone curves select readings by kind, by name or
/// both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorKind {
    /// A CPU package or core temperature (the BMC's `CPU1 Temp`, the agent's hwmon).
    CpuTemp,
    /// A GPU die temperature (the agent's NVML readings).
    GpuTemp,
    /// An NVMe composite temperature (the agent's SMART readings).
    NvmeTemp,
    /// Anything else (inlet, system, VRM, DIMM): selected by name only.
    Other,
}

/// Which readings a zone follows: the hottest fresh reading among those selected.
///
/// The hottest rather than an average, because the component closest to its limit is
/// the one the fans are there for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorSelector {
    /// Every reading of these kinds counts. Default for a zone without `sensors`:
    /// `[cpu_temp]`.
    #[serde(default)]
    pub kinds: Vec<SensorKind>,
    /// Readings whose name matches one of these patterns count too: `*` stands for any
    /// run of characters, `?` for one, and case does not matter (`CPU* Temp`, `nvme*`).
    #[serde(default)]
    pub names: Vec<String>,
}

impl SensorSelector {
    /// All CPU temperatures: the default of a zone.
    pub fn cpu_temps() -> Self {
        Self {
            kinds: vec![SensorKind::CpuTemp],
            names: Vec::new(),
        }
    }

    pub(crate) fn selects(&self, name: &str, kind: SensorKind) -> bool {
        self.kinds.contains(&kind) || self.names.iter().any(|p| glob_match(p, name))
    }

    /// "cpu_temp, GPU*" for explanations and fail-safe reasons.
    pub(crate) fn describe(&self) -> String {
        let kinds = self.kinds.iter().map(|k| match k {
            SensorKind::CpuTemp => "cpu_temp".to_owned(),
            SensorKind::GpuTemp => "gpu_temp".to_owned(),
            SensorKind::NvmeTemp => "nvme_temp".to_owned(),
            SensorKind::Other => "other".to_owned(),
        });
        kinds
            .chain(self.names.iter().map(|n| format!("{n:?}")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One zone's curve. Supermicro zone 0 is the CPU/system fans (FAN1…), zone 1 the
/// peripheral fans (FANA…). Dell has no zones: every fan runs at the highest duty that
/// any zone curve asks for, so one configuration with both zones serves both vendors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneCurve {
    /// 0 (CPU/system) or 1 (peripheral).
    pub zone: u8,
    /// The readings this zone follows. Default: every CPU temperature. A GPU server's
    /// peripheral zone: `{kinds: [gpu_temp]}`.
    #[serde(default = "SensorSelector::cpu_temps")]
    pub sensors: SensorSelector,
    /// `[°C, duty %]` in increasing temperature; linear between points, the first
    /// point's duty below it and the last point's above it.
    pub points: Vec<(f64, u8)>,
    /// How far (°C) the temperature has to fall below the one that set the current duty
    /// before the duty goes down, so a temperature wobbling around a breakpoint does not
    /// make the fans hunt. Rises are followed at once. Default 3.
    #[serde(default = "default_hysteresis_c")]
    pub hysteresis_c: f64,
    /// The least time (seconds) a duty is held before it may go down. Default 30.
    #[serde(default = "default_min_dwell_s")]
    pub min_dwell_s: u64,
    /// Per-fan bounds on this zone's duty.
    #[serde(default)]
    pub fans: Vec<FanOverride>,
}

/// Bounds that one fan (or every fan matching a pattern) puts on its zone's duty.
///
/// Supermicro and Dell set duties per zone or for all fans, never per fan, so a fan's
/// bound becomes a floor or ceiling of the zone duty. RPM bounds are translated with the
/// fan's latest RPM at the zone's present duty, assuming speed proportional to duty
/// (`duty = rpm_bound × present duty / present rpm`): fans are not linear at the ends of
/// their range, so the bound is approached over a few cycles rather than hit exactly.
/// A fixed duty is `min_duty` = `max_duty`. When a floor and a ceiling disagree, the
/// floor wins: more air rather than less.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FanOverride {
    /// The fan's sensor name as the BMC reports it, or a pattern (`FANA`, `FAN*`).
    pub fan: String,
    /// The zone never runs below this duty (percent).
    #[serde(default)]
    pub min_duty: Option<u8>,
    /// The zone never runs above this duty (percent).
    #[serde(default)]
    pub max_duty: Option<u8>,
    /// The zone's duty is raised until this fan is expected to reach this speed.
    #[serde(default)]
    pub min_rpm: Option<f64>,
    /// The zone's duty is lowered until this fan is expected to stay under this speed.
    #[serde(default)]
    pub max_rpm: Option<f64>,
}

/// A ready-made policy instead of zone curves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Zephyr's homelab rule for Supermicro boards (`dcmon fans preset zephyr`): while
    /// the hottest CPU is at or below 50 °C and any fan spins faster than 2050 RPM, zone
    /// 0 is set to 0x18 (24 %, about 1800 RPM); above 50 °C the fans are handed back to
    /// the BMC (Standard mode). 0x18 is above the Supermicro profile's minimum (20 %),
    /// so the preset writes exactly 0x18.
    Zephyr,
}

/// Fan control of one server or group (`fans` in the server's settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurveConfig {
    /// Seconds between two runs of the control loop: one cycle. The fail-safe acts when
    /// the loop has not run for two. Default 30.
    #[serde(default = "default_interval_s")]
    pub interval_s: u64,
    /// A reading older than this (seconds) counts as missing. Default: two intervals.
    #[serde(default)]
    pub max_reading_age_s: Option<u64>,
    /// A preset instead of `zones`.
    #[serde(default)]
    pub preset: Option<Preset>,
    /// One curve per zone.
    #[serde(default)]
    pub zones: Vec<ZoneCurve>,
}

/// Zephyr's thresholds (DESIGN §8).
pub(crate) const ZEPHYR_MAX_CPU_C: f64 = 50.0;
pub(crate) const ZEPHYR_FAN_RPM: f64 = 2050.0;
pub(crate) const ZEPHYR_DUTY: u8 = 0x18;

/// Curve points outside this range are typing mistakes, not temperatures a fan curve
/// should act on.
const POINT_RANGE_C: std::ops::RangeInclusive<f64> = 0.0..=150.0;
const MAX_HYSTERESIS_C: f64 = 20.0;
const MAX_SECONDS: u64 = 3600;

fn default_hysteresis_c() -> f64 {
    3.0
}

fn default_min_dwell_s() -> u64 {
    30
}

fn default_interval_s() -> u64 {
    30
}

impl Default for CurveConfig {
    /// The Zephyr preset, the behaviour of the script this replaces.
    fn default() -> Self {
        Self {
            interval_s: default_interval_s(),
            max_reading_age_s: None,
            preset: Some(Preset::Zephyr),
            zones: Vec::new(),
        }
    }
}

impl CurveConfig {
    /// The age (seconds) beyond which a reading counts as missing.
    pub fn max_reading_age(&self) -> u64 {
        self.max_reading_age_s
            .unwrap_or(self.interval_s.saturating_mul(2))
    }

    /// Every problem that does not depend on the BMC's vendor, each with its path.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut p = Vec::new();
        if !(1..=MAX_SECONDS).contains(&self.interval_s) {
            p.push(format!(
                "interval_s: {} is not between 1 and {MAX_SECONDS} seconds",
                self.interval_s
            ));
        }
        if self.max_reading_age_s == Some(0) {
            p.push(
                "max_reading_age_s: must be at least 1 second; omit it for two intervals".into(),
            );
        }
        match (self.preset, self.zones.is_empty()) {
            (Some(_), false) => p.push(
                "preset: a preset replaces zone curves; give either preset or zones, not both"
                    .into(),
            ),
            (None, true) => p.push(
                "zones: nothing to control; give at least one zone curve or preset: zephyr".into(),
            ),
            _ => {}
        }
        let mut seen = Vec::new();
        for (i, z) in self.zones.iter().enumerate() {
            let at = format!("zones[{i}]");
            if z.zone > 1 {
                p.push(format!(
                    "{at}.zone: zone {} does not exist (zones: 0 CPU/system, 1 peripheral)",
                    z.zone
                ));
            } else if seen.contains(&z.zone) {
                p.push(format!(
                    "{at}.zone: zone {} has a curve already; one curve per zone",
                    z.zone
                ));
            }
            seen.push(z.zone);
            validate_zone(&at, z, &mut p);
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }

    /// [`validate`](Self::validate), plus what the vendor allows: fan control at all
    /// (Supermicro and Dell) and duties at or above its minimum.
    pub fn validate_for(&self, vendor: Vendor) -> Result<(), Vec<String>> {
        let mut p = self.validate().err().unwrap_or_default();
        let minimum = match (vendor, vendor.minimum_duty_percent()) {
            (Vendor::Hpe, _) => {
                p.push(hpe::FAN_CONTROL.to_owned());
                return Err(p);
            }
            (Vendor::Supermicro | Vendor::Dell, Some(minimum)) => minimum,
            (other, _) => {
                p.push(format!(
                    "no fan profile for {other} (fan control is offered for Supermicro and Dell BMCs)"
                ));
                return Err(p);
            }
        };
        if self.preset == Some(Preset::Zephyr) && vendor != Vendor::Supermicro {
            p.push(format!(
                "preset: zephyr is written for Supermicro zone 0 and cannot run on {vendor}; use zone curves"
            ));
        }
        let below = |what: String, duty: u8, p: &mut Vec<String>| {
            if duty < minimum {
                p.push(format!(
                    "{what}: duty {duty} % is below {vendor}'s minimum of {minimum} % (fans stall or trip the BMC's lower-critical alarm); use at least {minimum} %"
                ));
            }
        };
        for (i, z) in self.zones.iter().enumerate() {
            for (j, &(_, duty)) in z.points.iter().enumerate() {
                below(format!("zones[{i}].points[{j}]"), duty, &mut p);
            }
            for (j, f) in z.fans.iter().enumerate() {
                for (field, duty) in [("min_duty", f.min_duty), ("max_duty", f.max_duty)] {
                    if let Some(duty) = duty {
                        below(format!("zones[{i}].fans[{j}].{field}"), duty, &mut p);
                    }
                }
            }
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }
}

fn validate_zone(at: &str, z: &ZoneCurve, p: &mut Vec<String>) {
    if z.sensors.kinds.is_empty() && z.sensors.names.is_empty() {
        p.push(format!(
            "{at}.sensors: selects no sensor; give kinds (cpu_temp, gpu_temp, nvme_temp) or names"
        ));
    }
    for (j, n) in z.sensors.names.iter().enumerate() {
        if n.trim().is_empty() {
            p.push(format!("{at}.sensors.names[{j}]: must not be empty"));
        }
    }
    if z.points.is_empty() {
        p.push(format!(
            "{at}.points: at least one [°C, duty %] point is needed"
        ));
    }
    let mut previous: Option<f64> = None;
    for (j, &(c, duty)) in z.points.iter().enumerate() {
        let here = format!("{at}.points[{j}]");
        if !c.is_finite() {
            p.push(format!("{here}: temperature {c} is not a number"));
            continue;
        }
        if !POINT_RANGE_C.contains(&c) {
            p.push(format!(
                "{here}: {c} °C is outside {}–{} °C",
                POINT_RANGE_C.start(),
                POINT_RANGE_C.end()
            ));
        }
        if duty > 100 {
            p.push(format!("{here}: duty {duty} % is above 100 %"));
        }
        if let Some(prev) = previous
            && c <= prev
        {
            p.push(format!(
                "{here}: {c} °C is not above the previous point's {prev} °C; list points in increasing temperature"
            ));
        }
        previous = Some(c);
    }
    if !(z.hysteresis_c.is_finite() && (0.0..=MAX_HYSTERESIS_C).contains(&z.hysteresis_c)) {
        p.push(format!(
            "{at}.hysteresis_c: {} is not between 0 and {MAX_HYSTERESIS_C} °C",
            z.hysteresis_c
        ));
    }
    if z.min_dwell_s > MAX_SECONDS {
        p.push(format!(
            "{at}.min_dwell_s: {} is more than {MAX_SECONDS} seconds",
            z.min_dwell_s
        ));
    }
    for (j, f) in z.fans.iter().enumerate() {
        validate_fan(&format!("{at}.fans[{j}]"), f, p);
    }
}

fn validate_fan(at: &str, f: &FanOverride, p: &mut Vec<String>) {
    if f.fan.trim().is_empty() {
        p.push(format!("{at}.fan: must name a fan sensor, e.g. FANA"));
    }
    if f.min_duty.is_none() && f.max_duty.is_none() && f.min_rpm.is_none() && f.max_rpm.is_none() {
        p.push(format!(
            "{at}: bounds nothing; give min_duty, max_duty, min_rpm or max_rpm"
        ));
    }
    for (field, duty) in [("min_duty", f.min_duty), ("max_duty", f.max_duty)] {
        if let Some(duty) = duty
            && duty > 100
        {
            p.push(format!("{at}.{field}: duty {duty} % is above 100 %"));
        }
    }
    if let (Some(lo), Some(hi)) = (f.min_duty, f.max_duty)
        && lo > hi
    {
        p.push(format!("{at}: min_duty {lo} % is above max_duty {hi} %"));
    }
    for (field, rpm) in [("min_rpm", f.min_rpm), ("max_rpm", f.max_rpm)] {
        if let Some(rpm) = rpm
            && !(rpm.is_finite() && rpm > 0.0 && rpm <= 100_000.0)
        {
            p.push(format!(
                "{at}.{field}: {rpm} is not a fan speed (1–100000 RPM)"
            ));
        }
    }
    if let (Some(lo), Some(hi)) = (f.min_rpm, f.max_rpm)
        && lo > hi
    {
        p.push(format!("{at}: min_rpm {lo} is above max_rpm {hi}"));
    }
}

/// The duty a curve gives at a temperature, and the part of the curve that gave it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CurveValue {
    pub duty: u8,
    /// "on 40 °C/30 % – 60 °C/60 %", "at or below the first point 30 °C/25 %".
    pub segment: String,
}

/// Evaluates a validated curve (at least one point, increasing finite temperatures) at
/// a finite temperature.
pub(crate) fn curve_at(points: &[(f64, u8)], celsius: f64) -> Option<CurveValue> {
    let &(c_first, d_first) = points.first()?;
    let &(c_last, d_last) = points.last()?;
    if celsius <= c_first {
        return Some(CurveValue {
            duty: d_first,
            segment: format!("at or below the first point {c_first} °C/{d_first} %"),
        });
    }
    if celsius >= c_last {
        return Some(CurveValue {
            duty: d_last,
            segment: format!("at or above the last point {c_last} °C/{d_last} %"),
        });
    }
    let (&(c0, d0), &(c1, d1)) = points
        .iter()
        .zip(points.iter().skip(1))
        .find(|&(_, &(c1, _))| celsius < c1)?;
    let (d0f, d1f) = (f64::from(d0), f64::from(d1));
    let duty = d0f + (d1f - d0f) * (celsius - c0) / (c1 - c0);
    Some(CurveValue {
        // Between two duties of at most 100, so the cast cannot truncate.
        duty: duty.round().clamp(0.0, 100.0) as u8,
        segment: format!("on {c0} °C/{d0} % – {c1} °C/{d1} %"),
    })
}

/// `*` any run of characters, `?` one character, ASCII case ignored.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let n: Vec<char> = name.chars().map(|c| c.to_ascii_lowercase()).collect();
    // Iterative matching with one backtrack point: linear in practice, never recursive.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn zone(points: Vec<(f64, u8)>) -> ZoneCurve {
        ZoneCurve {
            zone: 0,
            sensors: SensorSelector::cpu_temps(),
            points,
            hysteresis_c: 3.0,
            min_dwell_s: 30,
            fans: Vec::new(),
        }
    }

    fn curves(zones: Vec<ZoneCurve>) -> CurveConfig {
        CurveConfig {
            preset: None,
            zones,
            ..CurveConfig::default()
        }
    }

    #[test]
    fn interpolation_and_segments() {
        let points = [(30.0, 25), (50.0, 40), (70.0, 100)];
        let check = |celsius: f64, duty: u8, segment: &str| {
            let v = curve_at(&points, celsius).expect("three points");
            assert_eq!(
                (v.duty, v.segment.as_str()),
                (duty, segment),
                "{celsius} °C"
            );
        };
        check(-5.0, 25, "at or below the first point 30 °C/25 %");
        check(30.0, 25, "at or below the first point 30 °C/25 %");
        check(30.1, 25, "on 30 °C/25 % – 50 °C/40 %");
        check(40.0, 33, "on 30 °C/25 % – 50 °C/40 %"); // 32.5 rounds half away from zero
        check(49.9, 40, "on 30 °C/25 % – 50 °C/40 %");
        check(50.0, 40, "on 50 °C/40 % – 70 °C/100 %");
        check(60.0, 70, "on 50 °C/40 % – 70 °C/100 %");
        check(70.0, 100, "at or above the last point 70 °C/100 %");
        check(95.0, 100, "at or above the last point 70 °C/100 %");
        let one = curve_at(&[(40.0, 50)], 80.0).expect("one point");
        assert_eq!(one.duty, 50);
        assert_eq!(curve_at(&[], 40.0), None);
    }

    #[test]
    fn globs() {
        let check = |pattern: &str, name: &str, hit: bool| {
            assert_eq!(glob_match(pattern, name), hit, "{pattern} vs {name}");
        };
        check("CPU* Temp", "CPU1 Temp", true);
        check("cpu* temp", "CPU2 Temp", true);
        check("CPU* Temp", "CPU1 Temp2", false);
        check("FAN?", "FANA", true);
        check("FAN?", "FAN10", false);
        check("*", "", true);
        check("", "x", false);
        check("a*b*c", "aXbYbZc", true);
        check("a*b*c", "aXbYbZ", false);
    }

    #[test]
    fn parses_with_defaults_and_refuses_unknown_fields() {
        let c: CurveConfig = serde_json::from_str(
            r#"{"zones":[{"zone":1,"sensors":{"kinds":["gpu_temp"]},"points":[[40,30],[80,100]],
                "fans":[{"fan":"FANA","max_rpm":3000}]}]}"#,
        )
        .expect("parses");
        assert_eq!(c.interval_s, 30);
        assert_eq!(c.max_reading_age(), 60);
        assert_eq!(c.zones[0].hysteresis_c, 3.0);
        assert_eq!(c.zones[0].min_dwell_s, 30);
        assert_eq!(c.zones[0].sensors.kinds, [SensorKind::GpuTemp]);
        assert_eq!(c.validate_for(Vendor::Supermicro), Ok(()));
        let defaulted: CurveConfig =
            serde_json::from_str(r#"{"zones":[{"zone":0,"points":[[40,30]]}]}"#).expect("parses");
        assert_eq!(defaulted.zones[0].sensors, SensorSelector::cpu_temps());
        let zephyr: CurveConfig = serde_json::from_str(r#"{"preset":"zephyr"}"#).expect("parses");
        assert_eq!(zephyr, CurveConfig::default());
        let e = serde_json::from_str::<CurveConfig>(r#"{"zones":[],"hysteresis":3}"#)
            .expect_err("unknown field");
        assert!(e.to_string().contains("unknown field `hysteresis`"), "{e}");
    }

    #[test]
    fn validation_messages_name_the_setting() {
        let check = |c: CurveConfig, vendor: Vendor, expect: &[&str]| {
            let got = c.validate_for(vendor).err().unwrap_or_default();
            assert_eq!(got, expect, "{c:?}");
        };
        check(
            curves(vec![zone(vec![(30.0, 15), (60.0, 100)])]),
            Vendor::Supermicro,
            &[
                "zones[0].points[0]: duty 15 % is below Supermicro's minimum of 20 % (fans stall or trip the BMC's lower-critical alarm); use at least 20 %",
            ],
        );
        check(
            curves(vec![zone(vec![(30.0, 15), (60.0, 100)])]),
            Vendor::Dell,
            &[],
        );
        check(
            curves(vec![zone(vec![
                (50.0, 40),
                (40.0, 60),
                (f64::NAN, 70),
                (200.0, 101),
            ])]),
            Vendor::Dell,
            &[
                "zones[0].points[1]: 40 °C is not above the previous point's 50 °C; list points in increasing temperature",
                "zones[0].points[2]: temperature NaN is not a number",
                "zones[0].points[3]: 200 °C is outside 0–150 °C",
                "zones[0].points[3]: duty 101 % is above 100 %",
            ],
        );
        let mut fan = zone(vec![(40.0, 30)]);
        fan.fans.push(FanOverride {
            fan: "FANA".into(),
            min_duty: Some(60),
            max_duty: Some(15),
            min_rpm: Some(f64::INFINITY),
            max_rpm: None,
        });
        fan.hysteresis_c = -1.0;
        check(
            curves(vec![fan]),
            Vendor::Supermicro,
            &[
                "zones[0].hysteresis_c: -1 is not between 0 and 20 °C",
                "zones[0].fans[0]: min_duty 60 % is above max_duty 15 %",
                "zones[0].fans[0].min_rpm: inf is not a fan speed (1–100000 RPM)",
                "zones[0].fans[0].max_duty: duty 15 % is below Supermicro's minimum of 20 % (fans stall or trip the BMC's lower-critical alarm); use at least 20 %",
            ],
        );
        let mut twice = vec![zone(vec![(40.0, 30)]), zone(vec![(40.0, 30)])];
        twice[1].sensors = SensorSelector {
            kinds: Vec::new(),
            names: Vec::new(),
        };
        twice.push(ZoneCurve {
            zone: 2,
            ..zone(vec![])
        });
        check(
            curves(twice),
            Vendor::Supermicro,
            &[
                "zones[1].zone: zone 0 has a curve already; one curve per zone",
                "zones[1].sensors: selects no sensor; give kinds (cpu_temp, gpu_temp, nvme_temp) or names",
                "zones[2].zone: zone 2 does not exist (zones: 0 CPU/system, 1 peripheral)",
                "zones[2].points: at least one [°C, duty %] point is needed",
            ],
        );
        check(
            curves(vec![]),
            Vendor::Supermicro,
            &["zones: nothing to control; give at least one zone curve or preset: zephyr"],
        );
        check(
            CurveConfig::default(),
            Vendor::Dell,
            &[
                "preset: zephyr is written for Supermicro zone 0 and cannot run on Dell; use zone curves",
            ],
        );
        check(
            CurveConfig::default(),
            Vendor::Hpe,
            &["fan control is not available over IPMI on HPE iLO (use iLO's own thermal settings)"],
        );
        check(
            CurveConfig {
                interval_s: 0,
                ..CurveConfig::default()
            },
            Vendor::Other(343),
            &[
                "interval_s: 0 is not between 1 and 3600 seconds",
                "no fan profile for manufacturer 343 (fan control is offered for Supermicro and Dell BMCs)",
            ],
        );
    }

    /// A temperature that may be anything a typo or a float can produce.
    fn any_celsius() -> impl Strategy<Value = f64> {
        prop_oneof![
            -50.0..200.0f64,
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            any::<f64>(),
        ]
    }

    proptest! {
        /// Validation accepts exactly the curves of finite, in-range, strictly
        /// increasing temperatures with duties between the vendor minimum and 100 %,
        /// and every refusal names the point.
        #[test]
        fn validation_accepts_exactly_the_well_formed_curves(
            points in proptest::collection::vec((any_celsius(), any::<u8>()), 1..6)
        ) {
            let c = curves(vec![zone(points.clone())]);
            let well_formed = points.iter().all(|&(c, d)| {
                c.is_finite() && POINT_RANGE_C.contains(&c) && (25..=100).contains(&d)
            }) && points.windows(2).all(|w| w[0].0 < w[1].0);
            match c.validate_for(Vendor::Supermicro) {
                Ok(()) => prop_assert!(well_formed, "{points:?} accepted"),
                Err(p) => {
                    prop_assert!(!well_formed, "{points:?} refused: {p:?}");
                    prop_assert!(p.iter().all(|m| m.starts_with("zones[0].points[")), "{p:?}");
                }
            }
        }

        /// Any finite temperature on a valid curve gives a duty between the curve's
        /// lowest and highest duty.
        #[test]
        fn curve_duty_stays_within_its_points(celsius in -100.0..300.0f64, d0 in 25u8..=100, d1 in 25u8..=100) {
            let v = curve_at(&[(30.0, d0), (60.0, d1)], celsius).expect("two points");
            prop_assert!(v.duty >= d0.min(d1) && v.duty <= d0.max(d1));
        }
    }
}
