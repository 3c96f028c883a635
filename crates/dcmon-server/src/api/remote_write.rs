//! `POST /api/v1/write`: the Prometheus remote_write 1.0 receiver.
//!
//! A request is stored whole or not at all: the body is decompressed, decoded and every
//! label and timestamp validated before any series is created or sample appended, and
//! the answer (204) comes only after the tsdb has made the samples durable.

use super::ApiError;
use crate::auth::{Role, require_role};
use crate::ingest::MAX_FUTURE_MS;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use dcmon_tsdb::{SeriesId, Tsdb};
use dcmon_wire::Labels;
use dcmon_wire::remote_write::{self, DecodedWrite};
use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

/// Series ids by the raw protobuf bytes of their labels, as senders encode them.
///
/// A sender writes a series' labels the same way every time, so after its first request
/// each series costs one hash lookup: no label parsing, no allocation, no index query.
/// Different encodings of one series (another label order) are distinct keys mapping to
/// the same id, which `Tsdb::resolve` guarantees.
#[derive(Default)]
pub struct SeriesCache {
    ids: RwLock<HashMap<Box<[u8]>, SeriesId, foldhash::fast::RandomState>>,
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
    require_role(&state, &headers, Role::Operator).await?;
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
    let mut ids = Vec::with_capacity(write.series.len());
    let mut missing = Vec::new();
    {
        let known = cache.ids.read().unwrap_or_else(PoisonError::into_inner);
        for (i, s) in write.series.iter().enumerate() {
            match known.get(&*s.label_key) {
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
        known.insert(write.series[i].label_key.as_ref().into(), id);
    }
    Ok(ids)
}
