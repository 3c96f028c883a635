//! The Prometheus HTTP API (`/api/v1/...`): same parameters, JSON shapes and error
//! format as Prometheus, so Grafana and scripts work unchanged.

use super::{ApiError, VERSION};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use dcmon_promql::{self as promql, Engine, QueryError, QueryValue};
use dcmon_tsdb::{Matcher, SeriesData};
use dcmon_wire::Labels;
use serde_json::{Map, Value, json};

/// Most points a range query may return per series (as Prometheus).
const MAX_POINTS: i64 = 11_000;

/// Prometheus' error answer: `{"status":"error","errorType":...,"error":...}`.
pub(super) struct PromError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl PromError {
    fn bad_data(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_data",
            message: message.into(),
        }
    }
}

impl From<QueryError> for PromError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::BadData(m) => Self::bad_data(m),
            QueryError::Execution(m) => Self {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                kind: "execution",
                message: m,
            },
        }
    }
}

impl From<ApiError> for PromError {
    fn from(e: ApiError) -> Self {
        let kind = match e.status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::BAD_REQUEST => "bad_data",
            _ => "internal",
        };
        Self {
            status: e.status,
            kind,
            message: e.message,
        }
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({ "status": "error", "errorType": self.kind, "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"dcmon\""),
            );
        }
        resp
    }
}

fn success(data: Value) -> Json<Value> {
    Json(json!({ "status": "success", "data": data }))
}

/// Query-string and form parameters together (repeated keys such as `match[]` kept).
struct Params(Vec<(String, String)>);

impl Params {
    fn read(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Self {
        let mut all: Vec<(String, String)> =
            form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            all.extend(form_urlencoded::parse(body).into_owned());
        }
        Self(all)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Parses a Prometheus time: Unix seconds (fractional allowed) or RFC 3339.
fn parse_time(name: &str, s: &str) -> Result<i64, PromError> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            return Ok((f * 1000.0).round() as i64);
        }
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            PromError::bad_data(format!(
                "invalid parameter \"{name}\": cannot parse {s:?} to a valid timestamp"
            ))
        })
}

/// Parses a Prometheus duration: seconds (fractional allowed) or `1m30s` style.
fn parse_duration(name: &str, s: &str) -> Result<i64, PromError> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            return Ok((f * 1000.0).round() as i64);
        }
    }
    promql_parser::util::parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| {
            PromError::bad_data(format!(
                "invalid parameter \"{name}\": cannot parse {s:?} to a valid duration"
            ))
        })
}

/// Unix seconds as Prometheus writes them: an integer when whole, else a decimal.
fn format_time(ms: i64) -> Value {
    if ms % 1000 == 0 {
        return Value::Number((ms / 1000).into());
    }
    serde_json::Number::from_f64(ms as f64 / 1000.0)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Query results are written straight into the response body: no JSON tree of thousands
/// of small values is built and dropped for every query.
struct ResultWriter(Vec<u8>);

impl ResultWriter {
    fn new(result_type: &str) -> Self {
        let mut b = Vec::with_capacity(4096);
        b.extend_from_slice(b"{\"status\":\"success\",\"data\":{\"resultType\":\"");
        b.extend_from_slice(result_type.as_bytes());
        b.extend_from_slice(b"\",\"result\":[");
        Self(b)
    }

    fn string(&mut self, s: &str) {
        // serde_json's escaping, without a tree.
        let _ = serde_json::to_writer(&mut self.0, s);
    }

    fn time(&mut self, ms: i64) {
        use std::io::Write;
        if ms % 1000 == 0 {
            let _ = write!(self.0, "{}", ms / 1000);
        } else {
            let _ = serde_json::to_writer(&mut self.0, &(ms as f64 / 1000.0));
        }
    }

    fn point(&mut self, ms: i64, v: f64) {
        self.0.push(b'[');
        self.time(ms);
        self.0.push(b',');
        self.string(&promql::format_float(v));
        self.0.push(b']');
    }

    fn metric(&mut self, l: &Labels) {
        self.0.extend_from_slice(b"{\"metric\":{");
        for (i, (k, v)) in l.pairs().iter().enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            self.string(k);
            self.0.push(b':');
            self.string(v);
        }
        self.0.push(b'}');
    }

    fn vector(mut self, t: i64, v: &[(Labels, f64)]) -> Response {
        for (i, (l, x)) in v.iter().enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            self.metric(l);
            self.0.extend_from_slice(b",\"value\":");
            self.point(t, *x);
            self.0.push(b'}');
        }
        self.finish()
    }

    fn matrix(mut self, m: &[SeriesData]) -> Response {
        for (i, s) in m.iter().enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            self.metric(&s.labels);
            self.0.extend_from_slice(b",\"values\":[");
            for (j, (t, v)) in s.samples.iter().enumerate() {
                if j > 0 {
                    self.0.push(b',');
                }
                self.point(*t, *v);
            }
            self.0.extend_from_slice(b"]}");
        }
        self.finish()
    }

    fn finish(mut self) -> Response {
        self.0.extend_from_slice(b"]}}");
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

fn metric_json(l: &Labels) -> Value {
    let mut m = Map::new();
    for (k, v) in l.pairs() {
        m.insert(k.clone(), Value::String(v.clone()));
    }
    Value::Object(m)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, QueryError> + Send + 'static,
) -> Result<T, PromError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PromError::from(ApiError::internal(e)))?
        .map_err(PromError::from)
}

pub(super) async fn query(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PromError> {
    let p = Params::read(&uri, &headers, &body);
    let q = p
        .get("query")
        .ok_or_else(|| PromError::bad_data("invalid parameter \"query\": missing"))?;
    let t = match p.get("time") {
        Some(s) => parse_time("time", s)?,
        None => state.clock.now_ms(),
    };
    let expr = promql::parse(q)?;
    let tsdb = state.tsdb.clone();
    let value = blocking(move || Engine::default().instant(&*tsdb, &expr, t)).await?;
    let data = match value {
        QueryValue::Scalar(v) => {
            json!({ "resultType": "scalar", "result": [format_time(t), promql::format_float(v)] })
        }
        QueryValue::String(s) => json!({ "resultType": "string", "result": [format_time(t), s] }),
        QueryValue::Vector(v) => return Ok(ResultWriter::new("vector").vector(t, &v)),
        QueryValue::Matrix(m) => return Ok(ResultWriter::new("matrix").matrix(&m)),
    };
    Ok(success(data).into_response())
}

pub(super) async fn query_range(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PromError> {
    let p = Params::read(&uri, &headers, &body);
    let q = p
        .get("query")
        .ok_or_else(|| PromError::bad_data("invalid parameter \"query\": missing"))?;
    let need = |name: &'static str| {
        p.get(name)
            .ok_or_else(|| PromError::bad_data(format!("invalid parameter \"{name}\": missing")))
    };
    let start = parse_time("start", need("start")?)?;
    let end = parse_time("end", need("end")?)?;
    let step = parse_duration("step", need("step")?)?;
    if end < start {
        return Err(PromError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    if step <= 0 {
        return Err(PromError::bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(PromError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let expr = promql::parse(q)?;
    let tsdb = state.tsdb.clone();
    let m = blocking(move || Engine::default().range(&*tsdb, &expr, start, end, step)).await?;
    Ok(ResultWriter::new("matrix").matrix(&m))
}

fn match_groups(p: &Params) -> Result<Vec<Vec<Matcher>>, PromError> {
    let mut groups = Vec::new();
    for sel in p.all("match[]") {
        groups.extend(promql::series_matchers(sel)?);
    }
    Ok(groups)
}

pub(super) async fn series(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, PromError> {
    let p = Params::read(&uri, &headers, &body);
    let groups = match_groups(&p)?;
    if groups.is_empty() {
        return Err(PromError::bad_data("no match[] parameter provided"));
    }
    let mut seen: Vec<Labels> = Vec::new();
    for g in &groups {
        for (_, l) in state.tsdb.matching(g) {
            if !seen.contains(&l) {
                seen.push(l);
            }
        }
    }
    seen.sort();
    Ok(success(Value::Array(
        seen.iter().map(metric_json).collect(),
    )))
}

pub(super) async fn labels(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, PromError> {
    let p = Params::read(&uri, &headers, &body);
    let groups = match_groups(&p)?;
    let mut names: Vec<String> = if groups.is_empty() {
        state.tsdb.label_names(&[])
    } else {
        groups
            .iter()
            .flat_map(|g| state.tsdb.label_names(g))
            .collect()
    };
    names.sort();
    names.dedup();
    Ok(success(json!(names)))
}

pub(super) async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, PromError> {
    let p = Params::read(&uri, &headers, &Bytes::new());
    let groups = match_groups(&p)?;
    let mut values: Vec<String> = if groups.is_empty() {
        state.tsdb.label_values(&name, &[])
    } else {
        groups
            .iter()
            .flat_map(|g| state.tsdb.label_values(&name, g))
            .collect()
    };
    values.sort();
    values.dedup();
    Ok(success(json!(values)))
}

pub(super) async fn buildinfo() -> Result<Json<Value>, PromError> {
    Ok(success(
        json!({ "version": VERSION, "application": "dcmon" }),
    ))
}
