//! `GET /api/audit` (admin): the audit log, newest first, filtered by `actor`, `action`
//! (an action or a family such as `login`), `q` (text anywhere in an entry),
//! `since_ms`/`until_ms`, paged by `before_id` (the previous page's `next_before_id`).

use super::{ApiError, run_blocking};
use crate::control::{AuditFilter, MAX_AUDIT_PAGE};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use serde_json::json;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    q: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    before_id: Option<i64>,
    limit: Option<u32>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_AUDIT_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit: {limit} is out of range: 1 to {MAX_AUDIT_PAGE}"
        )));
    }
    // An empty form field means "any".
    let given = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let filter = AuditFilter {
        actor: given(q.actor),
        action: given(q.action),
        text: given(q.q),
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        before_id: q.before_id,
        limit,
    };
    let db = state.control.clone();
    let entries = run_blocking(move || db.audit_search(&filter), ApiError::internal).await?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(json!({ "entries": entries, "next_before_id": next })))
}
