//! Agent batch ingest: one codec session per agent, samples stored durably before the
//! push is acknowledged, a batch accepted whole or rejected whole.

use crate::api::ApiError;
use crate::control::AgentRecord;
use crate::fleet::{Classifier, Input, Observation};
use crate::state::AppState;
use axum::http::StatusCode;
use dcmon_tsdb::SeriesId;
use dcmon_wire::Labels;
use dcmon_wire::api::{PushResponse, codes};
use dcmon_wire::batch::{self, BatchHeader, Decoder, Sequence};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Samples more than this far ahead of the server clock are refused.
pub(crate) const MAX_FUTURE_MS: i64 = 10 * 60 * 1000;

/// The codec state of one agent's current session.
struct Session {
    decoder: Decoder,
    /// Session series index → tsdb id.
    series: Vec<SeriesId>,
    /// Session series index → what it feeds in the fleet table, if anything.
    fleet_inputs: Vec<Option<Input>>,
    classifier: Classifier,
}

/// Codec sessions by agent id. Each agent's pushes are processed one at a time.
#[derive(Default)]
pub struct Sessions {
    by_agent: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Session>>>>>,
}

impl Sessions {
    fn slot(&self, agent_id: &str) -> Arc<tokio::sync::Mutex<Option<Session>>> {
        let mut m = self
            .by_agent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.entry(agent_id.to_owned()).or_default().clone()
    }

    /// Forgets an agent's session (on revocation or re-registration).
    pub fn forget(&self, agent_id: &str) {
        let mut m = self
            .by_agent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.remove(agent_id);
    }
}

fn invalid(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        codes::BATCH_INVALID,
        format!("batch rejected whole: {e}"),
    )
}

fn resync(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        codes::WIRE_RESYNC,
        format!("{why}: start a new batch session"),
    )
}

fn is_session_start(h: &BatchHeader) -> bool {
    h.seq == 0 && h.dict_base == 0
}

/// Decodes, stores and acknowledges one batch of `agent`.
pub async fn push(
    state: &AppState,
    agent: &AgentRecord,
    body: &[u8],
) -> Result<PushResponse, ApiError> {
    let header = batch::read_header(body).map_err(invalid)?;
    let slot = state.sessions.slot(&agent.id);
    let mut guard = slot.lock().await;
    let current = guard
        .as_ref()
        .filter(|s| s.decoder.session_id() == header.session_id);
    let mut fresh = match current.map(|s| s.decoder.classify(&header)) {
        Some(Sequence::Next) => None,
        Some(Sequence::Duplicate) => {
            return Ok(PushResponse {
                accepted_samples: 0,
                duplicate: true,
            });
        }
        Some(Sequence::OutOfSync) | None if is_session_start(&header) => Some(Session {
            decoder: Decoder::start(&header).map_err(invalid)?,
            series: Vec::new(),
            fleet_inputs: Vec::new(),
            classifier: Classifier::default(),
        }),
        Some(Sequence::OutOfSync) => {
            return Err(resync(&format!("batch {} is out of sequence", header.seq)));
        }
        None => {
            return Err(resync(&format!(
                "session {:016x} is not known to this server",
                header.session_id
            )));
        }
    };
    let session: &mut Session = match &mut fresh {
        Some(s) => s,
        None => guard
            .as_mut()
            .expect("classified as Next, so the session exists"),
    };
    let decoded = session.decoder.decode(body).map_err(invalid)?;
    let now = state.clock.now_ms();
    if let Some(f) = decoded
        .frames
        .iter()
        .find(|f| f.timestamp_ms > now + MAX_FUTURE_MS)
    {
        return Err(invalid(format!(
            "timestamp {} ms is more than 10 minutes ahead of the server clock ({now} ms); check the agent's clock",
            f.timestamp_ms
        )));
    }
    let new_labels: Vec<Labels> = decoded
        .new_series
        .iter()
        .map(|l| {
            // The server, not the agent, decides which host a sample belongs to.
            let mut l = l.clone();
            l.set("host", &agent.host);
            l.set("instance", &agent.host);
            l
        })
        .collect();
    // Classified now, applied to the session only once the batch is committed.
    let mut classifier = std::mem::take(&mut session.classifier);
    let mut inputs = session.fleet_inputs.clone();
    inputs.extend(new_labels.iter().map(|l| classifier.classify(l)));
    let known = session.series.clone();
    let frames: Vec<(i64, Vec<(u32, f64)>)> = decoded
        .frames
        .iter()
        .map(|f| (f.timestamp_ms, f.samples.clone()))
        .collect();
    let tsdb = state.tsdb.clone();
    let stored_batch = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let new_ids = tsdb.resolve(&new_labels).map_err(crate::api::tsdb_error)?;
        // Session indices run over the known series, then this batch's new ones.
        let lookup = |i: u32| -> Option<SeriesId> {
            let i = i as usize;
            match i.checked_sub(known.len()) {
                None => known.get(i).copied(),
                Some(j) => new_ids.get(j).copied(),
            }
        };
        let mut samples = Vec::new();
        let mut observed: Vec<Observation> = Vec::new();
        for (ts, values) in &frames {
            for &(idx, v) in values {
                let id = lookup(idx)
                    .ok_or_else(|| invalid(format!("series index {idx} is not defined")))?;
                samples.push((id, *ts, v));
                if let Some(Some(input)) = inputs.get(idx as usize) {
                    observed.push((id, *input, *ts, v));
                }
            }
        }
        let stored = tsdb.append(&samples).map_err(crate::api::tsdb_error)?;
        Ok((new_ids, stored, observed, inputs))
    })
    .await
    .map_err(ApiError::internal)?;
    let (new_ids, stored, observed, inputs) = match stored_batch {
        Ok(b) => b,
        Err(e) => {
            // Nothing was applied: the session keeps its classifier for the retry.
            if let Some(s) = fresh.as_mut().or(guard.as_mut()) {
                s.classifier = classifier;
            }
            return Err(e);
        }
    };
    state.fleet.observe(agent, &observed, now);
    let mut session = match fresh {
        Some(s) => s,
        None => guard
            .take()
            .expect("classified as Next, so the session exists"),
    };
    session
        .decoder
        .commit(decoded)
        .map_err(ApiError::internal)?;
    session.series.extend(new_ids);
    session.fleet_inputs = inputs;
    session.classifier = classifier;
    *guard = Some(session);
    Ok(PushResponse {
        accepted_samples: stored as u64,
        duplicate: false,
    })
}
