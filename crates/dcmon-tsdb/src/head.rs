//! The in-memory head of one series: samples accepted but not yet sealed into a chunk,
//! and the decision what to do with a new sample (append, insert out of order, drop as a
//! duplicate, reject). Pure: no IO; the writer asks the store only when a sample falls
//! into the already sealed range.

use crate::headbuf::SampleBuf;

/// Sealed samples a head keeps in memory: 32 cover Prometheus' 5-minute lookback at a
/// 10 s interval, for 60–120 bytes.
pub(crate) const TAIL_SAMPLES: usize = 32;

/// The last [`TAIL_SAMPLES`] of `samples` (ascending), compressed.
pub(crate) fn tail_of(samples: &[(i64, f64)]) -> SampleBuf {
    SampleBuf::from_slice(&samples[samples.len().saturating_sub(TAIL_SAMPLES)..])
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

#[derive(Default)]
pub(crate) struct Head {
    /// Unsealed samples, ascending, all after `sealed_max`, compressed.
    pub(crate) samples: SampleBuf,
    /// Accepted samples at or before `sealed_max`, ascending, merged into chunks at the next seal.
    pub(crate) ooo: Vec<(i64, f64)>,
    /// Timestamp of the newest sealed sample.
    pub(crate) sealed_max: Option<i64>,
    /// Every sample of this series in log rows up to this seq is in a chunk.
    pub(crate) sealed_log_seq: u64,
    /// Seq of the oldest log row holding an unsealed sample of this series; 0 when none.
    pub(crate) first_log_seq: u64,
    /// The newest sealed samples (up to [`TAIL_SAMPLES`]), compressed, so instant
    /// queries and short windows over recently sealed data never need the database.
    pub(crate) tail: SampleBuf,
}

impl Head {
    fn newest(&self) -> Option<i64> {
        self.samples.last().map(|s| s.0).or(self.sealed_max)
    }

    /// Decides about one sample and applies it when it belongs in the head.
    pub(crate) fn offer(&mut self, t: i64, v: f64, window_ms: i64) -> Verdict {
        let Some(newest) = self.newest() else {
            self.samples.push(t, v);
            return Verdict::Appended;
        };
        if t > newest {
            self.samples.push(t, v);
            return Verdict::Appended;
        }
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
                    Verdict::Inserted
                }
            };
        }
        match self.ooo.binary_search_by_key(&t, |s| s.0) {
            Ok(i) => same(self.ooo[i].1),
            Err(_) => Verdict::Sealed,
        }
    }

    /// Keeps a sample of the sealed range that the sealed chunks do not have yet.
    pub(crate) fn accept_sealed(&mut self, t: i64, v: f64) {
        if let Err(i) = self.ooo.binary_search_by_key(&t, |s| s.0) {
            self.ooo.insert(i, (t, v));
        }
    }

    /// Re-applies a logged sample at open. It was accepted once, so no window applies;
    /// a repeat (the same row replayed twice cannot happen, but be safe) is skipped.
    pub(crate) fn replay(&mut self, t: i64, v: f64) {
        if self.sealed_max.is_some_and(|s| t <= s) {
            self.accept_sealed(t, v);
        } else if self.samples.last().is_none_or(|l| t > l.0) {
            self.samples.push(t, v);
        } else {
            let mut list = self.samples.to_vec();
            if let Err(i) = list.binary_search_by_key(&t, |s| s.0) {
                list.insert(i, (t, v));
                self.samples.replace(&list);
            }
        }
    }

    /// Whether anything waits to be sealed.
    pub(crate) fn is_unsealed(&self) -> bool {
        !self.samples.is_empty() || !self.ooo.is_empty()
    }

    /// Samples of the head and of the out-of-order list within `[start, end]`.
    pub(crate) fn read(&self, start: i64, end: i64, out: &mut Vec<(i64, f64)>) {
        let from = self.ooo.partition_point(|s| s.0 < start);
        let to = self.ooo.partition_point(|s| s.0 <= end);
        if from < to {
            out.extend_from_slice(&self.ooo[from..to]);
        }
        self.samples.read(start, end, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: i64 = 100;

    fn check(sealed_max: Option<i64>, head: &[i64], ooo: &[i64], t: i64, v: f64, expect: Verdict) {
        let mut h = Head {
            samples: SampleBuf::from_slice(&head.iter().map(|&t| (t, 1.0)).collect::<Vec<_>>()),
            ooo: ooo.iter().map(|&t| (t, 1.0)).collect(),
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
    fn replay_rebuilds_order() {
        let mut h = Head {
            sealed_max: Some(10),
            ..Head::default()
        };
        for t in [30, 20, 5, 30, 40] {
            h.replay(t, t as f64);
        }
        assert_eq!(h.samples, vec![(20, 20.0), (30, 30.0), (40, 40.0)]);
        assert_eq!(h.ooo, vec![(5, 5.0)]);
        let mut out = Vec::new();
        h.read(5, 30, &mut out);
        assert_eq!(out, vec![(5, 5.0), (20, 20.0), (30, 30.0)]);
    }
}
