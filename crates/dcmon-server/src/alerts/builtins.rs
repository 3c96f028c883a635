//! Built-in rules (DESIGN §7), on by default, each tunable or turned off under
//! `alerts.builtins.<Name>` in the server config. Most are PromQL over the series the
//! agent and the BMC poller write (metric names as `dcmon-agent/src/collectors` and
//! `dcmon-ipmi/src/exporter.rs` emit them); two read what PromQL cannot see: the
//! agents' last push (machine offline) and BMC SEL entries in the `events` table.

use super::rules::{RuleSpec, Severity, Threshold};
use crate::config::AlertsConfig;
use std::collections::BTreeMap;
use std::time::Duration;

/// Where a rule's series come from.
#[derive(Debug, Clone)]
pub enum Source {
    Promql(promql_parser::parser::Expr),
    /// Seconds since each approved agent last pushed, labelled `host`.
    AgentSilence,
    /// SEL entries (asserted, sensor-specific) of `sensor_type` with one of `offsets`
    /// within `window`: their count, labelled `host` and `bmc`.
    Sel {
        sensor_type: u8,
        offsets: &'static [u8],
        window: Duration,
    },
}

/// A rule ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub spec: RuleSpec,
    pub source: Source,
    pub builtin: bool,
}

struct Builtin {
    name: &'static str,
    summary: &'static str,
    expr: &'static str,
    source: Option<Source>,
    threshold: Option<(super::rules::Op, f64, Option<f64>)>,
    for_s: u64,
    severity: Severity,
}

use super::rules::Op::{Above, AtLeast};

const HOUR: Duration = Duration::from_secs(3600);

fn table() -> Vec<Builtin> {
    let b = |name, summary, expr, threshold, for_s, severity| Builtin {
        name,
        summary,
        expr,
        source: None,
        threshold,
        for_s,
        severity,
    };
    vec![
        Builtin {
            source: Some(Source::AgentSilence),
            // Agents push every 30 s by default: three missed pushes.
            ..b(
                "MachineOffline",
                "{{ $labels.host }} has not pushed for {{ humanize $value }}s",
                "(agent last push)",
                Some((Above, 90.0, None)),
                0,
                Severity::Critical,
            )
        },
        b(
            "BmcUnreachable",
            "BMC {{ $labels.bmc }} failed {{ $value }} polls in a row",
            "dcmon_bmc_consecutive_failures",
            Some((AtLeast, 3.0, Some(1.0))),
            0,
            Severity::Critical,
        ),
        b(
            "GpuTemperatureHigh",
            "{{ $labels.host }} GPU {{ $labels.gpu }} at {{ $value }} C",
            "DCGM_FI_DEV_GPU_TEMP",
            Some((Above, 85.0, Some(80.0))),
            120,
            Severity::Warning,
        ),
        b(
            "CpuTemperatureHigh",
            "{{ $labels.host }} CPU at {{ $value }} C",
            "dcmon_cpu_temperature_celsius",
            Some((Above, 90.0, Some(85.0))),
            120,
            Severity::Warning,
        ),
        b(
            "GpuXidErrors",
            "{{ $labels.host }} GPU {{ $labels.gpu }} reported XID {{ $labels.xid }}",
            "increase(dcmon_gpu_xid_errors_total[15m])",
            Some((Above, 0.0, None)),
            0,
            Severity::Critical,
        ),
        // Width only: an idle GPU lowers its link generation to save power, its width not.
        b(
            "GpuPcieLinkDegraded",
            "{{ $labels.host }} GPU {{ $labels.gpu }} PCIe link x{{ $value }} below its maximum",
            "DCGM_FI_DEV_PCIE_LINK_WIDTH < dcmon_gpu_pcie_link_width_max",
            None,
            600,
            Severity::Warning,
        ),
        b(
            "GpuEccUncorrectable",
            "{{ $labels.host }} GPU {{ $labels.gpu }} had uncorrectable ECC errors",
            "increase(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL[15m])",
            Some((Above, 0.0, None)),
            0,
            Severity::Critical,
        ),
        b(
            "DiskAlmostFull",
            "{{ $labels.host }} {{ $labels.mountpoint }}{{ $labels.role }} is {{ printf \"%.2f\" $value }} full",
            "dcmon_filesystem_used_ratio",
            Some((AtLeast, 0.9, Some(0.85))),
            300,
            Severity::Warning,
        ),
        b(
            "NvmeWearHigh",
            "{{ $labels.host }} {{ $labels.device }} has used {{ $value }}% of its rated endurance",
            "smartctl_device_percentage_used",
            Some((AtLeast, 90.0, None)),
            0,
            Severity::Warning,
        ),
        b(
            "NvmeCriticalWarning",
            "{{ $labels.host }} {{ $labels.device }} raised NVMe critical warning {{ $value }}",
            "smartctl_device_critical_warning",
            Some((Above, 0.0, None)),
            0,
            Severity::Critical,
        ),
        Builtin {
            // Memory (0x0C): 0 correctable ECC, 1 uncorrectable ECC, 5 correctable ECC
            // logging limit reached (IPMI 2.0 Table 42-3).
            source: Some(Source::Sel {
                sensor_type: 0x0C,
                offsets: &[0, 1, 5],
                window: HOUR,
            }),
            ..b(
                "MemoryErrors",
                "{{ $labels.host }}: {{ $value }} memory ECC events in the SEL within 1h",
                "(BMC SEL memory ECC events)",
                Some((Above, 0.0, None)),
                0,
                Severity::Critical,
            )
        },
        b(
            "PsuFailure",
            "{{ $labels.host }}{{ $labels.bmc }} power supply {{ $labels.name }} failed or lost input",
            "ipmi_sensor_state{type=\"Power Supply\"}",
            Some((AtLeast, 2.0, None)),
            0,
            Severity::Critical,
        ),
        b(
            "ChassisIntrusion",
            "{{ $labels.host }}{{ $labels.bmc }} chassis intrusion ({{ $labels.name }})",
            "ipmi_sensor_state{type=\"Physical Security\"}",
            Some((AtLeast, 2.0, None)),
            0,
            Severity::Critical,
        ),
        Builtin {
            // Session Audit (0x2A) offset 3: "invalid password disable", the account
            // locked after too many bad passwords.
            source: Some(Source::Sel {
                sensor_type: 0x2A,
                offsets: &[3],
                window: HOUR,
            }),
            ..b(
                "BmcAccountLockout",
                "BMC {{ $labels.bmc }} locked an account after failed logins",
                "(BMC SEL session audit lock-out)",
                Some((Above, 0.0, None)),
                0,
                Severity::Warning,
            )
        },
        b(
            "RebootRequired",
            "{{ $labels.host }} needs a reboot to finish updates",
            "dcmon_reboot_required",
            Some((Above, 0.0, None)),
            0,
            Severity::Info,
        ),
        b(
            "FanBelowLowerCritical",
            "{{ $labels.host }}{{ $labels.bmc }} fan {{ $labels.name }} below its critical threshold",
            "ipmi_fan_speed_state",
            Some((AtLeast, 2.0, None)),
            60,
            Severity::Critical,
        ),
    ]
}

/// Whether `name` is a built-in rule's.
pub fn is_builtin(name: &str) -> bool {
    table().iter().any(|b| b.name == name)
}

/// Names of the built-in rules.
pub fn names() -> Vec<&'static str> {
    table().iter().map(|b| b.name).collect()
}

/// The built-in rules in force under `config` (turned-off ones left out).
pub fn rules(config: &AlertsConfig) -> Vec<CompiledRule> {
    table()
        .into_iter()
        .filter_map(|b| {
            let set = config.builtins.get(b.name).cloned().unwrap_or_default();
            if set.enabled == Some(false) {
                return None;
            }
            let threshold = b.threshold.map(|(op, value, resolve)| {
                let value = set.threshold.unwrap_or(value);
                let resolve = set.resolve.or(resolve
                    .filter(|r| op.holds(value, *r) || *r == value || set.threshold.is_none()));
                Threshold { op, value, resolve }
            });
            let source = match b.source {
                Some(s) => s,
                None => {
                    Source::Promql(dcmon_promql::parse(b.expr).expect("built-in expressions parse"))
                }
            };
            let mut annotations = BTreeMap::new();
            annotations.insert("summary".to_owned(), b.summary.to_owned());
            Some(CompiledRule {
                spec: RuleSpec {
                    name: b.name.to_owned(),
                    expr: b.expr.to_owned(),
                    threshold,
                    for_: set.for_.unwrap_or(Duration::from_secs(b.for_s)),
                    severity: set
                        .severity
                        .as_deref()
                        .and_then(|s| Severity::parse(s).ok())
                        .unwrap_or(b.severity),
                    labels: BTreeMap::new(),
                    annotations,
                    channels: Vec::new(),
                    overrides: BTreeMap::new(),
                },
                source,
                builtin: true,
            })
        })
        .collect()
}

/// Problems with `alerts.builtins`.
pub fn validate(config: &AlertsConfig) -> Vec<String> {
    let mut p = Vec::new();
    let known = names();
    for (name, set) in &config.builtins {
        if !known.contains(&name.as_str()) {
            p.push(format!(
                "alerts.builtins.{name}: no such built-in rule; known: {}",
                known.join(", ")
            ));
            continue;
        }
        if let Some(s) = &set.severity
            && let Err(e) = Severity::parse(s)
        {
            p.push(format!("alerts.builtins.{name}.severity: {e}"));
        }
        if set.threshold.is_some_and(|t| !t.is_finite())
            || set.resolve.is_some_and(|t| !t.is_finite())
        {
            p.push(format!(
                "alerts.builtins.{name}: thresholds must be finite numbers"
            ));
        }
    }
    if p.is_empty() {
        for r in rules(config) {
            for e in r.spec.validate() {
                if !e.starts_with("expr:") {
                    p.push(format!("alerts.builtins.{}: {e}", r.spec.name));
                }
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BuiltinSetting;

    #[test]
    fn all_on_by_default_and_each_can_be_tuned_or_turned_off() {
        let mut c = AlertsConfig::default();
        assert_eq!(rules(&c).len(), names().len());
        assert!(validate(&c).is_empty(), "{:?}", validate(&c));
        c.builtins.insert(
            "RebootRequired".into(),
            BuiltinSetting {
                enabled: Some(false),
                ..Default::default()
            },
        );
        c.builtins.insert(
            "GpuTemperatureHigh".into(),
            BuiltinSetting {
                threshold: Some(80.0),
                resolve: Some(75.0),
                for_: Some(Duration::from_secs(30)),
                ..Default::default()
            },
        );
        let r = rules(&c);
        assert!(!r.iter().any(|r| r.spec.name == "RebootRequired"));
        let gpu = r
            .iter()
            .find(|r| r.spec.name == "GpuTemperatureHigh")
            .unwrap();
        assert_eq!(gpu.spec.threshold.unwrap().value, 80.0);
        assert_eq!(gpu.spec.threshold.unwrap().resolve, Some(75.0));
        assert_eq!(gpu.spec.for_, Duration::from_secs(30));
        c.builtins.insert("Nope".into(), BuiltinSetting::default());
        assert!(validate(&c)[0].contains("no such built-in rule"));
    }

    #[test]
    fn a_raised_threshold_keeps_a_sound_resolve() {
        let mut c = AlertsConfig::default();
        c.builtins.insert(
            "GpuTemperatureHigh".into(),
            BuiltinSetting {
                threshold: Some(70.0),
                ..Default::default()
            },
        );
        let r = rules(&c);
        let t = r
            .iter()
            .find(|r| r.spec.name == "GpuTemperatureHigh")
            .unwrap()
            .spec
            .threshold
            .unwrap();
        assert_eq!((t.value, t.resolve), (70.0, None));
        assert!(validate(&c).is_empty(), "{:?}", validate(&c));
    }
}
