//! The alert lifecycle, a pure core: given a rule, the series its expression returned
//! and the time, it moves each alert pending → firing → resolved (or drops a pending
//! one whose condition went away before `for:` elapsed). No clock, no store: the
//! engine passes `now` and persists what this returns.

use super::rules::RuleSpec;
use super::template;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Firing,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(State::Pending),
            "firing" => Some(State::Firing),
            "resolved" => Some(State::Resolved),
            _ => None,
        }
    }
}

/// One alert of one rule: a label set the rule's condition holds (or held) for.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Row id in the control store; 0 until stored.
    pub id: i64,
    pub rule: String,
    /// Hash of `labels`: the alert's identity within its rule.
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: State,
    pub value: f64,
    pub active_since_ms: i64,
    pub fired_ms: Option<i64>,
    pub resolved_ms: Option<i64>,
}

/// What happened to an alert in one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// New, waiting for `for:` to elapse.
    Pending,
    Firing,
    Resolved,
    /// Pending, and its condition went away before it fired: forgotten, never notified.
    Dropped,
}

/// A fingerprint of a label set (Alertmanager shows one per alert too).
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(v.as_bytes());
        h.update([0xfe]);
    }
    hex::encode(&h.finalize()[..8])
}

/// The labels of the alert for one returned series: the series' labels without the
/// metric name, the rule's labels (templated), `alertname` and `severity`.
pub fn alert_labels(
    rule: &RuleSpec,
    series: &BTreeMap<String, String>,
    value: f64,
) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = series
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &rule.labels {
        labels.insert(k.clone(), template::render(v, series, value));
    }
    labels.insert("alertname".into(), rule.name.clone());
    labels
        .entry("severity".into())
        .or_insert_with(|| rule.severity.as_str().to_owned());
    labels
}

fn annotations(
    rule: &RuleSpec,
    labels: &BTreeMap<String, String>,
    value: f64,
) -> BTreeMap<String, String> {
    rule.annotations
        .iter()
        .map(|(k, v)| (k.clone(), template::render(v, labels, value)))
        .collect()
}

/// Moves the alerts of `rule` (`active`: its pending and firing alerts by fingerprint)
/// according to the series its expression returned at `now_ms`. Resolved and dropped
/// alerts leave `active`; each change is returned with the alert as it is now.
pub fn step(
    rule: &RuleSpec,
    series: &[(BTreeMap<String, String>, f64)],
    active: &mut HashMap<String, Alert>,
    now_ms: i64,
) -> Vec<(Transition, Alert)> {
    let for_ms = i64::try_from(rule.for_.as_millis()).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (labels, value) in series {
        let value = *value;
        if value.is_nan() {
            continue;
        }
        let host = labels.get("host").map(String::as_str);
        let Some(threshold) = rule.threshold_for(host) else {
            continue;
        };
        let alert_labels = alert_labels(rule, labels, value);
        let fp = fingerprint(&alert_labels);
        let is_active = active.contains_key(&fp);
        let on = match threshold {
            None => true,
            Some(t) if is_active => t.holds(value),
            Some(t) => t.fires(value),
        };
        if !on {
            continue;
        }
        seen.insert(fp.clone());
        let a = active.entry(fp.clone()).or_insert_with(|| Alert {
            id: 0,
            rule: rule.name.clone(),
            fingerprint: fp.clone(),
            labels: alert_labels.clone(),
            annotations: BTreeMap::new(),
            state: State::Pending,
            value,
            active_since_ms: now_ms,
            fired_ms: None,
            resolved_ms: None,
        });
        a.value = value;
        a.annotations = annotations(rule, &alert_labels, value);
        if !is_active && for_ms > 0 {
            out.push((Transition::Pending, a.clone()));
        }
        if a.state == State::Pending && now_ms.saturating_sub(a.active_since_ms) >= for_ms {
            a.state = State::Firing;
            a.fired_ms = Some(now_ms);
            out.push((Transition::Firing, a.clone()));
        }
    }
    let gone: Vec<String> = active
        .keys()
        .filter(|k| !seen.contains(*k))
        .cloned()
        .collect();
    for fp in gone {
        let Some(mut a) = active.remove(&fp) else {
            continue;
        };
        if a.state == State::Firing {
            a.state = State::Resolved;
            a.resolved_ms = Some(now_ms);
            out.push((Transition::Resolved, a));
        } else {
            out.push((Transition::Dropped, a));
        }
    }
    out
}

/// When the earliest pending alert of `active` fires if its condition still holds: the
/// engine evaluates again then, so `for:` elapsing is not delayed to the next interval.
pub fn next_due(rule: &RuleSpec, active: &HashMap<String, Alert>) -> Option<i64> {
    let for_ms = i64::try_from(rule.for_.as_millis()).unwrap_or(i64::MAX);
    active
        .values()
        .filter(|a| a.state == State::Pending)
        .map(|a| a.active_since_ms.saturating_add(for_ms))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> RuleSpec {
        serde_json::from_str(json).unwrap()
    }

    fn series(host: &str, v: f64) -> (BTreeMap<String, String>, f64) {
        let mut l = BTreeMap::new();
        l.insert("__name__".to_owned(), "temp".to_owned());
        l.insert("host".to_owned(), host.to_owned());
        (l, v)
    }

    /// Runs `values` (one per step, `None`: the series is absent) 10 s apart and
    /// returns the transitions, as `P`, `F`, `R`, `D` with the step index.
    fn check(rule_json: &str, values: &[Option<f64>], expect: &str) {
        let r = rule(rule_json);
        let mut active = HashMap::new();
        let mut got = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let input: Vec<_> = v.iter().map(|v| series("h1", *v)).collect();
            for (t, _) in step(&r, &input, &mut active, i as i64 * 10_000) {
                let c = match t {
                    Transition::Pending => 'P',
                    Transition::Firing => 'F',
                    Transition::Resolved => 'R',
                    Transition::Dropped => 'D',
                };
                got.push(format!("{c}{i}"));
            }
        }
        assert_eq!(got.join(" "), expect);
    }

    const HYST: &str = r#"{"name":"hot","expr":"temp","for":"20s",
        "threshold":{"op":">","value":90,"resolve":80}}"#;

    #[test]
    fn pending_fires_after_for_and_resolves_below_the_resolve_threshold() {
        let s = |v: f64| Some(v);
        check(
            HYST,
            &[s(95.0), s(95.0), s(95.0), s(85.0), s(79.0)],
            "P0 F2 R4",
        );
        // Pending drops if the value goes back before `for:` elapsed.
        check(HYST, &[s(95.0), s(70.0), s(95.0)], "P0 D1 P2");
        // Between the thresholds a pending alert keeps its clock.
        check(HYST, &[s(95.0), s(85.0), s(85.0)], "P0 F2");
        // Absent series resolve firing alerts.
        check(HYST, &[s(95.0), s(95.0), s(95.0), None], "P0 F2 R3");
    }

    #[test]
    fn flapping_around_the_threshold_fires_once() {
        let vals: Vec<Option<f64>> = (0..40)
            .map(|i| Some(if i % 2 == 0 { 91.0 } else { 89.0 }))
            .collect();
        check(HYST, &vals, "P0 F2");
    }

    #[test]
    fn no_threshold_means_every_series_is_active_and_zero_for_fires_at_once() {
        check(
            r#"{"name":"x","expr":"up == 0"}"#,
            &[Some(0.0), None],
            "F0 R1",
        );
    }

    #[test]
    fn labels_annotations_and_next_due() {
        let r = rule(
            r#"{"name":"hot","expr":"temp","for":"1m","severity":"critical",
                "labels":{"team":"infra-{{ $labels.host }}"},
                "annotations":{"summary":"{{ $labels.host }} at {{ $value }}"}}"#,
        );
        let mut active = HashMap::new();
        let out = step(&r, &[series("gpu-1", 93.5)], &mut active, 5_000);
        let a = &out[0].1;
        assert_eq!(a.labels["alertname"], "hot");
        assert_eq!(a.labels["severity"], "critical");
        assert_eq!(a.labels["team"], "infra-gpu-1");
        assert!(!a.labels.contains_key("__name__"));
        assert_eq!(a.annotations["summary"], "gpu-1 at 93.5");
        assert_eq!(next_due(&r, &active), Some(65_000));
        assert_eq!(fingerprint(&a.labels).len(), 16);
    }
}
