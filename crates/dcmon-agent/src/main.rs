//! `dcmon-agent`: thin CLI over the agent library.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use dcmon_agent::config::{AgentConfig, DEFAULT_CONFIG_PATH};
use dcmon_agent::enroll::{Trust, register};
use dcmon_agent::{exposition, install, runner};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

mod fans_cli;

#[derive(Parser)]
#[command(
    name = "dcmon-agent",
    version,
    about = "dcmon agent: collects this machine's metrics and pushes them to a dcmon server"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "DCMON_AGENT_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Log filter (error, warn, info, debug, trace).
    #[arg(long, global = true, env = "DCMON_AGENT_LOG", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Collect and push until stopped (the default).
    Run {
        /// Override the collection interval (e.g. 10s).
        #[arg(long)]
        interval: Option<humantime::Duration>,
    },
    /// Register with a server using an enrollment token (`dcmon enroll create`).
    Register {
        /// Server URL, e.g. https://monitor.example:8443
        #[arg(long)]
        server: String,
        /// Enrollment token; used once, never stored.
        #[arg(long, env = "DCMON_ENROLL_TOKEN", hide_env_values = true)]
        token: String,
        /// Expected server certificate fingerprint (SHA256:...), as the server printed it.
        #[arg(long)]
        fingerprint: Option<String>,
        /// Trust the fingerprint shown without asking (trust on first use).
        #[arg(long, conflicts_with = "fingerprint")]
        yes: bool,
        /// Host name to register under (default: the kernel's).
        #[arg(long)]
        hostname: Option<String>,
    },
    /// Collect once and print the result.
    Collect {
        /// Collect a single time and exit.
        #[arg(long, required = true)]
        once: bool,
        #[arg(long, value_enum, default_value = "prometheus")]
        format: Format,
    },
    /// The BMC's fans: status, mode, zone duty (drop-in for fans.sh).
    Fans(fans_cli::FansArgs),
    /// Install as a hardened systemd service running as an unprivileged system user.
    Install {
        /// The system user (and group) the service runs as; created if missing.
        #[arg(long, default_value = install::DEFAULT_USER)]
        user: String,
        /// Where to install this binary (the unit's ExecStart).
        #[arg(long, default_value = install::DEFAULT_BINARY)]
        binary: PathBuf,
        /// Write the files but do not enable or start the service.
        #[arg(long)]
        no_start: bool,
        /// Write everything below DIR, run no command, change no owner (packaging).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Stop and remove the service, its rules and the installed binary.
    Uninstall {
        /// Also remove the key, the spool, agent.yaml and the user.
        #[arg(long)]
        purge: bool,
        /// The user the service ran as.
        #[arg(long, default_value = install::DEFAULT_USER)]
        user: String,
        /// The installed binary (removed only if the installed unit runs it).
        #[arg(long, default_value = install::DEFAULT_BINARY)]
        binary: PathBuf,
        /// Remove below DIR and run no command.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Prometheus,
    Json,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log_level).context("--log-level")?,
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let command = match cli.command {
        Some(Command::Install {
            user,
            binary,
            no_start,
            root,
        }) => {
            fixed_config_path(&cli.config, "install")?;
            let executable = std::env::current_exe().context("locating the running binary")?;
            let report = install::install(&install::InstallOptions {
                user,
                binary,
                executable,
                start: !no_start,
                root,
            })?;
            print!("{report}");
            return Ok(());
        }
        Some(Command::Uninstall {
            purge,
            user,
            binary,
            root,
        }) => {
            fixed_config_path(&cli.config, "uninstall")?;
            let report = install::uninstall(&install::UninstallOptions {
                user,
                binary,
                purge,
                root,
            })?;
            print!("{report}");
            return Ok(());
        }
        other => other.unwrap_or(Command::Run { interval: None }),
    };
    let mut cfg = AgentConfig::load(&cli.config, |k| std::env::var(k).ok())?;
    match command {
        Command::Collect { once: _, format } => {
            let mut collectors = runner::build_collectors(&cfg);
            let scrape = runner::collect_once(&mut collectors, &cfg.hostname());
            let out = match format {
                Format::Prometheus => {
                    let mut s = String::new();
                    exposition::prometheus_text(&scrape, &mut s);
                    s
                }
                Format::Json => exposition::json(&scrape) + "\n",
            };
            std::io::stdout().write_all(out.as_bytes())?;
            Ok(())
        }
        Command::Fans(args) => fans_cli::run(args, &cfg.ipmi),
        Command::Install { .. } | Command::Uninstall { .. } => {
            unreachable!("install and uninstall return before the configuration is loaded")
        }
        Command::Register {
            server,
            token,
            fingerprint,
            yes,
            hostname,
        } => {
            if hostname.is_some() {
                cfg.hostname = hostname;
            }
            let trust = match (fingerprint, yes) {
                (Some(fp), _) => Trust::Expect(fp),
                (None, true) => Trust::Ask(Box::new(|fp| {
                    eprintln!("Server certificate fingerprint: {fp} (trusted on first use, --yes)");
                    true
                })),
                (None, false) if std::io::stdin().is_terminal() => Trust::Ask(Box::new(|fp| {
                    eprint!(
                        "Server certificate fingerprint: {fp}\nDoes it match what the server printed? [y/N] "
                    );
                    let mut line = String::new();
                    let _ = std::io::stdin().lock().read_line(&mut line);
                    matches!(line.trim(), "y" | "Y" | "yes")
                })),
                (None, false) => bail!(
                    "no terminal to confirm the server fingerprint: pass --fingerprint SHA256:... (or --yes to trust on first use)"
                ),
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let resp = rt.block_on(register(&cli.config, &mut cfg, &server, &token, trust))?;
            println!(
                "registered as agent {} (host {:?}), status {}; configuration written to {}",
                resp.agent_id,
                resp.host,
                resp.status.as_str(),
                cli.config.display()
            );
            Ok(())
        }
        Command::Run { interval } => {
            if let Some(i) = interval {
                cfg.interval = i.into();
                cfg.validate()
                    .map_err(|p| anyhow::anyhow!("{}", p.join("; ")))?;
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            rt.block_on(runner::run(cfg, cli.config.clone(), shutdown_signal()))
        }
    }
}

/// The installed unit always reads `DEFAULT_CONFIG_PATH` (its sandbox can write only
/// there), so another `--config` would silently not apply.
fn fixed_config_path(config: &Path, what: &str) -> Result<()> {
    if config != Path::new(DEFAULT_CONFIG_PATH) {
        bail!(
            "`dcmon-agent {what}` always uses {DEFAULT_CONFIG_PATH}; drop --config {} (or unset DCMON_AGENT_CONFIG)",
            config.display()
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
}
