//! Prometheus alerting-rule files (`groups: [{name, rules: [{alert, expr, for, labels,
//! annotations}]}]`): imported as dcmon rules, and checked like `promtool check rules`
//! with every problem named by file, line and rule. Recording rules are reported and
//! skipped (dcmon has none yet).

use super::rules::{RuleSpec, Severity};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    groups: Vec<Group>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    name: String,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for compatibility; dcmon evaluates every rule on alerts.interval"
    )]
    interval: Option<String>,
    #[serde(default)]
    #[expect(dead_code, reason = "accepted for compatibility; dcmon ignores it")]
    limit: Option<u64>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    record: Option<String>,
    expr: serde_norway::Value,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// What a file holds: the rules to import, the problems (which make it invalid) and
/// warnings (which do not).
#[derive(Debug, Default)]
pub struct Parsed {
    pub rules: Vec<RuleSpec>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Prometheus durations: `1h30m`, `90s`, `1d`, `1w`, `0`.
fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{s:?} is not a duration (e.g. 5m, 1h30m)"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => {
                return Err(format!(
                    "{s:?} is not a duration (units ms, s, m, h, d, w, y)"
                ));
            }
        };
        rest = &rest[unit_len..];
        total += Duration::from_millis(n.saturating_mul(unit_ms));
    }
    Ok(total)
}

/// The line of the first `key: value` (the value as written or quoted) at or after
/// `from_line`, for messages; serde's model of YAML has no positions.
fn line_of(text: &str, key: &str, value: &str, from_line: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(from_line.saturating_sub(1))
        .find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            t.strip_prefix(key)
                .and_then(|r| r.trim_start().strip_prefix(':'))
                .is_some_and(|v| v.trim().trim_matches(['"', '\'']) == value)
        })
        .map_or(from_line.max(1), |(i, _)| i + 1)
}

/// Parses a rule file; `file` names it in messages.
pub fn parse(file: &str, text: &str) -> Parsed {
    let mut out = Parsed::default();
    let parsed: File = match serde_norway::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            out.errors.push(format!("{file}{at}: {msg}"));
            return out;
        }
    };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut cursor = 1;
    for g in parsed.groups {
        let gline = line_of(text, "name", &g.name, cursor);
        cursor = gline + 1;
        if g.name.trim().is_empty() {
            out.errors
                .push(format!("{file}:{gline}: group name must not be empty"));
        }
        for r in g.rules {
            let (name, key) = match (&r.alert, &r.record) {
                (Some(a), None) => (a.clone(), "alert"),
                (None, Some(rec)) => {
                    let line = line_of(text, "record", rec, cursor);
                    cursor = line + 1;
                    out.warnings.push(format!(
                        "{file}:{line}: recording rule {rec:?} skipped: dcmon does not run recording rules"
                    ));
                    continue;
                }
                _ => {
                    out.errors.push(format!(
                        "{file}:{cursor}: group {:?}: each rule needs exactly one of alert or record",
                        g.name
                    ));
                    continue;
                }
            };
            let line = line_of(text, key, &name, cursor);
            cursor = line + 1;
            let at = format!("{file}:{line}: rule {name:?}");
            let expr = match &r.expr {
                serde_norway::Value::String(s) => s.clone(),
                serde_norway::Value::Number(n) => n.to_string(),
                _ => {
                    out.errors.push(format!("{at}: expr must be a string"));
                    continue;
                }
            };
            let for_ = match r.for_.as_deref().map(duration).transpose() {
                Ok(d) => d.unwrap_or_default(),
                Err(e) => {
                    out.errors.push(format!("{at}: for: {e}"));
                    continue;
                }
            };
            if let Some(k) = &r.keep_firing_for {
                out.warnings.push(format!(
                    "{at}: keep_firing_for {k:?} ignored: give the rule a threshold with a resolve value instead"
                ));
            }
            if let Some(first) = seen.insert(name.clone(), line) {
                out.errors
                    .push(format!("{at}: the name is used already on line {first}"));
            }
            let mut labels = g.labels.clone();
            labels.extend(r.labels);
            let severity = match labels.get("severity").map(|s| Severity::parse(s)) {
                Some(Ok(s)) => {
                    labels.remove("severity");
                    s
                }
                // Another severity vocabulary stays a plain label.
                Some(Err(_)) | None => Severity::Warning,
            };
            let spec = RuleSpec {
                name,
                expr,
                threshold: None,
                for_,
                severity,
                labels,
                annotations: r.annotations,
                channels: Vec::new(),
                overrides: BTreeMap::new(),
            };
            let problems = spec.validate();
            if problems.is_empty() {
                out.rules.push(spec);
            } else {
                for p in problems {
                    out.errors.push(format!("{at}: {p}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"groups:
  - name: node
    labels:
      team: infra
    rules:
      - alert: HostDown
        expr: up == 0
        for: 5m
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.instance }} is down"
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: DiskFull
        expr: dcmon_filesystem_used_ratio > 0.9
        for: 1h30m
"#;

    #[test]
    fn imports_alerting_rules_and_skips_recording_rules() {
        let p = parse("rules.yml", GOOD);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.rules.len(), 2);
        assert_eq!(p.rules[0].name, "HostDown");
        assert_eq!(p.rules[0].severity, Severity::Critical);
        assert_eq!(p.rules[0].labels["team"], "infra");
        assert_eq!(p.rules[0].for_, Duration::from_secs(300));
        assert_eq!(p.rules[1].for_, Duration::from_secs(5400));
        assert_eq!(p.warnings.len(), 1);
        assert!(
            p.warnings[0].starts_with("rules.yml:13: recording rule"),
            "{}",
            p.warnings[0]
        );
    }

    fn check(text: &str, expect: &str) {
        let p = parse("f.yml", text);
        assert!(
            p.errors.iter().any(|e| e.contains(expect)),
            "{:?} should mention {expect:?}",
            p.errors
        );
    }

    #[test]
    fn errors_name_file_line_and_rule() {
        check(
            "groups:\n  - name: g\n    rules:\n      - alert: Bad\n        expr: up{\n",
            "f.yml:4: rule \"Bad\": expr:",
        );
        check(
            "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: up\n        for: 5 minutes\n",
            "f.yml:4: rule \"X\": for:",
        );
        check(
            "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: up\n      - alert: X\n        expr: up\n",
            "f.yml:6: rule \"X\": the name is used already on line 4",
        );
        check("groups:\n  - name: g\n    rulez: []\n", "f.yml:3");
        check("groups: [", "f.yml:2:1: did not find");
    }
}
