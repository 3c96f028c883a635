//! The in-memory series index: labels ↔ dense id, and postings (label name=value →
//! sorted ids) so a selector touches only the series it can match.

use crate::SeriesId;
use crate::matcher::{MatchOp, Matcher};
use dcmon_wire::Labels;
use foldhash::fast::FixedState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

/// Interned label strings: every distinct name and value is stored once.
#[derive(Default)]
struct Symbols {
    ids: HashMap<Arc<str>, u32>,
    strs: Vec<Arc<str>>,
}

impl Symbols {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strs.len() as u32;
        let s: Arc<str> = Arc::from(s);
        self.strs.push(s.clone());
        self.ids.insert(s, id);
        id
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn str(&self, id: u32) -> &str {
        &self.strs[id as usize]
    }
}

/// The index keeps each series' labels as interned (name, value) symbol pairs, sorted by
/// name: 8 bytes a label instead of two heap strings, the main part of the store's
/// memory per series.
#[derive(Default)]
pub(crate) struct Index {
    symbols: Symbols,
    /// Labels by id, flattened `[name, value, name, value, ...]`; ids are dense, so slot
    /// `id` (0 and gaps unused).
    series: Vec<Option<Box<[u32]>>>,
    /// Hash of the labels → id; a second series with the same hash goes to `collisions`.
    by_hash: HashMap<u64, u32>,
    collisions: HashMap<u64, Vec<u32>>,
    /// name symbol → value symbol → ids, ascending (ids are created in ascending order).
    postings: HashMap<u32, HashMap<u32, Vec<u32>>>,
    all: Vec<u32>,
}

fn hash_labels(labels: &Labels) -> u64 {
    let mut h = FixedState::default().build_hasher();
    for (k, v) in labels.pairs() {
        h.write(k.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xfe);
    }
    h.finish()
}

impl Index {
    fn slot(id: SeriesId) -> Option<usize> {
        usize::try_from(id).ok()
    }

    fn pairs(&self, slot: u32) -> Option<&[u32]> {
        self.series.get(slot as usize).and_then(|s| s.as_deref())
    }

    fn same(&self, slot: u32, labels: &Labels) -> bool {
        let Some(p) = self.pairs(slot) else {
            return false;
        };
        p.len() == labels.pairs().len() * 2
            && p.chunks_exact(2)
                .zip(labels.pairs())
                .all(|(s, (k, v))| self.symbols.str(s[0]) == k && self.symbols.str(s[1]) == v)
    }

    pub(crate) fn get(&self, labels: &Labels) -> Option<SeriesId> {
        let h = hash_labels(labels);
        let first = *self.by_hash.get(&h)?;
        if self.same(first, labels) {
            return Some(SeriesId::from(first));
        }
        self.collisions
            .get(&h)?
            .iter()
            .find(|&&id| self.same(id, labels))
            .map(|&id| SeriesId::from(id))
    }

    pub(crate) fn contains(&self, id: SeriesId) -> bool {
        Self::slot(id).is_some_and(|i| self.series.get(i).is_some_and(Option::is_some))
    }

    /// The labels of series `id`, built from the interned strings.
    pub(crate) fn labels(&self, id: SeriesId) -> Option<Labels> {
        let p = self.pairs(u32::try_from(Self::slot(id)?).ok()?)?;
        let mut l = Labels::default();
        for s in p.chunks_exact(2) {
            l.set(self.symbols.str(s[0]), self.symbols.str(s[1]));
        }
        Some(l)
    }

    /// The value of label `name` of series `slot` ("" when absent).
    fn value(&self, slot: u32, name: Option<u32>) -> &str {
        let (Some(name), Some(p)) = (name, self.pairs(slot)) else {
            return "";
        };
        p.chunks_exact(2)
            .find(|s| s[0] == name)
            .map_or("", |s| self.symbols.str(s[1]))
    }

    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    /// One past the largest id.
    pub(crate) fn id_bound(&self) -> usize {
        self.series.len()
    }

    /// Series with label `name` = `value`.
    pub(crate) fn count(&self, name: &str, value: &str) -> usize {
        let (Some(n), Some(v)) = (self.symbols.get(name), self.symbols.get(value)) else {
            return 0;
        };
        self.postings
            .get(&n)
            .and_then(|vals| vals.get(&v))
            .map_or(0, Vec::len)
    }

    /// Adds a series; `id` must be larger than every id added before.
    pub(crate) fn insert(&mut self, id: SeriesId, labels: Labels) {
        let slot = u32::try_from(id).expect("series ids are allocated densely from 1");
        if self.series.len() <= slot as usize {
            self.series.resize(slot as usize + 1, None);
        }
        let mut pairs = Vec::with_capacity(labels.pairs().len() * 2);
        for (k, v) in labels.pairs() {
            let (k, v) = (self.symbols.intern(k), self.symbols.intern(v));
            pairs.extend([k, v]);
            self.postings
                .entry(k)
                .or_default()
                .entry(v)
                .or_default()
                .push(slot);
        }
        self.all.push(slot);
        self.series[slot as usize] = Some(pairs.into_boxed_slice());
        let h = hash_labels(&labels);
        match self.by_hash.entry(h) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collisions.entry(h).or_default().push(slot);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(slot);
            }
        }
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
            let name = self.symbols.get(&m.name);
            ids.retain(|&id| m.matches_value(self.value(id, name)));
        }
        ids.into_iter().map(SeriesId::from).collect()
    }

    fn postings_for(&self, m: &Matcher) -> Vec<u32> {
        let Some(values) = self
            .symbols
            .get(&m.name)
            .and_then(|n| self.postings.get(&n))
        else {
            return Vec::new();
        };
        if m.op == MatchOp::Equal {
            return self
                .symbols
                .get(&m.value)
                .and_then(|v| values.get(&v))
                .cloned()
                .unwrap_or_default();
        }
        let mut ids: Vec<u32> = values
            .iter()
            .filter(|(v, _)| m.matches_value(self.symbols.str(**v)))
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Distinct values of label `name`, sorted.
    pub(crate) fn values_of(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .symbols
            .get(name)
            .and_then(|n| self.postings.get(&n))
            .map(|m| m.keys().map(|v| self.symbols.str(*v).to_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Every label name in use, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .postings
            .keys()
            .map(|n| self.symbols.str(*n).to_owned())
            .collect();
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
