//! Ingest and query figures of the store on this machine (DESIGN §10 targets):
//! `cargo run --release -p dcmon-tsdb --example tsdb_bench [hosts] [steps]`.
//!
//! Four threads append requests of 2,000 samples (200 series × 10 steps of one host),
//! each durable before the next, like four remote_write connections; then queries.

use dcmon_tsdb::{MatchOp, Matcher, Tsdb};
use dcmon_wire::Labels;
use std::alloc::GlobalAlloc;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Counts live heap bytes (as requested), so the figures separate what the store holds
/// from what the allocator keeps around it. Allocates with mimalloc, set up as the
/// `dcmon` binary sets it up, so the RSS figures are the server's.
struct Counting;

static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` (see `purge_freed_memory_at_once` in `crates/dcmon`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the allocator.
        unsafe { INNER.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { INNER.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, std::sync::atomic::Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: as for `dealloc`, and `new` is the caller's valid new size.
        unsafe { INNER.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SERIES_PER_HOST: usize = 200;
const STEPS_PER_REQUEST: usize = 10;
const THREADS: usize = 4;
const STEP_MS: i64 = 10_000;

fn proc_status(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

fn value(series: usize, step: usize, host: usize) -> f64 {
    match series % 4 {
        // Counters at a steady rate.
        0 => (step * (series + 1) * 10) as f64,
        // Temperatures with one decimal.
        1 => 40.0 + ((step + host) % 30) as f64 * 0.1,
        // Constant.
        2 => 1.0,
        _ => ((step * 7919 + series * 31 + host) % 1000) as f64 / 8.0,
    }
}

fn main() {
    // SAFETY: plain option getters/setters of the allocator in use; no memory involved.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == 10 {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        }
    }
    let args: Vec<String> = std::env::args().collect();
    let hosts: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let steps: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(360);
    let dir = tempfile::tempdir().expect("temp dir");
    let rss0 = proc_status("VmRSS:");
    let live0 = LIVE.load(std::sync::atomic::Ordering::Relaxed);
    let db = Arc::new(Tsdb::open(dir.path()).expect("open"));
    let rss_open = proc_status("VmRSS:");
    let t0 = 1_700_000_000_000i64;
    let started = Instant::now();
    let cpu0 = cpu_seconds();
    let workers: Vec<_> = (0..THREADS)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let my_hosts: Vec<usize> = (0..hosts).filter(|h| h % THREADS == w).collect();
                let mut ids: HashMap<usize, Vec<i64>> = HashMap::new();
                for &h in &my_hosts {
                    let labels: Vec<Labels> = (0..SERIES_PER_HOST)
                        .map(|s| {
                            Labels::new(
                                &format!("m{}", s % 40),
                                [
                                    ("host", format!("host{h:05}").as_str()),
                                    ("instance", format!("host{h:05}:9100").as_str()),
                                    ("idx", (s / 40).to_string().as_str()),
                                ],
                            )
                            .expect("valid labels")
                        })
                        .collect();
                    ids.insert(h, db.resolve(&labels).expect("resolve"));
                }
                let mut batch = Vec::with_capacity(SERIES_PER_HOST * STEPS_PER_REQUEST);
                for step0 in (0..steps).step_by(STEPS_PER_REQUEST) {
                    for &h in &my_hosts {
                        batch.clear();
                        for (s, &id) in ids[&h].iter().enumerate() {
                            for step in step0..(step0 + STEPS_PER_REQUEST).min(steps) {
                                batch.push((id, t0 + step as i64 * STEP_MS, value(s, step, h)));
                            }
                        }
                        db.append(&batch).expect("append");
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("writer thread");
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let samples = (hosts * SERIES_PER_HOST * steps) as f64;
    let series = (hosts * SERIES_PER_HOST) as f64;
    let rss = proc_status("VmRSS:");
    let hwm = proc_status("VmHWM:");
    let stats = db.stats().expect("stats");
    println!("| figure | value | target |");
    println!("|---|---|---|");
    println!("| samples ingested | {samples:.0} ({series:.0} series × {steps} steps) | |");
    println!(
        "| ingest rate | {:.2} M samples/s | ≥ 1.5 M/s |",
        samples / secs / 1e6
    );
    println!(
        "| ingest CPU per 1 M samples | {:.2} CPU-s | ≤ 1.0 |",
        cpu / samples * 1e6
    );
    println!(
        "| RSS per series after ingest | {:.0} B | ≤ 1,000 B |",
        (rss.saturating_sub(rss0) * 1024) as f64 / series
    );
    println!(
        "| live heap per series after ingest (Rust allocations only) | {:.0} B | |",
        (LIVE.load(std::sync::atomic::Ordering::Relaxed) - live0) as f64 / series
    );
    println!(
        "| RSS of the empty store | {} KiB | |",
        rss_open.saturating_sub(rss0)
    );
    println!(
        "| peak RSS / steady RSS | {:.2} | ≤ 2 |",
        hwm as f64 / rss.max(1) as f64
    );
    println!(
        "| disk bytes per sample (file + WAL) | {:.2} | ≤ 2.0 |",
        stats.disk_bytes as f64 / samples
    );
    let end = t0 + (steps as i64 - 1) * STEP_MS;
    let time = |name: &str, target: &str, n: usize, f: &dyn Fn() -> usize| {
        f();
        let started = Instant::now();
        let mut got = 0;
        for _ in 0..n {
            got = f();
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0 / n as f64;
        println!("| {name} | {ms:.3} ms ({got} series) | {target} |");
    };
    let re = |p: &str| Matcher::new("__name__", MatchOp::RegexMatch, p).expect("regex");
    time("range query, 1 series, 1 h", "≤ 0.25 ms", 200, &|| {
        let m = [
            Matcher::equal("__name__", "m3"),
            Matcher::equal("host", "host00001"),
            Matcher::equal("idx", "0"),
        ];
        db.select(&m, end - 3_600_000, end).expect("select").len()
    });
    time("instant query, 1,000 series", "≤ 3 ms", 50, &|| {
        let m = [re("m[0-4]"), Matcher::equal("idx", "0")];
        db.select(&m, end - 300_000, end).expect("select").len()
    });
    time("max by (host), 8,000 series", "≤ 20 ms", 20, &|| {
        let m = [re("m[0-9]|m[1-3][0-9]"), Matcher::equal("idx", "0")];
        let data = db.select(&m, end - 300_000, end).expect("select");
        let mut max: HashMap<&str, f64> = HashMap::new();
        for s in &data {
            if let (Some(h), Some(v)) = (s.labels.get("host"), s.samples.last()) {
                let e = max.entry(h).or_insert(f64::MIN);
                *e = e.max(v.1);
            }
        }
        data.len()
    });
    let hk = Instant::now();
    let r = db
        .housekeeping(end + 3 * 3600 * 1000)
        .expect("housekeeping");
    println!(
        "| housekeeping pass (seal all heads, trim log) | {:.0} ms, worst step {:.1} ms | |",
        hk.elapsed().as_secs_f64() * 1000.0,
        r.worst_step_us as f64 / 1000.0
    );
    let stats = db.stats().expect("stats");
    println!(
        "| disk bytes per sample after housekeeping | {:.2} | ≤ 2.0 |",
        stats.disk_bytes as f64 / samples
    );
    let file_len = |suffix: &str| {
        std::fs::metadata(dir.path().join(format!("tsdb.sqlite{suffix}")))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    println!(
        "| of which file / WAL, bytes per sample | {:.2} / {:.2} | |",
        file_len("") as f64 / samples,
        file_len("-wal") as f64 / samples
    );
    let hk = Instant::now();
    let r = db
        .housekeeping(end + 8 * 24 * 3600 * 1000)
        .expect("housekeeping");
    println!(
        "| retention pass (roll up and delete all {} chunks) | {:.0} ms, worst step {:.1} ms | |",
        r.chunks_expired,
        hk.elapsed().as_secs_f64() * 1000.0,
        r.worst_step_us as f64 / 1000.0
    );
    let Ok(db) = Arc::try_unwrap(db) else {
        return;
    };
    let closing = Instant::now();
    drop(db);
    println!(
        "| close (trim, vacuum, checkpoint) | {:.0} ms; file {:.2} B/sample, WAL {} B | |",
        closing.elapsed().as_secs_f64() * 1000.0,
        file_len("") as f64 / samples,
        file_len("-wal")
    );
}
