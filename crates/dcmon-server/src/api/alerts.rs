//! Alerts, rules, channels, silences and the notification outbox over REST (viewer
//! reads, operator writes). Channel answers never carry a secret.

use super::{Access, Route};
use super::{ApiError, ClientAddr, run_blocking};
use crate::alerts::channels::NewChannel;
use crate::alerts::lifecycle::State as AlertState;
use crate::alerts::rules::RuleSpec;
use crate::alerts::silences::{ActiveSilences, NewSilence};
use crate::alerts::{AlertError, builtins, yaml};
use crate::auth::{Principal, Role};
use crate::secrets::SecretBox;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

/// The alert routes and their policies: viewers read, operators write.
pub(crate) fn routes() -> Vec<Route> {
    use Access::Api;
    use Role::{Operator, Viewer};
    vec![
        Route::get("/api/alerts", Api(Viewer), list),
        Route::get("/api/alerts/{id}", Api(Viewer), get_one),
        Route::post("/api/alerts/{id}/ack", Api(Operator), ack),
        Route::get("/api/rules", Api(Viewer), rules_list),
        Route::post("/api/rules", Api(Operator), rules_add),
        Route::post("/api/rules/import", Api(Operator), rules_import),
        Route::delete("/api/rules/{name}", Api(Operator), rules_remove),
        Route::get("/api/channels", Api(Viewer), channels_list),
        Route::post("/api/channels", Api(Operator), channels_add),
        Route::delete("/api/channels/{name}", Api(Operator), channels_remove),
        Route::post("/api/channels/{name}/test", Api(Operator), channels_test),
        Route::get("/api/silences", Api(Viewer), silences_list),
        Route::post("/api/silences", Api(Operator), silences_add),
        Route::delete("/api/silences/{id}", Api(Operator), silences_remove),
        Route::get("/api/notifications", Api(Viewer), notifications),
    ]
}

fn alert_error(e: AlertError) -> ApiError {
    match e {
        AlertError::Invalid(m) => ApiError::bad_request(m),
        e @ AlertError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        e @ AlertError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "exists", e.to_string()),
        e => ApiError::internal(e),
    }
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertsQuery {
    /// `pending`, `firing` or `resolved`.
    state: Option<String>,
    /// Resolved alerts since then (default: the last 24 hours).
    since_ms: Option<i64>,
    limit: Option<u32>,
}

/// `GET /api/alerts?state=&since_ms=&limit=` (viewer).
pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<AlertsQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = q
        .state
        .as_deref()
        .map(|s| {
            AlertState::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!("state {s:?}: use pending, firing or resolved"))
            })
        })
        .transpose()?;
    let now = state.clock.now_ms();
    let since = q.since_ms.unwrap_or(now - 86_400_000);
    let limit = q.limit.unwrap_or(1000).min(10_000);
    let db = state.control.clone();
    let alerts = run_blocking(
        move || -> Result<_, AlertError> {
            let silences = ActiveSilences::new(db.list_silences(false)?);
            let mut alerts = db.list_alerts(filter, since, limit)?;
            for a in &mut alerts {
                if a.state != AlertState::Resolved {
                    a.silenced_by = silences.silencing(&a.labels, now);
                }
            }
            Ok(alerts)
        },
        alert_error,
    )
    .await?;
    Ok(Json(json!({ "alerts": alerts })))
}

/// `GET /api/alerts/{id}` (viewer): the alert and its history.
pub(super) async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let db = state.control.clone();
    let (alert, history) = run_blocking(
        move || Ok::<_, AlertError>((db.alert(id)?, db.alert_history(id)?)),
        alert_error,
    )
    .await?;
    Ok(Json(json!({ "alert": alert, "history": history })))
}

/// `POST /api/alerts/{id}/ack` (operator): no more repeat notifications for it.
pub(super) async fn ack(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ClientAddr(remote): ClientAddr,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let db = state.control.clone();
    let alert = run_blocking(
        move || db.ack_alert(id, &who.name, Some(&remote)),
        alert_error,
    )
    .await?;
    Ok(Json(json!({ "alert": alert })))
}

/// `GET /api/rules` (viewer): stored rules and the built-ins in force.
pub(super) async fn rules_list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let db = state.control.clone();
    let rules = run_blocking(move || db.list_alert_rules(), alert_error).await?;
    let builtins: Vec<RuleSpec> = builtins::rules(&state.config().alerts)
        .into_iter()
        .map(|r| r.spec)
        .collect();
    Ok(Json(json!({ "rules": rules, "builtins": builtins })))
}

/// `POST /api/rules` (operator): a [`RuleSpec`] as JSON.
pub(super) async fn rules_add(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ClientAddr(remote): ClientAddr,
    bytes: Bytes,
) -> Result<(StatusCode, Json<RuleSpec>), ApiError> {
    let spec: RuleSpec = body(
        &bytes,
        "rule body (expected {\"name\", \"expr\", \"threshold\": {\"op\": \">\", \"value\": 90, \"resolve\": 85}, \"for\": \"5m\", ...})",
    )?;
    let db = state.control.clone();
    let s = spec.clone();
    run_blocking(
        move || db.add_alert_rule(&s, &who.name, Some(&remote)),
        alert_error,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(spec)))
}

/// `DELETE /api/rules/{name}` (operator).
pub(super) async fn rules_remove(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ClientAddr(remote): ClientAddr,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let db = state.control.clone();
    run_blocking(
        move || db.remove_alert_rule(&name, &who.name, Some(&remote)),
        alert_error,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/rules/import` (operator): a Prometheus rule file (YAML) as the body; all
/// rules or none.
pub(super) async fn rules_import(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ClientAddr(remote): ClientAddr,
    bytes: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let text = String::from_utf8(bytes.to_vec()).map_err(|e| {
        ApiError::bad_request(format!("the rule file is not UTF-8: {}", e.utf8_error()))
    })?;
    let parsed = yaml::parse("body", &text);
    if !parsed.errors.is_empty() {
        return Err(ApiError::bad_request(parsed.errors.join("\n")));
    }
    let db = state.control.clone();
    let rules = parsed.rules;
    let n = run_blocking(
        move || db.import_alert_rules(&rules, &who.name, Some(&remote)),
        alert_error,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "imported": n, "warnings": parsed.warnings })),
    ))
}

/// `GET /api/channels` (viewer): settings only.
pub(super) async fn channels_list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let db = state.control.clone();
    let channels = run_blocking(move || db.list_alert_channels(), alert_error).await?;
    Ok(Json(json!({ "channels": channels })))
}

/// `POST /api/channels` (operator): `{"name", "type", "url"?, "token"?, "password"?,
/// "config": {...}}`; the secrets are sealed at once.
pub(super) async fn channels_add(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ClientAddr(remote): ClientAddr,
    bytes: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new: NewChannel = body(
        &bytes,
        "channel body (expected {\"name\", \"type\": \"slack\", \"url\": \"https://...\", \"config\": {...}})",
    )?;
    let db = state.control.clone();
    let data_dir = state.config().data_dir.clone();
    let record = run_blocking(
        move || {
            let secrets = SecretBox::open(&data_dir)?;
            db.add_alert_channel(&secrets, &new, &who.name, Some(&remote))
        },
        alert_error,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "channel": record }))))
}

/// `DELETE /api/channels/{name}` (operator).
pub(super) async fn channels_remove(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ClientAddr(remote): ClientAddr,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let db = state.control.clone();
    run_blocking(
        move || db.remove_alert_channel(&name, &who.name, Some(&remote)),
        alert_error,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/channels/{name}/test` (operator): sends a test message now; 502 with the
/// receiver's answer when it fails.
pub(super) async fn channels_test(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let db = state.control.clone();
    let data_dir = state.config().data_dir.clone();
    let channel = run_blocking(
        move || {
            let secrets = SecretBox::open(&data_dir)?;
            db.alert_channel(&secrets, &name)
        },
        alert_error,
    )
    .await?;
    crate::alerts::send_test(&channel, &state.config().public_url())
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "delivery_failed", e.message))?;
    Ok(Json(json!({ "delivered": true })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SilencesQuery {
    /// Ended silences too.
    #[serde(default)]
    all: bool,
}

/// `GET /api/silences?all=` (viewer).
pub(super) async fn silences_list(
    State(state): State<AppState>,
    Query(q): Query<SilencesQuery>,
) -> Result<Json<Value>, ApiError> {
    let db = state.control.clone();
    let silences = run_blocking(move || db.list_silences(q.all), alert_error).await?;
    Ok(Json(json!({ "silences": silences })))
}

/// `POST /api/silences` (operator): `{"matchers": ["host=gpu-07"], "duration": "2h",
/// "comment"}` (or `starts_ms`/`ends_ms`); the caller is the author.
pub(super) async fn silences_add(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ClientAddr(remote): ClientAddr,
    bytes: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new: NewSilence = body(
        &bytes,
        "silence body (expected {\"matchers\": [\"host=gpu-07\"], \"duration\": \"2h\", \"comment\": \"...\"})",
    )?;
    let db = state.control.clone();
    let s = run_blocking(
        move || db.add_silence(&new, &who.name, Some(&remote)),
        alert_error,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "silence": s }))))
}

/// `DELETE /api/silences/{id}` (operator): ends it now.
pub(super) async fn silences_remove(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ClientAddr(remote): ClientAddr,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let db = state.control.clone();
    run_blocking(
        move || db.expire_silence(id, &who.name, Some(&remote)),
        alert_error,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NotificationsQuery {
    /// `queued`, `sent` or `failed`.
    status: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/notifications?status=failed` (viewer): the outbox, newest first.
pub(super) async fn notifications(
    State(state): State<AppState>,
    Query(q): Query<NotificationsQuery>,
) -> Result<Json<Value>, ApiError> {
    if let Some(s) = &q.status
        && !matches!(s.as_str(), "queued" | "sent" | "failed")
    {
        return Err(ApiError::bad_request(format!(
            "status {s:?}: use queued, sent or failed"
        )));
    }
    let db = state.control.clone();
    let limit = q.limit.unwrap_or(100).min(10_000);
    let list = run_blocking(
        move || db.list_notifications(q.status.as_deref(), limit),
        alert_error,
    )
    .await?;
    Ok(Json(json!({ "notifications": list })))
}
