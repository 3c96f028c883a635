//! Aggregation operators with `by` / `without`.

use crate::QueryError;
use crate::eval::Ctx;
use crate::func::quantile;
use crate::value::{Series, Val, VecBuilder, format_float, is_label_name, keep_only, remove};
use dcmon_wire::Labels;
use foldhash::HashMap;
use promql_parser::parser::{AggregateExpr, LabelModifier};

pub(crate) fn eval(ctx: &Ctx<'_>, a: &AggregateExpr, times: &[i64]) -> Result<Val, QueryError> {
    let op = a.op.to_string();
    let n = times.len();
    let param = match &a.param {
        Some(p) => Some(ctx.eval(p, times)?),
        None => None,
    };
    let input = ctx.eval(&a.expr, times)?.into_vector()?;
    let group_labels = |l: &Labels| match &a.modifier {
        None => Labels::default(),
        Some(LabelModifier::Include(by)) => keep_only(l, &by.labels),
        Some(LabelModifier::Exclude(without)) => remove(l, &without.labels, true),
    };
    // Group of each input series, computed once for all steps.
    let mut index: HashMap<Labels, usize> = HashMap::default();
    let mut groups: Vec<Labels> = Vec::new();
    let gid: Vec<usize> = input
        .iter()
        .map(|s| {
            let g = group_labels(&s.labels);
            *index.entry(g.clone()).or_insert_with(|| {
                groups.push(g);
                groups.len() - 1
            })
        })
        .collect();
    let scalar_param = |name: &str| -> Result<Vec<f64>, QueryError> {
        match &param {
            Some(Val::Scalar(v)) => Ok(v.clone()),
            _ => Err(QueryError::BadData(format!(
                "expected a scalar parameter for {name}"
            ))),
        }
    };
    match op.as_str() {
        "sum" | "avg" | "min" | "max" | "count" | "group" | "stddev" | "stdvar" => {
            Ok(Val::Vector(simple(&op, &input, &gid, groups, n)))
        }
        "topk" | "bottomk" | "limitk" => {
            let k = scalar_param(&op)?;
            select_k(&op, input, &gid, groups.len(), &k, n)
        }
        "quantile" => {
            let q = scalar_param(&op)?;
            let mut out: Vec<Series> = groups.into_iter().map(|l| Series::empty(l, n)).collect();
            let mut values: Vec<Vec<f64>> = vec![Vec::new(); out.len()];
            for (i, &q) in q.iter().enumerate().take(n) {
                values.iter_mut().for_each(Vec::clear);
                for (s, g) in input.iter().zip(&gid) {
                    if let Some(v) = s.vals[i] {
                        values[*g].push(v);
                    }
                }
                for (g, vs) in values.iter_mut().enumerate() {
                    if !vs.is_empty() {
                        out[g].vals[i] = Some(quantile(q, vs));
                    }
                }
            }
            Ok(Val::Vector(out))
        }
        "count_values" => {
            let label = match &param {
                Some(Val::String(s)) => s.clone(),
                _ => {
                    return Err(QueryError::BadData(
                        "expected a string parameter for count_values".into(),
                    ));
                }
            };
            if !is_label_name(&label) {
                return Err(QueryError::Execution(format!(
                    "invalid label name {label:?}"
                )));
            }
            let mut b = VecBuilder::new(n);
            let mut counts: HashMap<usize, f64> = HashMap::default();
            for i in 0..n {
                counts.clear();
                for (s, g) in input.iter().zip(&gid) {
                    if let Some(v) = s.vals[i] {
                        let mut l = groups[*g].clone();
                        l.set(&label, &format_float(v));
                        *counts.entry(b.slot(l)).or_default() += 1.0;
                    }
                }
                for (&slot, &c) in &counts {
                    b.put(slot, i, c)?;
                }
            }
            Ok(Val::Vector(b.finish()))
        }
        other => Err(QueryError::BadData(format!(
            "aggregation {other}() is not supported by this server"
        ))),
    }
}

#[derive(Clone, Copy, Default)]
struct Acc {
    count: u64,
    value: f64,
    mean: f64,
}

/// The aggregations that fold each group's values into one, with Prometheus 2.x's
/// arithmetic (incremental mean for `avg`, Welford for `stddev`/`stdvar`).
fn simple(op: &str, input: &[Series], gid: &[usize], groups: Vec<Labels>, n: usize) -> Vec<Series> {
    let mut out: Vec<Series> = groups.into_iter().map(|l| Series::empty(l, n)).collect();
    let mut acc = vec![Acc::default(); out.len()];
    for i in 0..n {
        acc.fill(Acc::default());
        for (s, &g) in input.iter().zip(gid) {
            let Some(v) = s.vals[i] else { continue };
            let a = &mut acc[g];
            if a.count == 0 {
                *a = Acc {
                    count: 1,
                    value: match op {
                        "count" | "group" => 1.0,
                        "stddev" | "stdvar" => 0.0,
                        _ => v,
                    },
                    mean: v,
                };
                continue;
            }
            a.count += 1;
            match op {
                "sum" => a.value += v,
                "count" => a.value += 1.0,
                "max" if a.value < v || a.value.is_nan() => a.value = v,
                "min" if a.value > v || a.value.is_nan() => a.value = v,
                "avg" => {
                    if a.mean.is_infinite() {
                        if v.is_infinite() && (a.mean > 0.0) == (v > 0.0) {
                            continue;
                        }
                        if !v.is_infinite() && !v.is_nan() {
                            continue;
                        }
                    }
                    let c = a.count as f64;
                    a.mean += v / c - a.mean / c;
                }
                "stddev" | "stdvar" => {
                    let delta = v - a.mean;
                    a.mean += delta / a.count as f64;
                    a.value += delta * (v - a.mean);
                }
                _ => {}
            }
        }
        for (g, a) in acc.iter().enumerate() {
            if a.count == 0 {
                continue;
            }
            out[g].vals[i] = Some(match op {
                "avg" => a.mean,
                "stdvar" => a.value / a.count as f64,
                "stddev" => (a.value / a.count as f64).sqrt(),
                _ => a.value,
            });
        }
    }
    out
}

/// `topk`, `bottomk` (and `limitk`): per step and group, the k preferred series keep
/// their value and all their labels; NaN is least preferred.
fn select_k(
    op: &str,
    input: Vec<Series>,
    gid: &[usize],
    groups: usize,
    k: &[f64],
    n: usize,
) -> Result<Val, QueryError> {
    let mut out: Vec<Series> = input
        .iter()
        .map(|s| Series {
            labels: s.labels.clone(),
            vals: vec![None; n],
        })
        .collect();
    let mut members: Vec<Vec<(f64, usize)>> = vec![Vec::new(); groups];
    for (i, &k) in k.iter().enumerate().take(n) {
        if !k.is_finite() && !k.is_nan() || k.abs() >= 9.2e18 {
            return Err(QueryError::Execution(format!(
                "Scalar value {k} overflows int64"
            )));
        }
        let want = if k.is_nan() { 0 } else { k as i64 };
        if want < 1 {
            continue;
        }
        members.iter_mut().for_each(Vec::clear);
        for (idx, (s, g)) in input.iter().zip(gid).enumerate() {
            if let Some(v) = s.vals[i] {
                members[*g].push((v, idx));
            }
        }
        for m in &mut members {
            match op {
                "topk" => m.sort_by(|a, b| pref(a.0, b.0, true).then(a.1.cmp(&b.1))),
                "bottomk" => m.sort_by(|a, b| pref(a.0, b.0, false).then(a.1.cmp(&b.1))),
                _ => {}
            }
            for &(v, idx) in m.iter().take(want as usize) {
                out[idx].vals[i] = Some(v);
            }
        }
    }
    Ok(Val::Vector(
        out.into_iter()
            .filter(|s| s.vals.iter().any(Option::is_some))
            .collect(),
    ))
}

/// Preference order: larger first for `topk`, smaller first for `bottomk`, NaN last.
fn pref(a: f64, b: f64, desc: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Greater,
        (false, true) => Less,
        _ if desc => b.total_cmp(&a),
        _ => a.total_cmp(&b),
    }
}
