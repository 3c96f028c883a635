//! `GET /api/events` (viewer): stored events, newest first, filtered by `host`, `bmc`,
//! `kind`, `severity` and `since_ms`; `limit` defaults to 100 (at most 10,000).

use super::ApiError;
use crate::events::{EventFilter, MAX_LIST};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    host: Option<String>,
    bmc: Option<String>,
    kind: Option<String>,
    severity: Option<String>,
    since_ms: Option<i64>,
    limit: Option<u32>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIST {
        return Err(ApiError::bad_request(format!(
            "limit: {limit} is out of range: 1 to {MAX_LIST}"
        )));
    }
    let filter = EventFilter {
        host: q.host,
        bmc: q.bmc,
        kind: q.kind,
        severity: q.severity,
        since_ms: q.since_ms,
    };
    let db = state.control.clone();
    let events =
        super::run_blocking(move || db.list_events(&filter, limit), ApiError::internal).await?;
    Ok(Json(serde_json::json!({ "events": events })))
}
