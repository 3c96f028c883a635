//! Bytes per sample, chosen codecs and speed over the fleet-like mix (`src/shapes.rs`).
//!
//! ```text
//! cargo run --release -p dcmon-chunk --example measure [-- --chunks 500 --lengths 120,360 --candidates]
//! ```
//!
//! `--candidates` adds, per shape, the size every codec would take (forced with
//! `encode_as`), to check the choice and tune the pco pruning.

#[path = "../src/shapes.rs"]
mod shapes;

use dcmon_chunk::{CRC_LEN, HEADER_LEN, ValueCodec, decode_into, encode, encode_as, encode_into};
use shapes::{Rng, SHAPES};
use std::collections::BTreeMap;
use std::hint::black_box;

/// This thread's CPU time in ns: timings that the other processes of a busy machine do not
/// inflate (wall time elsewhere than Linux).
#[cfg(target_os = "linux")]
fn cpu_ns() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid timespec (64-bit Linux layout) for the call to fill.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.sec as f64 * 1e9 + ts.nsec as f64
}

#[cfg(not(target_os = "linux"))]
fn cpu_ns() -> f64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as f64
}

/// Timings are the best of this many passes.
const PASSES: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let chunks: usize = args
        .iter()
        .position(|a| a == "--chunks")
        .and_then(|i| args.get(i + 1))
        .map_or(500, |s| s.parse().expect("--chunks N"));
    let candidates = args.iter().any(|a| a == "--candidates");
    let lengths: Vec<usize> = args
        .iter()
        .position(|a| a == "--lengths")
        .and_then(|i| args.get(i + 1))
        .map_or(vec![120, 360], |s| {
            s.split(',')
                .map(|n| n.parse().expect("--lengths N,N"))
                .collect()
        });

    for &n in &lengths {
        println!("\n### {n} samples per chunk ({chunks} chunks per shape)\n");
        println!(
            "| shape | weight | bytes/sample | of which timestamps | codecs chosen | encode ns/sample | decode ns/sample |"
        );
        println!("|---|---:|---:|---:|---|---:|---:|");
        let mut weighted_bytes = 0.0;
        let mut weighted_enc = 0.0;
        let mut weighted_dec = 0.0;
        for (si, shape) in SHAPES.iter().enumerate() {
            let data: Vec<(Vec<i64>, Vec<f64>)> = (0..chunks)
                .map(|c| {
                    let mut rng = Rng::new((si * 1_000_003 + c) as u64 ^ (n as u64) << 40);
                    let ts = shapes::timestamps(&mut rng, n);
                    let vals = (shape.values)(&mut rng, n);
                    (ts, vals)
                })
                .collect();
            // Encode: best of the passes.
            let mut encoded: Vec<Vec<u8>> = Vec::new();
            let mut codecs: BTreeMap<&'static str, usize> = BTreeMap::new();
            let mut enc_ns = f64::MAX;
            for pass in 0..PASSES {
                let mut out = Vec::new();
                let t0 = cpu_ns();
                for (ts, vals) in &data {
                    out.clear();
                    let codec = encode_into(black_box(ts), black_box(vals), &mut out);
                    if pass == 0 {
                        *codecs.entry(codec.name()).or_default() += 1;
                        encoded.push(out.clone());
                    }
                    black_box(&out);
                }
                enc_ns = enc_ns.min((cpu_ns() - t0) / (chunks * n) as f64);
            }
            let bytes: usize = encoded.iter().map(Vec::len).sum();
            // The timestamp column: the chunk with 0.0 for every value (a 2-byte constant
            // column), less header and CRC.
            let ts_bytes: usize = data
                .iter()
                .map(|(ts, _)| encode(ts, &vec![0.0; n]).len() - HEADER_LEN - CRC_LEN - 2)
                .sum();
            let mut dec_ns = f64::MAX;
            let (mut ts, mut vals) = (Vec::new(), Vec::new());
            for _ in 0..PASSES {
                let t0 = cpu_ns();
                for (c, chunk) in encoded.iter().enumerate() {
                    ts.clear();
                    vals.clear();
                    decode_into(black_box(chunk), &mut ts, &mut vals).expect("decodes");
                    if c == 0 {
                        assert_eq!(ts, data[0].0);
                        assert!(
                            vals.iter()
                                .zip(&data[0].1)
                                .all(|(a, b)| a.to_bits() == b.to_bits())
                        );
                    }
                }
                dec_ns = dec_ns.min((cpu_ns() - t0) / (chunks * n) as f64);
            }
            let bps = bytes as f64 / (chunks * n) as f64;
            weighted_bytes += shape.weight * bps;
            weighted_enc += shape.weight * enc_ns;
            weighted_dec += shape.weight * dec_ns;
            let chosen = codecs
                .iter()
                .map(|(k, v)| format!("{k} {:.0}%", 100.0 * *v as f64 / chunks as f64))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "| {} | {:.0}% | {bps:.3} | {:.3} | {chosen} | {enc_ns:.1} | {dec_ns:.1} |",
                shape.name,
                shape.weight * 100.0,
                ts_bytes as f64 / (chunks * n) as f64,
            );
            if candidates {
                let mut line = String::from("|  ↳ forced | | | ");
                for codec in ValueCodec::ALL {
                    let mut total = 0usize;
                    let mut ok = true;
                    let t0 = cpu_ns();
                    for (ts, vals) in &data {
                        match encode_as(ts, vals, codec) {
                            Some(b) => total += b.len(),
                            None => ok = false,
                        }
                    }
                    let ns = (cpu_ns() - t0) / (chunks * n) as f64;
                    if ok {
                        line += &format!(
                            "{codec} {:.3} ({ns:.0} ns); ",
                            total as f64 / (chunks * n) as f64
                        );
                    }
                }
                println!("{line} | | |");
            }
        }
        println!(
            "| **weighted mix** | 100% | **{weighted_bytes:.3}** | | | {weighted_enc:.1} ({:.1} M samples/s) | {weighted_dec:.1} |",
            1e3 / weighted_enc
        );
    }
}
