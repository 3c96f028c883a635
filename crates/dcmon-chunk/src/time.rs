//! The timestamp column (FORMAT.md § Timestamp column): each timestamp after the first
//! minus a prediction, the residuals coded as runs of zeros and nonzero residuals, both
//! with Rice codes whose parameters suit the chunk. Three predictions, the encoder takes
//! the one that costs fewest bits:
//!
//! * `GRID`: `t0 + c + i·Δ`: a scraper on a fixed schedule; a late or early scrape is one
//!   nonzero residual.
//! * `DELTA`: `t[i-1] + Δ`: a scraper that sleeps `Δ` between scrapes, drifting; a late
//!   scrape is one nonzero residual (the ones after it follow it).
//! * `DOD`: `t[i-1] + (t[i-1] - t[i-2])` (delta of deltas, the first delta being `Δ`):
//!   intervals that change and then hold.
//!
//! All arithmetic is modulo 2^64, so any strictly increasing `i64`s round-trip, gaps of
//! more than `i64::MAX` included.

use crate::ChunkError;
use crate::bits::{BitReader, BitWriter, elias_bits, rice_bits};
use crate::{corrupt, unzigzag, zigzag};

const GRID: u64 = 0;
const DELTA: u64 = 1;
const DOD: u64 = 2;
const MODE_BITS: u32 = 2;
/// Bits of the Rice parameters of run lengths and of residuals.
const K_RUN_BITS: u32 = 5;
const K_RESIDUAL_BITS: u32 = 6;

/// The most frequent value of `xs` if one appears more than half the time, otherwise
/// some value of `xs` (Boyer–Moore majority vote: one pass, no allocation).
fn majority(xs: impl Iterator<Item = i64>) -> i64 {
    let mut candidate = 0i64;
    let mut votes = 0u32;
    for x in xs {
        if votes == 0 {
            candidate = x;
            votes = 1;
        } else if x == candidate {
            votes += 1;
        } else {
            votes -= 1;
        }
    }
    candidate
}

/// An estimate of the bits residual `r` costs, to pick the prediction (branch-free: most
/// residuals are 0, a few are not, at random): its bit length, plus 4 for a nonzero one
/// (its share of the run lengths and of the Rice code).
#[inline]
fn cost(r: i64) -> u64 {
    let z = zigzag(r);
    u64::from(64 - z.leading_zeros()) + 4 * u64::from(z != 0)
}

/// The Rice parameter (of `0..=max`) that codes `xs` in the fewest bits: the one near
/// `log2` of their mean, ±1.
fn rice_parameter(xs: impl Iterator<Item = u64> + Clone, max: u32) -> u32 {
    let (mut sum, mut count) = (0u128, 0u128);
    for x in xs.clone() {
        sum += u128::from(x);
        count += 1;
    }
    if count == 0 {
        return 0;
    }
    let mean = (sum / count) as u64;
    let guess = (64 - mean.leading_zeros()).min(max);
    (guess.saturating_sub(1)..=(guess + 1).min(max))
        .min_by_key(|&k| xs.clone().map(|x| rice_bits(x, k)).sum::<u64>())
        .expect("at least one parameter")
}

/// The residuals as (zeros before it, `zigzag(r) - 1`) for each nonzero one, and the
/// zeros after the last.
#[derive(Default)]
struct Events {
    events: Vec<(u64, u64)>,
    tail: u64,
}

impl Events {
    fn of(residuals: impl Iterator<Item = i64>) -> Self {
        let mut events = Vec::new();
        let mut run = 0u64;
        for r in residuals {
            if r == 0 {
                run += 1;
            } else {
                events.push((run, zigzag(r) - 1));
                run = 0;
            }
        }
        Self { events, tail: run }
    }

    /// Writes them: the two Rice parameters (5 and 6 bits), then for each nonzero
    /// residual `Rice(run, k_run)` for the zeros before it and `Rice(zigzag(r) - 1,
    /// k_residual)`; after the last nonzero residual, `Rice(run, k_run)` for the zeros
    /// that end the column, if any.
    fn put(&self, w: &mut BitWriter<'_>) {
        let runs = self
            .events
            .iter()
            .map(|e| e.0)
            .chain((self.tail > 0).then_some(self.tail));
        let k_run = rice_parameter(runs, (1 << K_RUN_BITS) - 1);
        let k_residual =
            rice_parameter(self.events.iter().map(|e| e.1), (1 << K_RESIDUAL_BITS) - 1);
        w.put(u64::from(k_run), K_RUN_BITS);
        w.put(u64::from(k_residual), K_RESIDUAL_BITS);
        for &(run, z) in &self.events {
            w.put_rice(run, k_run);
            w.put_rice(z, k_residual);
        }
        if self.tail > 0 {
            w.put_rice(self.tail, k_run);
        }
    }
}

/// Writes the column of `ts` (strictly increasing, `ts[0]` is in the header).
///
/// A grid is tried first: when at most one residual in 8 is not zero it is taken as is
/// (the others cannot do much better); otherwise all three are estimated ([`cost`]).
pub(crate) fn encode(ts: &[i64], out: &mut Vec<u8>) {
    let n = ts.len();
    if n < 2 {
        return;
    }
    let t0 = ts[0];
    let first_delta = ts[1].wrapping_sub(t0);
    let deltas = || ts.windows(2).map(|w| w[1].wrapping_sub(w[0]));
    let step = majority(deltas());
    // Offset of the grid: zigzag(c) + 1 is coded, so c = i64::MIN is not an option.
    let mut offset = majority(
        ts.iter()
            .enumerate()
            .skip(1)
            .map(|(i, &t)| t.wrapping_sub(t0).wrapping_sub(step.wrapping_mul(i as i64))),
    );
    if offset == i64::MIN {
        offset = 0;
    }
    let grid = |i: usize, t: i64| {
        t.wrapping_sub(t0)
            .wrapping_sub(offset)
            .wrapping_sub(step.wrapping_mul(i as i64))
    };
    let grid_events = Events::of(ts.iter().enumerate().skip(1).map(|(i, &t)| grid(i, t)));
    let mut mode = GRID;
    if grid_events.events.len() > n / 8 {
        let mut costs = [
            elias_bits(step as u64) + elias_bits(zigzag(offset) + 1),
            elias_bits(step as u64),
            elias_bits(first_delta as u64),
        ];
        let mut prev_delta = first_delta;
        for (i, w) in ts.windows(2).enumerate() {
            let d = w[1].wrapping_sub(w[0]);
            costs[0] += cost(grid(i + 1, w[1]));
            costs[1] += cost(d.wrapping_sub(step));
            costs[2] += cost(d.wrapping_sub(prev_delta));
            prev_delta = d;
        }
        mode = (0..3).min_by_key(|&m| costs[m]).expect("three modes") as u64;
    }

    let mut w = BitWriter::new(out);
    w.put(mode, MODE_BITS);
    match mode {
        GRID => {
            w.put_elias(step as u64);
            w.put_elias(zigzag(offset) + 1);
            grid_events.put(&mut w);
        }
        DELTA => {
            w.put_elias(step as u64);
            Events::of(deltas().map(|d| d.wrapping_sub(step))).put(&mut w);
        }
        _ => {
            w.put_elias(first_delta as u64);
            let mut prev = first_delta;
            Events::of(deltas().map(|d| {
                let dod = d.wrapping_sub(prev);
                prev = d;
                dod
            }))
            .put(&mut w);
        }
    }
    w.finish();
}

/// Reads a column of `n` timestamps starting at `first` and ending at `last`, appending
/// them to `out`; returns how many bytes of `col` the column took.
pub(crate) fn decode(
    col: &[u8],
    n: usize,
    first: i64,
    last: i64,
    out: &mut Vec<i64>,
) -> Result<usize, ChunkError> {
    if n == 0 {
        return Ok(0);
    }
    out.push(first);
    if n == 1 {
        return Ok(0);
    }
    let mut r = BitReader::new(col);
    let bad = || corrupt("timestamp column: not an Elias or Rice code (truncated?)");
    let mode = r.read(MODE_BITS);
    // Elias codes are ≥ 1: 0 stands for a step of 2^64, which is no step.
    let step = r.elias().ok_or_else(bad)? as i64;
    let offset = if mode == GRID {
        unzigzag(r.elias().ok_or_else(bad)? - 1)
    } else {
        0
    };
    if mode > DOD {
        return Err(corrupt(format!("timestamp column: unknown mode {mode}")));
    }
    // The prediction for sample `i` given the one before it, `t`, and the interval
    // before that, `delta`.
    let base = first.wrapping_add(offset);
    let predict = |i: usize, t: i64, delta: i64| match mode {
        GRID => base.wrapping_add(step.wrapping_mul(i as i64)),
        DELTA => t.wrapping_add(step),
        _ => t.wrapping_add(delta),
    };
    let k_run = r.read(K_RUN_BITS) as u32;
    let k_residual = r.read(K_RESIDUAL_BITS) as u32;
    let mut t = first;
    let mut delta = step;
    let mut i = 1;
    let mut push = |i: usize, t: &mut i64, delta: &mut i64, residual: i64| {
        let next = predict(i, *t, *delta).wrapping_add(residual);
        if next <= *t {
            return Err(corrupt("timestamps not increasing"));
        }
        *delta = next.wrapping_sub(*t);
        *t = next;
        out.push(next);
        Ok(())
    };
    while i < n {
        let run = r.rice(k_run).ok_or_else(bad)?;
        if run > (n - i) as u64 {
            return Err(corrupt(format!(
                "timestamp column: a run of {run} where {} timestamps are left",
                n - i
            )));
        }
        for _ in 0..run {
            push(i, &mut t, &mut delta, 0)?;
            i += 1;
        }
        if i == n {
            break;
        }
        let z = r
            .rice(k_residual)
            .ok_or_else(bad)?
            .checked_add(1)
            .ok_or_else(bad)?;
        let residual = unzigzag(z);
        push(i, &mut t, &mut delta, residual)?;
        i += 1;
    }
    if r.overrun() {
        return Err(corrupt("timestamp column truncated"));
    }
    if t != last {
        return Err(corrupt(format!(
            "last timestamp {t} differs from max_t {last}"
        )));
    }
    Ok(r.bytes_used())
}
