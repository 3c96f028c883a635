//! Alerts and notifications (DESIGN §7).
//!
//! - [`rules`]: what a rule is; [`template`]: `{{ $labels.host }}` in labels and annotations.
//! - [`lifecycle`]: the pure pending → firing → resolved machine, with hysteresis.
//! - [`builtins`]: the rules on by default (offline, BMC, temperatures, disks, SEL, ...).
//! - [`silences`]: label matchers and silences.
//! - [`channels`]: email, Slack, Discord, Teams, Telegram and webhook deliveries.
//! - [`yaml`]: Prometheus alerting-rule files (import, `dcmon rules check`).
//! - `store`: the tables; `engine`: the evaluation and delivery tasks.
//!
//! Invariants: a notification is committed to the outbox (with the alerts' notified
//! states, in one transaction) before any send is tried; alert state lives in the
//! control store, so a restarted server continues where it stopped and does not notify
//! again what it notified before; channel secrets are stored sealed and never logged.

pub mod builtins;
pub mod channels;
mod engine;
pub mod lifecycle;
pub mod rules;
pub mod silences;
mod store;
pub mod template;
pub mod yaml;

pub(crate) use engine::spawn;
pub use store::{AlertRecord, HistoryEntry, NotificationRecord, RuleRecord};

use crate::config::AlertsConfig;
use crate::secrets::SecretError;
use std::time::Duration;

/// Why an alerts operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The request is wrong; the message says where.
    #[error("{0}")]
    Invalid(String),
    #[error("no {0}")]
    NotFound(String),
    #[error("{0} exists already; remove it first or choose another name")]
    Exists(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl From<rusqlite::Error> for AlertError {
    fn from(e: rusqlite::Error) -> Self {
        AlertError::Store(e.into())
    }
}

/// Problems with the `alerts` section of the server config.
pub fn validate_config(c: &AlertsConfig) -> Vec<String> {
    let mut p = builtins::validate(c);
    if c.interval < Duration::from_secs(1) || c.interval > Duration::from_secs(3600) {
        p.push("alerts.interval: must be between 1s and 1h".into());
    }
    if c.group_wait > Duration::from_secs(600) {
        p.push("alerts.group_wait: at most 10m".into());
    }
    if c.group_interval > Duration::from_secs(86_400) {
        p.push("alerts.group_interval: at most 1d".into());
    }
    if c.repeat_interval < Duration::from_secs(60) {
        p.push("alerts.repeat_interval: at least 1m".into());
    }
    if c.retry_initial < Duration::from_millis(10) || c.retry_max < c.retry_initial {
        p.push("alerts.retry_initial: at least 10ms, and retry_max at least retry_initial".into());
    }
    if !(1..=100).contains(&c.retry_attempts) {
        p.push("alerts.retry_attempts: between 1 and 100".into());
    }
    p
}

/// Sends a test message over `channel` now (not through the outbox: the caller wants
/// the answer), with a fresh idempotency key.
pub async fn send_test(
    channel: &channels::Channel,
    external_url: &str,
) -> Result<(), channels::SendError> {
    let n = channels::Notification {
        channel: channel.record.name.clone(),
        group_key: "test".into(),
        status: "firing".into(),
        alerts: Vec::new(),
        external_url: external_url.to_owned(),
        test: true,
    };
    let key = hex::encode(crate::control::random_bytes::<16>());
    channels::send(channel, &n, &key, &channels::Clients::default()).await
}
