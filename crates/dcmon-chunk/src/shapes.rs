//! Fleet-like series to test and measure the codecs on: the shapes a dcmon server stores,
//! with the share of series each has in the mix (`weight`, summing to 1). Deterministic
//! (a seeded xorshift), no dependencies: compiled into the unit tests and, by `#[path]`,
//! into `examples/measure.rs`.

#![allow(dead_code)]

/// xorshift64*: small, fast, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, never 0.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo) as u64) as i64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.f64().max(1e-300);
        let v = self.f64();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
}

/// Scrape timestamps: every 10 s from an aligned start, one in ten off by ±1..5 ms.
pub fn timestamps(rng: &mut Rng, n: usize) -> Vec<i64> {
    let start = 1_760_000_000_000 + rng.range(0, 1_000_000) * 10_000;
    (0..n as i64)
        .map(|i| {
            let jitter = if rng.chance(0.1) {
                rng.range(1, 6) * if rng.chance(0.5) { 1 } else { -1 }
            } else {
                0
            };
            start + i * 10_000 + jitter
        })
        .collect()
}

pub struct Shape {
    pub name: &'static str,
    /// Share of the fleet's series.
    pub weight: f64,
    pub values: fn(&mut Rng, usize) -> Vec<f64>,
}

/// The mix. Weights are a guess at a GPU/CPU fleet's node-exporter-, IPMI- and DCGM-like
/// series: many constants (info, limits, states), a fifth integer sensor readings, a third
/// counters, 8 % full-precision floats.
pub const SHAPES: &[Shape] = &[
    Shape {
        name: "temp-int-walk",
        weight: 0.20,
        values: temp_int_walk,
    },
    Shape {
        name: "fan-rpm-x100",
        weight: 0.10,
        values: fan_rpm,
    },
    Shape {
        name: "constant",
        weight: 0.25,
        values: constant,
    },
    Shape {
        name: "power-3dp",
        weight: 0.10,
        values: power_3dp,
    },
    Shape {
        name: "bytes-counter",
        weight: 0.09,
        values: bytes_counter,
    },
    Shape {
        name: "packets-counter",
        weight: 0.08,
        values: packets_counter,
    },
    Shape {
        name: "cpu-seconds-2dp",
        weight: 0.10,
        values: cpu_seconds,
    },
    Shape {
        name: "float-0-1-random",
        weight: 0.08,
        values: float_random,
    },
];

/// An integer temperature, °C: stays put 70 % of the time, else moves by one.
fn temp_int_walk(rng: &mut Rng, n: usize) -> Vec<f64> {
    let mut t = rng.range(25, 80);
    (0..n)
        .map(|_| {
            let r = rng.f64();
            if r < 0.15 {
                t -= 1;
            } else if r < 0.30 {
                t += 1;
            }
            t as f64
        })
        .collect()
}

/// A fan's RPM as IPMI reports it: quantised to 100, wobbling around a set point.
fn fan_rpm(rng: &mut Rng, n: usize) -> Vec<f64> {
    let mut set = rng.range(30, 120) as f64 * 100.0;
    (0..n)
        .map(|_| {
            if rng.chance(0.01) {
                set = (set + rng.range(-5, 6) as f64 * 100.0).clamp(1000.0, 15000.0);
            }
            ((set + 120.0 * rng.normal()) / 100.0).round() * 100.0
        })
        .collect()
}

fn constant(rng: &mut Rng, n: usize) -> Vec<f64> {
    let v = [1.0, 0.0, 250.0, 3.6e12, 65536.0][rng.range(0, 5) as usize];
    vec![v; n]
}

/// Watts with 3 decimals: a mean-reverting walk around a load level, with noise.
fn power_3dp(rng: &mut Rng, n: usize) -> Vec<f64> {
    let base = rng.range(80, 700) as f64;
    let mut w = base;
    (0..n)
        .map(|_| {
            w += 0.1 * (base - w) + 2.0 * rng.normal();
            ((w * 1000.0).round() as i64) as f64 / 1000.0
        })
        .collect()
}

/// A monotonic counter whose rate (per second) is `base` with multiplicative noise.
fn counter(rng: &mut Rng, n: usize, base: f64, noise: f64) -> Vec<f64> {
    let mut c = rng.range(0, 1 << 40) as f64;
    c = c.floor();
    (0..n)
        .map(|_| {
            let rate = base * (1.0 + noise * rng.normal()).max(0.0);
            c += (rate * 10.0).round();
            c
        })
        .collect()
}

/// Bytes through an interface: 10 kB/s to 10 MB/s, ±20 %.
fn bytes_counter(rng: &mut Rng, n: usize) -> Vec<f64> {
    let base = 10f64.powf(4.0 + 3.0 * rng.f64());
    counter(rng, n, base, 0.2)
}

/// Packets: 10 to 10 000 per second, ±20 %.
fn packets_counter(rng: &mut Rng, n: usize) -> Vec<f64> {
    let base = 10f64.powf(1.0 + 3.0 * rng.f64());
    counter(rng, n, base, 0.2)
}

/// `node_cpu_seconds_total`-like: hundredths of a second, rate 0..1 CPU-s/s drifting.
fn cpu_seconds(rng: &mut Rng, n: usize) -> Vec<f64> {
    let mut hundredths = rng.range(0, 1 << 30);
    let mut load = rng.f64();
    (0..n)
        .map(|_| {
            load = (load + 0.05 * rng.normal()).clamp(0.0, 1.0);
            hundredths += (load * 1000.0 + 5.0 * rng.normal()).round().max(0.0) as i64;
            hundredths as f64 / 100.0
        })
        .collect()
}

/// A full-precision gauge: GPU utilisation as a random fraction.
fn float_random(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.f64()).collect()
}
