//! `dcmon`: the server binary and its admin commands. Thin: parse, load config, call
//! the libraries.

mod alerts_cli;
mod bmc_cli;
mod bmc_sim;
mod command_cli;
mod fans_cli;
mod ipmi_cli;
mod quickstart;
mod tsdb_cli;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use dcmon_server::auth::Role;
use dcmon_server::config::{LogFormat, Override, ServerConfig};
use dcmon_server::control::ControlDb;
use dcmon_wire::api::AgentStatus;
use std::path::PathBuf;

/// Default server configuration file, used when it exists and no --config is given.
const DEFAULT_CONFIG: &str = "/etc/dcmon/server.yaml";

#[derive(Parser)]
#[command(
    name = "dcmon",
    version,
    about = "dcmon: monitoring and control for fleets of GPU and datacenter servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the server's configuration and data live; every admin command takes these.
#[derive(Args, Clone)]
struct Locate {
    /// Server configuration file (YAML or TOML). Default: /etc/dcmon/server.yaml when it exists.
    #[arg(long, global = true, env = "DCMON_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the config's data_dir).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Server {
        #[command(flatten)]
        locate: Locate,
        /// Listen address (overrides the config's listen).
        #[arg(long)]
        listen: Option<String>,
        /// Log filter (overrides log.level).
        #[arg(long)]
        log_level: Option<String>,
        /// Any setting, as dotted.path=value (repeatable), e.g. --set agents.approval=manual
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// One command to try dcmon: a server on a local data dir plus a local agent.
    Quickstart(quickstart::QuickstartArgs),
    /// Enrollment tokens for registering agents.
    Enroll {
        #[command(flatten)]
        locate: Locate,
        #[command(subcommand)]
        command: EnrollCommand,
    },
    /// Registered agents.
    Agents {
        #[command(flatten)]
        locate: Locate,
        #[command(subcommand)]
        command: AgentsCommand,
    },
    /// Live commands for agents: send one and wait for its result, or list history.
    #[command(name = "command")]
    Commands {
        #[command(flatten)]
        locate: Locate,
        #[command(subcommand)]
        command: command_cli::CommandCommand,
    },
    /// Users of the web UI and the API: add, change password, remove, list.
    User {
        #[command(flatten)]
        locate: Locate,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API tokens for scripts and Grafana.
    Token {
        #[command(flatten)]
        locate: Locate,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Configuration helpers.
    Config {
        #[command(flatten)]
        locate: Locate,
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The BMCs the server polls without an agent: add, list, remove, import, check.
    Bmc {
        #[command(flatten)]
        locate: Locate,
        #[command(subcommand)]
        command: bmc_cli::BmcCommand,
    },
    /// Fan control of agentless BMCs: curves, the Zephyr preset, dry runs.
    Fans {
        #[command(flatten)]
        locate: Locate,
        #[command(subcommand)]
        command: fans_cli::FansCommand,
    },
    /// Alert rules: add, list, remove, import and check Prometheus rule files.
    Rules {
        #[command(flatten)]
        locate: Locate,
        #[command(subcommand)]
        command: alerts_cli::RulesCommand,
    },
    /// Notification channels: email, Slack, Discord, Teams, Telegram, webhook.
    Channels {
        #[command(flatten)]
        locate: Locate,
        #[command(subcommand)]
        command: alerts_cli::ChannelsCommand,
    },
    /// Alerts: list, acknowledge, silence; the notification outbox.
    Alerts {
        #[command(flatten)]
        locate: Locate,
        #[command(subcommand)]
        command: alerts_cli::AlertsCommand,
    },
    /// Simulated BMCs (RMCP+, sensors, SEL, vendor fan commands) for development and tests.
    BmcSim(bmc_sim::BmcSimArgs),
    /// Talk to a BMC over IPMI 2.0 (RMCP+): sensors, SEL, chassis, fans, raw commands.
    Ipmi(ipmi_cli::IpmiArgs),
    /// The time-series store (offline checks).
    Tsdb {
        #[command(flatten)]
        locate: Locate,
        #[command(subcommand)]
        command: tsdb_cli::TsdbCommand,
    },
    /// Show audit log entries, newest first.
    Audit {
        #[command(flatten)]
        locate: Locate,
        /// Only entries of this actor (a user, `cli:<login>`, `enrollment`).
        #[arg(long)]
        actor: Option<String>,
        /// Only this action, or a family of them (`login` for login.ok, login.failed, ...).
        #[arg(long)]
        action: Option<String>,
        /// Only entries containing this text (any case) in any field.
        #[arg(long)]
        grep: Option<String>,
        /// Only entries since this long ago (`24h`, `7d`) or this time (`2027-01-15T08:00:00Z`).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user (password at least 12 characters).
    Add {
        name: String,
        #[arg(long, value_enum, default_value = "viewer")]
        role: RoleArg,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Set a user's password (ends the user's sessions and any lock-out).
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Remove a user (not the last admin); its API tokens are revoked.
    Remove { name: String },
    /// List users with role, TOTP and lock-out.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// Where a new password comes from; without a flag it is asked for twice, not echoed.
#[derive(Args)]
struct PasswordSource {
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "generate")]
    password_stdin: bool,
    /// Make a random password and print it.
    #[arg(long)]
    generate: bool,
}

impl PasswordSource {
    /// The password, and whether it was generated (then the caller prints it).
    fn read(&self) -> Result<(String, bool)> {
        if self.generate {
            return Ok((dcmon_server::accounts::generate_password(), true));
        }
        if self.password_stdin {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            let password = line.trim_end_matches(['\n', '\r']).to_owned();
            if password.is_empty() {
                bail!("--password-stdin: standard input had no password on its first line");
            }
            return Ok((password, false));
        }
        let first = rpassword::prompt_password("Password: ")
            .context("reading the password from the terminal (use --password-stdin or --generate without one)")?;
        dcmon_server::accounts::check_password(&first)?;
        let again = rpassword::prompt_password("Password again: ")?;
        if first != again {
            bail!("the passwords differ; nothing was changed");
        }
        Ok((first, false))
    }
}

/// `--since`: a duration back from now (`24h`) or an RFC 3339 time.
fn parse_since(text: &str, now_ms: i64) -> Result<i64> {
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
    }
    let t = humantime::parse_rfc3339_weak(text).with_context(|| {
        format!("--since {text:?}: expected a duration such as 24h or a time such as 2027-01-15T08:00:00Z")
    })?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Ok(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn format_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(t).to_string()
}

#[derive(Subcommand)]
enum EnrollCommand {
    /// Print a new enrollment token and the command that uses it.
    Create {
        /// How many agents may register with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it stays valid (e.g. 1h, 30m, 7d).
        #[arg(long, default_value = "1h")]
        ttl: humantime::Duration,
        /// Print only the token.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Subcommand)]
enum AgentsCommand {
    /// List agents with their status and last contact.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Admit a pending agent (by id or host).
    Approve { agent: String },
    /// Refuse an agent from now on (by id or host).
    Revoke { agent: String },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new API token (shown once; stored hashed).
    Create {
        #[arg(long, value_enum)]
        role: RoleArg,
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List API tokens (never their secrets).
    List,
    /// Revoke an API token by id.
    Revoke { id: i64 },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print an example configuration with every key and its default.
    Example,
    /// Validate the configuration and print the effective settings.
    Check,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Viewer,
    Operator,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Viewer => Role::Viewer,
            RoleArg::Operator => Role::Operator,
            RoleArg::Admin => Role::Admin,
        }
    }
}

/// mimalloc gives freed memory back to the system and fragments less than the system
/// allocator under many threads, which keeps the server's memory per series low.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 2's `mi_option_e` (the Rust binding names no
/// constant for it). Its documented default is 10 ms, which is how the value is checked
/// before it is changed.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Returns freed memory to the system at once. mimalloc purges lazily, when the thread
/// that freed allocates again; the server's worker threads go idle after a burst of
/// ingest, and their freed pages would stay resident until the next burst.
fn purge_freed_memory_at_once() {
    // SAFETY: plain option getters/setters of the allocator in use; no memory involved.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == 10 {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        }
    }
}

fn main() -> Result<()> {
    purge_freed_memory_at_once();
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Server {
            locate,
            listen,
            log_level,
            set,
        } => {
            let mut overrides = Vec::new();
            for kv in &set {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
                overrides.push(Override {
                    path: k.trim().into(),
                    value: v.trim().into(),
                    source: format!("--set {kv}"),
                });
            }
            if let Some(l) = listen {
                overrides.push(Override {
                    path: "listen".into(),
                    value: l,
                    source: "--listen".into(),
                });
            }
            if let Some(l) = log_level {
                overrides.push(Override {
                    path: "log.level".into(),
                    value: l,
                    source: "--log-level".into(),
                });
            }
            let config = load_config(&locate, overrides.clone())?;
            let log = init_logging(&config)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let server = dcmon_server::Server::start(config).await?;
                let mut hup =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
                let stop = shutdown_signal();
                tokio::pin!(stop);
                loop {
                    tokio::select! {
                        _ = &mut stop => break,
                        _ = hup.recv() => reload(&server, &locate, &overrides, &log),
                    }
                }
                server.shutdown().await
            })
        }
        Command::Quickstart(args) => quickstart::run(args),
        Command::BmcSim(args) => bmc_sim::run(args),
        Command::Ipmi(args) => ipmi_cli::run(args),
        Command::Enroll {
            locate,
            command: EnrollCommand::Create { uses, ttl, quiet },
        } => {
            let config = load_config(&locate, vec![])?;
            let db = ControlDb::open(&config.data_dir)?;
            let token = db.create_enroll_token(uses, ttl.into(), &actor())?;
            if quiet {
                println!("{token}");
                return Ok(());
            }
            let fp = dcmon_server::tls::fingerprint(&config)
                .unwrap_or_else(|_| "<start the server once to make its certificate>".into());
            println!("Enrollment token (uses: {uses}, valid for {ttl}):\n  {token}\n");
            println!("On each machine to add, run:");
            println!(
                "  dcmon-agent register --server {} --fingerprint {fp} --token {token}",
                config.public_url()
            );
            Ok(())
        }
        Command::Agents { locate, command } => {
            let config = load_config(&locate, vec![])?;
            let db = ControlDb::open(&config.data_dir)?;
            match command {
                AgentsCommand::List { json } => {
                    let agents = db.list_agents()?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&agents)?);
                        return Ok(());
                    }
                    println!(
                        "{:<18} {:<24} {:<9} {:<8} {:<20} REMOTE",
                        "ID", "HOST", "STATUS", "VERSION", "LAST SEEN"
                    );
                    let now = dcmon_server::control::now_ms();
                    for a in agents {
                        let seen = a
                            .last_seen_ms
                            .map(|t| {
                                format!(
                                    "{} ago",
                                    humantime::format_duration(std::time::Duration::from_secs(
                                        ((now - t).max(0) / 1000) as u64
                                    ))
                                )
                            })
                            .unwrap_or_else(|| "never".into());
                        println!(
                            "{:<18} {:<24} {:<9} {:<8} {:<20} {}",
                            a.id,
                            a.host,
                            a.status.as_str(),
                            a.agent_version,
                            seen,
                            a.remote_addr.unwrap_or_default()
                        );
                    }
                    Ok(())
                }
                AgentsCommand::Approve { agent } => {
                    let a = db.set_agent_status(&agent, AgentStatus::Approved, &actor())?;
                    println!("approved agent {} ({})", a.id, a.host);
                    Ok(())
                }
                AgentsCommand::Revoke { agent } => {
                    let a = db.set_agent_status(&agent, AgentStatus::Revoked, &actor())?;
                    println!(
                        "revoked agent {} ({}); its requests are refused from now on",
                        a.id, a.host
                    );
                    Ok(())
                }
            }
        }
        Command::Commands { locate, command } => {
            let config = load_config(&locate, vec![])?;
            let db = ControlDb::open(&config.data_dir)?;
            command_cli::run(&db, command, &actor())
        }
        Command::Bmc { locate, command } => {
            let config = load_config(&locate, vec![])?;
            let db = ControlDb::open(&config.data_dir)?;
            bmc_cli::run(&config.data_dir, &db, command, &actor())
        }
        Command::Rules { locate, command } => alerts_cli::run_rules(
            command,
            || {
                let config = load_config(&locate, vec![])?;
                let db = ControlDb::open(&config.data_dir)?;
                Ok((config, db))
            },
            &actor(),
        ),
        Command::Channels { locate, command } => {
            let config = load_config(&locate, vec![])?;
            let db = ControlDb::open(&config.data_dir)?;
            alerts_cli::run_channels(&config, &db, command, &actor())
        }
        Command::Alerts { locate, command } => {
            let config = load_config(&locate, vec![])?;
            let db = ControlDb::open(&config.data_dir)?;
            alerts_cli::run_alerts(&db, command, &actor())
        }
        Command::Fans { locate, command } => {
            let config = load_config(&locate, vec![])?;
            let db = ControlDb::open(&config.data_dir)?;
            fans_cli::run(&config.data_dir, &db, command, &actor())
        }
        Command::User { locate, command } => {
            let config = load_config(&locate, vec![])?;
            let db = ControlDb::open(&config.data_dir)?;
            let now = dcmon_server::control::now_ms();
            match command {
                UserCommand::Add {
                    name,
                    role,
                    password,
                } => {
                    let (password, generated) = password.read()?;
                    let u = db.create_user(&name, role.into(), &password, &actor(), None, now)?;
                    println!("created user {} ({})", u.name, u.role.as_str());
                    if generated {
                        println!("password: {password}");
                    }
                    Ok(())
                }
                UserCommand::Passwd { name, password } => {
                    let (password, generated) = password.read()?;
                    let change = dcmon_server::accounts::UserChange {
                        password: Some(password.clone()),
                        ..Default::default()
                    };
                    db.update_user(&name, &change, &actor(), None)?;
                    println!("password of {name} changed; its sessions were ended");
                    if generated {
                        println!("password: {password}");
                    }
                    Ok(())
                }
                UserCommand::Remove { name } => {
                    db.remove_user(&name, &actor(), None)?;
                    println!("removed user {name}; its API tokens were revoked");
                    Ok(())
                }
                UserCommand::List { json } => {
                    let users = db.list_users()?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&users)?);
                        return Ok(());
                    }
                    println!(
                        "{:<24} {:<9} {:<5} {:<21} CREATED",
                        "NAME", "ROLE", "TOTP", "LOCKED UNTIL"
                    );
                    for u in users {
                        let locked = u
                            .locked_until_ms
                            .filter(|t| *t > now)
                            .map(format_ms)
                            .unwrap_or_else(|| "-".into());
                        println!(
                            "{:<24} {:<9} {:<5} {:<21} {}",
                            u.name,
                            u.role.as_str(),
                            if u.totp_enabled { "yes" } else { "no" },
                            locked,
                            format_ms(u.created_ms)
                        );
                    }
                    Ok(())
                }
            }
        }
        Command::Token { locate, command } => {
            let config = load_config(&locate, vec![])?;
            let db = ControlDb::open(&config.data_dir)?;
            match command {
                TokenCommand::Create { role, name } => {
                    let token = db.create_api_token(&name, role.into(), &actor())?;
                    println!("{token}");
                    Ok(())
                }
                TokenCommand::List => {
                    println!(
                        "{:<6} {:<24} {:<9} {:<20} {:<21} REVOKED",
                        "ID", "NAME", "ROLE", "OWNER", "LAST USED"
                    );
                    for t in db.list_api_tokens()? {
                        println!(
                            "{:<6} {:<24} {:<9} {:<20} {:<21} {}",
                            t.id,
                            t.name,
                            t.role.as_str(),
                            t.owner.as_deref().unwrap_or("-"),
                            t.last_used_ms
                                .map(format_ms)
                                .unwrap_or_else(|| "never".into()),
                            t.revoked
                        );
                    }
                    Ok(())
                }
                TokenCommand::Revoke { id } => {
                    if !db.revoke_api_token(id, &actor())? {
                        bail!("no active API token with id {id}; see `dcmon token list`");
                    }
                    println!("revoked API token {id}");
                    Ok(())
                }
            }
        }
        Command::Config { locate, command } => match command {
            ConfigCommand::Example => {
                print!("{}", dcmon_server::config::example_yaml());
                Ok(())
            }
            ConfigCommand::Check => {
                let config = load_config(&locate, vec![])?;
                println!("configuration is valid; effective settings:");
                print!("{}", serde_json::to_string_pretty(&config)?);
                println!();
                Ok(())
            }
        },
        Command::Tsdb { locate, command } => {
            let config = load_config(&locate, vec![])?;
            tsdb_cli::run(&config.data_dir, command)
        }
        Command::Audit {
            locate,
            actor,
            action,
            grep,
            since,
            limit,
        } => {
            let config = load_config(&locate, vec![])?;
            let db = ControlDb::open(&config.data_dir)?;
            let now = dcmon_server::control::now_ms();
            let filter = dcmon_server::control::AuditFilter {
                actor,
                action,
                text: grep,
                since_ms: since.as_deref().map(|s| parse_since(s, now)).transpose()?,
                limit,
                ..Default::default()
            };
            for e in db.audit_search(&filter)? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    format_ms(e.ts_ms),
                    e.actor,
                    e.action,
                    e.target,
                    e.detail,
                    e.remote.unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}

/// Loads the configuration named by --config (or the default file when present), with
/// --data-dir and the environment applied.
fn load_config(locate: &Locate, mut overrides: Vec<Override>) -> Result<ServerConfig> {
    let file = match &locate.config {
        Some(p) => Some(p.clone()),
        None => {
            let default = PathBuf::from(DEFAULT_CONFIG);
            // With --data-dir alone, a quickstart data dir carries its own server.yaml.
            let in_data_dir = locate
                .data_dir
                .as_ref()
                .map(|d| d.join("server.yaml"))
                .filter(|p| p.exists());
            in_data_dir.or_else(|| default.exists().then_some(default))
        }
    };
    if let Some(d) = &locate.data_dir {
        overrides.insert(
            0,
            Override {
                path: "data_dir".into(),
                value: d.display().to_string(),
                source: "--data-dir".into(),
            },
        );
    }
    Ok(ServerConfig::load(
        file.as_deref(),
        |k| std::env::var(k).ok(),
        &overrides,
    )?)
}

/// Who runs an admin command, for the audit log.
fn actor() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// The running log filter, replaceable on reload, and the format chosen at start.
struct Logging {
    filter: tracing_subscriber::reload::Handle<
        tracing_subscriber::EnvFilter,
        tracing_subscriber::Registry,
    >,
    format: LogFormat,
}

fn init_logging(config: &ServerConfig) -> Result<Logging> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .with_context(|| format!("log.level {:?}", config.log.level))?;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => registry.with(fmt.json()).init(),
        LogFormat::Text => registry.with(fmt).init(),
    }
    Ok(Logging {
        filter: handle,
        format: config.log.format,
    })
}

/// SIGHUP: re-reads the configuration; an invalid one leaves the running one in force.
fn reload(server: &dcmon_server::Server, locate: &Locate, overrides: &[Override], log: &Logging) {
    let new = match load_config(locate, overrides.to_vec()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "configuration reload failed; keeping the running configuration");
            return;
        }
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&new.log.level) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, level = %new.log.level, "configuration reload failed (log.level); keeping the running configuration");
            return;
        }
    };
    let format_changed = new.log.format != log.format;
    let _ = log.filter.reload(filter);
    let mut kept = server.reload(new);
    if format_changed {
        kept.push("log.format");
    }
    if kept.is_empty() {
        tracing::info!("configuration reloaded");
    } else {
        tracing::warn!(needs_restart = ?kept, "configuration reloaded; these settings take effect at the next restart");
    }
}

pub(crate) async fn shutdown_signal() {
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
