//! The in-memory head of one series: samples accepted but not yet sealed into a chunk,
//! and the decision what to do with a new sample (append, insert out of order, drop as a
//! duplicate, reject). Pure: no IO; the writer asks the store only when a sample falls
//! into the already sealed range.

use crate::SeriesId;
use crate::headbuf::{FrozenBuf, SampleBuf};
use std::sync::{Mutex, PoisonError};

/// Samples a head keeps in memory at least, sealed or not: 32 cover Prometheus' 5-minute
/// lookback at a 10 s interval, for 60–120 bytes.
pub(crate) const TAIL_SAMPLES: usize = 32;

/// The last [`TAIL_SAMPLES`] of `samples` (ascending), compressed.
pub(crate) fn tail_of(samples: &[(i64, f64)]) -> FrozenBuf {
    FrozenBuf::from_slice(&samples[samples.len().saturating_sub(TAIL_SAMPLES)..])
}

/// What became of one offered sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Newer than everything: appended to the head.
    Appended,
    /// Out of order, inside the window, after the sealed range: inserted in the head.
    Inserted,
    /// Same timestamp and value bits as a stored sample: nothing to do (a retry).
    Duplicate,
    /// Older than the out-of-order window allows.
    TooOld,
    /// Same timestamp as a stored sample with another value.
    DuplicateTimestamp,
    /// Inside the window but at or before the newest sealed sample: the caller checks the
    /// sealed chunk for a conflict, then calls [`Head::accept_sealed`].
    Sealed,
}

/// One per series, so every byte here counts a million times: 96 bytes inline (asserted
/// in the tests), the out-of-order list boxed because almost every head has none.
#[derive(Default)]
pub(crate) struct Head {
    /// Unsealed samples, ascending, all after `sealed_max`, compressed.
    pub(crate) samples: SampleBuf,
    /// The newest sealed samples (up to [`TAIL_SAMPLES`]), compressed, so instant
    /// queries and short windows over recently sealed data never need the database.
    /// Dropped once `samples` holds [`TAIL_SAMPLES`] itself: from then on the head alone
    /// covers those windows, and most heads, most of the time, carry no tail.
    pub(crate) tail: FrozenBuf,
    /// Timestamp of the newest sealed sample.
    pub(crate) sealed_max: Option<i64>,
    /// Seq of the oldest log row holding an unsealed sample of this series; 0 when none.
    pub(crate) first_log_seq: u64,
    /// Accepted samples at or before `sealed_max`, ascending, merged into chunks at the
    /// next seal; `None` when empty.
    #[expect(
        clippy::box_collection,
        reason = "8 bytes in every head instead of a Vec's 24, for a list almost every head lacks"
    )]
    ooo: Option<Box<Vec<(i64, f64)>>>,
}

impl Head {
    /// Called after every sample added to `samples`.
    fn grown(&mut self) {
        if self.samples.len() >= TAIL_SAMPLES && !self.tail.is_empty() {
            self.tail = FrozenBuf::default();
        }
    }

    fn newest(&self) -> Option<i64> {
        self.samples.last().map(|s| s.0).or(self.sealed_max)
    }

    /// Decides about one sample and applies it when it belongs in the head.
    pub(crate) fn offer(&mut self, t: i64, v: f64, window_ms: i64) -> Verdict {
        let newest = match self.newest() {
            Some(newest) if t <= newest => newest,
            _ => {
                self.samples.push(t, v);
                self.grown();
                return Verdict::Appended;
            }
        };
        if t < newest.saturating_sub(window_ms) {
            return Verdict::TooOld;
        }
        let same = |stored: f64| {
            if stored.to_bits() == v.to_bits() {
                Verdict::Duplicate
            } else {
                Verdict::DuplicateTimestamp
            }
        };
        if self.sealed_max.is_none_or(|s| t > s) {
            // A retry of the newest sample is the common case: no decoding.
            if let Some((lt, lv)) = self.samples.last() {
                if lt == t {
                    return same(lv);
                }
            }
            let mut list = self.samples.to_vec();
            return match list.binary_search_by_key(&t, |s| s.0) {
                Ok(i) => same(list[i].1),
                Err(i) => {
                    list.insert(i, (t, v));
                    self.samples.replace(&list);
                    self.grown();
                    Verdict::Inserted
                }
            };
        }
        let ooo = self.ooo();
        match ooo.binary_search_by_key(&t, |s| s.0) {
            Ok(i) => same(ooo[i].1),
            Err(_) => Verdict::Sealed,
        }
    }

    /// Accepted samples of the sealed range not merged into chunks yet, ascending.
    pub(crate) fn ooo(&self) -> &[(i64, f64)] {
        self.ooo.as_deref().map_or(&[], Vec::as_slice)
    }

    /// Forgets the oldest `n` out-of-order samples (merged into chunks).
    pub(crate) fn drain_ooo(&mut self, n: usize) {
        if let Some(list) = &mut self.ooo {
            list.drain(..n.min(list.len()));
            if list.is_empty() {
                self.ooo = None;
            }
        }
    }

    /// Keeps a sample of the sealed range that the sealed chunks do not have yet.
    pub(crate) fn accept_sealed(&mut self, t: i64, v: f64) {
        let list = self.ooo.get_or_insert_default();
        if let Err(i) = list.binary_search_by_key(&t, |s| s.0) {
            list.insert(i, (t, v));
        }
    }

    /// Re-applies a logged sample at open. It was accepted once, so no window applies;
    /// a repeat (the same row replayed twice cannot happen, but be safe) is skipped.
    pub(crate) fn replay(&mut self, t: i64, v: f64) {
        if self.sealed_max.is_some_and(|s| t <= s) {
            self.accept_sealed(t, v);
        } else if self.samples.last().is_none_or(|l| t > l.0) {
            self.samples.push(t, v);
            self.grown();
        } else {
            let mut list = self.samples.to_vec();
            if let Err(i) = list.binary_search_by_key(&t, |s| s.0) {
                list.insert(i, (t, v));
                self.samples.replace(&list);
                self.grown();
            }
        }
    }

    /// Whether anything waits to be sealed.
    pub(crate) fn is_unsealed(&self) -> bool {
        !self.samples.is_empty() || self.ooo.is_some()
    }

    /// Samples of the head and of the out-of-order list within `[start, end]`.
    pub(crate) fn read(&self, start: i64, end: i64, out: &mut Vec<(i64, f64)>) {
        let ooo = self.ooo();
        let from = ooo.partition_point(|s| s.0 < start);
        let to = ooo.partition_point(|s| s.0 <= end);
        if from < to {
            out.extend_from_slice(&ooo[from..to]);
        }
        self.samples.read(start, end, out);
    }
}

/// Heads by series id, in pages of [`HEADS_PER_PAGE`]: growing never copies the heads
/// or leaves a doubled vector's unused half behind, so the table costs what its series
/// hold plus at most one page.
#[derive(Default)]
pub(crate) struct Heads {
    pages: Vec<Box<[Mutex<Head>]>>,
}

/// 1,024 heads, about 100 KiB a page.
const HEADS_PER_PAGE: usize = 1024;

impl Heads {
    fn position(id: SeriesId) -> Option<(usize, usize)> {
        let i = usize::try_from(id).ok()?;
        Some((i / HEADS_PER_PAGE, i % HEADS_PER_PAGE))
    }

    /// The head of series `id`, if the table reaches that far.
    pub(crate) fn get(&self, id: SeriesId) -> Option<&Mutex<Head>> {
        let (page, slot) = Self::position(id)?;
        self.pages.get(page).map(|p| &p[slot])
    }

    /// The head of series `id` without locking (the table is not shared yet).
    pub(crate) fn get_mut(&mut self, id: SeriesId) -> Option<&mut Head> {
        let (page, slot) = Self::position(id)?;
        self.pages
            .get_mut(page)
            .map(|p| p[slot].get_mut().unwrap_or_else(PoisonError::into_inner))
    }

    /// Makes room up to series `id`.
    pub(crate) fn grow_to(&mut self, id: SeriesId) {
        let Some((page, _)) = Self::position(id) else {
            return;
        };
        while self.pages.len() <= page {
            self.pages
                .push((0..HEADS_PER_PAGE).map(|_| Mutex::default()).collect());
        }
    }

    /// Every head slot with its series id (slots of unused ids included).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (SeriesId, &Mutex<Head>)> {
        self.pages
            .iter()
            .flat_map(|p| p.iter())
            .enumerate()
            .map(|(i, h)| (i as SeriesId, h))
    }

    /// Every head, unlocked (the table is not shared yet).
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Head> {
        self.pages
            .iter_mut()
            .flat_map(|p| p.iter_mut())
            .map(|h| h.get_mut().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: i64 = 100;

    fn check(sealed_max: Option<i64>, head: &[i64], ooo: &[i64], t: i64, v: f64, expect: Verdict) {
        let mut h = Head {
            samples: SampleBuf::from_slice(&head.iter().map(|&t| (t, 1.0)).collect::<Vec<_>>()),
            ooo: (!ooo.is_empty()).then(|| Box::new(ooo.iter().map(|&t| (t, 1.0)).collect())),
            sealed_max,
            ..Head::default()
        };
        assert_eq!(
            h.offer(t, v, W),
            expect,
            "sealed {sealed_max:?} head {head:?} ooo {ooo:?} t {t}"
        );
        assert!(h.samples.to_vec().windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn verdicts() {
        use Verdict::*;
        check(None, &[], &[], i64::MIN, 1.0, Appended);
        check(None, &[10], &[], 11, 1.0, Appended);
        check(None, &[10, 20], &[], 15, 1.0, Inserted);
        check(None, &[10, 20], &[], 20, 1.0, Duplicate);
        check(None, &[10, 20], &[], 20, 2.0, DuplicateTimestamp);
        check(None, &[200], &[], 99, 1.0, TooOld);
        check(None, &[200], &[], 100, 1.0, Inserted);
        check(Some(50), &[], &[], 51, 1.0, Appended);
        check(Some(50), &[60], &[], 40, 1.0, Sealed);
        check(Some(50), &[60], &[40], 40, 1.0, Duplicate);
        check(Some(50), &[60], &[40], 40, 0.0, DuplicateTimestamp);
        check(Some(500), &[], &[], 399, 1.0, TooOld);
        // -0.0 and 0.0 differ in bits: a conflict, not a duplicate.
        check(None, &[10, 20], &[], 10, -0.0, DuplicateTimestamp);
    }

    #[test]
    fn a_head_stays_small() {
        // One per series: a regression here costs memory per series.
        assert_eq!(std::mem::size_of::<Head>(), 96);
        assert!(std::mem::size_of::<Mutex<Head>>() <= 104);
    }

    #[test]
    fn the_tail_goes_once_the_head_covers_as_much() {
        let sealed: Vec<(i64, f64)> = (0..40).map(|t| (t, 1.0)).collect();
        let mut h = Head {
            sealed_max: Some(39),
            tail: tail_of(&sealed),
            ..Head::default()
        };
        assert_eq!(h.tail.to_vec(), sealed[8..]);
        for t in 40..40 + TAIL_SAMPLES as i64 - 1 {
            assert_eq!(h.offer(t, 2.0, W), Verdict::Appended);
        }
        assert!(
            !h.tail.is_empty(),
            "head and tail together hold the newest samples"
        );
        h.replay(100, 2.0);
        assert!(h.tail.is_empty());
    }

    #[test]
    fn out_of_order_list_is_freed_when_drained() {
        let mut h = Head {
            sealed_max: Some(100),
            ..Head::default()
        };
        h.accept_sealed(50, 1.0);
        h.accept_sealed(40, 2.0);
        h.accept_sealed(50, 3.0);
        assert_eq!(h.ooo(), [(40, 2.0), (50, 1.0)]);
        assert!(h.is_unsealed());
        h.drain_ooo(1);
        assert_eq!(h.ooo(), [(50, 1.0)]);
        h.drain_ooo(1);
        assert!(h.ooo.is_none() && !h.is_unsealed());
    }

    #[test]
    fn heads_grow_by_pages_and_number_slots_by_id() {
        let mut heads = Heads::default();
        assert!(heads.get(0).is_none() && heads.get(-1).is_none());
        heads.grow_to(HEADS_PER_PAGE as SeriesId);
        assert_eq!(heads.pages.len(), 2);
        heads.get_mut(1500).unwrap().first_log_seq = 7;
        let (id, h) = heads
            .iter()
            .find(|(_, h)| h.lock().unwrap().first_log_seq == 7)
            .unwrap();
        assert_eq!(id, 1500);
        assert!(std::ptr::eq(h, heads.get(1500).unwrap()));
        assert!(heads.get(2 * HEADS_PER_PAGE as SeriesId).is_none());
        assert_eq!(heads.iter_mut().count(), 2 * HEADS_PER_PAGE);
    }

    #[test]
    fn replay_rebuilds_order() {
        let mut h = Head {
            sealed_max: Some(10),
            ..Head::default()
        };
        for t in [30, 20, 5, 30, 40] {
            h.replay(t, t as f64);
        }
        assert_eq!(h.samples, vec![(20, 20.0), (30, 30.0), (40, 40.0)]);
        assert_eq!(h.ooo(), [(5, 5.0)]);
        let mut out = Vec::new();
        h.read(5, 30, &mut out);
        assert_eq!(out, vec![(5, 5.0), (20, 20.0), (30, 30.0)]);
    }
}
