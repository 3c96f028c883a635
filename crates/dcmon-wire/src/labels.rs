//! Series identity: a metric name plus sorted label pairs, Prometheus' data model.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The label that holds the metric name, as in Prometheus.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// A series' identity: label pairs sorted by name, names unique, `__name__` included.
///
/// Invariant: `pairs` is sorted by name with no duplicate names; every constructor keeps it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(try_from = "Vec<(String, String)>", into = "Vec<(String, String)>")]
pub struct Labels {
    pairs: Vec<(String, String)>,
}

/// Why a set of labels is not a valid series identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("label name {0:?} is not valid: use [a-zA-Z_][a-zA-Z0-9_]*")]
    InvalidName(String),
    #[error("metric name {0:?} is not valid: use [a-zA-Z_:][a-zA-Z0-9_:]*")]
    InvalidMetricName(String),
    #[error("label {0:?} appears twice")]
    Duplicate(String),
    #[error("series has no metric name (label __name__)")]
    NoMetricName,
}

impl Labels {
    /// Builds labels for `metric` with the given extra pairs, validating every name.
    pub fn new<'a>(
        metric: &str,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, LabelError> {
        let mut v: Vec<(String, String)> = vec![(METRIC_NAME_LABEL.to_owned(), metric.to_owned())];
        v.extend(pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
        Self::from_pairs(v)
    }

    /// Validates and sorts arbitrary pairs (which must include `__name__`).
    pub fn from_pairs(mut pairs: Vec<(String, String)>) -> Result<Self, LabelError> {
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        for w in pairs.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(LabelError::Duplicate(w[0].0.clone()));
            }
        }
        let mut has_name = false;
        for (k, v) in &pairs {
            if k == METRIC_NAME_LABEL {
                if !is_metric_name(v) {
                    return Err(LabelError::InvalidMetricName(v.clone()));
                }
                has_name = true;
            } else if !is_label_name(k) {
                return Err(LabelError::InvalidName(k.clone()));
            }
        }
        if !has_name {
            return Err(LabelError::NoMetricName);
        }
        // Prometheus treats an empty label value as an absent label.
        pairs.retain(|(_, v)| !v.is_empty());
        Ok(Self { pairs })
    }

    /// The metric name (`__name__`).
    pub fn metric(&self) -> &str {
        self.get(METRIC_NAME_LABEL).unwrap_or("")
    }

    /// The value of label `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.pairs[i].1.as_str())
    }

    /// Sets (or replaces) a label; an empty value removes it. `name` must be valid.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.pairs.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.pairs.remove(i);
            }
            Ok(i) => self.pairs[i].1 = value.to_owned(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.pairs.insert(i, (name.to_owned(), value.to_owned())),
        }
    }

    /// All pairs, sorted by name, `__name__` included.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Pairs other than `__name__`.
    pub fn without_name(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .filter(|(k, _)| k != METRIC_NAME_LABEL)
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl TryFrom<Vec<(String, String)>> for Labels {
    type Error = LabelError;
    fn try_from(v: Vec<(String, String)>) -> Result<Self, LabelError> {
        Self::from_pairs(v)
    }
}

impl From<Labels> for Vec<(String, String)> {
    fn from(l: Labels) -> Self {
        l.pairs
    }
}

/// Prometheus text form: `name{a="1",b="2"}`.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.metric())?;
        let mut first = true;
        for (k, v) in self.without_name() {
            f.write_str(if first { "{" } else { "," })?;
            first = false;
            write!(f, "{k}=\"")?;
            for c in v.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")?;
        }
        if !first {
            f.write_str("}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// One value of one series (the timestamp lives in the enclosing [`Scrape`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    pub labels: Labels,
    pub value: f64,
}

/// Everything one collection produced at one instant.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Scrape {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub samples: Vec<MetricSample>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(metric: &str, pairs: &[(&str, &str)], expect: &str) {
        let got = match Labels::new(metric, pairs.iter().copied()) {
            Ok(l) => l.to_string(),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect);
    }

    #[test]
    fn labels_sort_validate_and_print() {
        check("up", &[], "up");
        check("a", &[("z", "1"), ("b", "2")], r#"a{b="2",z="1"}"#);
        check("a", &[("b", "q\"\\\n")], r#"a{b="q\"\\\n"}"#);
        check("a", &[("b", "")], "a");
        check(
            "a",
            &[("b", "1"), ("b", "2")],
            r#"error: label "b" appears twice"#,
        );
        check(
            "1a",
            &[],
            r#"error: metric name "1a" is not valid: use [a-zA-Z_:][a-zA-Z0-9_:]*"#,
        );
        check(
            "a",
            &[("x-y", "1")],
            r#"error: label name "x-y" is not valid: use [a-zA-Z_][a-zA-Z0-9_]*"#,
        );
    }

    #[test]
    fn set_keeps_order() {
        let mut l = Labels::new("m", [("b", "1")]).unwrap();
        l.set("a", "0");
        l.set("c", "2");
        l.set("b", "");
        assert_eq!(l.to_string(), r#"m{a="0",c="2"}"#);
        assert_eq!(l.get("c"), Some("2"));
    }
}
