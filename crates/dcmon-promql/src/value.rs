//! The evaluator's intermediate values: every node yields its value at every step.

use crate::QueryError;
use dcmon_wire::{Labels, METRIC_NAME_LABEL};
use foldhash::HashMap;

/// Prometheus' staleness marker: a NaN with this exact bit pattern ends a series.
pub(crate) const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

pub(crate) fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN
}

/// One series of an instant vector, with its value (if any) at each step.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub labels: Labels,
    pub vals: Vec<Option<f64>>,
}

impl Series {
    /// A series with no value at any of `n` steps.
    pub fn empty(labels: Labels, n: usize) -> Self {
        Self {
            labels,
            vals: vec![None; n],
        }
    }

    /// `(time, value)` at the steps that have a value.
    pub fn points(&self, times: &[i64]) -> Vec<(i64, f64)> {
        times
            .iter()
            .zip(&self.vals)
            .filter_map(|(t, v)| v.map(|v| (*t, v)))
            .collect()
    }
}

/// One series of a range vector: its samples over the union of all windows.
#[derive(Debug, Clone)]
pub(crate) struct RangeSeries {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// A range vector: at step `i` each series' window is `[ends[i] - range, ends[i]]`.
#[derive(Debug, Clone)]
pub(crate) struct Matrix {
    pub series: Vec<RangeSeries>,
    pub ends: Vec<i64>,
    pub range: i64,
}

impl Matrix {
    /// The samples of `s` inside the window of step `i` (closed on both ends, as
    /// Prometheus 2.x).
    pub fn window<'a>(&self, s: &'a RangeSeries, i: usize) -> &'a [(i64, f64)] {
        let end = self.ends[i];
        let lo = s
            .samples
            .partition_point(|(t, _)| *t < end.saturating_sub(self.range));
        let hi = s.samples.partition_point(|(t, _)| *t <= end);
        &s.samples[lo..hi.max(lo)]
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Val {
    Scalar(Vec<f64>),
    String(String),
    Vector(Vec<Series>),
    Matrix(Matrix),
}

impl Val {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::String(_) => "string",
            Val::Vector(_) => "instant vector",
            Val::Matrix(_) => "range vector",
        }
    }

    pub fn into_vector(self) -> Result<Vec<Series>, QueryError> {
        match self {
            Val::Vector(v) => Ok(v),
            other => Err(QueryError::BadData(format!(
                "expected an instant vector, got a {}",
                other.type_name()
            ))),
        }
    }

    pub fn into_scalar(self) -> Result<Vec<f64>, QueryError> {
        match self {
            Val::Scalar(v) => Ok(v),
            other => Err(QueryError::BadData(format!(
                "expected a scalar, got a {}",
                other.type_name()
            ))),
        }
    }

    pub fn into_matrix(self) -> Result<Matrix, QueryError> {
        match self {
            Val::Matrix(m) => Ok(m),
            other => Err(QueryError::BadData(format!(
                "expected a range vector, got a {}",
                other.type_name()
            ))),
        }
    }
}

/// Collects output series by label set: series with equal labels are merged; two
/// values for one label set at one step are Prometheus' "same labelset" error.
pub(crate) struct VecBuilder {
    steps: usize,
    index: HashMap<Labels, usize>,
    out: Vec<Series>,
}

impl VecBuilder {
    pub fn new(steps: usize) -> Self {
        Self {
            steps,
            index: HashMap::default(),
            out: Vec::new(),
        }
    }

    /// The output slot for `labels`, created on first use.
    pub fn slot(&mut self, labels: Labels) -> usize {
        if let Some(&i) = self.index.get(&labels) {
            return i;
        }
        let i = self.out.len();
        self.index.insert(labels.clone(), i);
        self.out.push(Series::empty(labels, self.steps));
        i
    }

    pub fn put(&mut self, slot: usize, step: usize, v: f64) -> Result<(), QueryError> {
        let cell = &mut self.out[slot].vals[step];
        if cell.is_some() {
            return Err(same_labelset());
        }
        *cell = Some(v);
        Ok(())
    }

    pub fn finish(self) -> Vec<Series> {
        self.out
            .into_iter()
            .filter(|s| s.vals.iter().any(Option::is_some))
            .collect()
    }
}

pub(crate) fn same_labelset() -> QueryError {
    QueryError::Execution("vector cannot contain metrics with the same labelset".into())
}

/// `labels` without the metric name.
pub(crate) fn drop_name(labels: &Labels) -> Labels {
    let mut l = labels.clone();
    l.set(METRIC_NAME_LABEL, "");
    l
}

/// Only the labels named in `names`.
pub(crate) fn keep_only(labels: &Labels, names: &[String]) -> Labels {
    let mut l = Labels::default();
    for (k, v) in labels.pairs() {
        if names.iter().any(|n| n == k) {
            l.set(k, v);
        }
    }
    l
}

/// All labels except those named in `names` (and, with `and_name`, the metric name).
pub(crate) fn remove(labels: &Labels, names: &[String], and_name: bool) -> Labels {
    let mut l = Labels::default();
    for (k, v) in labels.pairs() {
        if !(names.iter().any(|n| n == k) || (and_name && k == METRIC_NAME_LABEL)) {
            l.set(k, v);
        }
    }
    l
}

/// The match signature of a series for vector matching: with `on`, the values of the
/// named labels; else every label but the named ones and the metric name.
pub(crate) fn signature(labels: &Labels, on: bool, names: &[String]) -> Labels {
    if on {
        keep_only(labels, names)
    } else {
        remove(labels, names, true)
    }
}

/// Labels as Prometheus prints them in error messages: `{a="1", b="2"}`.
pub(crate) fn display(labels: &Labels) -> String {
    let inner: Vec<String> = labels
        .pairs()
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// Whether `s` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub(crate) fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: how Prometheus writes sample values in
/// JSON and `count_values` labels.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}
