//! Shared state of the running server, and the injectable clock.

use crate::auth::{LoginRateLimit, NonceCache};
use crate::config::ServerConfig;
use crate::control::ControlDb;
use crate::ingest::Sessions;
use dcmon_tsdb::Tsdb;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Wall-clock time, injected so tests can move it.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::control::now_ms()
    }
}

/// Everything a request handler may touch. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The running configuration; SIGHUP swaps in a new one (see `Server::reload`).
    config: Arc<arc_swap::ArcSwap<ServerConfig>>,
    pub control: Arc<ControlDb>,
    pub tsdb: Arc<Tsdb>,
    pub nonces: Arc<NonceCache>,
    pub sessions: Arc<Sessions>,
    /// remote_write senders' series, by their encoded labels.
    pub remote_series: Arc<crate::api::SeriesCache>,
    pub clock: Arc<dyn Clock>,
    /// Wakes command long-polls and result waiters.
    pub commands: Arc<crate::commands::CommandWaker>,
    /// Server start time; signatures older than this are refused (see `auth::check_clock`).
    pub boot_ms: i64,
    /// Agent id → (last push time, remote address), flushed to the control store periodically.
    pub last_seen: Arc<Mutex<HashMap<String, (i64, String)>>>,
    /// Pin of the serving certificate, shown to users.
    pub tls_fingerprint: Arc<str>,
    /// The fleet table, kept current by ingest.
    pub fleet: Arc<crate::fleet::FleetView>,
    /// Sign-in attempts per client address (see `auth::LoginRateLimit`).
    pub login_limit: Arc<LoginRateLimit>,
    /// API token id → time of its last use, flushed to the control store with the
    /// agents' last-seen times (a write per request would also void the token cache).
    pub token_uses: Arc<Mutex<HashMap<i64, i64>>>,
    /// The installation key, opened on first need (MACs of proxy users' CSRF tokens).
    secret_box: Arc<OnceLock<Arc<crate::secrets::SecretBox>>>,
}

impl AppState {
    pub fn new(
        config: ServerConfig,
        control: ControlDb,
        tsdb: Tsdb,
        clock: Arc<dyn Clock>,
        tls_fingerprint: String,
    ) -> Self {
        let boot_ms = clock.now_ms();
        Self {
            config: Arc::new(arc_swap::ArcSwap::from_pointee(config)),
            control: Arc::new(control),
            tsdb: Arc::new(tsdb),
            nonces: Arc::new(NonceCache::default()),
            sessions: Arc::new(Sessions::default()),
            remote_series: Arc::default(),
            clock,
            commands: Arc::default(),
            boot_ms,
            last_seen: Arc::new(Mutex::new(HashMap::new())),
            tls_fingerprint: tls_fingerprint.into(),
            fleet: Arc::default(),
            login_limit: Arc::default(),
            token_uses: Arc::default(),
            secret_box: Arc::default(),
        }
    }

    /// The installation's secret key, read once (from the blocking pool) and kept.
    pub async fn secret_box(&self) -> Result<Arc<crate::secrets::SecretBox>, crate::api::ApiError> {
        if let Some(b) = self.secret_box.get() {
            return Ok(b.clone());
        }
        let data_dir = self.config().data_dir.clone();
        let opened = crate::api::run_blocking(
            move || crate::secrets::SecretBox::open(&data_dir),
            crate::api::ApiError::internal,
        )
        .await?;
        Ok(self.secret_box.get_or_init(|| Arc::new(opened)).clone())
    }

    /// Notes that API token `id` was used now (flushed with [`AppState::flush_last_seen`]).
    pub fn used_token(&self, id: i64) {
        let now = self.clock.now_ms();
        self.token_uses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, now);
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.load_full()
    }

    /// Replaces the configuration in force.
    pub(crate) fn set_config(&self, config: ServerConfig) {
        self.config.store(Arc::new(config));
    }

    /// Notes that an agent was heard from now (flushed to the control store in batches).
    pub fn saw_agent(&self, agent_id: &str, addr: &std::net::SocketAddr) {
        let now = self.clock.now_ms();
        self.last_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(agent_id.to_owned(), (now, addr.ip().to_string()));
    }

    /// Writes the last-seen times of agents and last-use times of API tokens gathered
    /// since the previous flush.
    pub fn flush_last_seen(&self) -> anyhow::Result<()> {
        let uses: Vec<(i64, i64)> = self
            .token_uses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
            .collect();
        if !uses.is_empty() {
            self.control.touch_api_tokens(&uses)?;
        }
        let batch: Vec<(String, i64, String)> = {
            let mut m = self
                .last_seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            m.drain()
                .map(|(id, (ts, remote))| (id, ts, remote))
                .collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        self.control.touch_agents(&batch)
    }
}
