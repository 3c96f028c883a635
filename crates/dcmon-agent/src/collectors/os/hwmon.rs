//! Hardware sensors from `<sys>/class/hwmon/hwmon*`: temperatures and fans as
//! node_exporter's hwmon collector names them, plus the fleet table's CPU °C and VRM °C.
//!
//! Which chips and sensor files exist changes only when a driver loads, so they are
//! discovered once (labels and the crit/max thresholds read then too) and rediscovered
//! when the list of hwmon devices changes or every ten minutes; a collection reads just
//! one `*_input` file per sensor.

use super::{io_error, push, read_attribute};
use crate::collectors::CollectError;
use dcmon_wire::MetricSample;
use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Thresholds can be changed (`sensors -s`), so cached ones are refreshed this often.
const REDISCOVER_AFTER: Duration = Duration::from_secs(600);

/// Thermal zone types that measure the CPU, for machines without a hwmon CPU sensor.
const CPU_ZONE_TYPES: [&str; 3] = ["x86_pkg_temp", "cpu-thermal", "cpu_thermal"];

/// Rank of thermal zones among CPU temperature sources (after every hwmon one).
const ZONE_RANK: u8 = 5;

pub(super) struct Hwmon {
    class_dir: PathBuf,
    thermal_dir: PathBuf,
    /// Entries of `class_dir` at the last discovery, sorted.
    listing: Vec<OsString>,
    scratch: Vec<OsString>,
    discovered_at: Option<Instant>,
    chips: Vec<Chip>,
    /// `temp` files of CPU thermal zones.
    zones: Vec<PathBuf>,
    /// This collection's reading of each sensor, in `chips` order.
    values: Vec<Option<f64>>,
}

struct Chip {
    /// node_exporter's `chip` label: derived from the device path, stable across boots.
    chip: String,
    /// The driver's name (`coretemp`, `nct6798`), node_exporter's `chip_name`.
    chip_name: Option<String>,
    sensors: Vec<Sensor>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Temp,
    Fan,
}

struct Sensor {
    kind: Kind,
    number: u32,
    /// `temp1`, `fan2`: node_exporter's `sensor` label.
    name: String,
    label: Option<String>,
    input: PathBuf,
    crit: Option<f64>,
    max: Option<f64>,
    /// Set for sensors that measure the CPU package; lower is preferred.
    cpu_rank: Option<u8>,
    vrm: bool,
}

impl Hwmon {
    pub(super) fn new(sys_root: &Path) -> Self {
        Self {
            class_dir: sys_root.join("class/hwmon"),
            thermal_dir: sys_root.join("class/thermal"),
            listing: Vec::new(),
            scratch: Vec::new(),
            discovered_at: None,
            chips: Vec::new(),
            zones: Vec::new(),
            values: Vec::new(),
        }
    }

    pub(super) fn collect(
        &mut self,
        buf: &mut Vec<u8>,
        out: &mut Vec<MetricSample>,
    ) -> Result<(), CollectError> {
        self.scratch.clear();
        match std::fs::read_dir(&self.class_dir) {
            Ok(entries) => self
                .scratch
                .extend(entries.filter_map(|e| e.ok().map(|e| e.file_name()))),
            // Virtual machines and containers often have no hwmon devices at all.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&self.class_dir, e)),
        }
        self.scratch.sort();
        let stale = self
            .discovered_at
            .is_none_or(|t| t.elapsed() > REDISCOVER_AFTER);
        if stale || self.scratch != self.listing {
            std::mem::swap(&mut self.listing, &mut self.scratch);
            self.discover(buf);
            self.discovered_at = Some(Instant::now());
        }

        self.values.clear();
        for s in self.chips.iter().flat_map(|c| &c.sensors) {
            let raw = read_attribute(&s.input, buf)
                .ok()
                .and_then(|t| t.parse::<f64>().ok());
            self.values
                .push(raw.map(|v| if s.kind == Kind::Temp { v / 1000.0 } else { v }));
        }
        self.emit(buf, out);
        Ok(())
    }

    fn emit(&self, buf: &mut Vec<u8>, out: &mut Vec<MetricSample>) {
        for c in &self.chips {
            if let Some(name) = &c.chip_name {
                push(
                    out,
                    "node_hwmon_chip_names",
                    &[("chip", &c.chip), ("chip_name", name)],
                    1.0,
                );
            }
        }
        let sensors = || {
            self.chips
                .iter()
                .flat_map(|c| c.sensors.iter().map(move |s| (c, s)))
                .zip(&self.values)
        };
        for ((c, s), _) in sensors() {
            if let Some(label) = &s.label {
                push(
                    out,
                    "node_hwmon_sensor_label",
                    &[("chip", &c.chip), ("sensor", &s.name), ("label", label)],
                    1.0,
                );
            }
        }
        type Pick = fn(&Sensor, Option<f64>) -> Option<f64>;
        let families: [(&str, Pick); 4] = [
            ("node_hwmon_temp_celsius", |s, v| {
                v.filter(|_| s.kind == Kind::Temp)
            }),
            ("node_hwmon_temp_crit_celsius", |s, _| s.crit),
            ("node_hwmon_temp_max_celsius", |s, _| s.max),
            ("node_hwmon_fan_rpm", |s, v| {
                v.filter(|_| s.kind == Kind::Fan)
            }),
        ];
        for (metric, pick) in families {
            for ((c, s), v) in sensors() {
                if let Some(value) = pick(s, *v) {
                    push(
                        out,
                        metric,
                        &[("chip", &c.chip), ("sensor", &s.name)],
                        value,
                    );
                }
            }
        }

        let mut cpu = sensors()
            .filter_map(|((_, s), v)| Some((s.cpu_rank?, (*v)?)))
            .fold(None, best_cpu_reading);
        if cpu.is_none() {
            for zone in &self.zones {
                if let Some(v) = read_attribute(zone, buf)
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                {
                    cpu = best_cpu_reading(cpu, (ZONE_RANK, v / 1000.0));
                }
            }
        }
        if let Some((_, celsius)) = cpu {
            push(out, "dcmon_cpu_temperature_celsius", &[], celsius);
        }
        let vrm = sensors()
            .filter(|((_, s), _)| s.vrm)
            .filter_map(|(_, v)| *v)
            .reduce(f64::max);
        if let Some(celsius) = vrm {
            push(out, "dcmon_vrm_temperature_celsius", &[], celsius);
        }
    }

    fn discover(&mut self, buf: &mut Vec<u8>) {
        self.chips.clear();
        let mut labels = HashSet::new();
        for entry in &self.listing {
            let dir = self.class_dir.join(entry);
            if !dir.is_dir() {
                continue;
            }
            let Some(mut chip) = discover_chip(&dir, buf) else {
                continue;
            };
            // Two chips without a device link and with the same driver would give the
            // same series; keep them apart by their (unstable) hwmon number.
            if !labels.insert(chip.chip.clone()) {
                chip.chip = format!("{}_{}", chip.chip, clean(&entry.to_string_lossy()));
            }
            self.chips.push(chip);
        }
        self.chips.sort_by(|a, b| a.chip.cmp(&b.chip));

        self.zones.clear();
        if let Ok(entries) = std::fs::read_dir(&self.thermal_dir) {
            for e in entries.flatten() {
                if !e.file_name().to_string_lossy().starts_with("thermal_zone") {
                    continue;
                }
                let dir = e.path();
                if read_attribute(&dir.join("type"), buf).is_ok_and(|t| CPU_ZONE_TYPES.contains(&t))
                {
                    self.zones.push(dir.join("temp"));
                }
            }
        }
        self.zones.sort();
    }
}

/// Keeps the reading of the best-ranked source, and the hottest among equals (one
/// package per socket).
fn best_cpu_reading(best: Option<(u8, f64)>, next: (u8, f64)) -> Option<(u8, f64)> {
    match best {
        Some(b) if b.0 < next.0 || (b.0 == next.0 && b.1 >= next.1) => Some(b),
        _ => Some(next),
    }
}

/// How well a sensor stands for "the CPU temperature": Intel package sensors first, then
/// AMD's die (Tdie) and control (Tctl, may carry an offset on old Threadrippers)
/// temperatures, then Intel per-core sensors (CPUs without a package sensor), then the
/// SoC sensor of ARM boards (Raspberry Pi).
fn cpu_rank(chip_name: &str, label: Option<&str>) -> Option<u8> {
    match (chip_name, label) {
        ("coretemp", Some(l)) if l.starts_with("Package id") => Some(0),
        ("k10temp" | "zenpower", Some("Tdie")) => Some(1),
        ("k10temp" | "zenpower", Some("Tctl")) => Some(2),
        ("coretemp", _) => Some(3),
        ("cpu_thermal", _) => Some(4),
        _ => None,
    }
}

fn discover_chip(dir: &Path, buf: &mut Vec<u8>) -> Option<Chip> {
    let chip_name = read_attribute(&dir.join("name"), buf)
        .ok()
        .map(clean)
        .filter(|n| !n.is_empty());
    let chip = device_label(dir)
        .or_else(|| chip_name.clone())
        .or_else(|| {
            let real = std::fs::canonicalize(dir).ok()?;
            Some(clean(&real.file_name()?.to_string_lossy())).filter(|n| !n.is_empty())
        })?;
    let mut sensors = Vec::new();
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let file = entry.file_name();
        let Some(stem) = file.to_str().and_then(|f| f.strip_suffix("_input")) else {
            continue;
        };
        let (kind, number) = if let Some(n) = stem.strip_prefix("temp") {
            (Kind::Temp, n)
        } else if let Some(n) = stem.strip_prefix("fan") {
            (Kind::Fan, n)
        } else {
            continue;
        };
        let Ok(number) = number.parse::<u32>() else {
            continue;
        };
        let mut attribute = |suffix: &str| {
            read_attribute(&dir.join(format!("{stem}_{suffix}")), buf)
                .ok()
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
        };
        let label = attribute("label");
        let millidegrees = |t: String| t.parse::<f64>().ok().map(|v| v / 1000.0);
        let (crit, max) = match kind {
            Kind::Temp => (
                attribute("crit").and_then(millidegrees),
                attribute("max").and_then(millidegrees),
            ),
            Kind::Fan => (None, None),
        };
        let is_temp = kind == Kind::Temp;
        sensors.push(Sensor {
            cpu_rank: cpu_rank(chip_name.as_deref().unwrap_or(""), label.as_deref())
                .filter(|_| is_temp),
            vrm: is_temp
                && label
                    .as_ref()
                    .is_some_and(|l| l.to_ascii_lowercase().contains("vrm")),
            kind,
            number,
            name: stem.to_owned(),
            label,
            input: entry.path(),
            crit,
            max,
        });
    }
    sensors.sort_by_key(|s| (s.kind, s.number));
    Some(Chip {
        chip,
        chip_name,
        sensors,
    })
}

/// node_exporter's chip name from the device the hwmon belongs to: the last two parts
/// of its resolved path, `…/platform/coretemp.0` → `platform_coretemp_0`,
/// `…/pci0000:00/0000:00:18.3` → `pci0000:00_0000:00:18_3`.
fn device_label(dir: &Path) -> Option<String> {
    let device = std::fs::canonicalize(dir.join("device")).ok()?;
    let name = clean(&device.file_name()?.to_string_lossy());
    let kind = device
        .parent()
        .and_then(Path::file_name)
        .map(|k| clean(&k.to_string_lossy()))
        .unwrap_or_default();
    match (kind.is_empty(), name.is_empty()) {
        (false, false) => Some(format!("{kind}_{name}")),
        (true, false) => Some(name),
        _ => None,
    }
}

/// node_exporter's `cleanMetricName`: lower case, `[^a-z0-9:_]` → `_`, trimmed of `_`.
fn clean(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    mapped.trim_matches('_').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_node_exporter() {
        let check = |input: &str, expect: &str| assert_eq!(clean(input), expect);
        check("coretemp.0", "coretemp_0");
        check("0000:00:18.3", "0000:00:18_3");
        check("nct6798\n", "nct6798");
        check("Package id 0", "package_id_0");
        check("__", "");
    }

    #[test]
    fn ranks_cpu_sensors() {
        let check = |chip: &str, label: Option<&str>, expect: Option<u8>| {
            assert_eq!(cpu_rank(chip, label), expect, "{chip} {label:?}")
        };
        check("coretemp", Some("Package id 1"), Some(0));
        check("coretemp", Some("Core 3"), Some(3));
        check("coretemp", None, Some(3));
        check("k10temp", Some("Tdie"), Some(1));
        check("k10temp", Some("Tctl"), Some(2));
        check("k10temp", Some("Tccd1"), None);
        check("zenpower", Some("Tdie"), Some(1));
        check("cpu_thermal", None, Some(4));
        check("nct6798", Some("CPUTIN"), None);
    }

    #[test]
    fn picks_best_rank_then_hottest() {
        let check = |readings: &[(u8, f64)], expect: Option<f64>| {
            let got = readings
                .iter()
                .copied()
                .fold(None, best_cpu_reading)
                .map(|(_, v)| v);
            assert_eq!(got, expect, "{readings:?}");
        };
        check(&[], None);
        check(&[(3, 70.0), (0, 55.0), (0, 61.0), (3, 80.0)], Some(61.0));
        check(&[(2, 50.0), (1, 48.0)], Some(48.0));
        check(&[(5, 40.0)], Some(40.0));
    }

    #[test]
    fn thermal_zone_stands_in_without_hwmon() {
        let dir = tempfile::tempdir().unwrap();
        for (zone, kind, temp) in [
            ("thermal_zone0", "acpitz", "27800"),
            ("thermal_zone1", "x86_pkg_temp", "51000"),
        ] {
            let z = dir.path().join("class/thermal").join(zone);
            std::fs::create_dir_all(&z).unwrap();
            std::fs::write(z.join("type"), format!("{kind}\n")).unwrap();
            std::fs::write(z.join("temp"), format!("{temp}\n")).unwrap();
        }
        let mut h = Hwmon::new(dir.path());
        let mut out = Vec::new();
        h.collect(&mut Vec::new(), &mut out).unwrap();
        assert_eq!(
            super::super::tests::render(&out),
            "dcmon_cpu_temperature_celsius 51\n"
        );
    }
}
