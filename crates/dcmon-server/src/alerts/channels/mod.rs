//! Notification channels: what a channel is (its settings and sealed secrets), the
//! message every channel renders, and the delivery of one message. Each service has
//! its own file that turns a [`Notification`] into that service's documented payload.
//!
//! Secrets (webhook URLs, which carry their token; bot tokens; SMTP passwords) are
//! sealed with [`SecretBox`] for the purpose `alert-channel:<id>` and never appear in a
//! listing, a log line or an error: HTTP errors are reported without their URL.

mod discord;
mod email;
mod slack;
mod teams;
mod telegram;
mod webhook;

use super::rules::Severity;
use crate::secrets::{Secret, SecretBox, SecretError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Email,
    Slack,
    Discord,
    Teams,
    Telegram,
    Webhook,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Slack => "slack",
            ChannelKind::Discord => "discord",
            ChannelKind::Teams => "teams",
            ChannelKind::Telegram => "telegram",
            ChannelKind::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase())).map_err(|_| {
            format!("channel type {s:?}: use email, slack, discord, teams, telegram or webhook")
        })
    }
}

/// How mail leaves over SMTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587); refused if the server lacks it.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: for a relay on localhost only.
    None,
}

/// Which alerts a channel gets when a rule names no channels: all of `severities`
/// (empty: any) and matching every matcher (`host=~"rack1-.*"` for a host group).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Route {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub severities: Vec<Severity>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<String>,
}

/// A channel's settings that are not secret (stored as JSON, shown by listings).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelConfig {
    /// Telegram chat to post to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_id: Option<String>,
    /// Telegram Bot API base URL (default `https://api.telegram.org`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_port: Option<u16>,
    pub smtp_tls: SmtpTls,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// PEM file of extra CAs for a receiver with a private certificate; the public
    /// (webpki) roots stay trusted too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    pub route: Route,
    /// Send a message when alerts resolve (default true).
    pub send_resolved: bool,
}

/// The sealed part of a channel.
#[derive(Default, Serialize, Deserialize)]
pub struct ChannelSecrets {
    /// Webhook URL (Slack, Discord, Teams, webhook).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_secret")]
    pub url: Option<Secret>,
    /// Telegram bot token, or a bearer token for a generic webhook.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_secret")]
    pub token: Option<Secret>,
    /// SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_secret")]
    pub password: Option<Secret>,
}

mod opt_secret {
    use crate::secrets::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&String::from_utf8_lossy(v.expose())),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        Option::<Secret>::deserialize(d)
    }
}

/// A channel as the CLI and the API give it (secrets in the clear, once).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewChannel {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ChannelKind,
    #[serde(default)]
    pub url: Option<Secret>,
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub config: ChannelConfigInput,
}

/// [`ChannelConfig`] as input, where `send_resolved` defaults to true.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelConfigInput {
    pub chat_id: Option<String>,
    pub api_url: Option<String>,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub smtp_tls: SmtpTls,
    pub smtp_user: Option<String>,
    pub from: Option<String>,
    pub to: Vec<String>,
    pub tls_ca_file: Option<PathBuf>,
    pub route: Route,
    pub send_resolved: bool,
}

impl Default for ChannelConfigInput {
    fn default() -> Self {
        Self {
            chat_id: None,
            api_url: None,
            smtp_host: None,
            smtp_port: None,
            smtp_tls: SmtpTls::Starttls,
            smtp_user: None,
            from: None,
            to: Vec::new(),
            tls_ca_file: None,
            route: Route::default(),
            send_resolved: true,
        }
    }
}

impl From<ChannelConfigInput> for ChannelConfig {
    fn from(c: ChannelConfigInput) -> Self {
        Self {
            chat_id: c.chat_id,
            api_url: c.api_url,
            smtp_host: c.smtp_host,
            smtp_port: c.smtp_port,
            smtp_tls: c.smtp_tls,
            smtp_user: c.smtp_user,
            from: c.from,
            to: c.to,
            tls_ca_file: c.tls_ca_file,
            route: c.route,
            send_resolved: c.send_resolved,
        }
    }
}

impl NewChannel {
    /// Every problem at once.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = super::rules::check_name("channel", &self.name) {
            p.push(e);
        }
        let c = &self.config;
        let https = |u: &Option<Secret>| {
            u.as_ref().is_some_and(|u| {
                let u = String::from_utf8_lossy(u.expose());
                u.starts_with("https://")
                    || u.starts_with("http://127.0.0.1")
                    || u.starts_with("http://localhost")
            })
        };
        match self.kind {
            ChannelKind::Slack
            | ChannelKind::Discord
            | ChannelKind::Teams
            | ChannelKind::Webhook => {
                if !https(&self.url) {
                    p.push(format!(
                        "url: a {} channel needs its webhook URL, https:// (plain http only to localhost)",
                        self.kind.as_str()
                    ));
                }
            }
            ChannelKind::Telegram => {
                if self.token.as_ref().is_none_or(|t| t.is_empty()) {
                    p.push("token: a telegram channel needs the bot token".into());
                }
                if c.chat_id.as_deref().is_none_or(str::is_empty) {
                    p.push("chat_id: a telegram channel needs the chat id".into());
                }
                if let Some(u) = &c.api_url
                    && !u.starts_with("https://")
                {
                    p.push("api_url: must start with https://".into());
                }
            }
            ChannelKind::Email => {
                if c.smtp_host.as_deref().is_none_or(str::is_empty) {
                    p.push("smtp_host: an email channel needs the SMTP server".into());
                }
                match &c.from {
                    Some(f) if f.parse::<lettre::message::Mailbox>().is_ok() => {}
                    _ => p.push("from: an email channel needs a valid sender address".into()),
                }
                if c.to.is_empty() {
                    p.push("to: an email channel needs at least one recipient".into());
                }
                for t in &c.to {
                    if t.parse::<lettre::message::Mailbox>().is_err() {
                        p.push(format!("to: {t:?} is not a valid address"));
                    }
                }
                if c.smtp_user.is_some() != self.password.is_some() {
                    p.push("smtp_user and password: give both or neither".into());
                }
            }
        }
        if let Some(ca) = &c.tls_ca_file
            && let Err(e) = read_ca(ca)
        {
            p.push(format!("tls_ca_file: {e}"));
        }
        if let Err(e) = super::silences::parse_all(&c.route.matchers) {
            p.push(format!("route.matchers: {e}"));
        }
        p
    }
}

/// A channel as listings show it: settings, never secrets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelRecord {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ChannelKind,
    pub config: ChannelConfig,
    pub created_ms: i64,
    pub updated_by: String,
}

/// A channel with its secrets opened: for sending only.
pub struct Channel {
    pub record: ChannelRecord,
    pub secrets: ChannelSecrets,
}

pub(crate) fn secret_purpose(id: i64) -> String {
    format!("alert-channel:{id}")
}

pub(crate) fn seal(secrets: &SecretBox, id: i64, s: &ChannelSecrets) -> String {
    let json = zeroize::Zeroizing::new(
        serde_json::to_vec(s).expect("channel secrets serialize (strings only)"),
    );
    secrets.seal(&secret_purpose(id), &json)
}

pub(crate) fn open(
    secrets: &SecretBox,
    id: i64,
    sealed: &str,
) -> Result<ChannelSecrets, SecretError> {
    let plain = secrets.open_sealed(&secret_purpose(id), sealed)?;
    serde_json::from_slice(&plain).map_err(|_| SecretError::Malformed {
        purpose: secret_purpose(id),
        reason: "not channel secrets",
    })
}

/// One alert in a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertMessage {
    pub id: i64,
    /// `firing` or `resolved`.
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub value: f64,
    pub starts_at_ms: i64,
    pub ends_at_ms: Option<i64>,
    pub fingerprint: String,
}

/// What one notification says: the alerts of one group, for one channel. Stored in
/// the outbox as JSON and rendered per service at each attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub channel: String,
    pub group_key: String,
    /// `firing` when any alert fires, else `resolved`.
    pub status: String,
    pub alerts: Vec<AlertMessage>,
    /// The server's URL (links back to it).
    pub external_url: String,
    /// A "send test message" action.
    #[serde(default)]
    pub test: bool,
}

impl Notification {
    pub fn firing(&self) -> impl Iterator<Item = &AlertMessage> {
        self.alerts.iter().filter(|a| a.status == "firing")
    }

    /// `[FIRING:2] GpuTemperatureHigh (critical)`, or the test title.
    pub fn title(&self) -> String {
        if self.test {
            return format!("dcmon test message for channel {}", self.channel);
        }
        let name = self
            .alerts
            .first()
            .and_then(|a| a.labels.get("alertname"))
            .map(String::as_str)
            .unwrap_or("alert");
        let severity = self
            .alerts
            .first()
            .and_then(|a| a.labels.get("severity"))
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        let firing = self.firing().count();
        if firing > 0 {
            format!("[FIRING:{firing}] {name}{severity}")
        } else {
            format!("[RESOLVED] {name}{severity}")
        }
    }

    /// One line per alert: `gpu-07: GPU 3 at 93 C (value 93)`.
    pub fn lines(&self) -> Vec<String> {
        if self.test {
            return vec![format!(
                "If you read this, channel {} delivers. Sent from {}.",
                self.channel, self.external_url
            )];
        }
        self.alerts
            .iter()
            .map(|a| {
                let who = a.labels.get("host").or_else(|| a.labels.get("bmc"));
                let what = a
                    .annotations
                    .get("summary")
                    .or_else(|| a.annotations.get("description"))
                    .cloned()
                    .unwrap_or_else(|| {
                        a.labels
                            .iter()
                            .filter(|(k, _)| {
                                !matches!(k.as_str(), "alertname" | "severity" | "host")
                            })
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    });
                let state = if a.status == "resolved" {
                    "resolved"
                } else {
                    "firing"
                };
                match who {
                    Some(h) => format!(
                        "{state}: {h}: {what} (value {})",
                        dcmon_promql::format_float(a.value)
                    ),
                    None => format!(
                        "{state}: {what} (value {})",
                        dcmon_promql::format_float(a.value)
                    ),
                }
            })
            .collect()
    }

    pub fn text(&self) -> String {
        let mut t = self.title();
        for l in self.lines() {
            t.push('\n');
            t.push_str(&l);
        }
        t
    }
}

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq)]
pub struct SendError {
    pub message: String,
    /// The receiver said when to come back (HTTP 429 `Retry-After`, Telegram's
    /// `retry_after`).
    pub retry_after: Option<Duration>,
    /// The receiver refused the message itself (a 4xx other than 408/429, a
    /// permanent SMTP reply): retrying sends the same refused message.
    pub permanent: bool,
}

impl SendError {
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry_after: None,
            permanent: false,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry_after: None,
            permanent: true,
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn read_ca(path: &Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// An HTTPS client that verifies receivers against the public (webpki) roots plus, when
/// given, the CAs in `ca_file`.
pub(crate) fn http_client(ca_file: Option<&Path>) -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        for cert in read_ca(path)? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.without_url().to_string())
}

/// Clients by CA file, built once: connections to a receiver are reused.
#[derive(Default)]
pub(crate) struct Clients(std::sync::Mutex<BTreeMap<Option<PathBuf>, reqwest::Client>>);

impl Clients {
    pub fn get(&self, ca_file: Option<&Path>) -> Result<reqwest::Client, String> {
        let key = ca_file.map(Path::to_owned);
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = m.get(&key) {
            return Ok(c.clone());
        }
        let c = http_client(ca_file)?;
        m.insert(key, c.clone());
        Ok(c)
    }
}

/// POSTs `body` as JSON with the idempotency key, and classifies the answer.
async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    key: &str,
    bearer: Option<&Secret>,
) -> Result<reqwest::Response, SendError> {
    let mut req = client.post(url).header("Idempotency-Key", key).json(body);
    if let Some(t) = bearer {
        req = req.bearer_auth(String::from_utf8_lossy(t.expose()));
    }
    let resp = req
        .send()
        .await
        .map_err(|e| SendError::retry(format!("sending: {}", error_chain(&e.without_url()))))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let header_retry = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)));
    let text = resp.text().await.unwrap_or_default();
    // Discord and Telegram put the wait in the JSON body as well.
    let body_retry = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("retry_after")
                .or_else(|| v.get("parameters").and_then(|p| p.get("retry_after")))
                .and_then(serde_json::Value::as_f64)
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(3600.0)))
        });
    let snippet: String = text.chars().take(200).collect();
    let message = format!("HTTP {}: {}", status.as_u16(), snippet.trim());
    Err(SendError {
        message,
        retry_after: header_retry.or(body_retry),
        permanent: status.is_client_error()
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS
            && status != reqwest::StatusCode::REQUEST_TIMEOUT,
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn url_of(ch: &Channel) -> Result<String, SendError> {
    ch.secrets
        .url
        .as_ref()
        .map(|u| String::from_utf8_lossy(u.expose()).into_owned())
        .ok_or_else(|| SendError::permanent("the channel has no URL; add it again with --url"))
}

/// Delivers `n` over `ch`; `key` is the same on every attempt of one notification.
pub(crate) async fn send(
    ch: &Channel,
    n: &Notification,
    key: &str,
    clients: &Clients,
) -> Result<(), SendError> {
    let client = || {
        clients
            .get(ch.record.config.tls_ca_file.as_deref())
            .map_err(|e| SendError::retry(format!("tls_ca_file: {e}")))
    };
    match ch.record.kind {
        ChannelKind::Slack => {
            post_json(&client()?, &url_of(ch)?, &slack::payload(n), key, None).await?;
        }
        ChannelKind::Discord => {
            post_json(&client()?, &url_of(ch)?, &discord::payload(n), key, None).await?;
        }
        ChannelKind::Teams => {
            post_json(&client()?, &url_of(ch)?, &teams::payload(n), key, None).await?;
        }
        ChannelKind::Webhook => {
            post_json(
                &client()?,
                &url_of(ch)?,
                &webhook::payload(n),
                key,
                ch.secrets.token.as_ref(),
            )
            .await?;
        }
        ChannelKind::Telegram => telegram::send(&client()?, ch, n, key).await?,
        ChannelKind::Email => email::send(ch, n, key).await?,
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Notification {
        let labels = |host: &str| {
            [
                ("alertname", "GpuTemperatureHigh"),
                ("severity", "critical"),
                ("host", host),
                ("gpu", "0"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
        };
        Notification {
            channel: "ops".into(),
            group_key: "GpuTemperatureHigh".into(),
            status: "firing".into(),
            alerts: vec![
                AlertMessage {
                    id: 1,
                    status: "firing".into(),
                    labels: labels("gpu-1"),
                    annotations: [("summary".to_owned(), "GPU 0 at 93 C".to_owned())]
                        .into_iter()
                        .collect(),
                    value: 93.0,
                    starts_at_ms: 1_700_000_000_000,
                    ends_at_ms: None,
                    fingerprint: "00aa".into(),
                },
                AlertMessage {
                    id: 2,
                    status: "resolved".into(),
                    labels: labels("gpu-2"),
                    annotations: BTreeMap::new(),
                    value: 70.0,
                    starts_at_ms: 1_700_000_000_000,
                    ends_at_ms: Some(1_700_000_060_000),
                    fingerprint: "00bb".into(),
                },
            ],
            external_url: "https://dcmon.example:8443".into(),
            test: false,
        }
    }

    #[test]
    fn titles_and_lines() {
        let n = sample();
        assert_eq!(n.title(), "[FIRING:1] GpuTemperatureHigh (critical)");
        assert_eq!(
            n.lines(),
            [
                "firing: gpu-1: GPU 0 at 93 C (value 93)",
                "resolved: gpu-2: gpu=0 (value 70)"
            ]
        );
    }

    #[test]
    fn channel_validation_names_missing_settings() {
        let check = |json: &str, expect: &[&str]| {
            let c: NewChannel = serde_json::from_str(json).unwrap();
            let p = c.validate();
            assert_eq!(p.len(), expect.len(), "{p:?}");
            for (p, e) in p.iter().zip(expect) {
                assert!(p.contains(e), "{p} / {e}");
            }
        };
        check(
            r#"{"name":"s","type":"slack","url":"https://hooks.slack.com/x"}"#,
            &[],
        );
        check(
            r#"{"name":"s","type":"slack","url":"http://evil.example/x"}"#,
            &["url:"],
        );
        check(
            r#"{"name":"t","type":"telegram","token":"1:a"}"#,
            &["chat_id"],
        );
        check(
            r#"{"name":"m","type":"email","config":{"smtp_host":"h","from":"a@b.c","to":["x"]}}"#,
            &["to: \"x\""],
        );
        check(
            r#"{"name":"w","type":"webhook","url":"https://x","config":{"route":{"matchers":["host=~("]}}}"#,
            &["route.matchers"],
        );
    }
}
