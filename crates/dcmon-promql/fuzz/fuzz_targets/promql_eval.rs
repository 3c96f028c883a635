//! Any query text a client sends is parsed and evaluated, instant and range, over a small
//! fixed data set, and never panics: it answers, or fails with an error. The first input
//! byte picks the evaluation time, so windows start before, inside and after the data.

#![no_main]

use dcmon_promql::{Engine, Storage, parse};
use dcmon_tsdb::{Matcher, SeriesData};
use dcmon_wire::Labels;
use libfuzzer_sys::fuzz_target;

struct Fixed(Vec<SeriesData>);

impl Storage for Fixed {
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

fn data() -> Fixed {
    let series = |metric: &str, pairs: &[(&str, &str)], f: &dyn Fn(i64) -> f64| SeriesData {
        labels: Labels::new(metric, pairs.iter().copied()).expect("valid labels"),
        samples: (0..=40).map(|i| (i * 15_000, f(i))).collect(),
    };
    Fixed(vec![
        series("up", &[("job", "a"), ("instance", "x")], &|_| 1.0),
        series("up", &[("job", "b"), ("instance", "x")], &|i| {
            (i % 2) as f64
        }),
        series("req_total", &[("job", "a"), ("code", "200")], &|i| {
            (i * 7) as f64
        }),
        series("req_total", &[("job", "a"), ("code", "500")], &|i| {
            ((i % 9) * 3) as f64
        }),
        series("temp", &[("host", "h1")], &|i| 40.0 - i as f64 * 0.25),
        series("temp", &[("host", "h2")], &|i| {
            if i == 20 { f64::NAN } else { 1e300 }
        }),
        series("lat_bucket", &[("le", "0.5")], &|i| i as f64),
        series("lat_bucket", &[("le", "+Inf")], &|i| (i * 2) as f64),
        series("lat_bucket", &[("le", "nonsense")], &|i| i as f64),
    ])
}

fuzz_target!(|input: &[u8]| {
    let Some((&pick, text)) = input.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if text.len() > 512 {
        return;
    }
    let Ok(expr) = parse(text) else {
        return;
    };
    let storage = data();
    // Small limits: a fuzzer-built subquery must not take minutes.
    let engine = Engine {
        max_samples: 200_000,
        subquery_step_ms: 60_000,
        ..Engine::default()
    };
    let t = i64::from(pick) * 5_000 - 100_000;
    let _ = engine.instant(&storage, &expr, t);
    let _ = engine.range(&storage, &expr, t, t + 600_000, 60_000);
});
