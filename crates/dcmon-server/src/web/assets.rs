//! The static files under `crates/dcmon-server/web/` (CSS, JS modules, vendored uPlot),
//! embedded in the binary so the UI needs nothing at run time but the server itself.
//!
//! Pages link them as `/static/<path>?v=<content hash>`: such a request may be cached for
//! a year (a new build with a changed file links a new `v`). Without `v` (a module's
//! relative `import`), the answer must be revalidated, and an `If-None-Match` with the
//! current ETag gets a `304` without a body.

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::RustEmbed)]
#[folder = "web/"]
struct Assets;

/// First hex digits of the file's SHA-256: its version in links and its ETag.
fn content_hash(path: &str) -> Option<String> {
    Assets::get(path).map(|f| hex::encode(&f.metadata.sha256_hash()[..8]))
}

/// The URL of a static file, versioned by its content.
///
/// A file named here that is not embedded is a bug in a template, found by the tests
/// that render every page and fetch each of its links.
pub(crate) fn url(path: &str) -> String {
    match content_hash(path) {
        Some(v) => format!("/static/{path}?v={v}"),
        None => format!("/static/{path}"),
    }
}

/// `GET /static/{*path}`.
pub async fn serve(
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(file) = Assets::get(&path) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let hash = hex::encode(&file.metadata.sha256_hash()[..8]);
    let etag = format!("\"{hash}\"");
    let versioned = query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|kv| kv == format!("v={hash}")));
    let cache = if versioned {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut resp = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mime = if path.ends_with(".js") {
            // Module scripts must come as JavaScript; mime_guess's answer varies by version.
            "text/javascript; charset=utf-8".to_owned()
        } else {
            file.metadata.mimetype().to_owned()
        };
        let mut r = file.data.into_owned().into_response();
        if let Ok(v) = HeaderValue::from_str(&mime) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_linked_file_is_embedded() {
        for path in [
            "app.css",
            "js/api.js",
            "js/fleet.js",
            "js/chart.js",
            "js/machine.js",
            "js/login.js",
            "js/agents.js",
            "js/users.js",
            "js/tokens.js",
            "js/audit.js",
            "js/settings.js",
            "js/bmcs.js",
            "js/bmc.js",
            "js/alerts.js",
            "js/rules.js",
            "js/channels.js",
            "js/silences.js",
            "js/silence.js",
            "vendor/uplot/uPlot.iife.min.js",
            "vendor/uplot/uPlot.min.css",
            "vendor/uplot/LICENSE",
        ] {
            assert!(url(path).contains("?v="), "{path} is not embedded");
        }
    }
}
