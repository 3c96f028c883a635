//! PromQL evaluation with Prometheus 2.x semantics, over any [`Storage`].
//!
//! Queries are parsed by `promql-parser`; evaluation is ours. Every node of the
//! expression is evaluated once for all steps of a query (an instant query is a range
//! query of one step): a selector reads storage once for the whole window, label
//! signatures and groupings are computed once per series rather than once per step, and
//! only per-step values flow through the tree.
//!
//! Semantics follow Prometheus 2.x (the version our users run next to us): range
//! selectors and the lookback window are closed on both ends, `last_over_time` keeps the
//! metric name while every other range function drops it, `bool` comparisons drop it.

mod agg;
mod binop;
mod eval;
mod func;
mod value;

use dcmon_tsdb::{Matcher, SeriesData, Tsdb};
use dcmon_wire::Labels;
use promql_parser::parser::Expr;
use std::sync::Once;

pub use eval::Engine;
pub use value::format_float;

/// Where series come from.
pub trait Storage: Sync {
    /// Samples with `start_ms <= t <= end_ms` of every series matching all `matchers`,
    /// oldest first, series that have none left out.
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, String>;
}

impl Storage for Tsdb {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, String> {
        Tsdb::select(self, matchers, start_ms, end_ms).map_err(|e| e.to_string())
    }
}

/// The result of a query, in Prometheus' four result types.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    Scalar(f64),
    String(String),
    /// Each series with its value at the evaluation time.
    Vector(Vec<(Labels, f64)>),
    /// Each series with its samples (range vectors, and every range query).
    Matrix(Vec<SeriesData>),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// Prometheus `bad_data`: the query cannot be parsed or its types do not fit.
    #[error("{0}")]
    BadData(String),
    /// Prometheus `execution`: the query is valid but cannot be evaluated on this data
    /// (ambiguous vector matching, duplicate label sets, too many samples, storage).
    #[error("{0}")]
    Execution(String),
}

static EXTRA_FUNCTIONS: Once = Once::new();

/// Parses a PromQL expression. `holt_winters`, which Prometheus 2.x has under that name,
/// is accepted as well as its 3.x name `double_exponential_smoothing`.
pub fn parse(query: &str) -> Result<Expr, QueryError> {
    EXTRA_FUNCTIONS.call_once(|| {
        use promql_parser::parser::value::ValueType;
        let _ = promql_parser::parser::register_extra_functions(vec![
            promql_parser::parser::Function::new(
                "holt_winters",
                vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
                0,
                ValueType::Vector,
                false,
            ),
        ]);
    });
    promql_parser::parser::parse(query)
        .map_err(|e| QueryError::BadData(format!("invalid parameter \"query\": {e}")))
}

/// Parses a series selector for the `match[]` parameter of the metadata endpoints:
/// one matcher group per `or` alternative.
pub fn series_matchers(selector: &str) -> Result<Vec<Vec<Matcher>>, QueryError> {
    match parse(selector)? {
        Expr::VectorSelector(vs) => eval::matcher_groups(&vs),
        _ => Err(QueryError::BadData(format!(
            "invalid parameter \"match[]\": {selector:?} is not a series selector"
        ))),
    }
}

#[cfg(test)]
mod tests;
