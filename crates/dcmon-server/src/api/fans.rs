//! Fan control of agentless BMCs (DESIGN §8): a BMC's curve (viewer reads, operator
//! changes) and its fans now with the curve's operating point (viewer).

use super::bmcs::bmc_error;
use super::{ApiError, ClientAddr};
use crate::auth::Principal;
use crate::fan_curves::StoredCurve;
use crate::fanloop::{FanView, fan_view};
use crate::state::AppState;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use dcmon_ipmi::curve::CurveConfig;
use std::time::Duration;

/// How long `GET .../fans` waits for the BMC per exchange.
const BMC_TIMEOUT: Duration = Duration::from_secs(5);

fn no_curve(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_curve",
        format!("BMC {name} has no fan curve; PUT one to /api/bmcs/{name}/curve"),
    )
}

/// A curve configuration from a request body, or why it is none.
fn curve_body(body: &[u8]) -> Result<CurveConfig, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "fan curve body: {e}; expected {{\"preset\": \"zephyr\"}} or {{\"interval_s\": 30, \"zones\": [{{\"zone\": 0, \"points\": [[40, 25], [70, 100]]}}]}}"
        ))
    })
}

/// `GET /api/bmcs/{name}/curve` (viewer).
pub(super) async fn get_curve(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<StoredCurve>, ApiError> {
    let db = state.control.clone();
    let who = name.clone();
    let curve = super::run_blocking(move || db.fan_curve(&who), bmc_error).await?;
    curve.map(Json).ok_or_else(|| no_curve(&name))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PutParams {
    /// `false` stores the curve without running it. Default `true`.
    enabled: Option<bool>,
}

/// `PUT /api/bmcs/{name}/curve[?enabled=false]` (operator): the body is a curve
/// configuration (`{"preset": "zephyr"}`, or `{"interval_s": 30, "zones": [...]}`).
/// Refused with every problem when it does not validate for the BMC's vendor.
pub(super) async fn put_curve(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ClientAddr(remote): ClientAddr,
    Path(name): Path<String>,
    Query(params): Query<PutParams>,
    body: Bytes,
) -> Result<Json<StoredCurve>, ApiError> {
    let config = curve_body(&body)?;
    let db = state.control.clone();
    let enabled = params.enabled.unwrap_or(true);
    let stored = super::run_blocking(
        move || db.set_fan_curve(&name, &config, enabled, &who.name, Some(&remote)),
        bmc_error,
    )
    .await?;
    Ok(Json(stored))
}

/// `DELETE /api/bmcs/{name}/curve` (operator): the loop hands the fans back to the BMC.
pub(super) async fn delete_curve(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ClientAddr(remote): ClientAddr,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let db = state.control.clone();
    let bmc = name.clone();
    let removed = super::run_blocking(
        move || db.remove_fan_curve(&bmc, &who.name, Some(&remote)),
        bmc_error,
    )
    .await?;
    match removed {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(no_curve(&name)),
    }
}

/// `GET /api/bmcs/{name}/fans` (viewer): asks the BMC now for its fan mode, zone
/// duties, fan speeds and temperatures, and dry-runs the curve on them (nothing is
/// written). A BMC that does not answer is `"reachable": false` with the reason, and
/// the decision shows the fail-safe the loop would carry out.
pub(super) async fn status(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<FanView>, ApiError> {
    let view = fan_view(&state, name, None, BMC_TIMEOUT)
        .await
        .map_err(bmc_error)?;
    Ok(Json(view))
}

/// `POST /api/bmcs/{name}/fans/preview` (operator): the body is a curve configuration,
/// not stored; the answer is [`status`]'s with that curve's decision on what the BMC
/// reads now (what it would set and why), or its problems for this vendor in
/// `curve_error`. Nothing is written to the BMC or the store. Operator, like changing
/// the curve, since it is the editor's step before saving.
pub(super) async fn preview(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<FanView>, ApiError> {
    let config = curve_body(&body)?;
    let view = fan_view(&state, name, Some(config), BMC_TIMEOUT)
        .await
        .map_err(bmc_error)?;
    Ok(Json(view))
}
