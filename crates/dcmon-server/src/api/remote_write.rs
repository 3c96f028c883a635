//! `POST /api/v1/write`: the Prometheus remote_write 1.0 receiver.
//!
//! A request is stored whole or not at all: the body is decompressed, decoded and every
//! label and timestamp validated before any series is created or sample appended, and
//! the answer (204) comes only after the tsdb has made the samples durable.

use super::ApiError;
use crate::ingest::MAX_FUTURE_MS;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use dcmon_tsdb::{SeriesId, Tsdb};
use dcmon_wire::Labels;
use dcmon_wire::remote_write::{self, DecodedWrite};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{PoisonError, RwLock};

/// Series ids by a 128-bit keyed hash of the raw protobuf bytes of their labels, as
/// senders encode them.
///
/// A sender writes a series' labels the same way every time, so after its first request
/// each series costs two hashes and one lookup: no label parsing, no allocation, no index
/// query. Different encodings of one series (another label order) are distinct keys
/// mapping to the same id, which `Tsdb::resolve` guarantees.
///
/// Only the hash is kept (24 bytes an entry with the id, instead of the label bytes,
/// about 150 bytes a series more), so two encodings share an entry only if their hashes
/// are equal. The hash is SipHash (`std`'s `RandomState`, designed against hash
/// flooding) under a random key made at start and never shown: a sender cannot aim for a
/// collision, and by chance any two of `n` cached encodings collide with a probability
/// below `n² / 2¹²⁹`, 10⁻²⁶ for a million series.
pub struct SeriesCache {
    key: RandomState,
    ids: RwLock<HashMap<LabelHash, SeriesId, foldhash::fast::RandomState>>,
}

/// The 128-bit hash of one label encoding: two 64-bit SipHash outputs of the same key
/// over the bytes behind two different prefixes.
type LabelHash = (u64, u64);

impl Default for SeriesCache {
    fn default() -> Self {
        Self {
            key: RandomState::new(),
            ids: RwLock::default(),
        }
    }
}

impl SeriesCache {
    fn hash(&self, label_key: &[u8]) -> LabelHash {
        let half = |prefix: u8| {
            let mut h = self.key.build_hasher();
            h.write_u8(prefix);
            h.write(label_key);
            h.finish()
        };
        (half(0), half(1))
    }
}

fn bad(message: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_data",
        format!("remote_write request rejected, nothing of it was stored: {message}"),
    )
}

pub async fn write(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    if let Some(enc) = headers.get(axum::http::header::CONTENT_ENCODING)
        && !enc.as_bytes().eq_ignore_ascii_case(b"snappy")
    {
        return Err(bad(format!(
            "Content-Encoding {enc:?} is not supported; remote_write 1.0 bodies are snappy-compressed"
        )));
    }
    let now = state.clock.now_ms();
    let tsdb = state.tsdb.clone();
    let cache = state.remote_series.clone();
    tokio::task::spawn_blocking(move || store(&tsdb, &cache, &body, now))
        .await
        .map_err(ApiError::internal)??;
    Ok(StatusCode::NO_CONTENT)
}

/// Decodes, validates, resolves and appends one request; returns the samples stored.
fn store(tsdb: &Tsdb, cache: &SeriesCache, body: &[u8], now_ms: i64) -> Result<usize, ApiError> {
    let msg = remote_write::decompress(body).map_err(bad)?;
    let write = remote_write::decode(&msg).map_err(bad)?;
    if let Some((i, s)) = write.series.iter().enumerate().find(|(_, s)| {
        write.samples[s.samples.clone()]
            .iter()
            .any(|&(t, _)| t > now_ms + MAX_FUTURE_MS)
    }) {
        return Err(bad(format!(
            "time series #{i} has a sample more than 10 minutes ahead of the server clock ({now_ms} ms); check the sender's clock (first series: {})",
            s.labels().map(|l| l.to_string()).unwrap_or_default()
        )));
    }
    let ids = resolve(tsdb, cache, &write)?;
    let mut samples = Vec::with_capacity(write.samples.len());
    for (s, id) in write.series.iter().zip(ids) {
        samples.extend(
            write.samples[s.samples.clone()]
                .iter()
                .map(|&(t, v)| (id, t, v)),
        );
    }
    tsdb.append(&samples).map_err(crate::api::tsdb_error)
}

/// The id of every series of `write`, creating the new ones (after validating all).
fn resolve(
    tsdb: &Tsdb,
    cache: &SeriesCache,
    write: &DecodedWrite,
) -> Result<Vec<SeriesId>, ApiError> {
    let hashes: Vec<LabelHash> = write
        .series
        .iter()
        .map(|s| cache.hash(&s.label_key))
        .collect();
    let mut ids = Vec::with_capacity(write.series.len());
    let mut missing = Vec::new();
    {
        let known = cache.ids.read().unwrap_or_else(PoisonError::into_inner);
        for (i, h) in hashes.iter().enumerate() {
            match known.get(h) {
                Some(&id) => ids.push(id),
                None => {
                    ids.push(SeriesId::default());
                    missing.push(i);
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(ids);
    }
    let labels = missing
        .iter()
        .map(|&i| write.series[i].labels().map_err(bad))
        .collect::<Result<Vec<Labels>, ApiError>>()?;
    let new = tsdb.resolve(&labels).map_err(crate::api::tsdb_error)?;
    let mut known = cache.ids.write().unwrap_or_else(PoisonError::into_inner);
    for (&i, id) in missing.iter().zip(new) {
        ids[i] = id;
        known.insert(hashes[i], id);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcmon_wire::remote_write::{Label, Sample, TimeSeries, WriteRequest};

    fn series(labels: &[(&str, &str)], t: i64) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            samples: vec![Sample {
                value: 1.0,
                timestamp: t,
            }],
        }
    }

    fn send(tsdb: &Tsdb, cache: &SeriesCache, timeseries: Vec<TimeSeries>) -> usize {
        let body = remote_write::encode(&WriteRequest { timeseries });
        store(tsdb, cache, &body, 1_000_000).unwrap()
    }

    #[test]
    fn cache_keeps_one_hash_per_encoding_and_both_orders_reach_one_series() {
        let dir = tempfile::tempdir().unwrap();
        let tsdb = Tsdb::open(dir.path()).unwrap();
        let cache = SeriesCache::default();
        let ab = [("__name__", "up"), ("host", "a")];
        let ba = [("host", "a"), ("__name__", "up")];
        let other = [("__name__", "up"), ("host", "b")];
        assert_eq!(
            send(&tsdb, &cache, vec![series(&ab, 1), series(&other, 1)]),
            2
        );
        // A second request is answered from the cache; the other order is a new key.
        assert_eq!(send(&tsdb, &cache, vec![series(&ab, 2), series(&ba, 3)]), 2);
        let ids = cache.ids.read().unwrap().clone();
        assert_eq!(ids.len(), 3, "one entry per distinct encoding");
        let id_of = |labels: &[(&str, &str)]| {
            let body = remote_write::encode(&WriteRequest {
                timeseries: vec![series(labels, 0)],
            });
            let msg = remote_write::decompress(&body).unwrap();
            let write = remote_write::decode(&msg).unwrap();
            ids[&cache.hash(&write.series[0].label_key)]
        };
        assert_eq!(id_of(&ab), id_of(&ba));
        assert_ne!(id_of(&ab), id_of(&other));
        let up_a = tsdb
            .select(&[dcmon_tsdb::Matcher::equal("host", "a")], 0, 1_000_000)
            .unwrap();
        assert_eq!(up_a.len(), 1);
        assert_eq!(up_a[0].samples, vec![(1, 1.0), (2, 1.0), (3, 1.0)]);
    }

    #[test]
    fn hashes_differ_by_key_and_by_bytes() {
        let (a, b) = (SeriesCache::default(), SeriesCache::default());
        assert_eq!(a.hash(b"labels"), a.hash(b"labels"));
        assert_ne!(a.hash(b"labels"), a.hash(b"labelt"));
        assert_ne!(
            a.hash(b"labels"),
            b.hash(b"labels"),
            "keys are random per cache"
        );
        let (lo, hi) = a.hash(b"");
        assert_ne!(lo, hi, "the two halves are different functions");
    }
}
