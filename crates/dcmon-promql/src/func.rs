//! PromQL functions, with Prometheus 2.x's arithmetic.

use crate::QueryError;
use crate::eval::{Ctx, unwrap_parens};
use crate::value::{Matrix, Series, Val, VecBuilder, drop_name, is_label_name};
use dcmon_wire::{Labels, METRIC_NAME_LABEL};
use foldhash::HashMap;
use promql_parser::parser::{Call, Expr, VectorSelector};

pub(crate) fn eval(ctx: &Ctx<'_>, call: &Call, times: &[i64]) -> Result<Val, QueryError> {
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(|a| a.as_ref()).collect();
    let n = times.len();
    let arg = |i: usize| -> Result<Val, QueryError> {
        let e = args.get(i).ok_or_else(|| {
            QueryError::BadData(format!("missing argument {} in call to {name}()", i + 1))
        })?;
        ctx.eval(e, times)
    };
    let scalar_arg = |i: usize| arg(i)?.into_scalar();
    let vector_arg = |i: usize| arg(i)?.into_vector();
    match name {
        "time" => Ok(Val::Scalar(
            times.iter().map(|t| *t as f64 / 1000.0).collect(),
        )),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; n])),
        "vector" => Ok(Val::Vector(vec![Series {
            labels: Labels::default(),
            vals: scalar_arg(0)?.into_iter().map(Some).collect(),
        }])),
        "scalar" => {
            let v = vector_arg(0)?;
            Ok(Val::Scalar(
                (0..n)
                    .map(|i| {
                        let mut present = v.iter().filter_map(|s| s.vals[i]);
                        match (present.next(), present.next()) {
                            (Some(x), None) => x,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ))
        }
        "abs" => map(vector_arg(0)?, n, f64::abs),
        "ceil" => map(vector_arg(0)?, n, f64::ceil),
        "floor" => map(vector_arg(0)?, n, f64::floor),
        "exp" => map(vector_arg(0)?, n, f64::exp),
        "sqrt" => map(vector_arg(0)?, n, f64::sqrt),
        "ln" => map(vector_arg(0)?, n, f64::ln),
        "log2" => map(vector_arg(0)?, n, f64::log2),
        "log10" => map(vector_arg(0)?, n, f64::log10),
        "sin" => map(vector_arg(0)?, n, f64::sin),
        "cos" => map(vector_arg(0)?, n, f64::cos),
        "tan" => map(vector_arg(0)?, n, f64::tan),
        "asin" => map(vector_arg(0)?, n, f64::asin),
        "acos" => map(vector_arg(0)?, n, f64::acos),
        "atan" => map(vector_arg(0)?, n, f64::atan),
        "sinh" => map(vector_arg(0)?, n, f64::sinh),
        "cosh" => map(vector_arg(0)?, n, f64::cosh),
        "tanh" => map(vector_arg(0)?, n, f64::tanh),
        "asinh" => map(vector_arg(0)?, n, f64::asinh),
        "acosh" => map(vector_arg(0)?, n, f64::acosh),
        "atanh" => map(vector_arg(0)?, n, f64::atanh),
        "deg" => map(vector_arg(0)?, n, f64::to_degrees),
        "rad" => map(vector_arg(0)?, n, f64::to_radians),
        "sgn" => map(vector_arg(0)?, n, |v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        }),
        "round" => {
            let v = vector_arg(0)?;
            let to = if args.len() > 1 {
                scalar_arg(1)?
            } else {
                vec![1.0; n]
            };
            map_step(v, n, |x, i| {
                let inv = 1.0 / to[i];
                Some((x * inv + 0.5).floor() / inv)
            })
        }
        "clamp" => {
            let v = vector_arg(0)?;
            let (lo, hi) = (scalar_arg(1)?, scalar_arg(2)?);
            map_step(v, n, |x, i| {
                (lo[i] <= hi[i]).then(|| x.max(lo[i]).min(hi[i]))
            })
        }
        "clamp_min" => {
            let v = vector_arg(0)?;
            let lo = scalar_arg(1)?;
            map_step(v, n, |x, i| Some(x.max(lo[i])))
        }
        "clamp_max" => {
            let v = vector_arg(0)?;
            let hi = scalar_arg(1)?;
            map_step(v, n, |x, i| Some(x.min(hi[i])))
        }
        "timestamp" => {
            let v = match args.first().map(|a| unwrap_parens(a)) {
                Some(Expr::VectorSelector(vs)) => ctx.select_vector(vs, times, true)?,
                _ => {
                    let mut v = vector_arg(0)?;
                    for s in &mut v {
                        for (x, t) in s.vals.iter_mut().zip(times) {
                            if x.is_some() {
                                *x = Some(*t as f64 / 1000.0);
                            }
                        }
                    }
                    v
                }
            };
            map(v, n, |x| x)
        }
        "sort" | "sort_desc" => Ok(Val::Vector(vector_arg(0)?)),
        "label_replace" => label_replace(vector_arg(0)?, &string_args(&args[1..])?, n),
        "label_join" => label_join(vector_arg(0)?, &string_args(&args[1..])?, n),
        "absent" => {
            let v = vector_arg(0)?;
            let labels = match args.first().map(|a| unwrap_parens(a)) {
                Some(Expr::VectorSelector(vs)) => absent_labels(vs),
                _ => Labels::default(),
            };
            Ok(absent(n, labels, |i| v.iter().any(|s| s.vals[i].is_some())))
        }
        "histogram_quantile" => histogram_quantile(&scalar_arg(0)?, vector_arg(1)?, n),
        "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour" | "minute"
        | "month" | "year" => {
            let v = if args.is_empty() {
                vec![Series {
                    labels: Labels::default(),
                    vals: times.iter().map(|t| Some((*t / 1000) as f64)).collect(),
                }]
            } else {
                vector_arg(0)?
            };
            map(v, n, |x| date_part(name, x))
        }
        _ => range_function(ctx, name, &args, times),
    }
}

fn string_args(args: &[&Expr]) -> Result<Vec<String>, QueryError> {
    args.iter()
        .map(|a| match unwrap_parens(a) {
            Expr::StringLiteral(s) => Ok(s.val.clone()),
            other => Err(QueryError::BadData(format!(
                "expected a string literal, got {other}"
            ))),
        })
        .collect()
}

/// Applies `f` to every value; the metric name is dropped.
fn map(v: Vec<Series>, n: usize, f: impl Fn(f64) -> f64) -> Result<Val, QueryError> {
    map_step(v, n, |x, _| Some(f(x)))
}

fn map_step(
    v: Vec<Series>,
    n: usize,
    f: impl Fn(f64, usize) -> Option<f64>,
) -> Result<Val, QueryError> {
    let mut b = VecBuilder::new(n);
    for s in v {
        let slot = b.slot(drop_name(&s.labels));
        for (i, x) in s.vals.iter().enumerate() {
            if let Some(y) = x.and_then(|x| f(x, i)) {
                b.put(slot, i, y)?;
            }
        }
    }
    Ok(Val::Vector(b.finish()))
}

/// Labels `absent()` answers with: the selector's equality matchers (a label matched
/// twice, or by another operator, is left out).
fn absent_labels(vs: &VectorSelector) -> Labels {
    let mut l = Labels::default();
    let mut seen: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME_LABEL {
            continue;
        }
        let equal = matches!(m.op, promql_parser::label::MatchOp::Equal);
        if equal && !seen.contains(&m.name.as_str()) {
            l.set(&m.name, &m.value);
        } else {
            l.set(&m.name, "");
        }
        seen.push(&m.name);
    }
    l
}

fn absent(n: usize, labels: Labels, present: impl Fn(usize) -> bool) -> Val {
    let vals: Vec<Option<f64>> = (0..n).map(|i| (!present(i)).then_some(1.0)).collect();
    if vals.iter().all(Option::is_none) {
        return Val::Vector(Vec::new());
    }
    Val::Vector(vec![Series { labels, vals }])
}

fn relabel(v: Vec<Series>, n: usize, f: impl Fn(&Labels) -> Labels) -> Result<Val, QueryError> {
    let mut b = VecBuilder::new(n);
    for s in v {
        let slot = b.slot(f(&s.labels));
        for (i, x) in s.vals.iter().enumerate() {
            if let Some(x) = x {
                b.put(slot, i, *x)?;
            }
        }
    }
    Ok(Val::Vector(b.finish()))
}

fn label_replace(v: Vec<Series>, a: &[String], n: usize) -> Result<Val, QueryError> {
    let [dst, replacement, src, re] = a else {
        return Err(QueryError::BadData(
            "label_replace() needs 5 arguments".into(),
        ));
    };
    let regex = regex::Regex::new(&format!("^(?s:{re})$")).map_err(|e| {
        QueryError::Execution(format!(
            "invalid regular expression in label_replace(): {e}"
        ))
    })?;
    if !is_label_name(dst) {
        return Err(QueryError::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    relabel(v, n, |l| {
        let value = l.get(src).unwrap_or("");
        match regex.captures(value) {
            Some(caps) => {
                let mut out = String::new();
                caps.expand(replacement, &mut out);
                let mut l = l.clone();
                l.set(dst, &out);
                l
            }
            None => l.clone(),
        }
    })
}

fn label_join(v: Vec<Series>, a: &[String], n: usize) -> Result<Val, QueryError> {
    let (Some(dst), Some(sep)) = (a.first(), a.get(1)) else {
        return Err(QueryError::BadData(
            "label_join() needs at least 3 arguments".into(),
        ));
    };
    if !is_label_name(dst) {
        return Err(QueryError::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let srcs = &a[2..];
    if let Some(bad) = srcs.iter().find(|s| !is_label_name(s)) {
        return Err(QueryError::Execution(format!(
            "invalid source label name in label_join(): {bad}"
        )));
    }
    relabel(v, n, |l| {
        let joined: Vec<&str> = srcs.iter().map(|s| l.get(s).unwrap_or("")).collect();
        let mut l = l.clone();
        l.set(dst, &joined.join(sep));
        l
    })
}

/// Prometheus' `quantile`: linear interpolation between the two nearest ranks.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if q.is_nan() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn histogram_quantile(q: &[f64], v: Vec<Series>, n: usize) -> Result<Val, QueryError> {
    // Group by every label but `le` (and the name); each member is one bucket.
    let mut index: HashMap<Labels, usize> = HashMap::default();
    let mut groups: Vec<(Labels, Vec<(f64, usize)>)> = Vec::new();
    for (k, s) in v.iter().enumerate() {
        let Some(upper) = s.labels.get("le").and_then(parse_go_float) else {
            continue;
        };
        let mut key = drop_name(&s.labels);
        key.set("le", "");
        let g = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push((upper, k));
    }
    let mut out = Vec::with_capacity(groups.len());
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for (labels, members) in groups {
        let mut vals = vec![None; n];
        for (i, slot) in vals.iter_mut().enumerate() {
            buckets.clear();
            buckets.extend(
                members
                    .iter()
                    .filter_map(|(upper, k)| v[*k].vals[i].map(|c| (*upper, c))),
            );
            if !buckets.is_empty() {
                *slot = Some(bucket_quantile(q[i], &mut buckets));
            }
        }
        out.push(Series { labels, vals });
    }
    Ok(Val::Vector(
        out.into_iter()
            .filter(|s| s.vals.iter().any(Option::is_some))
            .collect(),
    ))
}

/// Go's `strconv.ParseFloat` for the forms `le` labels use.
fn parse_go_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

/// Prometheus' `bucketQuantile` over `(upper bound, cumulative count)` pairs.
fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce buckets with the same upper bound.
    buckets.dedup_by(|b, a| {
        if a.0 == b.0 {
            a.1 += b.1;
            true
        } else {
            false
        }
    });
    // Ensure monotonic counts.
    let mut max = f64::NEG_INFINITY;
    for b in buckets.iter_mut() {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let last = buckets.len() - 1;
    let b = buckets[..last].partition_point(|x| x.1 < rank);
    if b == last {
        return buckets[last - 1].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let mut start = 0.0;
    let end = buckets[b].0;
    let mut count = buckets[b].1;
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// A date part of Unix time `v` (seconds, UTC), as Prometheus' date functions give it.
fn date_part(name: &str, v: f64) -> f64 {
    if !v.is_finite() {
        return f64::NAN;
    }
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(v as i64) else {
        return f64::NAN;
    };
    (match name {
        "days_in_month" => i64::from(t.month().length(t.year())),
        "day_of_month" => i64::from(t.day()),
        "day_of_week" => i64::from(t.weekday().number_days_from_sunday()),
        "day_of_year" => i64::from(t.ordinal()),
        "hour" => i64::from(t.hour()),
        "minute" => i64::from(t.minute()),
        "month" => i64::from(u8::from(t.month())),
        _ => i64::from(t.year()),
    }) as f64
}

/// Functions over a range vector.
fn range_function(
    ctx: &Ctx<'_>,
    name: &str,
    args: &[&Expr],
    times: &[i64],
) -> Result<Val, QueryError> {
    let n = times.len();
    let matrix_at = usize::from(name == "quantile_over_time");
    let Some(marg) = args.get(matrix_at) else {
        return Err(QueryError::BadData(format!(
            "function {name}() is not supported by this server"
        )));
    };
    let known = matches!(
        name,
        "rate"
            | "irate"
            | "increase"
            | "delta"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "holt_winters"
            | "double_exponential_smoothing"
            | "changes"
            | "resets"
            | "avg_over_time"
            | "min_over_time"
            | "max_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "last_over_time"
            | "present_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "quantile_over_time"
            | "mad_over_time"
            | "absent_over_time"
    );
    if !known {
        return Err(QueryError::BadData(format!(
            "function {name}() is not supported by this server"
        )));
    }
    let scalar =
        |i: usize| -> Result<Vec<f64>, QueryError> { ctx.eval(args[i], times)?.into_scalar() };
    let m: Matrix = ctx.eval(marg, times)?.into_matrix()?;
    if name == "absent_over_time" {
        let labels = match unwrap_parens(marg) {
            Expr::MatrixSelector(ms) => absent_labels(&ms.vs),
            _ => Labels::default(),
        };
        return Ok(absent(n, labels, |i| {
            m.series.iter().any(|s| !m.window(s, i).is_empty())
        }));
    }
    let p1 = match name {
        "quantile_over_time" => Some(scalar(0)?),
        "predict_linear" | "holt_winters" | "double_exponential_smoothing" => Some(scalar(1)?),
        _ => None,
    };
    let p2 = match name {
        "holt_winters" | "double_exponential_smoothing" => Some(scalar(2)?),
        _ => None,
    };
    let range_s = m.range as f64 / 1000.0;
    let keep_name = name == "last_over_time";
    let mut out: Vec<Series> = Vec::with_capacity(m.series.len());
    let mut seen: HashMap<Labels, ()> = HashMap::default();
    let mut scratch: Vec<f64> = Vec::new();
    for s in &m.series {
        let labels = if keep_name {
            s.labels.clone()
        } else {
            drop_name(&s.labels)
        };
        let mut vals = vec![None; n];
        for (i, slot) in vals.iter_mut().enumerate() {
            let w = m.window(s, i);
            if w.is_empty() {
                continue;
            }
            let end = m.ends[i];
            *slot = match name {
                "rate" => extrapolated(w, end.saturating_sub(m.range), end, true, Some(range_s)),
                "increase" => extrapolated(w, end.saturating_sub(m.range), end, true, None),
                "delta" => extrapolated(w, end.saturating_sub(m.range), end, false, None),
                "irate" => instant_delta(w, true),
                "idelta" => instant_delta(w, false),
                "deriv" => (w.len() >= 2).then(|| linear_regression(w, w[0].0).0),
                "predict_linear" => (w.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(w, times[i]);
                    intercept + slope * p1.as_ref().map_or(0.0, |p| p[i])
                }),
                "holt_winters" | "double_exponential_smoothing" => {
                    let (sf, tf) = (
                        p1.as_ref().map_or(0.0, |p| p[i]),
                        p2.as_ref().map_or(0.0, |p| p[i]),
                    );
                    if !(sf > 0.0 && sf < 1.0) {
                        return Err(QueryError::Execution(format!(
                            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf}"
                        )));
                    }
                    if !(tf > 0.0 && tf < 1.0) {
                        return Err(QueryError::Execution(format!(
                            "invalid trend factor. Expected: 0 < tf < 1, got: {tf}"
                        )));
                    }
                    holt_winters(w, sf, tf)
                }
                "changes" => Some(
                    w.windows(2)
                        .filter(|p| !(p[0].1 == p[1].1 || (p[0].1.is_nan() && p[1].1.is_nan())))
                        .count() as f64,
                ),
                "resets" => Some(w.windows(2).filter(|p| p[1].1 < p[0].1).count() as f64),
                "avg_over_time" => Some(avg(w)),
                "min_over_time" => {
                    Some(w.iter().fold(
                        w[0].1,
                        |m, (_, v)| {
                            if *v < m || m.is_nan() { *v } else { m }
                        },
                    ))
                }
                "max_over_time" => {
                    Some(w.iter().fold(
                        w[0].1,
                        |m, (_, v)| {
                            if *v > m || m.is_nan() { *v } else { m }
                        },
                    ))
                }
                "sum_over_time" => Some(kahan(w.iter().map(|(_, v)| *v))),
                "count_over_time" => Some(w.len() as f64),
                "last_over_time" => Some(w[w.len() - 1].1),
                "present_over_time" => Some(1.0),
                "stddev_over_time" => Some(stdvar(w).sqrt()),
                "stdvar_over_time" => Some(stdvar(w)),
                "quantile_over_time" => {
                    scratch.clear();
                    scratch.extend(w.iter().map(|(_, v)| *v));
                    Some(quantile(
                        p1.as_ref().map_or(f64::NAN, |p| p[i]),
                        &mut scratch,
                    ))
                }
                "mad_over_time" => {
                    scratch.clear();
                    scratch.extend(w.iter().map(|(_, v)| *v));
                    let median = quantile(0.5, &mut scratch);
                    for x in scratch.iter_mut() {
                        *x = (*x - median).abs();
                    }
                    Some(quantile(0.5, &mut scratch))
                }
                _ => None,
            };
        }
        if vals.iter().all(Option::is_none) {
            continue;
        }
        if seen.insert(labels.clone(), ()).is_some() {
            return Err(crate::value::same_labelset());
        }
        ctx.charge(n)?;
        out.push(Series { labels, vals });
    }
    Ok(Val::Vector(out))
}

/// Neumaier's compensated summation step, as Prometheus uses it.
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

fn kahan(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for v in values {
        (sum, c) = kahan_inc(v, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

fn avg(w: &[(i64, f64)]) -> f64 {
    let (mut mean, mut c, mut count) = (0.0f64, 0.0, 0.0);
    for (_, v) in w {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (*v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

fn stdvar(w: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (_, v) in w {
        count += 1.0;
        let delta = v - (mean + cmean);
        (mean, cmean) = kahan_inc(delta / count, mean, cmean);
        (aux, caux) = kahan_inc(delta * (v - (mean + cmean)), aux, caux);
    }
    (aux + caux) / count
}

/// `rate`, `increase` and `delta`: the change over the window, extrapolated towards the
/// window's edges as Prometheus 2.x does (counter resets, the zero point of counters).
fn extrapolated(
    w: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    counter: bool,
    per_second: Option<f64>,
) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (first, last) = (w[0], w[w.len() - 1]);
    let mut result = last.1 - first.1;
    if counter {
        let mut prev = 0.0;
        for (_, v) in w {
            if *v < prev {
                result += prev;
            }
            prev = *v;
        }
    }
    let mut to_start = (first.0 - range_start) as f64 / 1000.0;
    let to_end = (range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg_gap = sampled / (w.len() - 1) as f64;
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_gap * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_gap / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg_gap / 2.0
    };
    let mut value = result * (interval / sampled);
    if let Some(range) = per_second {
        value /= range;
    }
    Some(value)
}

/// `irate` and `idelta`: the last two samples.
fn instant_delta(w: &[(i64, f64)], rate: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (prev, last) = (w[w.len() - 2], w[w.len() - 1]);
    let mut value = if rate && last.1 < prev.1 {
        last.1
    } else {
        last.1 - prev.1
    };
    let interval = last.0 - prev.0;
    if interval == 0 {
        return None;
    }
    if rate {
        value /= interval as f64 / 1000.0;
    }
    Some(value)
}

/// Least-squares fit with x in seconds relative to `intercept_ms`: (slope, intercept).
fn linear_regression(w: &[(i64, f64)], intercept_ms: i64) -> (f64, f64) {
    let init = w[0].1;
    let constant = w.iter().all(|(_, v)| *v == init);
    if constant {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let n = w.len() as f64;
    let (mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (t, v) in w {
        let x = (t - intercept_ms) as f64 / 1000.0;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(*v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn holt_winters(w: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, w[0].1);
    let mut b = w[1].1 - w[0].1;
    for (i, (_, v)) in w.iter().enumerate().skip(1) {
        let x = sf * v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_parts_match_known_days() {
        assert_eq!(date_part("year", 0.0), 1970.0);
        assert_eq!(date_part("day_of_month", 1_709_164_800.0), 29.0); // 2024-02-29
        assert_eq!(date_part("month", 1_709_164_800.0), 2.0);
        assert_eq!(date_part("day_of_week", 0.0), 4.0);
        assert_eq!(date_part("days_in_month", 1_709_164_800.0), 29.0); // 2024-02-29
        assert_eq!(date_part("day_of_year", 1_735_603_200.0), 366.0); // 2024-12-31
        assert_eq!(date_part("hour", 1_735_603_200.0 + 3_723.0), 1.0);
        assert_eq!(date_part("minute", 1_735_603_200.0 + 3_723.0), 2.0);
    }

    #[test]
    fn quantile_interpolates_and_clamps() {
        assert_eq!(quantile(0.5, &mut [1.0, 3.0, 2.0, 4.0]), 2.5);
        assert_eq!(quantile(-1.0, &mut [1.0]), f64::NEG_INFINITY);
        assert_eq!(quantile(2.0, &mut [1.0]), f64::INFINITY);
        assert!(quantile(0.5, &mut []).is_nan());
    }

    #[test]
    fn bucket_quantile_follows_prometheus() {
        let mut b = vec![(0.1, 10.0), (0.5, 20.0), (1.0, 40.0), (f64::INFINITY, 40.0)];
        // rank 20 is exactly the 0.5 bucket's count: its upper bound.
        assert_eq!(bucket_quantile(0.5, &mut b.clone()), 0.5);
        // rank 36 falls in (0.5, 1]: 0.5 + 0.5 * (16/20).
        assert!((bucket_quantile(0.9, &mut b) - 0.9).abs() < 1e-12);
        let mut no_inf = vec![(0.1, 1.0), (0.5, 2.0)];
        assert!(bucket_quantile(0.5, &mut no_inf).is_nan());
    }

    #[test]
    fn rate_extrapolates_like_prometheus() {
        // 5 samples 15 s apart over a 60 s window ending at the last one, +10 each.
        let w: Vec<(i64, f64)> = (0..5)
            .map(|i| (i * 15_000, 10.0 * i as f64 + 100.0))
            .collect();
        let r = extrapolated(&w, 0, 60_000, true, Some(60.0)).unwrap();
        assert!((r - 40.0 / 60.0).abs() < 1e-12, "{r}");
        // A counter reset adds the value before the reset.
        let w = [(0, 10.0), (15_000, 20.0), (30_000, 5.0)];
        let inc = extrapolated(&w, 0, 30_000, true, None).unwrap();
        assert!((inc - 15.0).abs() < 1e-12, "{inc}");
    }
}
