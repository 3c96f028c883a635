//! PromQL compatibility against the reference: the same samples are remote-written to a
//! real Prometheus (Debian's 2.42) and to dcmon, then a table of queries is evaluated by
//! both, as instant queries at three times and as one range query, and every answer must
//! agree: status, result type, series, timestamps and values. Every disagreement is
//! printed as a table before the test fails, so one run shows the whole gap.

use super::{OperatorServer, PinnedHttp, Proc, form_encode, free_port, wait_ok, write};
use dcmon_wire::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const STEP_MS: i64 = 15_000;
/// 60 minutes of samples every 15 s, both ends included.
const POINTS: usize = 241;
/// Samples are sent in 5-minute slices, each slice holding every series: Prometheus refuses
/// a sample older than the newest one of its series, so the slices go out in time order.
const SLICE_POINTS: usize = 20;
const MINUTE_MS: i64 = 60_000;

/// Expressions evaluated by both servers. `<T30>` stands for T0 + 30 min in Unix seconds
/// (the data start T0 is only known at run time).
const QUERIES: &[&str] = &[
    // Literals.
    "42",
    "-1.5",
    "1e3",
    "0x1F",
    "NaN",
    "-Inf",
    r#""hello""#,
    // Selectors.
    "up",
    "http_requests_total",
    r#"http_requests_total{job="api"}"#,
    r#"http_requests_total{job!="api"}"#,
    r#"http_requests_total{instance=~"a:1|b:2"}"#,
    r#"http_requests_total{code!~"2.."}"#,
    r#"{__name__=~"disk_.*"}"#,
    r#"{__name__=~"disk_.*_bytes", mount="/data"}"#,
    r#"{__name__!~"disk_.*|http_.*|request_.*|node_.*|cpu_.*", job="api"}"#,
    "node_temp_celsius offset 5m",
    r#"node_temp_celsius{host="h4"}"#,
    r#"node_temp_celsius{host="h3", sensor="cpu"}"#,
    "node_temp_celsius @ <T30>",
    "http_requests_total @ <T30> offset 10m",
    "node_temp_celsius @ start()",
    "http_requests_total @ end()",
    "http_requests_total offset 1h",
    r#"request_duration_seconds_bucket{le="+Inf"}"#,
    "request_duration_seconds_count",
    "build_info",
    r#"disk_free_bytes{mount="/"}"#,
    // Range vectors at top level (instant queries only).
    "up[1m]",
    r#"node_temp_celsius{host="h1"}[2m]"#,
    r#"http_requests_total{job="web", code="500"}[5m] offset 3m"#,
    r#"node_temp_celsius{host="h4"}[10m] @ <T30>"#,
    // Counter and gauge functions over range vectors.
    "rate(http_requests_total[5m])",
    "rate(http_requests_total[1m])",
    "irate(http_requests_total[5m])",
    "increase(http_requests_total[10m])",
    r#"increase(http_requests_total{code="500"}[1h])"#,
    "rate(cpu_seconds_total[5m] offset 5m)",
    "rate(http_requests_total[5m] @ <T30>)",
    "rate(http_requests_total[5m] offset 1h)",
    r#"irate(cpu_seconds_total{mode="user"}[1m])"#,
    "delta(node_temp_celsius[5m])",
    "delta(disk_used_bytes[15m])",
    "idelta(node_temp_celsius[2m])",
    "deriv(node_temp_celsius[10m])",
    "predict_linear(node_temp_celsius[10m], 600)",
    "predict_linear(disk_used_bytes[30m], 3600)",
    "resets(http_requests_total[30m])",
    "changes(up[60m])",
    "changes(node_temp_celsius[5m])",
    // *_over_time.
    "avg_over_time(node_temp_celsius[5m])",
    "min_over_time(node_temp_celsius[10m])",
    "max_over_time(http_requests_total[10m])",
    "sum_over_time(up[30m])",
    r#"count_over_time(node_temp_celsius{host="h3"}[5m])"#,
    "last_over_time(node_temp_celsius[10m])",
    r#"present_over_time(node_temp_celsius{host="h4"}[5m])"#,
    "stddev_over_time(node_temp_celsius[10m])",
    "stdvar_over_time(node_temp_celsius[10m])",
    "quantile_over_time(0.9, node_temp_celsius[10m])",
    "quantile_over_time(0, http_requests_total[5m])",
    "quantile_over_time(1.5, up[5m])",
    r#"absent_over_time(node_temp_celsius{host="h4"}[5m])"#,
    r#"absent_over_time(nonexistent_metric{job="x"}[5m])"#,
    r#"absent_over_time(up{job="api"}[5m])"#,
    // Aggregations.
    "sum(http_requests_total)",
    "sum by (job) (http_requests_total)",
    "sum without (instance) (http_requests_total)",
    "avg by (code) (http_requests_total)",
    "min by (host) (node_temp_celsius)",
    "max without (sensor) (node_temp_celsius)",
    "count(node_temp_celsius)",
    "count by (job) (up)",
    "group by (job) (http_requests_total)",
    "group without (instance) (up)",
    "stddev(node_temp_celsius)",
    "stdvar by (sensor) (node_temp_celsius)",
    "topk(3, node_temp_celsius)",
    "bottomk(2, http_requests_total)",
    "topk by (job) (1, http_requests_total)",
    "topk(2, rate(cpu_seconds_total[5m]))",
    "quantile(0.5, node_temp_celsius)",
    "quantile by (sensor) (0.9, node_temp_celsius)",
    r#"count_values("value", up)"#,
    r#"count_values by (job) ("v", up)"#,
    "sum(rate(http_requests_total[5m])) by (job, code)",
    "avg without (mode) (rate(cpu_seconds_total[5m]))",
    "max(disk_free_bytes) by (mount)",
    "min(up)",
    "sum(nonexistent_metric)",
    "count(nonexistent_metric)",
    "count(count by (host) (node_temp_celsius))",
    "topk(1, sum by (job) (rate(http_requests_total[5m])))",
    // Binary arithmetic.
    "1 + 2",
    "7 - 10",
    "3 * 4.5",
    "1 / 0",
    "-1 / 0",
    "0 / 0",
    "7 % 3",
    "-7 % 3",
    "2 ^ 10",
    "2 ^ 0.5",
    "1 atan2 2",
    "node_temp_celsius * 2",
    "node_temp_celsius - 40",
    "100 / up",
    "up / 0",
    "http_requests_total % 7",
    "node_temp_celsius % -3",
    "node_temp_celsius ^ 2",
    "node_temp_celsius atan2 10",
    "2 * node_temp_celsius + 1",
    "disk_used_bytes + disk_free_bytes",
    "disk_used_bytes / (disk_used_bytes + disk_free_bytes)",
    "request_duration_seconds_sum / request_duration_seconds_count",
    "rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])",
    r#"http_requests_total{code="500"} / on(job, instance) http_requests_total{code="200"}"#,
    r#"http_requests_total{code="500"} / ignoring(code) http_requests_total{code="200"}"#,
    r#"sum by (job) (rate(http_requests_total{code="500"}[5m])) / sum by (job) (rate(http_requests_total[5m]))"#,
    "http_requests_total / ignoring(code) group_left sum without (code) (http_requests_total)",
    "http_requests_total * on(job, instance) group_left(version) build_info",
    "build_info * on(job, instance) group_right(version) http_requests_total",
    "up * on(job, instance) group_left sum by (job, instance) (http_requests_total)",
    r#"scalar(node_temp_celsius{host="h1", sensor="cpu"}) * up"#,
    "max(node_temp_celsius) - min(node_temp_celsius)",
    // Comparisons.
    "node_temp_celsius > 45",
    "node_temp_celsius > bool 45",
    "node_temp_celsius < 0",
    "node_temp_celsius != 40",
    "node_temp_celsius <= bool 50",
    "http_requests_total >= 20000",
    "up == 0",
    "up == bool 1",
    "1 < bool 2",
    "3 > bool 2",
    "2 == bool 2",
    "disk_used_bytes > disk_free_bytes",
    "disk_used_bytes > bool disk_free_bytes",
    "sum(http_requests_total) by (job) > 30000",
    // Set operators.
    r#"up and on(job, instance) http_requests_total{code="500"}"#,
    r#"node_temp_celsius{sensor="cpu"} or node_temp_celsius{host="h1"}"#,
    r#"node_temp_celsius unless node_temp_celsius{sensor="gpu"}"#,
    "up unless on(instance) build_info",
    "up or vector(0)",
    "nonexistent_metric or vector(1)",
    r#"http_requests_total{job="api"} and on() vector(1)"#,
    // Unary minus.
    "-node_temp_celsius",
    r#"-http_requests_total{job="api"}"#,
    "-(1 + 2)",
    "-sum(up)",
    // Math functions.
    "abs(node_temp_celsius)",
    "ceil(node_temp_celsius)",
    "floor(node_temp_celsius)",
    "round(node_temp_celsius)",
    "round(node_temp_celsius, 0.5)",
    "sqrt(node_temp_celsius)",
    "exp(node_temp_celsius / 10)",
    "ln(http_requests_total)",
    "log2(up)",
    "log10(disk_used_bytes)",
    "clamp(node_temp_celsius, 41, 50)",
    "clamp_min(node_temp_celsius, 0)",
    "clamp_max(node_temp_celsius, 45)",
    "sgn(node_temp_celsius)",
    // Trigonometry.
    "sin(node_temp_celsius)",
    "cos(node_temp_celsius)",
    "tan(node_temp_celsius)",
    "asin(node_temp_celsius / 100)",
    "acos(node_temp_celsius / 100)",
    "atan(node_temp_celsius)",
    "sinh(node_temp_celsius / 10)",
    "cosh(node_temp_celsius / 10)",
    "tanh(node_temp_celsius / 10)",
    "asinh(node_temp_celsius)",
    "acosh(up + 1)",
    "atanh(node_temp_celsius / 100)",
    "deg(node_temp_celsius)",
    "rad(node_temp_celsius)",
    "pi()",
    // Time and type conversion.
    "time()",
    "timestamp(node_temp_celsius)",
    r#"timestamp(node_temp_celsius{host="h4"})"#,
    "time() - timestamp(node_temp_celsius)",
    "vector(1)",
    "vector(time())",
    "scalar(sum(up))",
    "scalar(up)",
    r#"absent(nonexistent_metric{job="x"})"#,
    "absent(up)",
    r#"absent(nonexistent_metric{job="a", instance=~"x"})"#,
    "day_of_week()",
    "day_of_month()",
    "days_in_month()",
    "day_of_year()",
    "hour()",
    "minute()",
    "month()",
    "year()",
    "minute(timestamp(up))",
    "day_of_week(vector(1700000000))",
    "days_in_month(vector(1709251200))",
    // Labels.
    r#"label_replace(build_info, "major", "$1", "version", "(\\d+)\\..*")"#,
    r#"label_replace(up, "host", "$1", "instance", "(.*):.*")"#,
    r#"label_replace(rate(http_requests_total[5m]), "class", "${1}xx", "code", "(.)..")"#,
    r#"label_replace(up, "nothing", "x", "instance", "no-match")"#,
    r#"label_join(up, "id", "-", "job", "instance")"#,
    r#"label_join(build_info, "v", "", "version")"#,
    // Histograms.
    "histogram_quantile(0.9, sum by (le, job) (rate(request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.5, rate(request_duration_seconds_bucket[10m]))",
    "histogram_quantile(0.99, sum by (le) (increase(request_duration_seconds_bucket[30m])))",
    "histogram_quantile(1.5, sum by (le, job) (rate(request_duration_seconds_bucket[5m])))",
    "sum by (le) (request_duration_seconds_bucket)",
    // Sorting.
    "sort(node_temp_celsius)",
    "sort_desc(http_requests_total)",
    "sort(rate(http_requests_total[5m]))",
    "sort_desc(sum by (job) (http_requests_total))",
    // Subqueries.
    "max_over_time(rate(http_requests_total[1m])[10m:1m])",
    "avg_over_time(node_temp_celsius[10m:])",
    "min_over_time(deriv(node_temp_celsius[5m])[15m:2m])",
    "rate(http_requests_total[5m])[10m:1m]",
    "sum_over_time(up[30m:5m] offset 5m)",
    "max_over_time(sum(up)[20m:30s] @ <T30>)",
    // Holt-Winters.
    "holt_winters(node_temp_celsius[10m], 0.5, 0.5)",
    "holt_winters(disk_used_bytes[30m], 0.3, 0.7)",
];

/// Expressions Prometheus refuses: dcmon must refuse them too, with the same `errorType`
/// (the messages may differ). `true` marks those evaluated as a range query.
const ERROR_QUERIES: &[(&str, bool)] = &[
    ("rate(http_requests_total)", false),
    ("sum(http_requests_total[5m])", false),
    ("http_requests_total{", false),
    ("{}", false),
    (r#"{job=~".*"}"#, false),
    ("1 > 2", false),
    ("1 +", false),
    ("vector(1)[5m]", false),
    ("quantile_over_time(0.5, up)", false),
    ("histogram_quantile(0.5)", false),
    ("nonexistent_function(up)", false),
    (r#"abs("x")"#, false),
    (r#"topk("3", up)"#, false),
    ("rate(up[5m:1m:1m])", false),
    ("http_requests_total * on(job) up", false),
    ("up * on(job) group_left http_requests_total", false),
    (
        r#"label_replace(node_temp_celsius, "sensor", "x", "sensor", ".*")"#,
        false,
    ),
    (r#"label_replace(up, "1bad", "x", "job", ".*")"#, false),
    (r#"count_values("bad-name", up)"#, false),
    ("up[5m]", true),
    ("rate(up[5m])[10m:1m]", true),
];

/// One series to write: sorted labels and a value (or none) at each of the `POINTS` steps.
struct Series {
    labels: Vec<(String, String)>,
    values: Vec<Option<f64>>,
}

fn series(name: &str, labels: &[(&str, &str)], value: impl FnMut(usize) -> Option<f64>) -> Series {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain([("__name__".to_owned(), name.to_owned())])
        .collect();
    labels.sort();
    Series {
        labels,
        values: (0..POINTS).map(value).collect(),
    }
}

/// The data set. Values are sums of small dyadic fractions, so they are exact, and series
/// of one metric lie in separate bands, so sorting and topk have no ties.
fn data_set() -> Vec<Series> {
    let mut out = Vec::new();
    let mut seed = 0;
    for job in ["api", "web"] {
        for instance in ["a:1", "b:2", "c:3"] {
            for code in ["200", "500"] {
                let s = seed;
                seed += 1;
                let mut v = 10_000.0 * (s + 1) as f64;
                out.push(series(
                    "http_requests_total",
                    &[("job", job), ("instance", instance), ("code", code)],
                    move |k| {
                        if k > 0 {
                            v += (s + 1) as f64 + ((k * 7 + s * 3) % 11) as f64 / 16.0;
                        }
                        // Two counter resets, to values no other series comes near.
                        match (s, k) {
                            (3, 100) => v = 2.0,
                            (8, 170) => v = 5000.5,
                            _ => {}
                        }
                        Some(v)
                    },
                ));
            }
        }
    }
    for (i, (host, mode)) in ["h1", "h2", "h3", "h4", "h5"]
        .iter()
        .flat_map(|h| [(h, "user"), (h, "system")])
        .enumerate()
    {
        let mut v = 100.0 * i as f64;
        out.push(series(
            "cpu_seconds_total",
            &[("host", host), ("mode", mode)],
            move |k| {
                v += 0.25 * (i + 1) as f64 + (k % 4) as f64 * 0.125;
                Some(v)
            },
        ));
    }
    let temps = [
        ("h1", 40.0, 43.5),
        ("h2", 47.0, 50.5),
        ("h3", 54.0, 57.5),
        ("h4", 61.0, 64.5),
        ("h5", -0.5, -10.0),
    ];
    for (i, (host, cpu, gpu)) in temps.into_iter().enumerate() {
        for (j, (sensor, base)) in [("cpu", cpu), ("gpu", gpu)].into_iter().enumerate() {
            let phase = (2 * i + j) as f64 * 0.7;
            out.push(series(
                "node_temp_celsius",
                &[("host", host), ("sensor", sensor)],
                move |k| {
                    // h4/gpu stops halfway; h3/cpu has a 3-minute gap.
                    let stopped = host == "h4" && sensor == "gpu" && k > 120;
                    let gap = host == "h3" && sensor == "cpu" && (80..92).contains(&k);
                    let wave = (1.25 * (k as f64 * 0.11 + phase).sin() * 64.0).round() / 64.0;
                    (!stopped && !gap).then_some(base + wave)
                },
            ));
        }
    }
    for job in ["api", "web"] {
        for instance in ["a:1", "b:2", "c:3"] {
            out.push(series(
                "up",
                &[("job", job), ("instance", instance)],
                move |k| {
                    let down = (job, instance) == ("web", "c:3")
                        || ((job, instance) == ("api", "b:2") && (100..140).contains(&k));
                    Some(if down { 0.0 } else { 1.0 })
                },
            ));
        }
    }
    for (job, instance, version) in [("api", "a:1", "1.2.3"), ("web", "b:2", "2.0.0-rc.1")] {
        out.push(series(
            "build_info",
            &[("job", job), ("instance", instance), ("version", version)],
            |_| Some(1.0),
        ));
    }
    for (i, (host, mount)) in [("h1", "/"), ("h1", "/data"), ("h2", "/"), ("h2", "/data")]
        .into_iter()
        .enumerate()
    {
        let used = move |k: usize| {
            1e9 * (i + 1) as f64 + (k * 4096 * (i + 1)) as f64 + ((k % 3) * 512) as f64
        };
        let labels = [("host", host), ("mount", mount)];
        out.push(series("disk_used_bytes", &labels, move |k| Some(used(k))));
        out.push(series("disk_free_bytes", &labels, move |k| {
            Some(7e9 - 1.5 * used(k))
        }));
    }
    for (j, job) in ["api", "web"].into_iter().enumerate() {
        // Observations per step in (0, 0.1], (0.1, 0.5], (0.5, 1], (1, 5], (5, +Inf).
        let step = move |k: usize| {
            [
                k % 3 + 1 + j,
                k % 5 + 2,
                k % 2 + j,
                usize::from(k % 7 == 0),
                usize::from(k % 11 == 0),
            ]
        };
        let cumulative = move |k: usize| {
            let mut totals = [0usize; 5];
            for i in 0..=k {
                for (t, n) in totals.iter_mut().zip(step(i)) {
                    *t += n;
                }
            }
            totals
        };
        for (b, le) in ["0.1", "0.5", "1", "5", "+Inf"].into_iter().enumerate() {
            out.push(series(
                "request_duration_seconds_bucket",
                &[("job", job), ("le", le)],
                move |k| Some(cumulative(k)[..=b].iter().sum::<usize>() as f64),
            ));
        }
        out.push(series(
            "request_duration_seconds_count",
            &[("job", job)],
            move |k| Some(cumulative(k).iter().sum::<usize>() as f64),
        ));
        out.push(series(
            "request_duration_seconds_sum",
            &[("job", job)],
            move |k| {
                let means = [0.0625, 0.25, 0.75, 2.5, 8.0];
                Some(
                    cumulative(k)
                        .iter()
                        .zip(means)
                        .map(|(n, m)| *n as f64 * m)
                        .sum(),
                )
            },
        ));
    }
    out
}

/// The remote_write bodies, one per 5-minute slice, in time order.
fn slices(data: &[Series], t0: i64) -> Vec<Vec<u8>> {
    (0..POINTS)
        .step_by(SLICE_POINTS)
        .map(|first| {
            let ks = first..(first + SLICE_POINTS).min(POINTS);
            let timeseries = data
                .iter()
                .map(|s| TimeSeries {
                    labels: s
                        .labels
                        .iter()
                        .map(|(name, value)| Label {
                            name: name.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                    samples: ks
                        .clone()
                        .filter_map(|k| {
                            s.values[k].map(|value| Sample {
                                value,
                                timestamp: t0 + k as i64 * STEP_MS,
                            })
                        })
                        .collect(),
                })
                .filter(|ts| !ts.samples.is_empty())
                .collect();
            encode(&WriteRequest { timeseries })
        })
        .collect()
}

/// A server under test: where it is and how to authenticate.
struct Target<'a> {
    name: &'static str,
    http: &'a PinnedHttp,
    base: String,
    token: Option<String>,
}

impl Target<'_> {
    fn remote_write(&self, body: Vec<u8>) -> Result<u16, String> {
        self.http.rt.block_on(async {
            let mut req = self
                .http
                .http
                .post(format!("{}/api/v1/write", self.base))
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.map_err(|e| e.to_string())?;
            Ok(resp.status().as_u16())
        })
    }

    /// The JSON answer; a transport failure or a body that is not JSON becomes an error
    /// answer of type `transport`, so that it shows in the report like any other.
    fn query(&self, query: &str, eval: Eval) -> Value {
        let url = match eval {
            Eval::Instant(t) => format!(
                "{}/api/v1/query?query={}&time={}",
                self.base,
                form_encode(query),
                secs(t)
            ),
            Eval::Range { start, end, step } => format!(
                "{}/api/v1/query_range?query={}&start={}&end={}&step={}",
                self.base,
                form_encode(query),
                secs(start),
                secs(end),
                secs(step)
            ),
        };
        match self.http.get(&url, self.token.as_deref()) {
            Ok((_, body)) if body.is_object() => body,
            Ok((status, _)) => transport_error(format!("HTTP {status} without a JSON body")),
            Err(e) => transport_error(e),
        }
    }
}

fn transport_error(message: String) -> Value {
    serde_json::json!({ "status": "error", "errorType": "transport", "error": message })
}

/// Unix seconds with millisecond precision, as the API takes them.
fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

#[derive(Clone, Copy)]
enum Eval {
    Instant(i64),
    Range { start: i64, end: i64, step: i64 },
}

impl Eval {
    fn describe(&self, t0: i64) -> String {
        let rel = |t: i64| {
            let d = t - t0;
            format!("T0+{}m{}", d / MINUTE_MS, secs_suffix(d % MINUTE_MS))
        };
        match *self {
            Eval::Instant(t) => format!("instant {}", rel(t)),
            Eval::Range { start, end, step } => {
                format!("range {}..{} /{}s", rel(start), rel(end), step / 1000)
            }
        }
    }
}

fn secs_suffix(ms: i64) -> String {
    if ms == 0 {
        String::new()
    } else {
        format!("{}s", ms / 1000)
    }
}

/// One series of an answer (scalars and strings are one series without labels).
#[derive(Debug, PartialEq)]
struct Answered {
    metric: Vec<(String, String)>,
    points: Vec<(i64, String)>,
}

/// An answer reduced to what is compared.
enum Answer {
    Error { kind: String, message: String },
    Data { kind: String, series: Vec<Answered> },
}

fn time_ms(v: &Value) -> Option<i64> {
    Some((v.as_f64()? * 1000.0).round() as i64)
}

fn point(v: &Value) -> Option<(i64, String)> {
    Some((time_ms(v.get(0)?)?, v.get(1)?.as_str()?.to_owned()))
}

fn metric(v: &Value) -> Option<Vec<(String, String)>> {
    let mut m: Vec<(String, String)> = v
        .as_object()?
        .iter()
        .map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect::<Option<_>>()?;
    m.sort();
    Some(m)
}

fn parse_answer(v: &Value) -> Result<Answer, String> {
    let malformed = || format!("malformed answer: {v}");
    match v["status"].as_str() {
        Some("error") => {
            return Ok(Answer::Error {
                kind: v["errorType"].as_str().ok_or_else(malformed)?.to_owned(),
                message: v["error"].as_str().unwrap_or("").to_owned(),
            });
        }
        Some("success") => {}
        _ => return Err(malformed()),
    }
    let data = &v["data"];
    let kind = data["resultType"]
        .as_str()
        .ok_or_else(malformed)?
        .to_owned();
    let result = &data["result"];
    let series = match kind.as_str() {
        "scalar" | "string" => vec![Answered {
            metric: Vec::new(),
            points: vec![point(result).ok_or_else(malformed)?],
        }],
        "vector" => result
            .as_array()
            .ok_or_else(malformed)?
            .iter()
            .map(|s| {
                Some(Answered {
                    metric: metric(&s["metric"])?,
                    points: vec![point(&s["value"])?],
                })
            })
            .collect::<Option<_>>()
            .ok_or_else(malformed)?,
        "matrix" => result
            .as_array()
            .ok_or_else(malformed)?
            .iter()
            .map(|s| {
                Some(Answered {
                    metric: metric(&s["metric"])?,
                    points: s["values"]
                        .as_array()?
                        .iter()
                        .map(point)
                        .collect::<Option<_>>()?,
                })
            })
            .collect::<Option<_>>()
            .ok_or_else(malformed)?,
        _ => return Err(malformed()),
    };
    Ok(Answer::Data { kind, series })
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn same_value(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (parse_float(a), parse_float(b)) {
        (Some(x), Some(y)) if x.is_nan() && y.is_nan() => true,
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => false,
    }
}

fn show_metric(m: &[(String, String)]) -> String {
    let name = m
        .iter()
        .find(|(k, _)| k == "__name__")
        .map_or("", |(_, v)| v.as_str());
    let rest: Vec<String> = m
        .iter()
        .filter(|(k, _)| k != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{name}{{{}}}", rest.join(","))
}

fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

fn describe(a: &Answer) -> String {
    match a {
        Answer::Error { kind, message } => {
            format!("error {kind}: {}", shorten(message, 150))
        }
        Answer::Data { kind, series } => format!("{kind} of {} series", series.len()),
    }
}

/// The first few differences between the reference answer and dcmon's, or none.
fn differences(prom: &Answer, ours: &Answer, ordered: bool) -> Vec<String> {
    let (pk, mut ps, ok, mut os) = match (prom, ours) {
        (Answer::Error { kind: a, .. }, Answer::Error { kind: b, .. }) if a == b => {
            return Vec::new();
        }
        (
            Answer::Data {
                kind: pk,
                series: ps,
            },
            Answer::Data {
                kind: ok,
                series: os,
            },
        ) => (
            pk,
            ps.iter().collect::<Vec<_>>(),
            ok,
            os.iter().collect::<Vec<_>>(),
        ),
        _ => {
            return vec![format!(
                "prometheus: {} | dcmon: {}",
                describe(prom),
                describe(ours)
            )];
        }
    };
    if pk != ok {
        return vec![format!("result type: prometheus {pk}, dcmon {ok}")];
    }
    // Only an instant vector has an order of its own; a matrix is always sorted by labels.
    if !(ordered && pk == "vector") {
        ps.sort_by(|a, b| a.metric.cmp(&b.metric));
        os.sort_by(|a, b| a.metric.cmp(&b.metric));
    }
    let mut out = Vec::new();
    let prom_set: BTreeSet<_> = ps.iter().map(|s| &s.metric).collect();
    let ours_set: BTreeSet<_> = os.iter().map(|s| &s.metric).collect();
    for m in prom_set.difference(&ours_set) {
        out.push(format!("missing in dcmon: {}", show_metric(m)));
    }
    for m in ours_set.difference(&prom_set) {
        out.push(format!("extra in dcmon: {}", show_metric(m)));
    }
    if !out.is_empty() {
        return out;
    }
    if ps.len() != os.len() {
        return vec![format!(
            "{} series from prometheus, {} from dcmon (duplicates)",
            ps.len(),
            os.len()
        )];
    }
    for (p, o) in ps.iter().zip(&os) {
        if p.metric != o.metric {
            out.push(format!(
                "order: prometheus has {} where dcmon has {}",
                show_metric(&p.metric),
                show_metric(&o.metric)
            ));
            break;
        }
        let same = p.points.len() == o.points.len()
            && p.points
                .iter()
                .zip(&o.points)
                .all(|(a, b)| a.0 == b.0 && same_value(&a.1, &b.1));
        if !same {
            let first = p
                .points
                .iter()
                .zip(&o.points)
                .find(|(a, b)| a.0 != b.0 || !same_value(&a.1, &b.1));
            out.push(match first {
                Some((a, b)) => format!(
                    "{}: prometheus {}@{} dcmon {}@{} ({} vs {} points)",
                    show_metric(&p.metric),
                    a.1,
                    secs(a.0),
                    b.1,
                    secs(b.0),
                    p.points.len(),
                    o.points.len()
                ),
                None => format!(
                    "{}: {} points from prometheus, {} from dcmon",
                    show_metric(&p.metric),
                    p.points.len(),
                    o.points.len()
                ),
            });
        }
    }
    out
}

/// JSON-shape differences in answers whose content agrees: reported, not failed.
/// Keyed by the kind of difference, with the first example seen.
fn shape_notes(
    prom: &Value,
    ours: &Value,
    query: &str,
    notes: &mut BTreeMap<&'static str, String>,
) {
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    for (what, p, o) in [
        ("top-level keys", &prom, &ours),
        ("data keys", &&prom["data"], &&ours["data"]),
        (
            "series keys",
            &&prom["data"]["result"][0],
            &&ours["data"]["result"][0],
        ),
    ] {
        let (pk, ok) = (keys(p), keys(o));
        if pk != ok {
            notes
                .entry(what)
                .or_insert_with(|| format!("prometheus {pk:?}, dcmon {ok:?} (in {query})"));
        }
    }
    let first_time = |v: &Value| -> Option<Value> {
        let r = &v["data"]["result"];
        [&r[0], &r[0]["value"][0], &r[0]["values"][0][0]]
            .into_iter()
            .find(|t| t.is_number())
            .cloned()
    };
    if let (Some(p), Some(o)) = (first_time(prom), first_time(ours)) {
        if p.is_f64() != o.is_f64() {
            notes
                .entry("timestamp number format")
                .or_insert_with(|| format!("prometheus writes {p}, dcmon {o} (in {query})"));
        }
    }
}

fn start_prometheus(dir: &Path) -> (Proc, String) {
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: run `cargo xtask test`, which installs Debian's prometheus package"
    );
    let port = free_port();
    let config = dir.join("prometheus.yml");
    write(&config, "global:\n  scrape_interval: 1h\n");
    let proc = Proc::spawn(
        "prometheus",
        Command::new(PROMETHEUS).args([
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("prom").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".into(),
            "--query.lookback-delta=5m".into(),
        ]),
    );
    (proc, format!("http://127.0.0.1:{port}"))
}

#[test]
fn promql_answers_match_prometheus_on_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let (prometheus, prom_base) = start_prometheus(dir.path());

    let server = OperatorServer::start(dir.path());
    // Plain http:// URLs never reach the pinned TLS verifier: one client serves both.
    let http = &server.http;
    let ours = Target {
        name: "dcmon",
        http,
        base: server.base.clone(),
        token: Some(server.token.clone()),
    };
    let prom = Target {
        name: "prometheus",
        http,
        base: prom_base,
        token: None,
    };
    wait_ok(
        http,
        &format!("{}/-/ready", prom.base),
        "prometheus did not become ready",
        &prometheus,
        Duration::from_secs(60),
    );

    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = now_ms / MINUTE_MS * MINUTE_MS - 70 * MINUTE_MS;
    let last = t0 + (POINTS as i64 - 1) * STEP_MS;
    let data = data_set();
    for (n, body) in slices(&data, t0).into_iter().enumerate() {
        for target in [&prom, &ours] {
            match target.remote_write(body.clone()) {
                Ok(204) => {}
                other => panic!(
                    "{}: remote_write of slice {n} answered {other:?}:\n{}\n{}",
                    target.name,
                    prometheus.log(),
                    server.proc.log()
                ),
            }
        }
    }
    // A range selector returns raw samples: both must hold the last one.
    let probe = r#"up{job="api", instance="a:1"}[1m]"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    for target in [&prom, &ours] {
        loop {
            let answer = target.query(probe, Eval::Instant(last));
            let newest = answer["data"]["result"][0]["values"]
                .as_array()
                .and_then(|v| v.last())
                .and_then(point);
            if newest.is_some_and(|(t, _)| t == last) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} does not show the last sample of {probe}: {answer}",
                target.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    eprintln!(
        "promql compat: {} series, {POINTS} points each, written to both from T0 = {}",
        data.len(),
        secs(t0)
    );

    let evals = [
        Eval::Instant(t0 + 20 * MINUTE_MS),
        Eval::Instant(t0 + 45 * MINUTE_MS + 7_000),
        Eval::Instant(last + 2 * MINUTE_MS),
        Eval::Range {
            start: t0 + 5 * MINUTE_MS,
            end: t0 + 55 * MINUTE_MS,
            step: MINUTE_MS,
        },
    ];
    let at30 = secs(t0 + 30 * MINUTE_MS);
    let mut evaluations = 0;
    let mut agreeing = 0;
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut notes = BTreeMap::new();
    let mut compare = |query: &str, eval: Eval, must_fail: bool| -> bool {
        let (p, o) = (prom.query(query, eval), ours.query(query, eval));
        let (pa, oa) = (parse_answer(&p), parse_answer(&o));
        let mut diffs = match (&pa, &oa) {
            (Err(e), _) => vec![format!("prometheus: {e}")],
            (_, Err(e)) => vec![format!("dcmon: {e}")],
            (Ok(pa), Ok(oa)) => {
                let ordered = query.contains("sort(") || query.contains("sort_desc(");
                differences(pa, oa, ordered)
            }
        };
        if must_fail {
            if let Ok(Answer::Data { .. }) = pa {
                diffs.insert(0, "prometheus did not refuse it: fix ERROR_QUERIES".into());
            }
        }
        if diffs.is_empty() {
            if let (Ok(Answer::Data { .. }), Ok(Answer::Data { .. })) = (&pa, &oa) {
                shape_notes(&p, &o, query, &mut notes);
            }
        }
        const SHOWN: usize = 3;
        for d in diffs.iter().take(SHOWN) {
            rows.push((query.to_owned(), eval.describe(t0), shorten(d, 320)));
        }
        if diffs.len() > SHOWN {
            let more = format!("… and {} more differences", diffs.len() - SHOWN);
            rows.push((query.to_owned(), eval.describe(t0), more));
        }
        diffs.is_empty()
    };

    for template in QUERIES {
        let query = template.replace("<T30>", &at30);
        // A range vector cannot be a range query's result: that case is in ERROR_QUERIES.
        let range_vector = prom.query(&query, evals[0])["data"]["resultType"] == "matrix";
        let mut ok = true;
        for eval in evals {
            if range_vector && matches!(eval, Eval::Range { .. }) {
                continue;
            }
            evaluations += 1;
            if compare(&query, eval, false) {
                agreeing += 1;
            } else if ok {
                ok = false;
                failed.push(query.clone());
            }
        }
    }
    let mut error_failures = Vec::new();
    for (query, range) in ERROR_QUERIES {
        let eval = if *range { evals[3] } else { evals[1] };
        if !compare(query, eval, true) {
            error_failures.push((*query).to_owned());
        }
    }

    if !rows.is_empty() {
        let width = rows
            .iter()
            .map(|r| r.0.chars().count())
            .max()
            .unwrap_or(0)
            .min(70);
        eprintln!("\n{:width$}  {:24}  difference", "query", "evaluation");
        eprintln!("{}", "-".repeat(width + 40));
        let mut previous = "";
        for (query, eval, diff) in &rows {
            let shown = if query == previous {
                ""
            } else {
                query.as_str()
            };
            previous = query;
            eprintln!("{shown:width$}  {eval:24}  {diff}");
        }
        eprintln!();
    }
    for (kind, example) in &notes {
        eprintln!("promql compat: JSON shape differs (not failed): {kind}: {example}");
    }
    eprintln!(
        "promql compat: {} queries × 4 evaluations, {agreeing} agree ({evaluations} evaluated; range skipped for range-vector results); error table: {} of {} agree",
        QUERIES.len(),
        ERROR_QUERIES.len() - error_failures.len(),
        ERROR_QUERIES.len()
    );
    assert!(
        failed.is_empty() && error_failures.is_empty(),
        "{} of {} queries disagree with Prometheus:\n  {}\n{} of {} error-table queries disagree:\n  {}",
        failed.len(),
        QUERIES.len(),
        failed.join("\n  "),
        error_failures.len(),
        ERROR_QUERIES.len(),
        error_failures.join("\n  ")
    );
    drop(prometheus);
    assert!(server.proc.interrupt().success());
}
