//! `dcmon-agent register`: pin the server's certificate, register the key with an
//! enrollment token, write the configuration.

use crate::client::{ServerClient, probe_fingerprint};
use crate::config::{AgentConfig, ServerLink};
use anyhow::{Result, bail};
use dcmon_wire::api::{AgentStatus, RegisterRequest, RegisterResponse};
use std::path::Path;

/// How the user confirms the server's fingerprint on first contact.
pub enum Trust {
    /// Compare with this fingerprint (as printed by the server); refuse on mismatch.
    Expect(String),
    /// Ask this function (shows the fingerprint, returns the user's answer).
    Ask(Box<dyn FnOnce(&str) -> bool + Send>),
}

/// Registers with `server_url` using `token`, then saves the server link in `config_path`.
pub async fn register(
    config_path: &Path,
    cfg: &mut AgentConfig,
    server_url: &str,
    token: &str,
    trust: Trust,
) -> Result<RegisterResponse> {
    let url = server_url.trim_end_matches('/').to_owned();
    if !url.starts_with("https://") {
        bail!("--server must be an https:// URL (dcmon never talks plain HTTP): got {url:?}");
    }
    let seen = probe_fingerprint(&url).await?;
    match trust {
        Trust::Expect(fp) if fp.trim() == seen => {}
        Trust::Expect(fp) => bail!(
            "the server at {url} presents certificate key {seen}, not the expected {}: refusing to register \
             (check the URL, or compare with `dcmon server` / `dcmon quickstart` output)",
            fp.trim()
        ),
        Trust::Ask(ask) => {
            if !ask(&seen) {
                bail!("server fingerprint not confirmed; nothing was changed");
            }
        }
    }
    let key = crate::identity::load_or_create_key(&cfg.state_dir)?;
    let public_key = dcmon_wire::sign::public_key_to_text(&key.verifying_key());
    let client = ServerClient::new(&url, &seen, key, None)?;
    let req = RegisterRequest {
        token: token.trim().to_owned(),
        public_key,
        hostname: cfg.hostname(),
        machine_id: crate::identity::machine_id(&cfg.state_dir)?,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let resp = client.register(&req).await?;
    cfg.server = Some(ServerLink {
        url,
        fingerprint: seen,
        agent_id: resp.agent_id.clone(),
    });
    cfg.save(config_path)?;
    if resp.status == AgentStatus::Pending {
        tracing::warn!(agent = %resp.agent_id, "registered, pending approval by an admin");
    }
    Ok(resp)
}
