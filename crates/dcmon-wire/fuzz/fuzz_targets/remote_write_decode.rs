//! Arbitrary bytes, as a snappy body and as a decompressed protobuf, never panic the
//! remote_write decoder, and every series it accepts yields labels or a label error.

#![no_main]

use dcmon_wire::remote_write::{decode, decompress};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decompress(data) {
        let _ = decode(&msg);
    }
    if let Ok(write) = decode(data) {
        for s in &write.series {
            let _ = s.labels();
            assert!(s.samples.end <= write.samples.len());
        }
    }
});
