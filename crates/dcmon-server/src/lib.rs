//! dcmon server library.
//!
//! - [`config`]: `server.yaml`, validated, with environment and CLI overrides.
//! - [`tls`]: the serving certificate (generated or given) and its pin.
//! - [`control`]: users, tokens, agents, audit log (SQLite).
//! - [`accounts`]: users' passwords, sign-in with lock-out, sessions.
//! - [`auth`]: roles, the per-route policy (tokens, sessions, CSRF), agent signatures
//!   and replay protection.
//! - [`api`]: the route table (`api::routes`) and the router built from it (`api::app`):
//!   agent endpoints, Prometheus API, accounts, admin reads.
//! - [`ingest`]: agent batch sessions into the tsdb.
//! - [`commands`]: the live command queue (agent long-poll, results, history).
//! - [`bmcs`]: the BMC inventory (agentless polling targets, sealed credentials).
//! - [`poller`]: polls the inventory's BMCs over RMCP+ into the tsdb and the events.
//! - [`events`]: things that happened once (SEL entries), stored once each.
//! - [`alerts`]: alert rules, built-ins, silences, channels and the notification outbox.
//! - [`secrets`]: secrets at rest, sealed with the installation's key.
//! - [`totp`]: TOTP codes, enrolment QR codes and recovery codes (pure).
//! - [`fan_curves`]: fan curves of agentless BMCs; [`fanloop`] runs them over RMCP+.
//! - [`web`]: the web UI (page templates, embedded CSS, JS and uPlot).
//! - [`Server`]: starts all of it.

pub mod accounts;
pub mod alerts;
pub mod api;
pub mod auth;
pub mod bmcs;
pub mod commands;
pub mod config;
pub mod control;
pub mod events;
pub mod fan_curves;
pub mod fanloop;
pub mod fleet;
pub mod ingest;
pub mod poller;
pub mod secrets;
pub mod state;
pub mod tls;
pub mod totp;
pub mod web;

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::ServerConfig;
pub use state::AppState;

/// This machine's host name (from the kernel), or `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A running server.
pub struct Server {
    /// The bound address (the real port when the config asked for port 0).
    pub addr: SocketAddr,
    /// Pin of the serving certificate (`SHA256:...`).
    pub fingerprint: String,
    pub state: AppState,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    fans: fanloop::FanLoop,
}

impl Server {
    /// Opens the stores, loads or makes the certificate (failing closed), binds, serves.
    pub async fn start(config: ServerConfig) -> Result<Self> {
        // One TLS provider in the whole process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = tls::load_or_generate(&config)
            .context("TLS certificate (the server never serves plain HTTP)")?;
        let rustls_config = tls.server_config()?;
        let data_dir = config.data_dir.clone();
        let tsdb_options = config.tsdb_options();
        let (control, tsdb) = tokio::task::spawn_blocking(move || -> Result<_> {
            let control = control::ControlDb::open(&data_dir)?;
            let tsdb = dcmon_tsdb::Tsdb::open_with(&data_dir.join("tsdb"), tsdb_options)?;
            Ok((control, tsdb))
        })
        .await??;
        let state = AppState::new(
            config.clone(),
            control,
            tsdb,
            Arc::new(state::SystemClock),
            tls.fingerprint.clone(),
        );
        let app = api::app(state.clone());
        let handle = axum_server::Handle::new();
        let listener = std::net::TcpListener::bind(config.listen).with_context(|| {
            format!(
                "binding {} (is another server running there?)",
                config.listen
            )
        })?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let server = axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(rustls_config),
        )?
        .handle(handle.clone());
        let task =
            tokio::spawn(server.serve(app.into_make_service_with_connect_info::<SocketAddr>()));
        spawn_housekeeping(state.clone());
        let fans = fanloop::FanLoop::start(state.clone());
        tracing::info!(%addr, fingerprint = %tls.fingerprint, "dcmon server listening (HTTPS)");
        Ok(Self {
            addr,
            fingerprint: tls.fingerprint,
            state,
            handle,
            task,
            fans,
        })
    }

    /// Applies a new configuration to the running server. Settings that need a restart
    /// (listen, data_dir, tls, public_url) keep their running values; their names are
    /// returned so the caller can say so.
    pub fn reload(&self, new: ServerConfig) -> Vec<&'static str> {
        let old = self.state.config();
        let mut kept = Vec::new();
        let mut applied = new;
        if applied.listen != old.listen {
            kept.push("listen");
            applied.listen = old.listen;
        }
        if applied.data_dir != old.data_dir {
            kept.push("data_dir");
            applied.data_dir = old.data_dir.clone();
        }
        if applied.tls != old.tls {
            kept.push("tls");
            applied.tls = old.tls.clone();
        }
        if applied.public_url != old.public_url {
            kept.push("public_url");
            applied.public_url = old.public_url.clone();
        }
        self.state.tsdb.set_options(applied.tsdb_options());
        self.state.set_config(applied);
        kept
    }

    /// Stops accepting, lets requests in flight finish (up to 10 s), hands the fans of
    /// agentless BMCs back to their BMCs, flushes state.
    pub async fn shutdown(self) -> Result<()> {
        self.handle.graceful_shutdown(Some(Duration::from_secs(10)));
        self.task.await.context("server task")?.context("server")?;
        self.fans.shutdown().await;
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || state.flush_last_seen()).await??;
        Ok(())
    }
}

fn spawn_housekeeping(state: AppState) {
    poller::spawn(state.clone());
    tokio::spawn(fleet::keep_in_sync(state.clone()));
    alerts::spawn(state.clone());
    tokio::spawn(commands::watch(
        state.control.clone(),
        state.commands.clone(),
    ));
    let s = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            let s2 = s.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s2.flush_last_seen()).await {
                tracing::warn!(error = %e, "recording agents' last-seen times");
            }
        }
    });
    tokio::spawn(async move {
        // Often enough that heads of quiet series get sealed and the ingest log trimmed
        // within the store's head age; each pass runs in small steps between ingest commits.
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            let now = state.clock.now_ms();
            let db = state.control.clone();
            let policy = accounts::SessionPolicy::from_config(&state.config().auth);
            match tokio::task::spawn_blocking(move || db.purge_sessions(policy, now)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(sessions = n, "expired sessions removed"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "removing expired sessions"),
                Err(e) => tracing::warn!(error = %e, "session purge task"),
            }
            let tsdb = state.tsdb.clone();
            match tokio::task::spawn_blocking(move || tsdb.housekeeping(now)).await {
                Ok(Ok(r)) => tracing::info!(
                    heads_sealed = r.heads_sealed,
                    heads_relogged = r.heads_relogged,
                    chunks_expired = r.chunks_expired,
                    log_rows_trimmed = r.log_rows_trimmed,
                    worst_step_ms = r.worst_step_us as f64 / 1000.0,
                    "tsdb housekeeping"
                ),
                Ok(Err(e)) => tracing::warn!(error = %e, "tsdb housekeeping"),
                Err(e) => tracing::warn!(error = %e, "tsdb housekeeping task"),
            }
        }
    });
}
