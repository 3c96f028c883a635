//! The evaluator: selectors, subqueries and the dispatch to operators and functions.

use crate::value::{Matrix, RangeSeries, Series, Val, drop_name, is_stale};
use crate::{QueryError, QueryValue, Storage, agg, binop, func};
use dcmon_tsdb::{MatchOp, Matcher, SeriesData};
use dcmon_wire::{Labels, METRIC_NAME_LABEL};
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr, VectorSelector};
use std::cell::Cell;
use std::time::UNIX_EPOCH;

/// Evaluation settings (Prometheus' flags of the same meaning).
#[derive(Debug, Clone, Copy)]
pub struct Engine {
    /// How far back an instant selector looks for a sample (`--query.lookback-delta`).
    pub lookback_ms: i64,
    /// Step of a subquery that names none (the global evaluation interval).
    pub subquery_step_ms: i64,
    /// Most samples one query may load or produce (`--query.max-samples`).
    pub max_samples: usize,
}

impl Default for Engine {
    fn default() -> Self {
        Self {
            lookback_ms: 5 * 60 * 1000,
            subquery_step_ms: 60 * 1000,
            max_samples: 50_000_000,
        }
    }
}

/// Most steps a range query or a subquery may evaluate.
const MAX_SUBQUERY_STEPS: i64 = 1_000_000;

/// A duration from the query in milliseconds, saturating (queries can name 10⁹ years).
fn millis(d: &std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `start, start + step, ...` up to `end`, stopping rather than overflowing.
fn steps(start: i64, end: i64, step: i64) -> Vec<i64> {
    std::iter::successors(Some(start), |t| t.checked_add(step))
        .take_while(|t| *t <= end)
        .collect()
}

impl Engine {
    /// Evaluates `expr` at `t_ms`.
    pub fn instant(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        t_ms: i64,
    ) -> Result<QueryValue, QueryError> {
        let ctx = Ctx::new(self, storage, t_ms, t_ms);
        let val = ctx.eval(expr, &[t_ms])?;
        Ok(match val {
            Val::Scalar(v) => QueryValue::Scalar(v[0]),
            Val::String(s) => QueryValue::String(s),
            Val::Vector(series) => {
                let mut out: Vec<(Labels, f64)> = series
                    .into_iter()
                    .filter_map(|s| s.vals[0].map(|v| (s.labels, v)))
                    .collect();
                order_instant(expr, &mut out);
                QueryValue::Vector(out)
            }
            Val::Matrix(m) => {
                let mut out: Vec<SeriesData> = m
                    .series
                    .iter()
                    .map(|s| SeriesData {
                        labels: s.labels.clone(),
                        samples: m.window(s, 0).to_vec(),
                    })
                    .filter(|s| !s.samples.is_empty())
                    .collect();
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                QueryValue::Matrix(out)
            }
        })
    }

    /// Evaluates `expr` at every step from `start_ms` to `end_ms` (inclusive): one series
    /// per label set, sorted by labels, each with the steps where it has a value.
    pub fn range(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<SeriesData>, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::BadData(
                "zero or negative query resolution step widths are not accepted".into(),
            ));
        }
        if (end_ms.saturating_sub(start_ms)) / step_ms > MAX_SUBQUERY_STEPS {
            return Err(QueryError::BadData(format!(
                "a range query may evaluate at most {MAX_SUBQUERY_STEPS} steps: use a larger step"
            )));
        }
        let times = steps(start_ms, end_ms, step_ms);
        let ctx = Ctx::new(self, storage, start_ms, end_ms);
        let mut out = match ctx.eval(expr, &times)? {
            Val::Scalar(v) => vec![SeriesData {
                labels: Labels::default(),
                samples: times.iter().copied().zip(v).collect(),
            }],
            Val::Vector(series) => series
                .into_iter()
                .map(|s| SeriesData {
                    samples: s.points(&times),
                    labels: s.labels,
                })
                .filter(|s| !s.samples.is_empty())
                .collect(),
            other => {
                return Err(QueryError::BadData(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    other.type_name()
                )));
            }
        };
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

/// Instant results come sorted by labels, except where the query asks for an order.
fn order_instant(expr: &Expr, out: &mut [(Labels, f64)]) {
    fn nan_last(a: f64, b: f64, desc: bool) -> std::cmp::Ordering {
        match (a.is_nan(), b.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ if desc => b.total_cmp(&a),
            _ => a.total_cmp(&b),
        }
    }
    let desc = match unwrap_parens(expr) {
        Expr::Call(c) if c.func.name == "sort" => Some(false),
        Expr::Call(c) if c.func.name == "sort_desc" => Some(true),
        Expr::Aggregate(a) if a.op.to_string() == "topk" => Some(true),
        Expr::Aggregate(a) if a.op.to_string() == "bottomk" => Some(false),
        _ => None,
    };
    match desc {
        Some(desc) => out.sort_by(|a, b| nan_last(a.1, b.1, desc)),
        None => out.sort_by(|a, b| a.0.cmp(&b.0)),
    }
}

pub(crate) fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// One query's evaluation state.
pub(crate) struct Ctx<'a> {
    pub engine: &'a Engine,
    storage: &'a dyn Storage,
    /// The query's own start and end, which `@ start()` and `@ end()` name.
    start: i64,
    end: i64,
    samples: Cell<usize>,
}

impl<'a> Ctx<'a> {
    fn new(engine: &'a Engine, storage: &'a dyn Storage, start: i64, end: i64) -> Self {
        Self {
            engine,
            storage,
            start,
            end,
            samples: Cell::new(0),
        }
    }

    /// Counts `n` more samples held by this query; past the limit the query fails.
    pub fn charge(&self, n: usize) -> Result<(), QueryError> {
        let total = self.samples.get().saturating_add(n);
        self.samples.set(total);
        if total > self.engine.max_samples {
            return Err(QueryError::Execution(
                "query processing would load too many samples into memory in query execution"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Evaluates `expr` at each of `times`.
    pub fn eval(&self, expr: &Expr, times: &[i64]) -> Result<Val, QueryError> {
        let n = times.len();
        match expr {
            Expr::Paren(p) => self.eval(&p.expr, times),
            Expr::NumberLiteral(l) => Ok(Val::Scalar(vec![l.val; n])),
            Expr::StringLiteral(s) => Ok(Val::String(s.val.clone())),
            Expr::Unary(u) => match self.eval(&u.expr, times)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(v) => {
                    let mut b = crate::value::VecBuilder::new(n);
                    for s in v {
                        let slot = b.slot(drop_name(&s.labels));
                        for (i, x) in s.vals.iter().enumerate() {
                            if let Some(x) = x {
                                b.put(slot, i, -x)?;
                            }
                        }
                    }
                    Ok(Val::Vector(b.finish()))
                }
                other => Err(QueryError::BadData(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.select_vector(vs, times, false)?)),
            Expr::MatrixSelector(ms) => {
                let range = millis(&ms.range);
                Ok(Val::Matrix(self.select_matrix(&ms.vs, range, times)?))
            }
            Expr::Subquery(sq) => Ok(Val::Matrix(self.subquery(sq, times)?)),
            Expr::Binary(b) => binop::eval(self, b, times),
            Expr::Aggregate(a) => agg::eval(self, a, times),
            Expr::Call(c) => func::eval(self, c, times),
            Expr::Extension(_) => Err(QueryError::BadData(
                "extension expressions are not supported".into(),
            )),
        }
    }

    /// The time a selector reads at for each step: `@` pins it, `offset` shifts it.
    fn ref_times(
        &self,
        at: &Option<AtModifier>,
        offset: &Option<Offset>,
        times: &[i64],
    ) -> Vec<i64> {
        let shift = match offset {
            None => 0,
            Some(Offset::Pos(d)) => millis(d),
            Some(Offset::Neg(d)) => -millis(d),
        };
        let pinned = match at {
            None => None,
            Some(AtModifier::Start) => Some(self.start),
            Some(AtModifier::End) => Some(self.end),
            Some(AtModifier::At(st)) => Some(match st.duration_since(UNIX_EPOCH) {
                Ok(d) => millis(&d),
                Err(e) => -millis(&e.duration()),
            }),
        };
        times
            .iter()
            .map(|t| pinned.unwrap_or(*t).saturating_sub(shift))
            .collect()
    }

    /// Every series matching the selector, with samples in `[start, end]`.
    fn fetch(
        &self,
        vs: &VectorSelector,
        start: i64,
        end: i64,
    ) -> Result<Vec<SeriesData>, QueryError> {
        let groups = matcher_groups(vs)?;
        let mut out: Vec<SeriesData> = Vec::new();
        for (i, group) in groups.iter().enumerate() {
            let data = self
                .storage
                .select(group, start, end)
                .map_err(QueryError::Execution)?;
            for s in data {
                if i > 0 && out.iter().any(|o| o.labels == s.labels) {
                    continue;
                }
                self.charge(s.samples.len())?;
                out.push(s);
            }
        }
        Ok(out)
    }

    /// An instant vector selector at each step: the newest sample no older than the
    /// lookback window. With `timestamps`, the value is that sample's time in seconds.
    pub fn select_vector(
        &self,
        vs: &VectorSelector,
        times: &[i64],
        timestamps: bool,
    ) -> Result<Vec<Series>, QueryError> {
        let refs = self.ref_times(&vs.at, &vs.offset, times);
        let (Some(&lo), Some(&hi)) = (refs.iter().min(), refs.iter().max()) else {
            return Ok(Vec::new());
        };
        let lookback = self.engine.lookback_ms;
        let data = self.fetch(vs, lo.saturating_sub(lookback), hi)?;
        let mut out = Vec::with_capacity(data.len());
        for s in data {
            let vals: Vec<Option<f64>> = refs
                .iter()
                .map(|&r| {
                    let idx = s.samples.partition_point(|(t, _)| *t <= r);
                    let (t, v) = *s.samples.get(idx.checked_sub(1)?)?;
                    if t < r.saturating_sub(lookback) || is_stale(v) {
                        return None;
                    }
                    Some(if timestamps { t as f64 / 1000.0 } else { v })
                })
                .collect();
            if vals.iter().any(Option::is_some) {
                self.charge(vals.len())?;
                out.push(Series {
                    labels: s.labels,
                    vals,
                });
            }
        }
        Ok(out)
    }

    /// A range selector: one read covering every step's window.
    fn select_matrix(
        &self,
        vs: &VectorSelector,
        range: i64,
        times: &[i64],
    ) -> Result<Matrix, QueryError> {
        let ends = self.ref_times(&vs.at, &vs.offset, times);
        let (Some(&lo), Some(&hi)) = (ends.iter().min(), ends.iter().max()) else {
            return Ok(Matrix {
                series: Vec::new(),
                ends,
                range,
            });
        };
        let series = self
            .fetch(vs, lo.saturating_sub(range), hi)?
            .into_iter()
            .map(|mut s| {
                s.samples.retain(|(_, v)| !is_stale(*v));
                RangeSeries {
                    labels: s.labels,
                    samples: s.samples,
                }
            })
            .filter(|s| !s.samples.is_empty())
            .collect();
        Ok(Matrix {
            series,
            ends,
            range,
        })
    }

    /// `expr[range:step]`: the inner expression evaluated at absolute multiples of the
    /// step, once for all outer steps, then windowed like a range selector.
    fn subquery(&self, sq: &SubqueryExpr, times: &[i64]) -> Result<Matrix, QueryError> {
        let range = millis(&sq.range);
        let step = sq
            .step
            .map(|d| millis(&d))
            .filter(|s| *s > 0)
            .unwrap_or(self.engine.subquery_step_ms);
        let ends = self.ref_times(&sq.at, &sq.offset, times);
        let (Some(&lo), Some(&hi)) = (ends.iter().min(), ends.iter().max()) else {
            return Ok(Matrix {
                series: Vec::new(),
                ends,
                range,
            });
        };
        // The first multiple of the step at or after the earliest window's start.
        let from = lo.saturating_sub(range);
        let first = from.div_euclid(step).saturating_mul(step);
        let first = if first < from {
            first.saturating_add(step)
        } else {
            first
        };
        if hi.saturating_sub(first) / step > MAX_SUBQUERY_STEPS {
            return Err(QueryError::Execution(format!(
                "subquery {sq} would evaluate more than {MAX_SUBQUERY_STEPS} steps: use a larger step"
            )));
        }
        let inner = steps(first, hi, step);
        let series = match self.eval(&sq.expr, &inner)? {
            Val::Vector(v) => v
                .into_iter()
                .map(|s| RangeSeries {
                    samples: s.points(&inner),
                    labels: s.labels,
                })
                .filter(|s| !s.samples.is_empty())
                .collect(),
            other => {
                return Err(QueryError::BadData(format!(
                    "subquery is only allowed on instant vector, got {} instead",
                    other.type_name()
                )));
            }
        };
        Ok(Matrix {
            series,
            ends,
            range,
        })
    }
}

/// A selector's matchers as storage matchers: one group per `or` alternative, the metric
/// name added to each.
pub(crate) fn matcher_groups(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let mut groups = vec![vs.matchers.matchers.clone()];
    groups.extend(vs.matchers.or_matchers.iter().cloned());
    groups
        .into_iter()
        .map(|group| {
            let mut out = group
                .iter()
                .map(|m| {
                    let op = match &m.op {
                        promql_parser::label::MatchOp::Equal => MatchOp::Equal,
                        promql_parser::label::MatchOp::NotEqual => MatchOp::NotEqual,
                        promql_parser::label::MatchOp::Re(_) => MatchOp::RegexMatch,
                        promql_parser::label::MatchOp::NotRe(_) => MatchOp::RegexNoMatch,
                    };
                    Matcher::new(&m.name, op, &m.value)
                        .map_err(|e| QueryError::BadData(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(name) = &vs.name {
                out.push(Matcher::equal(METRIC_NAME_LABEL, name));
            }
            if out.iter().all(Matcher::matches_empty) {
                return Err(QueryError::BadData(
                    "vector selector must contain at least one non-empty matcher".into(),
                ));
            }
            Ok(out)
        })
        .collect()
}
