//! The fleet table (viewer): `GET /api/fleet` answers the whole table from memory;
//! `GET /api/fleet/stream` sends what changed, as server-sent events, every
//! `ui.refresh`. Shapes: see `fleet::FleetView`.

use super::ApiError;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::time::{Duration, Instant};

pub(super) async fn table(State(state): State<AppState>) -> Result<Response, ApiError> {
    let started = Instant::now();
    let body = state
        .fleet
        .snapshot_json(&state.config().ui, state.clock.now_ms());
    let timing = format!("fleet;dur={:.3}", started.elapsed().as_secs_f64() * 1e3);
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Ok(v) = HeaderValue::from_str(&timing) {
        resp.headers_mut().insert("server-timing", v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StreamQuery {
    /// The `version` of the snapshot the client holds; 0 or absent: it holds nothing.
    since: Option<u64>,
}

pub(super) async fn stream(
    State(state): State<AppState>,
    Query(q): Query<StreamQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let cursor = state.fleet.cursor(
        q.since.unwrap_or(0),
        &state.config().ui,
        state.clock.now_ms(),
    );
    let updates = futures_util::stream::unfold(
        (state, cursor, true),
        |(state, mut cursor, first)| async move {
            loop {
                if !first {
                    let every = state.config().ui.refresh.max(Duration::from_secs(1));
                    tokio::time::sleep(every).await;
                }
                let ui = state.config().ui.clone();
                if let Some(json) = state
                    .fleet
                    .changes_json(&mut cursor, &ui, state.clock.now_ms())
                {
                    let event = Event::default().event("fleet").data(json);
                    return Some((Ok::<_, Infallible>(event), (state, cursor, false)));
                }
                if first {
                    // Nothing to send at once: wait for the next refresh.
                    return Some((
                        Ok(Event::default().comment("up to date")),
                        (state, cursor, false),
                    ));
                }
            }
        },
    );
    Ok(Sse::new(updates).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
