use super::*;
use crate::shapes::{Rng, SHAPES};
use proptest::prelude::*;

fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Encodes, checks that the chunk decodes bit for bit (also appended to non-empty buffers)
/// and that `info` agrees, that `encode` picked `codec` (when given) and the smallest of
/// the codecs that apply, each of which round-trips too. Returns the chunk.
#[track_caller]
fn check(ts: &[i64], vals: &[f64], codec: Option<ValueCodec>) -> Vec<u8> {
    let bytes = encode(ts, vals);
    let header = info(&bytes).expect("info");
    assert_eq!(header.count as usize, ts.len());
    assert_eq!(header.min_t, ts.first().copied().unwrap_or(0));
    assert_eq!(header.max_t, ts.last().copied().unwrap_or(0));
    if let Some(codec) = codec {
        assert_eq!(header.codec, codec, "chosen codec");
    }
    let (dts, dvals) = decode(&bytes).expect("decode");
    assert_eq!(dts, ts);
    assert!(
        same_bits(&dvals, vals),
        "values differ: {dvals:?} vs {vals:?}"
    );

    let (mut bts, mut bvals) = (vec![7i64], vec![f64::NAN]);
    assert_eq!(decode_into(&bytes, &mut bts, &mut bvals), Ok(header));
    assert_eq!(&bts[1..], ts);
    assert!(same_bits(&bvals[1..], vals));

    for other in ValueCodec::ALL {
        let Some(forced) = encode_as(ts, vals, other) else {
            continue;
        };
        assert_eq!(info(&forced).expect("info").codec, other);
        let (fts, fvals) = decode(&forced).unwrap_or_else(|e| panic!("{other}: {e}"));
        assert_eq!(fts, ts, "{other}");
        assert!(same_bits(&fvals, vals), "{other}: values differ");
        // pco is not tried on every chunk (see `values::encode_best`): the rest are.
        if !matches!(other, ValueCodec::PcoDecimal | ValueCodec::PcoFloat) {
            assert!(
                bytes.len() <= forced.len(),
                "{} ({} bytes) chosen over {other} ({} bytes)",
                header.codec,
                bytes.len(),
                forced.len()
            );
        }
    }
    bytes
}

fn regular(n: usize) -> Vec<i64> {
    (0..n as i64)
        .map(|i| 1_760_000_000_000 + i * 10_000)
        .collect()
}

fn jittered(n: usize, seed: u64) -> Vec<i64> {
    crate::shapes::timestamps(&mut Rng::new(seed), n)
}

#[test]
fn empty_and_single_sample_chunks() {
    let empty = check(&[], &[], Some(ValueCodec::Constant));
    assert_eq!(empty.len(), HEADER_LEN + CRC_LEN);
    check(&[-5], &[f64::NAN], Some(ValueCodec::Constant));
    check(&[i64::MIN], &[-0.0], Some(ValueCodec::Constant));
    check(&[i64::MAX], &[1.5], Some(ValueCodec::Constant));
}

#[test]
fn constant_values_cost_8_bytes() {
    let ts = regular(360);
    for v in [
        0.0,
        -0.0,
        1.0,
        f64::INFINITY,
        f64::from_bits(0x7ff8_dead_beef_0001),
    ] {
        let bytes = check(&ts, &vec![v; 360], Some(ValueCodec::Constant));
        // Header, 9 bytes of value at most, a few of timestamps, CRC.
        assert!(
            bytes.len() <= HEADER_LEN + 9 + 6 + CRC_LEN,
            "{} bytes",
            bytes.len()
        );
    }
}

#[test]
fn regular_timestamps_cost_nothing_per_sample() {
    let vals = vec![1.0; 10_000];
    let small = encode(&regular(2), &vals[..2]).len();
    let large = encode(&regular(10_000), &vals).len();
    assert!(
        large - small <= 3,
        "{small} bytes for 2 samples, {large} for 10000"
    );
}

#[test]
fn jittered_timestamps_are_cheap() {
    // One in ten samples off the grid by 1..5 ms: about 8 bits per late sample.
    let ts = jittered(360, 1);
    let off = ts
        .iter()
        .enumerate()
        .filter(|&(i, t)| (t - ts[0]) % 10_000 != 0 || i == 0)
        .count();
    let bytes = check(&ts, &[2.0; 360], Some(ValueCodec::Constant));
    let column = bytes.len() - HEADER_LEN - 2 - CRC_LEN;
    assert!(
        column * 4 <= off * 5 + 16,
        "{column} bytes for {off} late samples"
    );
}

#[test]
fn timestamp_shapes_round_trip() {
    let n = 200;
    let vals = vec![0.5; n];
    // A scraper that sleeps 15 s after each scrape and drifts.
    let mut t = -1_000_000i64;
    let mut drifting = Vec::new();
    let mut rng = Rng::new(3);
    for _ in 0..n {
        t += 15_000 + if rng.chance(0.2) { rng.range(1, 40) } else { 0 };
        drifting.push(t);
    }
    // Irregular: random gaps.
    let mut t = 0i64;
    let irregular: Vec<i64> = (0..n)
        .map(|_| {
            t += rng.range(1, 1 << 40);
            t
        })
        .collect();
    // Intervals that change and hold.
    let mut t = 5i64;
    let stepped: Vec<i64> = (0..n as i64)
        .map(|i| {
            t += 1000 * (1 + i / 50);
            t
        })
        .collect();
    // The whole i64 range, with the gap of 2^64 - 2 between its ends.
    let extremes = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
    for ts in [
        &drifting,
        &irregular,
        &stepped,
        &regular(n),
        &jittered(n, 4),
    ] {
        check(ts, &vals, Some(ValueCodec::Constant));
    }
    check(&extremes, &[1.0; 7], Some(ValueCodec::Constant));
    check(&[i64::MIN, i64::MAX], &[1.0, 2.0], None);
}

#[test]
#[should_panic(expected = "not strictly increasing")]
fn encode_refuses_unordered_timestamps() {
    encode(&[1, 1], &[0.0, 0.0]);
}

#[test]
#[should_panic(expected = "differ in length")]
fn encode_refuses_mismatched_lengths() {
    encode(&[1, 2], &[0.0]);
}

#[test]
fn decimal_codec_variants() {
    let ts = jittered(360, 9);
    let mut rng = Rng::new(11);
    // Integer random walk: deltas.
    let mut t = 40i64;
    let temps: Vec<f64> = (0..360)
        .map(|_| {
            t += rng.range(-1, 2);
            t as f64
        })
        .collect();
    // Quantised to 100: a common step.
    let fans: Vec<f64> = (0..360).map(|_| (rng.range(40, 50) * 100) as f64).collect();
    // A counter at a steady rate: deltas of deltas.
    let counter: Vec<f64> = (0..360)
        .map(|i| (1u64 << 50) as f64 + 12_345.0 * i as f64)
        .collect();
    // Three decimals, negative too; two decimals at 2^53 / 100.
    let milli: Vec<f64> = (0..360)
        .map(|_| rng.range(-300_000, 300_000) as f64 / 1000.0)
        .collect();
    let big: Vec<f64> = (0..360)
        .map(|i| ((1i64 << 53) - i * 7) as f64 / 100.0)
        .collect();
    // Nine decimals.
    let nano: Vec<f64> = (0..360).map(|i| (i * 3 + 1) as f64 / 1e9).collect();
    for (name, vals) in [
        ("temps", &temps),
        ("fans", &fans),
        ("counter", &counter),
        ("milli", &milli),
        ("big", &big),
        ("nano", &nano),
    ] {
        let bytes = check(&ts, vals, None);
        assert_eq!(info(&bytes).unwrap().codec, ValueCodec::Decimal, "{name}");
    }
    let bytes = check(&ts, &counter, Some(ValueCodec::Decimal));
    assert!(
        bytes.len() < 100,
        "a steady counter takes {} bytes",
        bytes.len()
    );
    let bytes = check(&ts, &fans, Some(ValueCodec::Decimal));
    // 10 values: 4 bits each once divided by 100.
    assert!(
        bytes.len() < 360 * 5 / 8 + 80,
        "fans take {} bytes",
        bytes.len()
    );
    // Two values are mere decimals, the rest not: none of the decimal codecs.
    let mut mixed = temps.clone();
    mixed[100] = 0.1 + 0.2;
    check(&ts, &mixed, None);
    assert!(encode_as(&ts, &mixed, ValueCodec::Decimal).is_none());
    // -0.0 has no decimal form, 0.0 has.
    let mut zeros = vec![0.0; 360];
    zeros[5] = 1.0;
    check(&ts, &zeros, Some(ValueCodec::Decimal));
    zeros[6] = -0.0;
    assert!(encode_as(&ts, &zeros, ValueCodec::Decimal).is_none());
    check(&ts, &zeros, None);
    // Ten decimals is one too many.
    let pico: Vec<f64> = (0..360).map(|i| (i * 3 + 1) as f64 / 1e10).collect();
    assert!(encode_as(&ts, &pico, ValueCodec::Decimal).is_none());
}

#[test]
fn decimal_needs_two_values() {
    assert!(encode_as(&[1], &[1.0], ValueCodec::Decimal).is_none());
    assert!(encode_as(&[1], &[1.0], ValueCodec::PcoDecimal).is_none());
    check(&[1, 2], &[1.0, 2.0], Some(ValueCodec::Decimal));
}

#[test]
fn decimal_detection_is_exact() {
    for (v, scale, k) in [
        (0.1, 1, 1),
        (245.123, 3, 245_123),
        (-7.25, 2, -725),
        (1e15, 0, 1_000_000_000_000_000),
        (9_007_199_254_740_992.0, 0, 1 << 53),
    ] {
        let mut ks = Vec::new();
        assert_eq!(values::decimals(&[v], &mut ks), Some(scale), "{v}");
        assert_eq!(ks, [k]);
    }
    let mut ks = Vec::new();
    for v in [
        -0.0,
        f64::NAN,
        f64::INFINITY,
        1e17,
        0.1 + 0.2,
        std::f64::consts::PI,
    ] {
        assert_eq!(values::decimals(&[v], &mut ks), None, "{v}");
    }
    // Mixed scales take the largest, the others scaled up.
    assert_eq!(values::decimals(&[3.0, 0.5, 0.25], &mut ks), Some(2));
    assert_eq!(ks, [300, 50, 25]);
}

#[test]
fn gorilla_and_raw() {
    let ts = regular(100);
    // A float that often repeats and moves little: Gorilla.
    let mut x = 0.3f64;
    let mut rng = Rng::new(5);
    let slow: Vec<f64> = (0..100)
        .map(|_| {
            if rng.chance(0.3) {
                x *= 1.0 + 1e-3 * rng.normal();
            }
            x
        })
        .collect();
    check(&ts, &slow, Some(ValueCodec::Gorilla));
    // Random bit patterns (NaN payloads included): Gorilla loses, raw or pco remain.
    let bits: Vec<f64> = (0..100).map(|_| f64::from_bits(rng.next_u64())).collect();
    let bytes = check(&ts, &bits, None);
    assert!(bytes.len() <= HEADER_LEN + 8 * 100 + 8 + CRC_LEN);
    let short: Vec<f64> = (0..10).map(|_| f64::from_bits(rng.next_u64())).collect();
    check(&regular(10), &short, Some(ValueCodec::Raw));
}

#[test]
fn pco_codecs() {
    let mut rng = Rng::new(8);
    let ts = jittered(360, 8);
    let floats: Vec<f64> = (0..360).map(|_| rng.f64()).collect();
    check(&ts, &floats, Some(ValueCodec::PcoFloat));
    let ts = jittered(2000, 8);
    let mut t = 40i64;
    let temps: Vec<f64> = (0..2000)
        .map(|_| {
            t += rng.range(-1, 2) * i64::from(rng.chance(0.3));
            t as f64 / 10.0
        })
        .collect();
    check(&ts, &temps, Some(ValueCodec::PcoDecimal));
}

#[test]
fn every_shape_round_trips_within_budget() {
    // The mix of `shapes.rs` at 360 samples per chunk: at most 1.6 bytes per sample.
    let n = 360;
    let chunks = 20;
    let mut weighted = 0.0;
    for (si, shape) in SHAPES.iter().enumerate() {
        let mut bytes = 0;
        for c in 0..chunks {
            let mut rng = Rng::new((si * 1000 + c) as u64);
            let ts = crate::shapes::timestamps(&mut rng, n);
            let vals = (shape.values)(&mut rng, n);
            bytes += check(&ts, &vals, None).len();
        }
        weighted += shape.weight * bytes as f64 / (chunks * n) as f64;
    }
    assert!(weighted <= 1.6, "{weighted:.3} bytes per sample");
}

// ---------------------------------------------------------------------------------------
// Errors.

/// A chunk with its CRC recomputed after `edit`: reaches the column decoders.
fn resealed(bytes: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut body = bytes[..bytes.len() - CRC_LEN].to_vec();
    edit(&mut body);
    let crc = crc32fast::hash(&body);
    body.extend(crc.to_le_bytes());
    body
}

#[track_caller]
fn check_error(bytes: &[u8], expect: &str) {
    let (mut ts, mut vals) = (vec![1i64], vec![2.0]);
    let err = decode_into(bytes, &mut ts, &mut vals).expect_err("must not decode");
    assert_eq!(err.to_string(), expect);
    assert_eq!(
        (ts, vals),
        (vec![1i64], vec![2.0]),
        "buffers must be left as they were"
    );
}

#[test]
fn errors_say_what_is_wrong() {
    let ts = regular(50);
    let vals: Vec<f64> = (0..50).map(|i| i as f64).collect();
    let good = encode(&ts, &vals);
    check_error(&[], "chunk truncated in version: needs 1 bytes, 0 left");
    check_error(
        &good[..10],
        "chunk truncated in header: needs 26 bytes, 10 left",
    );
    check_error(
        &[2, 0, 0],
        "chunk version 2 is not supported (this build reads version 1)",
    );
    let mut flipped = good.clone();
    flipped[30] ^= 4;
    let err = decode(&flipped).expect_err("flipped").to_string();
    assert!(
        err.starts_with("chunk checksum mismatch: stored 0x"),
        "{err}"
    );
    check_error(
        &resealed(&good, |b| b[HEADER_LEN - 1] = 99),
        "chunk value codec 99 is unknown",
    );
    check_error(
        &resealed(&good, |b| b[1..5].copy_from_slice(&u32::MAX.to_le_bytes())),
        "chunk claims 4294967295 samples, more than the limit of 1048576",
    );
    check_error(
        &resealed(&good, |b| b[1..5].copy_from_slice(&60u32.to_le_bytes())),
        "chunk corrupt: timestamp column: a run of 64 where 9 timestamps are left",
    );
    check_error(
        &resealed(&good, |b| b[13..21].copy_from_slice(&0i64.to_le_bytes())),
        "chunk corrupt: 50 samples from min_t 1760000000000 to max_t 0",
    );
    check_error(
        &resealed(&good, |b| b.push(0)),
        "chunk corrupt: 1 unread bytes after the decimal column",
    );
    check_error(
        &resealed(&good, |b| {
            b.truncate(b.len() - 3);
        }),
        "chunk truncated in first delta: needs 1 bytes, 0 left",
    );
    check_error(
        &resealed(&encode(&[], &[]), |b| b.push(1)),
        "chunk corrupt: empty chunk with 1 bytes of columns",
    );
    assert_eq!(
        info(&resealed(&good, |b| b[HEADER_LEN - 1] = 99)),
        Err(ChunkError::UnknownCodec(99))
    );
    // `info` reads the header only: a bad CRC is for `decode` to find.
    assert_eq!(info(&flipped).map(|i| i.count), Ok(50));
}

#[test]
fn every_flipped_bit_is_caught() {
    let mut rng = Rng::new(21);
    let ts = jittered(120, 21);
    let chunks = [
        encode(&ts, &(SHAPES[0].values)(&mut rng, 120)),
        encode(&ts, &(SHAPES[7].values)(&mut rng, 120)),
        encode(&ts, &[3.0; 120]),
        encode(&[], &[]),
    ];
    for bytes in &chunks {
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            let err = decode(&b).expect_err("a flipped bit decodes");
            if bit >= 8 {
                assert!(
                    matches!(err, ChunkError::Checksum { .. }),
                    "bit {bit}: {err}"
                );
            }
        }
    }
}

fn samples() -> impl Strategy<Value = (Vec<i64>, Vec<f64>)> {
    let gap = prop_oneof![
        4 => Just(10_000u64),
        2 => 9_995u64..10_006,
        1 => 1u64..100,
        1 => any::<u64>().prop_map(|g| g.max(1)),
    ];
    let value = prop_oneof![
        3 => any::<u64>().prop_map(f64::from_bits),
        2 => (-1000i64..1000).prop_map(|k| k as f64),
        2 => ((-1i64 << 40)..(1i64 << 40), 0u32..10).prop_map(|(k, d)| k as f64 / 10f64.powi(d as i32)),
        1 => Just(-0.0),
        1 => Just(f64::NAN),
    ];
    (any::<i64>(), prop::collection::vec((gap, value), 0..300)).prop_map(|(start, samples)| {
        let mut ts = Vec::new();
        let mut vals = Vec::new();
        let mut t = start;
        for (gap, v) in samples {
            ts.push(t);
            vals.push(v);
            match t.checked_add_unsigned(gap) {
                Some(next) => t = next,
                None => break,
            }
        }
        (ts, vals)
    })
}

proptest! {
    // PROPTEST_CASES=20000 for a longer run.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300)
    ))]

    #[test]
    fn decode_of_encode_is_bit_exact((ts, vals) in samples(), runs in 0usize..4) {
        // Runs of equal values too (constant and Gorilla's "same" bit).
        let vals: Vec<f64> = vals.iter().enumerate().map(|(i, &v)| if runs > 0 { vals[i - i % (runs * 7 + 1)] } else { v }).collect();
        check(&ts, &vals, None);
    }

    #[test]
    fn decode_of_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode(&bytes);
        let _ = info(&bytes);
        // With a valid version and CRC, the bytes reach the column decoders.
        let mut sealed = bytes.clone();
        if let Some(b) = sealed.first_mut() {
            *b = VERSION;
        }
        let sealed = resealed(&[sealed, vec![0; CRC_LEN]].concat(), |_| {});
        let _ = decode(&sealed);
    }

    #[test]
    fn decode_of_a_damaged_chunk_never_panics(
        (ts, vals) in samples(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let good = encode(&ts, &vals);
        let damaged = resealed(&good, |b| {
            for (at, byte) in &edits {
                let i = at.index(b.len());
                if i > 0 {
                    b[i] = *byte;
                }
            }
            if truncate {
                b.truncate(HEADER_LEN.max(cut.index(b.len() + 1)));
            }
        });
        if let Ok((dts, dvals)) = decode(&damaged) {
            // Whatever decodes is a valid chunk.
            prop_assert_eq!(dts.len(), dvals.len());
            prop_assert!(dts.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn a_flipped_bit_is_caught((ts, vals) in samples(), bit in any::<prop::sample::Index>()) {
        let mut bytes = encode(&ts, &vals);
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(decode(&bytes).is_err());
    }
}
