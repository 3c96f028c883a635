//! The in-memory series index: labels ↔ dense id, and postings (label name=value →
//! sorted ids) so a selector touches only the series it can match.

use crate::SeriesId;
use crate::matcher::{MatchOp, Matcher};
use dcmon_wire::Labels;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Default)]
pub(crate) struct Index {
    by_labels: HashMap<Arc<Labels>, SeriesId>,
    /// Labels by id; ids are dense, so slot `id` (0 and gaps unused).
    labels: Vec<Option<Arc<Labels>>>,
    /// name → value → ids, ascending (ids are created in ascending order).
    postings: HashMap<String, HashMap<String, Vec<u32>>>,
    all: Vec<u32>,
}

impl Index {
    pub(crate) fn get(&self, labels: &Labels) -> Option<SeriesId> {
        self.by_labels.get(labels).copied()
    }

    pub(crate) fn labels(&self, id: SeriesId) -> Option<&Arc<Labels>> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.labels.get(i))
            .and_then(Option::as_ref)
    }

    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    /// One past the largest id.
    pub(crate) fn id_bound(&self) -> usize {
        self.labels.len()
    }

    /// Series with label `name` = `value`.
    pub(crate) fn count(&self, name: &str, value: &str) -> usize {
        self.postings
            .get(name)
            .and_then(|v| v.get(value))
            .map_or(0, Vec::len)
    }

    /// Adds a series; `id` must be larger than every id added before.
    pub(crate) fn insert(&mut self, id: SeriesId, labels: Labels) {
        let slot = u32::try_from(id).expect("series ids are allocated densely from 1");
        let labels = Arc::new(labels);
        if self.labels.len() <= slot as usize {
            self.labels.resize(slot as usize + 1, None);
        }
        for (k, v) in labels.pairs() {
            self.postings
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .push(slot);
        }
        self.all.push(slot);
        self.labels[slot as usize] = Some(labels.clone());
        self.by_labels.insert(labels, id);
    }

    /// Ids of the series satisfying every matcher, ascending.
    pub(crate) fn matching(&self, matchers: &[Matcher]) -> Vec<SeriesId> {
        let mut found: Option<Vec<u32>> = None;
        for m in matchers.iter().filter(|m| !m.matches_empty()) {
            let ids = self.postings_for(m);
            found = Some(match found {
                None => ids,
                Some(prev) => intersect(&prev, &ids),
            });
            if found.as_ref().is_some_and(Vec::is_empty) {
                return Vec::new();
            }
        }
        let mut ids = found.unwrap_or_else(|| self.all.clone());
        // Matchers that also match an absent label cannot use postings: check each series.
        for m in matchers.iter().filter(|m| m.matches_empty()) {
            ids.retain(|&id| {
                self.labels[id as usize]
                    .as_ref()
                    .is_some_and(|l| m.matches(l))
            });
        }
        ids.into_iter().map(SeriesId::from).collect()
    }

    fn postings_for(&self, m: &Matcher) -> Vec<u32> {
        let Some(values) = self.postings.get(&m.name) else {
            return Vec::new();
        };
        if m.op == MatchOp::Equal {
            return values.get(&m.value).cloned().unwrap_or_default();
        }
        let mut ids: Vec<u32> = values
            .iter()
            .filter(|(v, _)| m.matches_value(v))
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Distinct values of label `name`, sorted.
    pub(crate) fn values_of(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .postings
            .get(name)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Every label name in use, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.postings.keys().cloned().collect();
        v.sort();
        v
    }
}

fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn index(series: &[Labels]) -> Index {
        let mut ix = Index::default();
        for (i, l) in series.iter().enumerate() {
            ix.insert(i as SeriesId + 1, l.clone());
        }
        ix
    }

    fn check(matchers: &[Matcher], expect: &[SeriesId]) {
        let series = [
            Labels::new("up", [("host", "a")]).unwrap(),
            Labels::new("up", [("host", "b"), ("job", "x")]).unwrap(),
            Labels::new("load", [("host", "a")]).unwrap(),
        ];
        assert_eq!(index(&series).matching(matchers), expect, "{matchers:?}");
    }

    #[test]
    fn postings_select_like_prometheus() {
        check(&[], &[1, 2, 3]);
        check(&[Matcher::equal("__name__", "up")], &[1, 2]);
        check(
            &[
                Matcher::equal("__name__", "up"),
                Matcher::equal("host", "a"),
            ],
            &[1],
        );
        check(&[Matcher::equal("job", "")], &[1, 3]);
        check(
            &[Matcher::new("job", MatchOp::NotEqual, "x").unwrap()],
            &[1, 3],
        );
        check(
            &[Matcher::new("host", MatchOp::RegexMatch, "b|c").unwrap()],
            &[2],
        );
        check(
            &[Matcher::new("host", MatchOp::RegexNoMatch, "a").unwrap()],
            &[2],
        );
        check(&[Matcher::equal("nope", "1")], &[]);
    }

    fn arb_matcher() -> impl Strategy<Value = Matcher> {
        let op = prop_oneof![
            Just(MatchOp::Equal),
            Just(MatchOp::NotEqual),
            Just(MatchOp::RegexMatch),
            Just(MatchOp::RegexNoMatch),
        ];
        let value = prop_oneof![
            Just(""),
            Just("a"),
            Just("b"),
            Just("a|b"),
            Just(".*"),
            Just(".+"),
            Just("x.*")
        ];
        (
            prop_oneof![Just("__name__"), Just("host"), Just("gpu")],
            op,
            value,
        )
            .prop_map(|(n, op, v)| Matcher::new(n, op, v).unwrap())
    }

    proptest! {
        #[test]
        fn postings_equal_a_scan(
            series in proptest::collection::vec(
                (prop_oneof![Just("up"), Just("xa")], prop_oneof![Just(""), Just("a"), Just("b"), Just("xb")], prop_oneof![Just(""), Just("a"), Just("x")]),
                0..30,
            ),
            matchers in proptest::collection::vec(arb_matcher(), 0..4),
        ) {
            let mut seen = std::collections::HashSet::new();
            let series: Vec<Labels> = series
                .into_iter()
                .map(|(m, h, g)| Labels::new(m, [("host", h), ("gpu", g)]).unwrap())
                .filter(|l| seen.insert(l.clone()))
                .collect();
            let ix = index(&series);
            let scan: Vec<SeriesId> = series
                .iter()
                .enumerate()
                .filter(|(_, l)| matchers.iter().all(|m| m.matches(l)))
                .map(|(i, _)| i as SeriesId + 1)
                .collect();
            prop_assert_eq!(ix.matching(&matchers), scan);
        }
    }
}
