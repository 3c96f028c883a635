//! Rollups: per-bucket min, max, sum, count and last of raw samples, and the bytes they
//! are stored as once the raw samples expire.
//!
//! A bucket may be aggregated in parts (the raw samples of one bucket can sit in two
//! chunks that expire at different times); parts merge exactly because every aggregate
//! here is associative, provided they are merged oldest part first (for `last`).

use dcmon_chunk::ChunkError;

const VERSION: u8 = 1;

/// A rollup resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    FiveMinutes,
    OneHour,
}

impl Resolution {
    pub const ALL: [Resolution; 2] = [Resolution::FiveMinutes, Resolution::OneHour];

    /// Bucket width in milliseconds.
    pub fn ms(self) -> i64 {
        match self {
            Self::FiveMinutes => 5 * 60 * 1000,
            Self::OneHour => 3600 * 1000,
        }
    }

    pub(crate) fn from_ms(ms: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.ms() == ms)
    }

    /// The start of the bucket holding `t`.
    pub fn bucket_start(self, t: i64) -> i64 {
        t.div_euclid(self.ms()) * self.ms()
    }
}

/// The aggregates of one bucket, `[start_ms, start_ms + resolution)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub start_ms: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
    /// The value of the newest sample in the bucket.
    pub last: f64,
}

impl Bucket {
    fn of(start_ms: i64, v: f64) -> Self {
        Self {
            start_ms,
            min: v,
            max: v,
            sum: v,
            count: 1,
            last: v,
        }
    }

    /// Folds in a later part of the same bucket.
    fn merge_later(&mut self, later: &Bucket) {
        self.min = self.min.min(later.min);
        self.max = self.max.max(later.max);
        self.sum += later.sum;
        self.count += later.count;
        self.last = later.last;
    }
}

/// Aggregates samples sorted by time into buckets, oldest first.
pub(crate) fn aggregate(samples: &[(i64, f64)], res: Resolution) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for &(t, v) in samples {
        let start = res.bucket_start(t);
        match out.last_mut() {
            Some(b) if b.start_ms == start => b.merge_later(&Bucket::of(start, v)),
            _ => out.push(Bucket::of(start, v)),
        }
    }
    out
}

/// Merges `later` (buckets of newer samples) into `acc`; both sorted by start.
pub(crate) fn merge(acc: &mut Vec<Bucket>, later: &[Bucket]) {
    let mut merged = Vec::with_capacity(acc.len() + later.len());
    let (mut i, mut j) = (0, 0);
    while i < acc.len() || j < later.len() {
        match (acc.get(i), later.get(j)) {
            (Some(a), Some(b)) if a.start_ms == b.start_ms => {
                let mut a = *a;
                a.merge_later(b);
                merged.push(a);
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a.start_ms < b.start_ms => {
                merged.push(*a);
                i += 1;
            }
            (Some(a), None) => {
                merged.push(*a);
                i += 1;
            }
            (_, Some(b)) => {
                merged.push(*b);
                j += 1;
            }
            (None, None) => unreachable!("loop condition"),
        }
    }
    *acc = merged;
}

/// Why stored rollup bytes are unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollupError {
    #[error("rollup version {0} is not supported (this dcmon reads version {VERSION})")]
    Version(u8),
    #[error("rollup bytes truncated")]
    Truncated,
    #[error("rollup columns disagree on their buckets")]
    Mismatch,
    #[error("rollup column: {0}")]
    Column(#[from] ChunkError),
}

/// Stores buckets as five chunk-coded columns over the same bucket starts.
pub(crate) fn encode(buckets: &[Bucket]) -> Vec<u8> {
    let starts: Vec<i64> = buckets.iter().map(|b| b.start_ms).collect();
    let columns: [Vec<f64>; 5] = [
        buckets.iter().map(|b| b.min).collect(),
        buckets.iter().map(|b| b.max).collect(),
        buckets.iter().map(|b| b.sum).collect(),
        buckets.iter().map(|b| b.count as f64).collect(),
        buckets.iter().map(|b| b.last).collect(),
    ];
    let mut out = vec![VERSION];
    for col in &columns {
        let bytes = dcmon_chunk::encode(&starts, col);
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<Bucket>, RollupError> {
    let (&version, mut rest) = bytes.split_first().ok_or(RollupError::Truncated)?;
    if version != VERSION {
        return Err(RollupError::Version(version));
    }
    let mut starts: Option<Vec<i64>> = None;
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(5);
    for _ in 0..5 {
        let (len, r) = rest
            .split_first_chunk::<4>()
            .ok_or(RollupError::Truncated)?;
        let len = u32::from_le_bytes(*len) as usize;
        if r.len() < len {
            return Err(RollupError::Truncated);
        }
        let (ts, vs) = dcmon_chunk::decode(&r[..len])?;
        match &starts {
            Some(s) if *s != ts => return Err(RollupError::Mismatch),
            Some(_) => {}
            None => starts = Some(ts),
        }
        cols.push(vs);
        rest = &r[len..];
    }
    let starts = starts.unwrap_or_default();
    Ok(starts
        .iter()
        .enumerate()
        .map(|(i, &start_ms)| Bucket {
            start_ms,
            min: cols[0][i],
            max: cols[1][i],
            sum: cols[2][i],
            count: cols[3][i] as u64,
            last: cols[4][i],
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const M5: i64 = 300_000;

    fn check(samples: &[(i64, f64)], expect: &[(i64, f64, f64, f64, u64, f64)]) {
        let got: Vec<_> = aggregate(samples, Resolution::FiveMinutes)
            .iter()
            .map(|b| (b.start_ms, b.min, b.max, b.sum, b.count, b.last))
            .collect();
        assert_eq!(got, expect, "{samples:?}");
    }

    #[test]
    fn buckets_aggregate_min_max_sum_count_last() {
        check(&[], &[]);
        check(&[(10, 2.0)], &[(0, 2.0, 2.0, 2.0, 1, 2.0)]);
        check(
            &[(10, 2.0), (20, 1.0), (M5, 5.0), (M5 + 1, 4.0)],
            &[(0, 1.0, 2.0, 3.0, 2, 1.0), (M5, 4.0, 5.0, 9.0, 2, 4.0)],
        );
        check(&[(-1, 7.0)], &[(-M5, 7.0, 7.0, 7.0, 1, 7.0)]);
    }

    #[test]
    fn parts_merge_like_the_whole() {
        let samples: Vec<(i64, f64)> = (0..100).map(|i| (i * 7_000, (i % 13) as f64)).collect();
        let whole = aggregate(&samples, Resolution::FiveMinutes);
        let mut parts = aggregate(&samples[..37], Resolution::FiveMinutes);
        merge(
            &mut parts,
            &aggregate(&samples[37..], Resolution::FiveMinutes),
        );
        assert_eq!(parts, whole);
    }

    #[test]
    fn bytes_round_trip_and_damage_is_detected() {
        let samples: Vec<(i64, f64)> = (0..50).map(|i| (i * 60_000, i as f64 * 0.5)).collect();
        let buckets = aggregate(&samples, Resolution::FiveMinutes);
        let mut bytes = encode(&buckets);
        assert_eq!(decode(&bytes).unwrap(), buckets);
        let n = bytes.len();
        bytes[n - 10] ^= 0x40;
        assert!(matches!(decode(&bytes), Err(RollupError::Column(_))));
        assert_eq!(decode(&bytes[..3]), Err(RollupError::Truncated));
    }
}
