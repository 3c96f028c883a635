//! Label matchers (`host=gpu-07`, `severity!=info`, `host=~"rack1-.*"`, `alertname!~X`),
//! used by silences and by channel routes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum MatchOp {
    Eq(String),
    Ne(String),
    Re(regex::Regex),
    NotRe(regex::Regex),
}

/// One parsed matcher; its text form is what is stored and shown.
#[derive(Debug, Clone)]
pub struct LabelMatcher {
    pub text: String,
    name: String,
    op: MatchOp,
}

impl LabelMatcher {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let pos = t.find(['=', '!']).ok_or_else(|| {
            format!("matcher {t:?}: use name=value, name!=value, name=~regex or name!~regex")
        })?;
        let name = t[..pos].trim().to_owned();
        if !super::rules::is_label_name(&name) {
            return Err(format!("matcher {t:?}: {name:?} is not a label name"));
        }
        let rest = &t[pos..];
        let (op, value) = ["!~", "=~", "!=", "="]
            .iter()
            .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v)))
            .ok_or_else(|| format!("matcher {t:?}: use =, !=, =~ or !~"))?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value)
            .to_owned();
        let re = |v: &str| {
            regex::Regex::new(&format!("^(?:{v})$"))
                .map_err(|e| format!("matcher {t:?}: bad regex: {e}"))
        };
        let op = match op {
            "=" => MatchOp::Eq(value),
            "!=" => MatchOp::Ne(value),
            "=~" => MatchOp::Re(re(&value)?),
            _ => MatchOp::NotRe(re(&value)?),
        };
        Ok(Self {
            text: t.to_owned(),
            name,
            op,
        })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match &self.op {
            MatchOp::Eq(x) => v == x,
            MatchOp::Ne(x) => v != x,
            MatchOp::Re(r) => r.is_match(v),
            MatchOp::NotRe(r) => !r.is_match(v),
        }
    }
}

/// Parses every matcher, reporting the first bad one.
pub fn parse_all(texts: &[String]) -> Result<Vec<LabelMatcher>, String> {
    texts.iter().map(|t| LabelMatcher::parse(t)).collect()
}

/// A silence: alerts matching all its matchers between `starts_ms` and `ends_ms` are
/// not notified (they still fire and show, marked silenced).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceRecord {
    pub id: i64,
    pub matchers: Vec<String>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub author: String,
    pub comment: String,
    pub created_ms: i64,
}

/// A silence as the API and CLI give it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    pub matchers: Vec<String>,
    /// Default: now.
    #[serde(default)]
    pub starts_ms: Option<i64>,
    /// Either `ends_ms` or `duration` (`"2h"`).
    #[serde(default)]
    pub ends_ms: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<std::time::Duration>,
    #[serde(default)]
    pub comment: String,
}

/// Silences in force, parsed once per reload.
#[derive(Debug, Default)]
pub struct ActiveSilences(Vec<(SilenceRecord, Vec<LabelMatcher>)>);

impl ActiveSilences {
    pub fn new(records: Vec<SilenceRecord>) -> Self {
        Self(
            records
                .into_iter()
                .filter_map(|r| parse_all(&r.matchers).ok().map(|m| (r, m)))
                .collect(),
        )
    }

    /// The silence that covers `labels` at `now_ms`, if any.
    pub fn silencing(&self, labels: &BTreeMap<String, String>, now_ms: i64) -> Option<i64> {
        self.0
            .iter()
            .find(|(r, m)| {
                r.starts_ms <= now_ms && now_ms < r.ends_ms && m.iter().all(|m| m.matches(labels))
            })
            .map(|(r, _)| r.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(matcher: &str, host: &str, expect: bool) {
        let labels: BTreeMap<String, String> =
            [("host".to_owned(), host.to_owned())].into_iter().collect();
        assert_eq!(
            LabelMatcher::parse(matcher).unwrap().matches(&labels),
            expect,
            "{matcher} {host}"
        );
    }

    #[test]
    fn matchers() {
        check("host=gpu-1", "gpu-1", true);
        check("host!=gpu-1", "gpu-1", false);
        check("host=~\"gpu-.*\"", "gpu-1", true);
        check("host=~gpu", "gpu-1", false);
        check("host!~rack2-.*", "gpu-1", true);
        check("team=", "gpu-1", true);
        for bad in ["host", "1x=y", "host=~(", ""] {
            assert!(LabelMatcher::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn silences_cover_their_window_only() {
        let s = ActiveSilences::new(vec![SilenceRecord {
            id: 7,
            matchers: vec!["host=a".into()],
            starts_ms: 100,
            ends_ms: 200,
            author: "t".into(),
            comment: String::new(),
            created_ms: 0,
        }]);
        let l: BTreeMap<String, String> =
            [("host".to_owned(), "a".to_owned())].into_iter().collect();
        assert_eq!(s.silencing(&l, 50), None);
        assert_eq!(s.silencing(&l, 150), Some(7));
        assert_eq!(s.silencing(&l, 200), None);
    }
}
