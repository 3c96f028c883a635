//! The in-memory series index: labels ↔ dense id, and postings (label name=value →
//! sorted ids) so a selector touches only the series it can match.

use crate::SeriesId;
use crate::matcher::{MatchOp, Matcher};
use dcmon_wire::Labels;
use foldhash::fast::FixedState;
use hashbrown::HashTable;
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
/// memory per series. Everything per series sits in a few long vectors (no allocation
/// per series), grown by an eighth at a time rather than doubled.
#[derive(Default)]
pub(crate) struct Index {
    symbols: Symbols,
    /// Every series' labels, flattened `[name, value, name, value, ...]`, in id order.
    label_syms: Vec<u32>,
    /// `label_ends[id]`: where series `id`'s labels end in `label_syms` (they start
    /// where `id - 1`'s end). Ids are dense, so slot `id`; slot 0 and gaps hold no labels,
    /// and every series has at least `__name__`, so an empty range is an absent series.
    label_ends: Vec<u32>,
    /// Series held.
    count: usize,
    /// Ids by the hash of their labels ([`hash_labels`]); equal hashes are told apart by
    /// comparing the labels.
    by_hash: HashTable<u32>,
    /// name symbol → value symbol → ids, ascending (ids are created in ascending order).
    postings: HashMap<u32, HashMap<u32, Vec<u32>>>,
}

fn hash_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = FixedState::default().build_hasher();
    for (k, v) in pairs {
        h.write(k.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xfe);
    }
    h.finish()
}

fn hash_labels(labels: &Labels) -> u64 {
    hash_pairs(labels.pairs().iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Pushes with room for an eighth more instead of doubling: these vectors hold an entry
/// or two per series for the life of the store, and copying one now and then is cheap
/// beside keeping up to half of it unused.
fn push_tight<T>(v: &mut Vec<T>, x: T) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 8).max(4));
    }
    v.push(x);
}

/// The label symbols of series `slot` (empty when there is none).
fn pairs_of<'a>(syms: &'a [u32], ends: &[u32], slot: u32) -> &'a [u32] {
    let slot = slot as usize;
    let Some(&end) = ends.get(slot) else {
        return &[];
    };
    let start = if slot == 0 { 0 } else { ends[slot - 1] };
    &syms[start as usize..end as usize]
}

fn hash_of_slot(symbols: &Symbols, syms: &[u32], ends: &[u32], slot: u32) -> u64 {
    hash_pairs(
        pairs_of(syms, ends, slot)
            .chunks_exact(2)
            .map(|s| (symbols.str(s[0]), symbols.str(s[1]))),
    )
}

impl Index {
    fn slot(id: SeriesId) -> Option<u32> {
        u32::try_from(id).ok()
    }

    fn pairs(&self, slot: u32) -> &[u32] {
        pairs_of(&self.label_syms, &self.label_ends, slot)
    }

    fn same(&self, slot: u32, labels: &Labels) -> bool {
        let p = self.pairs(slot);
        p.len() == labels.pairs().len() * 2
            && p.chunks_exact(2)
                .zip(labels.pairs())
                .all(|(s, (k, v))| self.symbols.str(s[0]) == k && self.symbols.str(s[1]) == v)
    }

    pub(crate) fn get(&self, labels: &Labels) -> Option<SeriesId> {
        self.by_hash
            .find(hash_labels(labels), |&slot| self.same(slot, labels))
            .map(|&slot| SeriesId::from(slot))
    }

    pub(crate) fn contains(&self, id: SeriesId) -> bool {
        Self::slot(id).is_some_and(|slot| !self.pairs(slot).is_empty())
    }

    /// The labels of series `id`, built from the interned strings.
    pub(crate) fn labels(&self, id: SeriesId) -> Option<Labels> {
        let p = self.pairs(Self::slot(id)?);
        if p.is_empty() {
            return None;
        }
        let mut l = Labels::default();
        for s in p.chunks_exact(2) {
            l.set(self.symbols.str(s[0]), self.symbols.str(s[1]));
        }
        Some(l)
    }

    /// The value of label `name` of series `slot` ("" when absent).
    fn value(&self, slot: u32, name: Option<u32>) -> &str {
        let Some(name) = name else {
            return "";
        };
        self.pairs(slot)
            .chunks_exact(2)
            .find(|s| s[0] == name)
            .map_or("", |s| self.symbols.str(s[1]))
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// One past the largest id.
    pub(crate) fn id_bound(&self) -> usize {
        self.label_ends.len()
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
        let end = |syms: &Vec<u32>| {
            u32::try_from(syms.len()).expect("under 2^32 label symbols: 16 GiB of labels")
        };
        while self.label_ends.len() < slot as usize {
            push_tight(&mut self.label_ends, end(&self.label_syms));
        }
        for (k, v) in labels.pairs() {
            let (k, v) = (self.symbols.intern(k), self.symbols.intern(v));
            push_tight(&mut self.label_syms, k);
            push_tight(&mut self.label_syms, v);
            push_tight(
                self.postings.entry(k).or_default().entry(v).or_default(),
                slot,
            );
        }
        push_tight(&mut self.label_ends, end(&self.label_syms));
        self.count += 1;
        let (symbols, syms, ends) = (&self.symbols, &self.label_syms, &self.label_ends);
        self.by_hash
            .insert_unique(hash_labels(&labels), slot, |&s| {
                hash_of_slot(symbols, syms, ends, s)
            });
    }

    /// Every series id, ascending.
    fn all(&self) -> Vec<u32> {
        let mut ids = Vec::with_capacity(self.count);
        ids.extend((0..self.label_ends.len() as u32).filter(|&slot| !self.pairs(slot).is_empty()));
        ids
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
        let mut ids = found.unwrap_or_else(|| self.all());
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

    #[test]
    fn lookups_survive_growth_and_gaps() {
        let mut ix = Index::default();
        let l = |i: usize| Labels::new("m", [("i", i.to_string().as_str())]).unwrap();
        // Gaps (ids 2 and 4..9) hold no series; the hash table grows (and rehashes from
        // the stored symbols) many times on the way to 3,000.
        let ids: Vec<SeriesId> = [1, 3].into_iter().chain(10..3_000).collect();
        for (i, &id) in ids.iter().enumerate() {
            ix.insert(id, l(i));
        }
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(ix.get(&l(i)), Some(id));
            assert_eq!(ix.labels(id), Some(l(i)));
        }
        assert_eq!(ix.get(&l(ids.len())), None);
        assert!(!ix.contains(0) && !ix.contains(2) && !ix.contains(5) && !ix.contains(3_000));
        assert_eq!(ix.labels(2), None);
        assert_eq!((ix.len(), ix.id_bound()), (ids.len(), 3_000));
        assert_eq!(ix.matching(&[]), ids);
        assert_eq!(ix.count("__name__", "m"), ids.len());
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
