//! The optional local exporter: the latest collection on `/metrics` in the Prometheus
//! text format, for an existing Prometheus to scrape (DESIGN §2, default port 9835).
//!
//! It serves the collection the agent made on its own interval rather than collecting per
//! request, so scrapes cost nothing and every consumer sees the same values. With
//! `bearer_token_file` set, a scrape without that token is refused.

use crate::config::ExporterConfig;
use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dcmon_wire::Scrape;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

/// The text being served, replaced after every collection.
#[derive(Default)]
pub struct Exported {
    text: Mutex<Option<Arc<String>>>,
}

impl Exported {
    /// Renders `scrape` for the next scrapes.
    pub fn publish(&self, scrape: &Scrape) {
        let mut text = String::with_capacity(64 * scrape.samples.len());
        crate::exposition::prometheus_text(scrape, &mut text);
        *self
            .text
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(text));
    }

    fn current(&self) -> Option<Arc<String>> {
        self.text
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[derive(Clone)]
struct ExporterState {
    exported: Arc<Exported>,
    /// SHA-256 of the expected bearer token; compared as digests so the comparison
    /// time says nothing about the token.
    token_digest: Option<[u8; 32]>,
}

/// Binds `listen` and serves until the process ends. Fails (so the agent does not start)
/// when the address cannot be bound or the token file cannot be read.
pub async fn start(listen: &str, cfg: &ExporterConfig) -> Result<Arc<Exported>> {
    let token_digest = match &cfg.bearer_token_file {
        Some(path) => {
            let token = std::fs::read_to_string(path).with_context(|| {
                format!("exporter.bearer_token_file: reading {}", path.display())
            })?;
            let token = token.trim();
            anyhow::ensure!(
                !token.is_empty(),
                "exporter.bearer_token_file: {} is empty",
                path.display()
            );
            Some(Sha256::digest(token.as_bytes()).into())
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("exporter.listen: cannot listen on {listen}"))?;
    let exported = Arc::new(Exported::default());
    let state = ExporterState {
        exported: exported.clone(),
        token_digest,
    };
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(index))
        .with_state(state);
    tracing::info!(address = %listen, "local exporter serving /metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "local exporter stopped");
        }
    });
    Ok(exported)
}

async fn index() -> &'static str {
    "dcmon agent exporter: metrics at /metrics\n"
}

async fn metrics(State(state): State<ExporterState>, headers: HeaderMap) -> Response {
    if let Some(want) = state.token_digest {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| <[u8; 32]>::from(Sha256::digest(t.trim().as_bytes())));
        if given != Some(want) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"dcmon-agent\"")],
                "a bearer token is required (exporter.bearer_token_file)\n",
            )
                .into_response();
        }
    }
    match state.exported.current() {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text.as_str().to_owned(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no collection yet; retry after the first interval\n",
        )
            .into_response(),
    }
}
