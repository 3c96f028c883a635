//! Alert rules as users write them: a PromQL expression, an optional threshold with a
//! separate resolve threshold (hysteresis), `for:`, labels, annotations, channels and
//! per-host overrides. Stored as JSON in the control store's `alert_rules` table.

use super::template::Template;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How bad an alert is; also its `severity` label, which routes can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "info" => Ok(Severity::Info),
            "warning" | "warn" => Ok(Severity::Warning),
            "critical" | "crit" | "page" => Ok(Severity::Critical),
            other => Err(format!("severity {other:?}: use info, warning or critical")),
        }
    }
}

/// Which side of the threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "<=")]
    AtMost,
}

impl Op {
    pub fn holds(self, v: f64, threshold: f64) -> bool {
        match self {
            Op::Above => v > threshold,
            Op::AtLeast => v >= threshold,
            Op::Below => v < threshold,
            Op::AtMost => v <= threshold,
        }
    }

    fn is_upper(self) -> bool {
        matches!(self, Op::Above | Op::AtLeast)
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Op::Above => ">",
            Op::AtLeast => ">=",
            Op::Below => "<",
            Op::AtMost => "<=",
        }
    }
}

/// `value op threshold` starts an alert; it stays active while `value op resolve` holds
/// (the resolve threshold lies on the good side of the threshold), so a value hovering
/// around the threshold does not fire and resolve over and over.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub op: Op,
    pub value: f64,
    /// Default: `value` (no hysteresis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve: Option<f64>,
}

impl Threshold {
    /// Whether `v` starts an alert.
    pub fn fires(&self, v: f64) -> bool {
        self.op.holds(v, self.value)
    }

    /// Whether an active alert with value `v` stays active.
    pub fn holds(&self, v: f64) -> bool {
        self.op.holds(v, self.resolve.unwrap_or(self.value))
    }
}

/// A host whose threshold differs, or that the rule skips.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolve: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// One alert rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique; the alerts' `alertname` label.
    pub name: String,
    /// PromQL, evaluated as an instant query; each series it returns is one alert.
    pub expr: String,
    /// Without one, every series the expression returns is active (Prometheus' way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Threshold>,
    /// How long a series must stay active before the alert fires.
    #[serde(rename = "for", default, with = "humantime_serde")]
    pub for_: Duration,
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// Extra labels; values may use templates (`{{ $labels.host }}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `summary`, `description`, ...; templates with `$labels` and `$value`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Channels to notify; empty: every channel whose route matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// By `host` label value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, HostOverride>,
}

fn default_severity() -> Severity {
    Severity::Warning
}

/// Most bytes of a rule or channel name.
pub const MAX_NAME_BYTES: usize = 128;

/// Names of rules and channels: letters, digits, `_ - . :`.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    {
        return Err(format!(
            "{what} name {name:?}: 1 to {MAX_NAME_BYTES} of letters, digits, _ - . :"
        ));
    }
    Ok(())
}

pub(crate) fn is_label_name(k: &str) -> bool {
    let mut b = k.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

impl RuleSpec {
    /// Every problem at once, each naming its field.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = check_name("rule", &self.name) {
            p.push(e);
        }
        if self.expr.trim().is_empty() {
            p.push("expr: must not be empty".into());
        } else if let Err(e) = dcmon_promql::parse(&self.expr) {
            let e = e.to_string();
            let e = e
                .strip_prefix("invalid parameter \"query\": ")
                .unwrap_or(&e);
            p.push(format!("expr: {e}"));
        }
        if let Some(t) = &self.threshold {
            if !t.value.is_finite() {
                p.push("threshold: must be a finite number".into());
            }
            if let Some(r) = t.resolve {
                let good_side = if t.op.is_upper() {
                    r <= t.value
                } else {
                    r >= t.value
                };
                if !r.is_finite() || !good_side {
                    p.push(format!(
                        "resolve: {r} must lie on the good side of the threshold ({} {}): the alert resolves once the value is back past it",
                        t.op.symbol(),
                        t.value
                    ));
                }
            }
        } else if !self
            .overrides
            .values()
            .all(|o| o.threshold.is_none() && o.resolve.is_none())
        {
            p.push("overrides: a threshold override needs a rule threshold".into());
        }
        if self.for_ > Duration::from_secs(30 * 86_400) {
            p.push("for: at most 30d".into());
        }
        for (k, v) in &self.labels {
            if !is_label_name(k) || k == "alertname" || k == "__name__" {
                p.push(format!(
                    "labels: {k:?} is not a label name you can set ([a-zA-Z_][a-zA-Z0-9_]*, not alertname)"
                ));
            }
            if let Err(e) = Template::parse(v) {
                p.push(format!("labels.{k}: {e}"));
            }
        }
        for (k, v) in &self.annotations {
            if !is_label_name(k) {
                p.push(format!("annotations: {k:?} is not a valid name"));
            }
            if let Err(e) = Template::parse(v) {
                p.push(format!("annotations.{k}: {e}"));
            }
        }
        for c in &self.channels {
            if let Err(e) = check_name("channel", c) {
                p.push(format!("channels: {e}"));
            }
        }
        p
    }

    /// The threshold in force for `host`, or `None` when the rule skips it.
    pub(crate) fn threshold_for(&self, host: Option<&str>) -> Option<Option<Threshold>> {
        let o = host.and_then(|h| self.overrides.get(h));
        match (o, self.threshold) {
            (Some(o), _) if o.disabled => None,
            (Some(o), Some(mut t)) => {
                if let Some(v) = o.threshold {
                    t.value = v;
                    // An overridden threshold without its own resolve has no hysteresis
                    // unless the rule's resolve still lies on the good side.
                    if o.resolve.is_none() && t.resolve.is_some_and(|r| t.op.holds(r, v)) {
                        t.resolve = None;
                    }
                }
                if o.resolve.is_some() {
                    t.resolve = o.resolve;
                }
                Some(Some(t))
            }
            (_, t) => Some(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> RuleSpec {
        serde_json::from_str(json).unwrap()
    }

    fn check(json: &str, expect: &[&str]) {
        let problems = rule(json).validate();
        assert_eq!(problems.len(), expect.len(), "{problems:?}");
        for (p, e) in problems.iter().zip(expect) {
            assert!(p.contains(e), "{p:?} should contain {e:?}");
        }
    }

    #[test]
    fn validation_names_each_problem() {
        check(r#"{"name":"ok","expr":"up == 0"}"#, &[]);
        check(r#"{"name":"bad name","expr":"up"}"#, &["rule name"]);
        check(r#"{"name":"x","expr":"up{"}"#, &["expr:"]);
        check(
            r#"{"name":"x","expr":"t","threshold":{"op":">","value":90,"resolve":95}}"#,
            &["resolve: 95"],
        );
        check(
            r#"{"name":"x","expr":"t","threshold":{"op":"<","value":10,"resolve":15}}"#,
            &[],
        );
        check(
            r#"{"name":"x","expr":"t","labels":{"alertname":"y","team":"{{ $nope }}"}}"#,
            &["alertname", "labels.team"],
        );
        check(
            r#"{"name":"x","expr":"t","overrides":{"h1":{"threshold":3}}}"#,
            &["needs a rule threshold"],
        );
    }

    #[test]
    fn host_overrides_change_or_skip() {
        let r = rule(
            r#"{"name":"x","expr":"t","threshold":{"op":">","value":90,"resolve":85},
                "overrides":{"hot":{"threshold":95},"low":{"threshold":80},"off":{"disabled":true}}}"#,
        );
        let t = |h| r.threshold_for(Some(h));
        assert_eq!(t("other").unwrap().unwrap().value, 90.0);
        let hot = t("hot").unwrap().unwrap();
        assert_eq!((hot.value, hot.resolve), (95.0, Some(85.0)));
        let low = t("low").unwrap().unwrap();
        assert_eq!((low.value, low.resolve), (80.0, None));
        assert!(t("off").is_none());
    }

    #[test]
    fn hysteresis_holds_between_thresholds() {
        let t = Threshold {
            op: Op::Above,
            value: 90.0,
            resolve: Some(80.0),
        };
        assert!(!t.fires(85.0));
        assert!(t.fires(91.0));
        assert!(t.holds(85.0));
        assert!(!t.holds(80.0));
    }
}
