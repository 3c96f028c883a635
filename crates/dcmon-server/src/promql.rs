//! PromQL evaluation over the tsdb. This first evaluator handles literals and instant
//! and range vector selectors (all four matcher kinds, `offset`, `@`); anything else is
//! refused with a clear error rather than answered wrongly.

use dcmon_tsdb::{MatchOp, Matcher, SeriesData, Tsdb};
use dcmon_wire::Labels;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};
use std::time::{Duration, UNIX_EPOCH};

/// How far back an instant selector looks for the latest sample (Prometheus' default).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// The result of an instant query.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    Scalar(f64),
    String(String),
    /// Each series with its value at the evaluation time.
    Vector(Vec<(Labels, f64)>),
    /// Each series with its samples (range vectors, and every range query).
    Matrix(Vec<SeriesData>),
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Prometheus `bad_data`: the query cannot be parsed or is not supported.
    #[error("{0}")]
    BadData(String),
    /// Prometheus `execution`: storage failed.
    #[error("{0}")]
    Execution(String),
}

pub fn parse(query: &str) -> Result<Expr, QueryError> {
    promql_parser::parser::parse(query)
        .map_err(|e| QueryError::BadData(format!("invalid parameter \"query\": {e}")))
}

fn unsupported(expr: &Expr) -> QueryError {
    QueryError::BadData(format!(
        "unsupported expression {expr}: this server evaluates literals and vector/range selectors \
         (with =, !=, =~, !~, offset and @) only"
    ))
}

/// Evaluates `expr` at `t_ms`.
pub fn instant(tsdb: &Tsdb, expr: &Expr, t_ms: i64) -> Result<QueryValue, QueryError> {
    match expr {
        Expr::Paren(p) => instant(tsdb, &p.expr, t_ms),
        Expr::NumberLiteral(n) => Ok(QueryValue::Scalar(n.val)),
        Expr::StringLiteral(s) => Ok(QueryValue::String(s.val.clone())),
        Expr::VectorSelector(vs) => Ok(QueryValue::Vector(select_instant(tsdb, vs, t_ms, t_ms)?)),
        Expr::MatrixSelector(ms) => {
            let at = evaluation_time(&ms.vs, t_ms, t_ms, t_ms);
            let range = ms.range.as_millis() as i64;
            // Prometheus range selectors are left-open: (at - range, at].
            let data = select(tsdb, &ms.vs, at - range + 1, at)?;
            Ok(QueryValue::Matrix(data))
        }
        other => Err(unsupported(other)),
    }
}

/// Evaluates `expr` at every step from `start_ms` to `end_ms` (inclusive).
pub fn range(
    tsdb: &Tsdb,
    expr: &Expr,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
) -> Result<QueryValue, QueryError> {
    let steps: Vec<i64> = (0..)
        .map(|i| start_ms + i * step_ms)
        .take_while(|t| *t <= end_ms)
        .collect();
    match expr {
        Expr::Paren(p) => range(tsdb, &p.expr, start_ms, end_ms, step_ms),
        Expr::NumberLiteral(n) => Ok(QueryValue::Matrix(vec![SeriesData {
            labels: Labels::default(),
            samples: steps.iter().map(|t| (*t, n.val)).collect(),
        }])),
        Expr::VectorSelector(vs) => {
            // One read of the whole window, then the latest sample at or before each step.
            let first = evaluation_time(vs, start_ms, start_ms, end_ms);
            let last = evaluation_time(vs, end_ms, start_ms, end_ms);
            let data = select(tsdb, vs, first.min(last) - LOOKBACK_MS + 1, first.max(last))?;
            let mut out = Vec::new();
            for s in data {
                let mut points = Vec::new();
                for &t in &steps {
                    let at = evaluation_time(vs, t, start_ms, end_ms);
                    if let Some(v) = latest(&s.samples, at) {
                        points.push((t, v));
                    }
                }
                if !points.is_empty() {
                    out.push(SeriesData { labels: s.labels, samples: points });
                }
            }
            Ok(QueryValue::Matrix(out))
        }
        Expr::MatrixSelector(_) => Err(QueryError::BadData(
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
        )),
        other => Err(unsupported(other)),
    }
}

fn latest(samples: &[(i64, f64)], at: i64) -> Option<f64> {
    let idx = samples.partition_point(|(t, _)| *t <= at);
    let (t, v) = *samples.get(idx.checked_sub(1)?)?;
    (t > at - LOOKBACK_MS).then_some(v)
}

fn select_instant(
    tsdb: &Tsdb,
    vs: &VectorSelector,
    t: i64,
    start: i64,
) -> Result<Vec<(Labels, f64)>, QueryError> {
    let at = evaluation_time(vs, t, start, t);
    let data = select(tsdb, vs, at - LOOKBACK_MS + 1, at)?;
    Ok(data
        .into_iter()
        .filter_map(|s| latest(&s.samples, at).map(|v| (s.labels, v)))
        .collect())
}

/// The time a selector reads at: `@` pins it, `offset` shifts it.
fn evaluation_time(vs: &VectorSelector, t: i64, start: i64, end: i64) -> i64 {
    let base = match &vs.at {
        None => t,
        Some(AtModifier::Start) => start,
        Some(AtModifier::End) => end,
        Some(AtModifier::At(st)) => match st.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        },
    };
    match &vs.offset {
        None => base,
        Some(Offset::Pos(d)) => base - ms(d),
        Some(Offset::Neg(d)) => base + ms(d),
    }
}

fn ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

fn select(
    tsdb: &Tsdb,
    vs: &VectorSelector,
    start: i64,
    end: i64,
) -> Result<Vec<SeriesData>, QueryError> {
    let mut groups = vec![vs.matchers.matchers.clone()];
    groups.extend(vs.matchers.or_matchers.iter().cloned());
    let mut out: Vec<SeriesData> = Vec::new();
    for group in groups {
        let mut matchers = convert(&group)?;
        if let Some(name) = &vs.name {
            matchers.push(Matcher::equal(dcmon_wire::METRIC_NAME_LABEL, name));
        }
        if matchers.iter().all(Matcher::matches_empty) {
            return Err(QueryError::BadData(
                "vector selector must contain at least one non-empty matcher".into(),
            ));
        }
        for s in tsdb
            .select(&matchers, start, end)
            .map_err(|e| QueryError::Execution(e.to_string()))?
        {
            if !out.iter().any(|o| o.labels == s.labels) {
                out.push(s);
            }
        }
    }
    Ok(out)
}

fn convert(group: &[promql_parser::label::Matcher]) -> Result<Vec<Matcher>, QueryError> {
    group
        .iter()
        .map(|m| {
            let op = match &m.op {
                promql_parser::label::MatchOp::Equal => MatchOp::Equal,
                promql_parser::label::MatchOp::NotEqual => MatchOp::NotEqual,
                promql_parser::label::MatchOp::Re(_) => MatchOp::RegexMatch,
                promql_parser::label::MatchOp::NotRe(_) => MatchOp::RegexNoMatch,
            };
            Matcher::new(&m.name, op, &m.value).map_err(|e| QueryError::BadData(e.to_string()))
        })
        .collect()
}

/// Parses a selector for `match[]` parameters of the metadata endpoints.
pub fn series_matchers(selector: &str) -> Result<Vec<Vec<Matcher>>, QueryError> {
    match parse(selector)? {
        Expr::VectorSelector(vs) => {
            let mut groups = vec![vs.matchers.matchers.clone()];
            groups.extend(vs.matchers.or_matchers.iter().cloned());
            groups
                .into_iter()
                .map(|g| {
                    let mut m = convert(&g)?;
                    if let Some(name) = &vs.name {
                        m.push(Matcher::equal(dcmon_wire::METRIC_NAME_LABEL, name));
                    }
                    Ok(m)
                })
                .collect()
        }
        _ => Err(QueryError::BadData(format!(
            "invalid parameter \"match[]\": {selector:?} is not a series selector"
        ))),
    }
}
