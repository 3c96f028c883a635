//! `dcmon quickstart`: a server on a local data dir and a local agent registered to it,
//! in one process. A second run reuses the data dir: no new passwords.

use anyhow::{Context, Result};
use clap::Args;
use dcmon_agent::config::AgentConfig;
use dcmon_agent::enroll::{Trust, register};
use dcmon_server::auth::Role;
use dcmon_server::config::{Override, ServerConfig};
use dcmon_server::control::ControlDb;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args)]
pub struct QuickstartArgs {
    /// Data directory (default: $XDG_DATA_HOME/dcmon or ~/.local/share/dcmon).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HTTPS listen address.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: String,
    /// Collection interval of the local agent.
    #[arg(long, default_value = "30s")]
    interval: humantime::Duration,
}

fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("dcmon");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/share/dcmon"),
        None => PathBuf::from("dcmon-data"),
    }
}

pub fn run(args: QuickstartArgs) -> Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    dcmon_server::control::create_private_dir(&data_dir)?;
    let data_dir = data_dir.canonicalize()?;
    let config_path = data_dir.join("server.yaml");
    let config = if config_path.exists() {
        // A data dir made by an earlier quickstart: its settings stand, --listen still applies.
        ServerConfig::load(
            Some(&config_path),
            |k| std::env::var(k).ok(),
            &[Override {
                path: "listen".into(),
                value: args.listen.clone(),
                source: "--listen".into(),
            }],
        )?
    } else {
        let c = ServerConfig {
            data_dir: data_dir.clone(),
            listen: args
                .listen
                .parse()
                .with_context(|| format!("--listen {:?}: expected ADDRESS:PORT", args.listen))?,
            ..ServerConfig::default()
        };
        let text = format!(
            "# Written by `dcmon quickstart`; `dcmon server --config {}` runs the same server.\n{}",
            config_path.display(),
            config_yaml(&c)?
        );
        std::fs::write(&config_path, text)
            .with_context(|| format!("writing {}", config_path.display()))?;
        c
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log.level)
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let db = ControlDb::open(&data_dir)?;
    let password = db.ensure_first_admin("admin")?;
    let viewer_token = match &password {
        Some(_) => Some(db.create_api_token("quickstart-viewer", Role::Viewer, "quickstart")?),
        None => None,
    };
    let join_token = db.create_enroll_token(10, Duration::from_secs(24 * 3600), "quickstart")?;
    drop(db);

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let server = dcmon_server::Server::start(config.clone()).await?;
        let local_url = format!("https://127.0.0.1:{}", server.addr.port());
        let agent_task = start_local_agent(
            &data_dir,
            &local_url,
            &server.fingerprint,
            args.interval.into(),
        )
        .await?;

        let url = config.public_url();
        let fp = &server.fingerprint;
        let dir = data_dir.display();
        let cert = dcmon_server::tls::generated_paths(&config.data_dir).0;
        let cert = cert.display();
        let login = match (&password, &viewer_token) {
            (Some(pw), Some(tok)) => format!(
                "  Admin login:              admin / {pw}   (shown once: keep it)\n  \
                 Viewer API token:         {tok}   (shown once)\n"
            ),
            _ => "  Admin login:              admin (password shown at the first quickstart)\n"
                .to_owned(),
        };
        let banner = format!(
            "\ndcmon is running.\n  \
             Web UI and API:           {url}   (open it in a browser, sign in as admin)\n  \
             Data directory:           {dir}\n  \
             Certificate fingerprint:  {fp}\n\
             {login}\n\
             Query it:\n  \
             curl --cacert {cert} -H 'Authorization: Bearer <token>' '{url}/api/v1/query?query=node_load1'\n\
             Add another machine (token valid 24h, 10 machines):\n  \
             dcmon-agent register --server {url} --fingerprint {fp} --token {join_token}\n\
             More tokens: dcmon token create --data-dir {dir} --role viewer\n\
             Stop with Ctrl-C.\n\n"
        );
        // One write; a closed stdout (piped to `head`, say) must not stop the server.
        let mut out = std::io::stdout().lock();
        let _ = std::io::Write::write_all(&mut out, banner.as_bytes());
        let _ = std::io::Write::flush(&mut out);
        drop(out);

        crate::shutdown_signal().await;
        let (stop, task) = agent_task;
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        server.shutdown().await
    })
}

/// The configuration as YAML, as the server writes it.
fn config_yaml(c: &ServerConfig) -> Result<String> {
    dcmon_server::config::to_yaml(c)
}

type AgentHandle = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
);

/// Registers (first run only) and starts the local agent.
async fn start_local_agent(
    data_dir: &Path,
    url: &str,
    fingerprint: &str,
    interval: Duration,
) -> Result<AgentHandle> {
    let agent_dir = data_dir.join("agent");
    let cfg_path = agent_dir.join("agent.yaml");
    let mut cfg = AgentConfig::load(&cfg_path, |_| None)?;
    cfg.state_dir = agent_dir.join("state");
    cfg.interval = interval;
    let registered = cfg
        .server
        .as_ref()
        .is_some_and(|s| s.fingerprint == fingerprint && s.url == url);
    if !registered {
        let db = ControlDb::open(data_dir)?;
        let token = db.create_enroll_token(1, Duration::from_secs(600), "quickstart")?;
        drop(db);
        let resp = register(
            &cfg_path,
            &mut cfg,
            url,
            &token,
            Trust::Expect(fingerprint.to_owned()),
        )
        .await
        .context("registering the local agent")?;
        tracing::info!(agent = %resp.agent_id, host = %resp.host, "local agent registered");
    }
    cfg.save(&cfg_path)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        if let Err(e) = dcmon_agent::runner::run(cfg, cfg_path, async {
            let _ = rx.await;
        })
        .await
        {
            tracing::error!(error = %e, "local agent stopped");
        }
    });
    Ok((tx, task))
}
