//! Prometheus remote_write 1.0: `prometheus.WriteRequest` (prompb `remote.proto`,
//! `types.proto`) as a snappy-compressed (block format) protobuf body.
//!
//! Two halves:
//! - [`WriteRequest`] and friends are `prost` messages, used to *send* (the benchmark,
//!   tests, and the reference the decoder is checked against).
//! - [`decode`] is the receiving side, written by hand because it is the hot path of
//!   ingest: it borrows from the request instead of allocating a `String` per label, and
//!   hands out each series' raw label bytes as a key, so a server can map a series it has
//!   seen before to its id with one hash lookup and never parse its labels again.

use crate::labels::{LabelError, Labels};
use std::borrow::Cow;
use std::ops::Range;

/// A remote_write request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// One series and some of its samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// A label pair.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// A sample: value and Unix milliseconds.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Largest decompressed request accepted; Prometheus sends well under 1 MiB.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

/// The request body as sent on the wire: protobuf, then snappy block format.
pub fn encode(req: &WriteRequest) -> Vec<u8> {
    use prost::Message;
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy compresses any input below 4 GiB, and a WriteRequest we built is smaller")
}

/// Why a remote_write body was refused. Messages say where and what.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteWriteError {
    #[error(
        "body is not snappy block-compressed data: {0} (remote_write 1.0 sends `Content-Encoding: snappy`)"
    )]
    Snappy(String),
    #[error("decompressed body would be {0} bytes, over the limit of {MAX_DECOMPRESSED_BYTES}")]
    TooLarge(usize),
    #[error("malformed protobuf at byte {offset}: {what}")]
    Protobuf { offset: usize, what: &'static str },
    #[error("time series #{series}: {what}")]
    Series { series: usize, what: String },
    #[error("time series #{series} ({labels}): {error}")]
    Labels {
        series: usize,
        labels: String,
        error: LabelError,
    },
}

/// Undoes the snappy block compression, refusing absurd declared sizes before allocating.
pub fn decompress(body: &[u8]) -> Result<Vec<u8>, RemoteWriteError> {
    let len =
        snap::raw::decompress_len(body).map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    if len > MAX_DECOMPRESSED_BYTES {
        return Err(RemoteWriteError::TooLarge(len));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| RemoteWriteError::Snappy(e.to_string()))
}

/// A decoded request: every series with its label key, and all samples in one vector.
#[derive(Debug, Default, PartialEq)]
pub struct DecodedWrite<'a> {
    pub series: Vec<DecodedSeries<'a>>,
    /// `(timestamp_ms, value)`; each series owns the range `DecodedSeries::samples`.
    pub samples: Vec<(i64, f64)>,
}

/// One time series of a decoded request.
#[derive(Debug, PartialEq)]
pub struct DecodedSeries<'a> {
    /// The series' label fields exactly as encoded (tag, length and body of each, in
    /// order). Borrowed when the fields are contiguous, as every known sender writes them.
    /// Equal keys mean equal label lists; different keys may still be the same series
    /// (other order), which [`DecodedSeries::labels`] resolves.
    pub label_key: Cow<'a, [u8]>,
    pub samples: Range<usize>,
    /// Position in the request, for error messages.
    pub index: usize,
}

impl DecodedSeries<'_> {
    /// Parses and validates the labels: well-formed label messages, UTF-8, names
    /// checked, `__name__` required; sorted.
    ///
    /// [`decode`] leaves this to the caller on purpose: a receiver that has seen the
    /// same key before (and validated it then) never pays for it again.
    pub fn labels(&self) -> Result<Labels, RemoteWriteError> {
        let pairs = label_pairs(&self.label_key).map_err(|what| RemoteWriteError::Series {
            series: self.index,
            what: what.into(),
        })?;
        let rendered = pairs
            .iter()
            .map(|(n, v)| format!("{n}={v:?}"))
            .collect::<Vec<_>>()
            .join(",");
        Labels::from_pairs(pairs).map_err(|error| RemoteWriteError::Labels {
            series: self.index,
            labels: format!("{{{rendered}}}"),
            error,
        })
    }
}

/// The pairs of a label key, in the order sent.
fn label_pairs(key: &[u8]) -> Result<Vec<(String, String)>, &'static str> {
    let mut pairs = Vec::new();
    let mut r = Reader::new(key);
    while let Some((_, field)) = r.field().map_err(|_| "malformed label field")? {
        let Field::Bytes(body) = field else {
            return Err("label must be a message");
        };
        let (name, value) = parse_label(body)?;
        pairs.push((name.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

/// Decodes a decompressed `WriteRequest`: the structure and every sample field are
/// checked here; label contents are checked by [`DecodedSeries::labels`].
pub fn decode(msg: &[u8]) -> Result<DecodedWrite<'_>, RemoteWriteError> {
    let mut out = DecodedWrite::default();
    let mut r = Reader::new(msg);
    while let Some((tag, field)) = r.field()? {
        match (tag, field) {
            (1, Field::Bytes(ts)) => {
                let base = r.pos - ts.len();
                let index = out.series.len();
                decode_series(ts, base, index, &mut out)?;
            }
            (1, _) => return Err(r.error("field 1 (timeseries) must be length-delimited")),
            // metadata (3) and anything newer: not samples, skipped as protobuf allows.
            _ => {}
        }
    }
    Ok(out)
}

fn decode_series<'a>(
    ts: &'a [u8],
    base: usize,
    index: usize,
    out: &mut DecodedWrite<'a>,
) -> Result<(), RemoteWriteError> {
    let start = out.samples.len();
    let mut r = Reader::new(ts);
    // Label fields: one contiguous range while possible, an owned copy otherwise.
    let mut contiguous: Option<Range<usize>> = None;
    let mut scattered: Option<Vec<u8>> = None;
    let mut count = 0usize;
    while let Some((tag, field)) = r.field().map_err(|e| e.shift(base))? {
        let field_start = r.last_field_start;
        match (tag, field) {
            (1, Field::Bytes(_)) => {
                count += 1;
                let range = field_start..r.pos;
                match (&mut contiguous, &mut scattered) {
                    (_, Some(buf)) => buf.extend_from_slice(&ts[range]),
                    (None, None) => contiguous = Some(range),
                    (Some(c), None) if c.end == range.start => c.end = range.end,
                    (Some(c), None) => {
                        let mut buf = ts[c.clone()].to_vec();
                        buf.extend_from_slice(&ts[range]);
                        scattered = Some(buf);
                    }
                }
            }
            (2, Field::Bytes(body)) => {
                let sample = parse_sample(body).map_err(|what| RemoteWriteError::Series {
                    series: index,
                    what: format!("sample {}: {what}", out.samples.len() - start),
                })?;
                out.samples.push(sample);
            }
            (1 | 2, _) => {
                return Err(RemoteWriteError::Series {
                    series: index,
                    what: format!("field {tag} must be length-delimited"),
                });
            }
            (4, _) => {
                return Err(RemoteWriteError::Series {
                    series: index,
                    what: "native histograms are not supported; send classic `_bucket` series"
                        .into(),
                });
            }
            // exemplars (3) and unknown fields carry no samples.
            _ => {}
        }
    }
    if count == 0 {
        return Err(RemoteWriteError::Series {
            series: index,
            what: "has no labels".into(),
        });
    }
    let label_key = match (scattered, contiguous) {
        (Some(buf), _) => Cow::Owned(buf),
        (None, Some(c)) => Cow::Borrowed(&ts[c]),
        (None, None) => unreachable!("count > 0 means a label field was seen"),
    };
    out.series.push(DecodedSeries {
        index,
        label_key,
        samples: start..out.samples.len(),
    });
    Ok(())
}

fn parse_label(body: &[u8]) -> Result<(&str, &str), &'static str> {
    let mut name = "";
    let mut value = "";
    let mut r = Reader::new(body);
    while let Some((tag, field)) = r.field().map_err(|_| "malformed label message")? {
        match (tag, field) {
            (1, Field::Bytes(b)) => {
                name = std::str::from_utf8(b).map_err(|_| "label name is not UTF-8")?;
            }
            (2, Field::Bytes(b)) => {
                value = std::str::from_utf8(b).map_err(|_| "label value is not UTF-8")?;
            }
            (1 | 2, _) => return Err("label name and value must be strings"),
            _ => {}
        }
    }
    Ok((name, value))
}

fn parse_sample(body: &[u8]) -> Result<(i64, f64), &'static str> {
    // What every sender writes: value (tag 1, fixed64) then timestamp (tag 2, varint).
    if let [0x09, v @ ..] = body
        && v.len() > 9
        && v[8] == 0x10
    {
        let value = f64::from_le_bytes(v[..8].try_into().expect("checked length"));
        let mut r = Reader::new(&v[9..]);
        if let Ok(ts) = r.varint()
            && r.pos == r.buf.len()
        {
            return Ok((ts as i64, value));
        }
    }
    let mut value = 0.0;
    let mut timestamp = 0;
    let mut r = Reader::new(body);
    while let Some((tag, field)) = r.field().map_err(|_| "malformed sample message")? {
        match (tag, field) {
            (1, Field::Fixed64(bits)) => value = f64::from_bits(bits),
            (2, Field::Varint(v)) => timestamp = v as i64,
            (1, _) => return Err("value must be a double"),
            (2, _) => return Err("timestamp must be an int64 varint"),
            _ => {}
        }
    }
    Ok((timestamp, value))
}

/// A protobuf field's payload.
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

/// A protobuf field reader over one message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    last_field_start: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            last_field_start: 0,
        }
    }

    fn error(&self, what: &'static str) -> RemoteWriteError {
        RemoteWriteError::Protobuf {
            offset: self.pos,
            what,
        }
    }

    fn varint(&mut self) -> Result<u64, RemoteWriteError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.error("truncated varint"));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.error("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RemoteWriteError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.error("field runs past the end of its message"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next field, or `None` at the end of the message.
    fn field(&mut self) -> Result<Option<(u64, Field<'a>)>, RemoteWriteError> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        self.last_field_start = self.pos;
        let key = self.varint()?;
        let tag = key >> 3;
        if tag == 0 {
            return Err(self.error("field number 0"));
        }
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                Field::Fixed64(u64::from_le_bytes(b.try_into().expect("took 8 bytes")))
            }
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| self.error("length overflows"))?;
                Field::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Field::Fixed32
            }
            _ => {
                return Err(
                    self.error("unsupported wire type (groups are not used by remote_write)")
                );
            }
        };
        Ok(Some((tag, field)))
    }
}

impl RemoteWriteError {
    /// Makes an offset relative to a sub-message absolute.
    fn shift(self, base: usize) -> Self {
        match self {
            Self::Protobuf { offset, what } => Self::Protobuf {
                offset: offset + base,
                what,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
        }
    }

    fn check_rejects(msg: &[u8], expect: &str) {
        let err = decode(msg).expect_err("must be refused").to_string();
        assert!(err.contains(expect), "{err:?} does not contain {expect:?}");
    }

    #[test]
    fn round_trips_through_snappy_and_the_decoder() {
        let req = WriteRequest {
            timeseries: vec![
                series(
                    &[("__name__", "up"), ("job", "node")],
                    &[(1000, 1.0), (2000, 0.0)],
                ),
                series(&[("__name__", "temp"), ("host", "a")], &[(-5, f64::NAN)]),
            ],
        };
        let body = decompress(&encode(&req)).unwrap();
        let d = decode(&body).unwrap();
        assert_eq!(d.series.len(), 2);
        assert_eq!(d.series[0].samples, 0..2);
        assert_eq!(d.samples[..2], [(1000, 1.0), (2000, 0.0)]);
        assert_eq!(d.samples[2].0, -5);
        assert!(d.samples[2].1.is_nan());
        assert_eq!(
            d.series[1].labels().unwrap().to_string(),
            "temp{host=\"a\"}"
        );
        assert!(matches!(d.series[0].label_key, Cow::Borrowed(_)));
    }

    #[test]
    fn same_labels_give_the_same_key_and_scattered_labels_still_parse() {
        let a = series(&[("__name__", "x"), ("a", "1")], &[(1, 1.0)]).encode_to_vec();
        // Hand-built series with a sample field between the two label fields.
        let l1 = Label {
            name: "__name__".into(),
            value: "x".into(),
        }
        .encode_to_vec();
        let l2 = Label {
            name: "a".into(),
            value: "1".into(),
        }
        .encode_to_vec();
        let s = Sample {
            value: 1.0,
            timestamp: 1,
        }
        .encode_to_vec();
        let mut b = Vec::new();
        for (tag, body) in [(1u8, &l1), (2, &s), (1, &l2)] {
            b.push(tag << 3 | 2);
            b.push(body.len() as u8);
            b.extend_from_slice(body);
        }
        let wrap = |ts: &[u8]| {
            let mut m = vec![0x0a, ts.len() as u8];
            m.extend_from_slice(ts);
            m
        };
        let (ma, mb) = (wrap(&a), wrap(&b));
        let (da, db) = (decode(&ma).unwrap(), decode(&mb).unwrap());
        assert_eq!(da.series[0].label_key, db.series[0].label_key);
        assert!(matches!(db.series[0].label_key, Cow::Owned(_)));
        assert_eq!(da.series[0].labels(), db.series[0].labels());
    }

    #[test]
    fn malformed_messages_are_refused_with_the_reason() {
        check_rejects(&[0x0a, 0x05, 0x01], "runs past the end");
        check_rejects(&[0x0a], "truncated varint");
        check_rejects(
            &[0x08, 0x01],
            "field 1 (timeseries) must be length-delimited",
        );
        check_rejects(&[0x0a, 0x00], "has no labels");
        // A label whose name is not UTF-8: structurally fine, refused by labels().
        let d = decode(&[0x0a, 0x06, 0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe]).unwrap();
        let err = d.series[0].labels().unwrap_err().to_string();
        assert!(
            err.contains("time series #0: label name is not UTF-8"),
            "{err}"
        );
        // A name Prometheus does not allow, with the labels shown.
        let req = WriteRequest {
            timeseries: vec![
                series(&[("__name__", "a"), ("b", "1")], &[]),
                series(&[("__name__", "0x")], &[]),
            ],
        };
        let msg = req.encode_to_vec();
        let d = decode(&msg).unwrap();
        assert!(d.series[0].labels().is_ok());
        let err = d.series[1].labels().unwrap_err().to_string();
        assert!(err.contains("time series #1 ({__name__=\"0x\"})"), "{err}");
        // A sample whose value is a varint.
        let l = Label {
            name: "__name__".into(),
            value: "x".into(),
        }
        .encode_to_vec();
        let mut ts = vec![0x0a, l.len() as u8];
        ts.extend_from_slice(&l);
        ts.extend_from_slice(&[0x12, 0x02, 0x08, 0x01]);
        let mut m = vec![0x0a, ts.len() as u8];
        m.extend_from_slice(&ts);
        check_rejects(&m, "value must be a double");
        // A native histogram.
        let mut ts = vec![0x0a, l.len() as u8];
        ts.extend_from_slice(&l);
        ts.extend_from_slice(&[0x22, 0x00]);
        let mut m = vec![0x0a, ts.len() as u8];
        m.extend_from_slice(&ts);
        check_rejects(&m, "native histograms");
        assert!(matches!(
            decompress(b"not snappy at all"),
            Err(RemoteWriteError::Snappy(_))
        ));
        // A snappy header declaring 4 GiB.
        assert!(matches!(
            decompress(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]),
            Err(RemoteWriteError::TooLarge(_))
        ));
    }

    fn arb_series() -> impl Strategy<Value = TimeSeries> {
        (
            prop::collection::vec(("[a-z_]{1,8}", "\\PC{0,8}"), 1..5),
            prop::collection::vec((any::<i64>(), any::<u64>()), 0..5),
        )
            .prop_map(|(labels, samples)| TimeSeries {
                labels: labels
                    .into_iter()
                    .map(|(name, value)| Label { name, value })
                    .collect(),
                samples: samples
                    .into_iter()
                    .map(|(timestamp, bits)| Sample {
                        value: f64::from_bits(bits),
                        timestamp,
                    })
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn decoder_agrees_with_prost(ts in prop::collection::vec(arb_series(), 0..6)) {
            let req = WriteRequest { timeseries: ts };
            let msg = req.encode_to_vec();
            let d = decode(&msg).unwrap();
            prop_assert_eq!(d.series.len(), req.timeseries.len());
            for (s, want) in d.series.iter().zip(&req.timeseries) {
                let got: Vec<(i64, u64)> =
                    d.samples[s.samples.clone()].iter().map(|&(t, v)| (t, v.to_bits())).collect();
                let exp: Vec<(i64, u64)> =
                    want.samples.iter().map(|x| (x.timestamp, x.value.to_bits())).collect();
                prop_assert_eq!(got, exp);
                let pairs = label_pairs(&s.label_key).unwrap();
                let exp: Vec<(String, String)> =
                    want.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
                prop_assert_eq!(pairs, exp);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(d) = decode(&bytes) {
                for s in &d.series {
                    let _ = s.labels();
                }
            }
            let _ = decompress(&bytes);
        }
    }
}
