//! Decoding arbitrary bytes never panics nor allocates without bound: as a batch that
//! starts a session, and as the next batch of a session primed with a valid first batch
//! (so the bytes reach the body decoder past the sequence checks).

#![no_main]

use dcmon_wire::batch::{Decoder, Encoder, MAGIC, VERSION, read_header};
use dcmon_wire::{Labels, MetricSample, Scrape};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

const SESSION: u64 = 5;

/// A decoder that has committed seq 0 of `SESSION`, defining three series.
static PRIMED: LazyLock<Decoder> = LazyLock::new(|| {
    let sample = |metric: &str, value: f64| MetricSample {
        labels: Labels::new(metric, []).expect("valid name"),
        value,
    };
    let first = Scrape {
        timestamp_ms: 1_760_000_000_000,
        samples: vec![sample("a", 1.5), sample("b", f64::NAN), sample("c", 1e9)],
    };
    let bytes = Encoder::new(SESSION)
        .encode(&[first])
        .expect("a small batch encodes");
    let mut decoder = Decoder::start(&read_header(&bytes).expect("valid header"))
        .expect("seq 0 starts a session");
    let batch = decoder.decode(&bytes).expect("the encoder's batch decodes");
    decoder.commit(batch).expect("seq 0 is next");
    decoder
});

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = read_header(data) {
        if let Ok(decoder) = Decoder::start(&header) {
            let _ = decoder.decode(data);
        }
    }
    // PROTOCOL.md §Header: magic, version, body encoding (from the first input byte),
    // session id, seq 1, dict_base 3; the rest of the input is the body.
    let Some((&encoding, body)) = data.split_first() else {
        return;
    };
    let mut next = MAGIC.to_vec();
    next.extend([VERSION, encoding & 1]);
    next.extend(SESSION.to_le_bytes());
    next.extend([1, 3]);
    next.extend_from_slice(body);
    let _ = PRIMED.decode(&next);
});
