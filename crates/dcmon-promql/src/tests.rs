//! Evaluator tests over an in-memory storage: expected values worked out by hand from
//! Prometheus' definitions, and the property that a range query equals the instant
//! queries at each of its steps.

use crate::{Engine, QueryError, QueryValue, Storage, parse};
use dcmon_tsdb::{Matcher, SeriesData};
use dcmon_wire::Labels;
use proptest::prelude::*;

struct Mem(Vec<SeriesData>);

impl Storage for Mem {
    fn select(&self, m: &[Matcher], start: i64, end: i64) -> Result<Vec<SeriesData>, String> {
        Ok(self
            .0
            .iter()
            .filter(|s| m.iter().all(|m| m.matches(&s.labels)))
            .map(|s| SeriesData {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .copied()
                    .filter(|(t, _)| *t >= start && *t <= end)
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect())
    }
}

fn l(metric: &str, pairs: &[(&str, &str)]) -> Labels {
    Labels::new(metric, pairs.iter().copied()).unwrap()
}

/// Samples every 15 s from 0 to 600 s.
fn series(metric: &str, pairs: &[(&str, &str)], f: impl Fn(i64) -> f64) -> SeriesData {
    SeriesData {
        labels: l(metric, pairs),
        samples: (0..=40).map(|i| (i * 15_000, f(i))).collect(),
    }
}

fn fixture() -> Mem {
    Mem(vec![
        series("req_total", &[("job", "api"), ("code", "200")], |i| {
            (i * 10) as f64
        }),
        series("req_total", &[("job", "api"), ("code", "500")], |i| {
            i as f64
        }),
        series("req_total", &[("job", "web"), ("code", "200")], |i| {
            if i < 20 {
                (i * 4) as f64
            } else {
                ((i - 20) * 4) as f64
            }
        }),
        series("temp", &[("host", "a")], |i| 40.0 + (i % 7) as f64),
        series("temp", &[("host", "b")], |i| 50.0 - (i % 5) as f64),
        series("limit", &[("host", "a")], |_| 45.0),
        series("limit", &[("host", "b")], |_| 48.0),
        series("info", &[("host", "a"), ("rack", "r1")], |_| 1.0),
        series("info", &[("host", "b"), ("rack", "r2")], |_| 1.0),
        series("lat_bucket", &[("le", "0.1")], |i| (i * 2) as f64),
        series("lat_bucket", &[("le", "1")], |i| (i * 3) as f64),
        series("lat_bucket", &[("le", "+Inf")], |i| (i * 4) as f64),
    ])
}

fn instant(q: &str, t_s: i64) -> Result<QueryValue, QueryError> {
    let expr = parse(q)?;
    Engine::default().instant(&fixture(), &expr, t_s * 1000)
}

/// The instant vector as `labels => value` lines, sorted by labels.
fn vector(q: &str, t_s: i64) -> Vec<String> {
    match instant(q, t_s).unwrap_or_else(|e| panic!("{q}: {e}")) {
        QueryValue::Vector(mut v) => {
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v.iter()
                .map(|(l, x)| match l.pairs().is_empty() {
                    true => format!("{{}} => {x}"),
                    false => format!("{l:?} => {x}"),
                })
                .collect()
        }
        other => panic!("{q}: not a vector: {other:?}"),
    }
}

/// The value of a one-element instant vector.
fn one(q: &str, t_s: i64) -> f64 {
    match instant(q, t_s).unwrap_or_else(|e| panic!("{q}: {e}")) {
        QueryValue::Vector(v) if v.len() == 1 => v[0].1,
        other => panic!("{q}: not one element: {other:?}"),
    }
}

fn scalar(q: &str, t_s: i64) -> f64 {
    match instant(q, t_s).unwrap_or_else(|e| panic!("{q}: {e}")) {
        QueryValue::Scalar(x) => x,
        other => panic!("{q}: not a scalar: {other:?}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn selectors_lookback_and_offset() {
    assert_eq!(
        vector("temp{host=\"a\"}", 300),
        vec!["temp{host=\"a\"} => 46"]
    );
    // 5 minutes after the last sample (600 s) it is still visible (closed window) ...
    assert_eq!(vector("temp{host=\"a\"}", 900).len(), 1);
    // ... and gone one millisecond later.
    let expr = parse("temp").unwrap();
    match Engine::default()
        .instant(&fixture(), &expr, 900_001)
        .unwrap()
    {
        QueryValue::Vector(v) => assert!(v.is_empty()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        vector("temp{host=\"a\"} offset 1m", 300),
        vec!["temp{host=\"a\"} => 42"]
    );
    assert_eq!(
        vector("temp{host=\"a\"} @ 60", 300),
        vec!["temp{host=\"a\"} => 44"]
    );
    assert_eq!(
        vector("{__name__=~\"te.*\",host!=\"a\"}", 0),
        vec!["temp{host=\"b\"} => 50"]
    );
}

#[test]
fn rates_and_range_functions() {
    // 10 per 15 s, window [540, 600] holds 5 samples spanning 60 s: exact.
    let v = vector("rate(req_total{code=\"200\",job=\"api\"}[1m])", 600);
    assert_eq!(v, vec!["{code=\"200\",job=\"api\"} => 0.6666666666666666"]);
    // The reset at i = 20 (300 s) is compensated: increase over [240, 360] is 4 per step.
    let v = vector("increase(req_total{job=\"web\"}[2m])", 360);
    assert_eq!(v, vec!["{code=\"200\",job=\"web\"} => 28"]);
    assert_eq!(
        vector("resets(req_total{job=\"web\"}[10m])", 600),
        vec!["{code=\"200\",job=\"web\"} => 1"]
    );
    assert_eq!(
        vector("irate(req_total{code=\"500\"}[1m])", 600),
        vec!["{code=\"500\",job=\"api\"} => 0.06666666666666667"]
    );
    assert_eq!(
        vector("count_over_time(temp{host=\"a\"}[1m])", 600),
        vec!["{host=\"a\"} => 5"]
    );
    // last_over_time keeps the metric name, the others drop it.
    assert_eq!(
        vector("last_over_time(temp{host=\"a\"}[1m])", 600),
        vec!["temp{host=\"a\"} => 45"]
    );
    assert_eq!(
        vector("max_over_time(temp{host=\"a\"}[2m])", 600),
        vec!["{host=\"a\"} => 46"]
    );
    assert!(close(
        one("deriv(req_total{code=\"500\"}[5m])", 600),
        1.0 / 15.0
    ));
    assert!(close(
        one("predict_linear(req_total{code=\"500\"}[5m], 60)", 600),
        44.0
    ));
}

#[test]
fn aggregations() {
    assert_eq!(vector("sum(req_total)", 600), vec!["{} => 520"]);
    assert_eq!(
        vector("sum by (job) (req_total)", 600),
        vec!["{job=\"api\"} => 440", "{job=\"web\"} => 80"]
    );
    assert_eq!(
        vector("count without (code) (req_total)", 600),
        vec!["{job=\"api\"} => 2", "{job=\"web\"} => 1"]
    );
    assert_eq!(
        vector("topk(1, req_total)", 600),
        vec!["req_total{code=\"200\",job=\"api\"} => 400"]
    );
    assert_eq!(
        vector("bottomk(1, temp)", 600),
        vec!["temp{host=\"a\"} => 45"]
    );
    assert_eq!(vector("quantile(0.5, temp)", 600), vec!["{} => 47.5"]);
    assert_eq!(vector("avg(temp)", 600), vec!["{} => 47.5"]);
    assert_eq!(vector("stddev(temp)", 600), vec!["{} => 2.5"]);
    assert_eq!(
        vector("count_values(\"v\",limit)", 0),
        vec!["{v=\"45\"} => 1", "{v=\"48\"} => 1"]
    );
}

#[test]
fn binary_operators_and_matching() {
    assert_eq!(scalar("1 + 2 * 3", 0), 7.0);
    assert_eq!(scalar("2 ^ 3 ^ 2", 0), 512.0);
    assert_eq!(scalar("5 > bool 3", 0), 1.0);
    assert_eq!(vector("temp > 46", 600), vec!["temp{host=\"b\"} => 50"]);
    assert_eq!(
        vector("temp > bool 46", 600),
        vec!["{host=\"a\"} => 0", "{host=\"b\"} => 1"]
    );
    assert_eq!(vector("47 < temp", 600), vec!["temp{host=\"b\"} => 50"]);
    assert_eq!(
        vector("temp - limit", 600),
        vec!["{host=\"a\"} => 0", "{host=\"b\"} => 2"]
    );
    assert_eq!(vector("temp > limit", 600), vec!["temp{host=\"b\"} => 50"]);
    assert_eq!(
        vector("temp * on (host) group_left (rack) info", 600),
        vec![
            "{host=\"a\",rack=\"r1\"} => 45",
            "{host=\"b\",rack=\"r2\"} => 50"
        ]
    );
    assert_eq!(
        vector("temp and on (host) (limit > 46)", 600),
        vec!["temp{host=\"b\"} => 50"]
    );
    assert_eq!(
        vector("temp unless on (host) (limit > 46)", 600),
        vec!["temp{host=\"a\"} => 45"]
    );
    assert_eq!(vector("temp or limit", 600).len(), 2);
    assert_eq!(vector("temp or on () vector(1)", 600).len(), 2);
    // Many-to-many without group_x is an execution error.
    let err = instant("req_total + on (job) req_total", 600).unwrap_err();
    assert!(matches!(err, QueryError::Execution(_)), "{err}");
    assert!(
        err.to_string()
            .contains("duplicate series for the match group"),
        "{err}"
    );
    let err = instant("rate({__name__=~\"temp|limit\"}[1m])", 600).unwrap_err();
    assert!(err.to_string().contains("same labelset"), "{err}");
}

#[test]
fn functions() {
    assert_eq!(
        vector("abs(-temp{host=\"a\"})", 600),
        vec!["{host=\"a\"} => 45"]
    );
    assert_eq!(
        vector("clamp(temp, 46, 49)", 600),
        vec!["{host=\"a\"} => 46", "{host=\"b\"} => 49"]
    );
    assert_eq!(
        vector("round(temp / 7, 0.5)", 600),
        vec!["{host=\"a\"} => 6.5", "{host=\"b\"} => 7"]
    );
    assert_eq!(scalar("scalar(limit{host=\"a\"})", 0), 45.0);
    assert!(scalar("scalar(limit)", 0).is_nan());
    assert_eq!(scalar("time()", 600), 600.0);
    assert_eq!(
        vector("timestamp(temp{host=\"a\"})", 610),
        vec!["{host=\"a\"} => 600"]
    );
    assert_eq!(
        vector("absent(nope{job=\"x\",a=~\"y\"})", 0),
        vec!["{job=\"x\"} => 1"]
    );
    assert!(vector("absent(temp)", 0).is_empty());
    assert_eq!(
        vector("absent_over_time(nope{job=\"x\"}[1m])", 0),
        vec!["{job=\"x\"} => 1"]
    );
    assert_eq!(
        vector(
            "label_replace(info{host=\"a\"}, \"r\",\"rack-$1\",\"rack\",\"r(.*)\")",
            0
        ),
        vec!["info{host=\"a\",r=\"rack-1\",rack=\"r1\"} => 1"]
    );
    assert_eq!(
        vector(
            "label_join(info{host=\"a\"}, \"hr\",\"/\",\"host\",\"rack\")",
            0
        ),
        vec!["info{host=\"a\",hr=\"a/r1\",rack=\"r1\"} => 1"]
    );
    // Buckets at 600 s: 80 / 120 / 160; q=0.5 → rank 80 = first bucket's count.
    assert_eq!(
        vector("histogram_quantile(0.5, lat_bucket)", 600),
        vec!["{} => 0.1"]
    );
    assert!(close(one("histogram_quantile(0.6, lat_bucket)", 600), 0.46));
    assert_eq!(vector("day_of_week(vector(0))", 0), vec!["{} => 4"]);
    assert_eq!(vector("year()", 0), vec!["{} => 1970"]);
    // Subquery: max of the 1-minute rate over the last 5 minutes, steps of 1 minute.
    let v = vector(
        "max_over_time(rate(req_total{code=\"500\"}[1m])[5m:1m])",
        600,
    );
    assert_eq!(v.len(), 1);
    assert!(v[0].ends_with("0.06666666666666667"), "{v:?}");
}

#[test]
fn errors_are_classified() {
    assert!(matches!(instant("sum(", 0), Err(QueryError::BadData(_))));
    assert!(matches!(
        instant("rate(temp)", 0),
        Err(QueryError::BadData(_))
    ));
    assert!(matches!(
        instant("nosuchfunc(temp)", 0),
        Err(QueryError::BadData(_))
    ));
    let range = Engine::default().range(&fixture(), &parse("temp[1m]").unwrap(), 0, 60_000, 15_000);
    assert!(matches!(range, Err(QueryError::BadData(_))));
    let big = Engine {
        max_samples: 10,
        ..Engine::default()
    };
    let err = big
        .instant(&fixture(), &parse("temp[10m]").unwrap(), 600_000)
        .unwrap_err();
    assert!(matches!(err, QueryError::Execution(_)), "{err}");
}

const RANGE_QUERIES: &[&str] = &[
    "temp",
    "temp offset 1m",
    "rate(req_total[1m])",
    "sum by (job) (rate(req_total[2m]))",
    "temp - on (host) limit",
    "temp * on (host) group_left (rack) info",
    "topk(1, temp)",
    "max_over_time(temp[1m:15s])",
    "histogram_quantile(0.9, rate(lat_bucket[1m]))",
    "temp > bool 46 or limit",
    "quantile_over_time(0.3, temp[2m])",
    "label_replace(temp, \"x\",\"$1\",\"host\",\"(.)\")",
    "time() - timestamp(temp)",
    "absent(nope)",
    "scalar(limit{host=\"a\"}) + temp",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// A range query's value at each step is the instant query at that time.
    #[test]
    fn range_query_equals_instant_queries(q in 0..RANGE_QUERIES.len(), start in 0i64..700, steps in 1i64..12, step in 1i64..90) {
        let expr = parse(RANGE_QUERIES[q]).unwrap();
        let engine = Engine::default();
        let storage = fixture();
        let (start, step) = (start * 1000, step * 1000);
        let end = start + (steps - 1) * step;
        let range = engine.range(&storage, &expr, start, end, step).unwrap();
        for k in 0..steps {
            let t = start + k * step;
            let mut want: Vec<(Labels, f64)> = match engine.instant(&storage, &expr, t).unwrap() {
                QueryValue::Vector(v) => v,
                QueryValue::Scalar(x) => vec![(Labels::default(), x)],
                other => panic!("{other:?}"),
            };
            want.sort_by(|a, b| a.0.cmp(&b.0));
            let got: Vec<(Labels, f64)> = range
                .iter()
                .filter_map(|s| s.samples.iter().find(|(st, _)| *st == t).map(|(_, v)| (s.labels.clone(), *v)))
                .collect();
            prop_assert_eq!(got.len(), want.len(), "{} at {}: {:?} vs {:?}", RANGE_QUERIES[q], t, got, want);
            for (g, w) in got.iter().zip(&want) {
                prop_assert_eq!(&g.0, &w.0);
                prop_assert!(close(g.1, w.1), "{} at {}: {} vs {}", RANGE_QUERIES[q], t, g.1, w.1);
            }
        }
    }
}

/// Extreme times and durations from a query (the network) never panic: they answer, or
/// fail with an error.
#[test]
fn extreme_times_and_durations_do_not_panic() {
    let storage = fixture();
    let engine = Engine::default();
    for q in [
        "temp[1000000000y]",
        "rate(temp[1000000000y])",
        "temp offset 1000000000y",
        "temp offset -1000000000y",
        "temp @ 9223372036854775",
        "temp @ -9223372036854775",
        "max_over_time(temp[1000000000y:1ms])",
        "max_over_time(temp[1000y:1000000000y])",
        "temp[5m] @ 9223372036854775 offset -1000000000y",
        "predict_linear(temp[5m], 1e308)",
        "round(temp, 0)",
        "topk(1e300, temp)",
        "histogram_quantile(NaN, lat_bucket)",
        "quantile(NaN, temp)",
        "label_replace(temp, \"x\", \"$1$2$name${9}\", \"host\", \"(.)\")",
        "count_values(\"le\", lat_bucket)",
        "day_of_week(vector(1e300))",
        "year(vector(-Inf))",
    ] {
        let expr = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        for t in [i64::MIN / 2, -1, 0, 600_000, i64::MAX / 2] {
            let _ = engine.instant(&storage, &expr, t);
        }
        let _ = engine.range(&storage, &expr, 0, 600_000, 60_000);
        let _ = engine.range(&storage, &expr, i64::MAX - 10, i64::MAX, 1);
    }
}
