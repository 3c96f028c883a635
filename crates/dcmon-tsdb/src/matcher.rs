//! Label matchers with Prometheus semantics: a missing label equals the empty string,
//! and regular expressions match the whole value.

use dcmon_wire::Labels;
use regex::Regex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    RegexMatch,
    RegexNoMatch,
}

/// One `name op "value"` condition on a series' labels.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression {pattern:?} for label {label}: {source}")]
pub struct MatcherError {
    pattern: String,
    label: String,
    #[source]
    source: regex::Error,
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, MatcherError> {
        let regex = match op {
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => Some(
                Regex::new(&format!("^(?s:{value})$")).map_err(|source| MatcherError {
                    pattern: value.to_owned(),
                    label: name.to_owned(),
                    source,
                })?,
            ),
            _ => None,
        };
        Ok(Self {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            regex,
        })
    }

    /// Shorthand for an equality matcher (never fails).
    pub fn equal(name: &str, value: &str) -> Self {
        Self {
            name: name.to_owned(),
            op: MatchOp::Equal,
            value: value.to_owned(),
            regex: None,
        }
    }

    /// Whether `value` (empty when the label is absent) satisfies the matcher.
    pub fn matches_value(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::RegexMatch, Some(r)) => r.is_match(value),
            (MatchOp::RegexNoMatch, Some(r)) => !r.is_match(value),
            // Constructors always compile a regex for the regex ops.
            (_, None) => false,
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).unwrap_or(""))
    }

    /// True when the matcher also matches series that lack the label.
    pub fn matches_empty(&self) -> bool {
        self.matches_value("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(op: MatchOp, pattern: &str, labels: &[(&str, &str)], expect: bool) {
        let l = Labels::new("m", labels.iter().copied()).unwrap();
        assert_eq!(
            Matcher::new("a", op, pattern).unwrap().matches(&l),
            expect,
            "{op:?} {pattern:?} {labels:?}"
        );
    }

    #[test]
    fn prometheus_semantics() {
        check(MatchOp::Equal, "x", &[("a", "x")], true);
        check(MatchOp::Equal, "", &[], true);
        check(MatchOp::Equal, "", &[("a", "x")], false);
        check(MatchOp::NotEqual, "x", &[], true);
        check(MatchOp::RegexMatch, "x|y", &[("a", "y")], true);
        check(MatchOp::RegexMatch, "x", &[("a", "xx")], false);
        check(MatchOp::RegexMatch, ".*", &[], true);
        check(MatchOp::RegexNoMatch, "x.*", &[("a", "xa")], false);
        check(MatchOp::RegexNoMatch, "x.*", &[], true);
    }

    #[test]
    fn bad_regex_names_label() {
        let e = Matcher::new("host", MatchOp::RegexMatch, "(").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid regular expression \"(\" for label host"),
            "{e}"
        );
    }
}
