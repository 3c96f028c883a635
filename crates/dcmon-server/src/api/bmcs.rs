//! BMC inventory endpoints (API token: viewer to list, admin to change). No answer ever
//! carries a password: listings are [`BmcRecord`]s, and validation messages give a
//! password's length at most.

use super::{ApiError, ClientAddr};
use crate::auth::Principal;
use crate::bmcs::{BmcCheck, BmcError, BmcRecord, NewBmc, check_bmc};
use crate::secrets::SecretBox;
use crate::state::AppState;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use std::time::Duration;

/// How long `POST .../check` waits for the BMC per exchange.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a blocking inventory operation with the installation's secret key. The key is
/// read per request (a small file), so a key restored while the server runs is used at once.
async fn with_secrets<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&SecretBox) -> Result<T, BmcError> + Send + 'static,
) -> Result<T, ApiError> {
    let data_dir = state.config().data_dir.clone();
    tokio::task::spawn_blocking(move || {
        let secrets = SecretBox::open(&data_dir)?;
        f(&secrets)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(bmc_error)
}

pub(super) fn bmc_error(e: BmcError) -> ApiError {
    match e {
        BmcError::Invalid(m) => ApiError::bad_request(m),
        e @ BmcError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        e @ BmcError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "exists", e.to_string()),
        e @ BmcError::Unreachable { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "unreachable", e.to_string())
        }
        e @ BmcError::AuthFailed { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "auth_failed", e.to_string())
        }
        e @ BmcError::Ipmi { .. } => ApiError::new(StatusCode::BAD_GATEWAY, "ipmi", e.to_string()),
        // A missing or wrong key is the installation's problem, not the request's.
        e => ApiError::internal(e),
    }
}

/// `GET /api/bmcs` (viewer).
pub(super) async fn list(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let db = state.control.clone();
    let bmcs = super::run_blocking(move || db.list_bmcs(), bmc_error).await?;
    Ok(Json(serde_json::json!({ "bmcs": bmcs })))
}

/// `POST /api/bmcs` (admin): `{"name", "address", "user", "password", "interval"?,
/// "agent"?, "vendor"?}`.
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ClientAddr(remote): ClientAddr,
    body: Bytes,
) -> Result<(StatusCode, Json<BmcRecord>), ApiError> {
    let new: NewBmc = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "BMC body: {e}; expected {{\"name\": N, \"address\": \"HOST[:PORT]\", \"user\": U, \"password\": P, \"interval\": \"5m\", \"agent\": HOST}}"
        ))
    })?;
    let db = state.control.clone();
    let record = with_secrets(&state, move |s| {
        db.add_bmc(s, &new, &who.name, Some(&remote))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// `DELETE /api/bmcs/{name}` (admin).
pub(super) async fn remove(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ClientAddr(remote): ClientAddr,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let db = state.control.clone();
    super::run_blocking(
        move || db.remove_bmc(&name, &who.name, Some(&remote)),
        bmc_error,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/bmcs/import` (admin): a CSV file as the body (see `ControlDb::import_bmcs_csv`);
/// all rows or none.
pub(super) async fn import(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ClientAddr(remote): ClientAddr,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let text = String::from_utf8(body.to_vec()).map_err(|e| {
        ApiError::bad_request(format!("the CSV body is not UTF-8: {}", e.utf8_error()))
    })?;
    let db = state.control.clone();
    let added = with_secrets(&state, move |s| {
        db.import_bmcs_csv(s, &text, &who.name, Some(&remote))
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "imported": added.len(), "bmcs": added })),
    ))
}

/// `POST /api/bmcs/{name}/check` (operator): logs in to the BMC with its stored
/// credentials and asks Get Device ID (`dcmon bmc check`), recording the vendor found.
/// Audited (`bmc.check`) with the outcome. A BMC that does not answer or refuses the
/// login is 502 `unreachable` / `auth_failed` with the reason, never a server error.
pub(super) async fn check(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<BmcCheck>, ApiError> {
    let db = state.control.clone();
    let result = with_secrets(&state, move |s| {
        let result = check_bmc(&db, s, &name, CHECK_TIMEOUT);
        let outcome = match &result {
            Ok(c) => format!("ok vendor={} firmware={}", c.vendor, c.firmware),
            Err(BmcError::NotFound(_)) => return result,
            Err(e) => format!("failed: {e}"),
        };
        db.audit(&who.name, "bmc.check", &name, &outcome, None)
            .map_err(BmcError::Store)?;
        result
    })
    .await;
    result.map(Json)
}
