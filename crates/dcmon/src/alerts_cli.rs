//! `dcmon rules ...`, `dcmon channels ...` and `dcmon alerts ...`: alert rules,
//! notification channels, alerts, acknowledgements and silences in the control store.
//! A running server picks changes up at once (see `dcmon_server::alerts`).

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use dcmon_server::alerts::channels::{ChannelConfigInput, ChannelKind, NewChannel, Route, SmtpTls};
use dcmon_server::alerts::lifecycle::State;
use dcmon_server::alerts::rules::{HostOverride, Op, RuleSpec, Severity, Threshold};
use dcmon_server::alerts::silences::NewSilence;
use dcmon_server::alerts::{builtins, yaml};
use dcmon_server::config::ServerConfig;
use dcmon_server::control::ControlDb;
use dcmon_server::secrets::{Secret, SecretBox, Zeroizing};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum RulesCommand {
    /// Add an alert rule.
    Add(Box<RuleArgs>),
    /// Show the stored rules and the built-in ones.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a rule; its firing alerts resolve.
    Remove { name: String },
    /// Check Prometheus alerting-rule files as `promtool check rules` does: exit 0 when
    /// valid, 1 when not, every problem with file, line and rule.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Import the alerting rules of a Prometheus rule file (all or none; rules of the
    /// same name are replaced).
    Import { file: PathBuf },
}

#[derive(Args)]
pub(crate) struct RuleArgs {
    #[arg(long)]
    name: String,
    /// PromQL; each series it returns is one alert.
    #[arg(long)]
    expr: String,
    /// Fire when the value is above this.
    #[arg(long, group = "threshold", allow_negative_numbers = true)]
    above: Option<f64>,
    /// Fire when the value is below this.
    #[arg(long, group = "threshold", allow_negative_numbers = true)]
    below: Option<f64>,
    /// Resolve only once the value is back past this (hysteresis); needs --above or --below.
    #[arg(long, requires = "threshold", allow_negative_numbers = true)]
    resolve: Option<f64>,
    /// How long the condition must hold before the alert fires.
    #[arg(long = "for", default_value = "0s")]
    for_: humantime::Duration,
    /// info, warning or critical.
    #[arg(long, default_value = "warning")]
    severity: String,
    /// Channel to notify (repeatable); none: every channel whose route matches.
    #[arg(long = "channel")]
    channels: Vec<String>,
    /// Extra label, KEY=VALUE (repeatable; templates allowed).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Annotation, KEY=VALUE (repeatable), e.g. summary='{{ $labels.host }} at {{ $value }}'.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    /// Per-host threshold HOST=VALUE[:RESOLVE], or HOST=off to skip a host (repeatable).
    #[arg(long = "override", value_name = "HOST=VALUE[:RESOLVE]|HOST=off")]
    overrides: Vec<String>,
}

fn pairs(what: &str, list: &[String]) -> Result<BTreeMap<String, String>> {
    list.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .with_context(|| format!("--{what} {p:?}: use KEY=VALUE"))
        })
        .collect()
}

impl RuleArgs {
    fn spec(self) -> Result<RuleSpec> {
        let threshold = match (self.above, self.below) {
            (Some(v), None) => Some(Threshold {
                op: Op::Above,
                value: v,
                resolve: self.resolve,
            }),
            (None, Some(v)) => Some(Threshold {
                op: Op::Below,
                value: v,
                resolve: self.resolve,
            }),
            _ => None,
        };
        let mut overrides = BTreeMap::new();
        for (host, v) in pairs("override", &self.overrides)? {
            let o = if v == "off" {
                HostOverride {
                    disabled: true,
                    ..Default::default()
                }
            } else {
                let (t, r) = match v.split_once(':') {
                    Some((t, r)) => (t, Some(r)),
                    None => (v.as_str(), None),
                };
                let num = |s: &str| {
                    s.trim()
                        .parse::<f64>()
                        .with_context(|| format!("--override {host}={v}: {s:?} is not a number"))
                };
                HostOverride {
                    threshold: Some(num(t)?),
                    resolve: r.map(num).transpose()?,
                    disabled: false,
                }
            };
            overrides.insert(host, o);
        }
        Ok(RuleSpec {
            name: self.name,
            expr: self.expr,
            threshold,
            for_: self.for_.into(),
            severity: Severity::parse(&self.severity).map_err(anyhow::Error::msg)?,
            labels: pairs("label", &self.labels)?,
            annotations: pairs("annotation", &self.annotations)?,
            channels: self.channels,
            overrides,
        })
    }
}

/// `open` loads the config and the store; `rules check` needs neither.
pub(crate) fn run_rules(
    command: RulesCommand,
    open: impl FnOnce() -> Result<(ServerConfig, ControlDb)>,
    actor: &str,
) -> Result<()> {
    if let RulesCommand::Check { files } = &command {
        std::process::exit(check_files(files));
    }
    let (config, db) = open()?;
    let (config, db) = (&config, &db);
    match command {
        RulesCommand::Add(a) => {
            let spec = a.spec()?;
            db.add_alert_rule(&spec, actor, None)?;
            println!("added rule {}", spec.name);
            Ok(())
        }
        RulesCommand::List { json } => {
            let rules = db.list_alert_rules()?;
            let builtins: Vec<RuleSpec> = builtins::rules(&config.alerts)
                .into_iter()
                .map(|r| r.spec)
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"rules": rules, "builtins": builtins})
                    )?
                );
                return Ok(());
            }
            println!(
                "{:<28} {:<9} {:<8} {:<18} EXPR",
                "NAME", "SEVERITY", "FOR", "THRESHOLD"
            );
            let row = |s: &RuleSpec, kind: &str| {
                let t = s
                    .threshold
                    .map(|t| match t.resolve {
                        Some(r) => format!("{} {} (resolve {r})", t.op.symbol(), t.value),
                        None => format!("{} {}", t.op.symbol(), t.value),
                    })
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<28} {:<9} {:<8} {:<18} {}{kind}",
                    s.name,
                    s.severity.as_str(),
                    humantime::format_duration(s.for_).to_string(),
                    t,
                    s.expr
                );
            };
            for r in &rules {
                row(&r.spec, "");
            }
            for b in &builtins {
                row(b, "  [built-in]");
            }
            let off: Vec<&str> = builtins::names()
                .into_iter()
                .filter(|n| !builtins.iter().any(|b| b.name == *n))
                .collect();
            if !off.is_empty() {
                println!("built-in rules turned off: {}", off.join(", "));
            }
            Ok(())
        }
        RulesCommand::Remove { name } => {
            db.remove_alert_rule(&name, actor, None)?;
            println!("removed rule {name}");
            Ok(())
        }
        RulesCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let parsed = yaml::parse(&file.display().to_string(), &text);
            for w in &parsed.warnings {
                eprintln!("warning: {w}");
            }
            if !parsed.errors.is_empty() {
                bail!("{}\nnothing imported", parsed.errors.join("\n"));
            }
            let n = db.import_alert_rules(&parsed.rules, actor, None)?;
            println!("imported {n} rules from {}", file.display());
            Ok(())
        }
        RulesCommand::Check { files } => std::process::exit(check_files(&files)),
    }
}

/// `dcmon rules check`: needs no config or store. Exit code 0 valid, 1 invalid.
fn check_files(files: &[PathBuf]) -> i32 {
    let mut failed = false;
    for f in files {
        println!("Checking {}", f.display());
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("  FAILED:\n{}: {e}", f.display());
                failed = true;
                continue;
            }
        };
        let p = yaml::parse(&f.display().to_string(), &text);
        for w in &p.warnings {
            eprintln!("  warning: {w}");
        }
        if p.errors.is_empty() {
            println!("  SUCCESS: {} rules found", p.rules.len());
        } else {
            failed = true;
            eprintln!("  FAILED:");
            for e in &p.errors {
                eprintln!("{e}");
            }
        }
    }
    i32::from(failed)
}

#[derive(Subcommand)]
pub(crate) enum ChannelsCommand {
    /// Add a notification channel (its secrets are stored encrypted).
    Add(Box<ChannelArgs>),
    /// Show the channels (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    Remove {
        name: String,
    },
    /// Send a test message now and report the receiver's answer.
    Test {
        name: String,
    },
}

#[derive(Args)]
pub(crate) struct ChannelArgs {
    #[arg(long)]
    name: String,
    /// email, slack, discord, teams, telegram or webhook.
    #[arg(long = "type")]
    kind: String,
    /// Webhook URL (visible in the process list; prefer --url-env).
    #[arg(long, conflicts_with = "url_env")]
    url: Option<String>,
    /// Read the webhook URL from this environment variable.
    #[arg(long, value_name = "VAR")]
    url_env: Option<String>,
    /// Read the Telegram bot token (or a webhook's bearer token) from this variable.
    #[arg(long, value_name = "VAR")]
    token_env: Option<String>,
    /// Read the SMTP password from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "password_stdin")]
    password_env: Option<String>,
    /// Read the SMTP password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Telegram chat id (groups and channels have negative ids, e.g. -1001234).
    #[arg(long, allow_hyphen_values = true)]
    chat_id: Option<String>,
    /// Telegram Bot API base URL.
    #[arg(long)]
    api_url: Option<String>,
    #[arg(long)]
    smtp_host: Option<String>,
    #[arg(long)]
    smtp_port: Option<u16>,
    /// starttls (default), tls or none.
    #[arg(long, default_value = "starttls")]
    smtp_tls: String,
    #[arg(long)]
    smtp_user: Option<String>,
    #[arg(long)]
    from: Option<String>,
    /// Recipient (repeatable).
    #[arg(long)]
    to: Vec<String>,
    /// PEM file of CAs for a receiver with a private certificate.
    #[arg(long)]
    tls_ca_file: Option<PathBuf>,
    /// Route: alerts of this severity (repeatable; default any).
    #[arg(long = "severity")]
    severities: Vec<String>,
    /// Route: label matcher such as 'host=~rack1-.*' (repeatable).
    #[arg(long = "match", value_name = "MATCHER")]
    matchers: Vec<String>,
    /// Do not send resolved messages.
    #[arg(long)]
    no_resolved: bool,
}

fn env_secret(flag: &str, var: &Option<String>) -> Result<Option<Secret>> {
    var.as_ref()
        .map(|v| {
            let value = Zeroizing::new(
                std::env::var(v)
                    .with_context(|| format!("--{flag}: environment variable {v} is not set"))?,
            );
            Ok(Secret::new(value.as_bytes()))
        })
        .transpose()
}

impl ChannelArgs {
    fn new_channel(self) -> Result<NewChannel> {
        let url = match (&self.url, &self.url_env) {
            (Some(u), _) => {
                eprintln!(
                    "warning: a webhook URL on the command line is visible to other users in the process list; prefer --url-env"
                );
                Some(Secret::new(u.as_bytes()))
            }
            (None, v) => env_secret("url-env", v)?,
        };
        let password = if self.password_stdin {
            let mut line = Zeroizing::new(String::new());
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("--password-stdin: reading standard input")?;
            Some(Secret::new(line.trim_end_matches(['\n', '\r']).as_bytes()))
        } else {
            env_secret("password-env", &self.password_env)?
        };
        let smtp_tls = match self.smtp_tls.as_str() {
            "starttls" => SmtpTls::Starttls,
            "tls" => SmtpTls::Tls,
            "none" => SmtpTls::None,
            other => bail!("--smtp-tls {other:?}: use starttls, tls or none"),
        };
        Ok(NewChannel {
            name: self.name,
            kind: ChannelKind::parse(&self.kind).map_err(anyhow::Error::msg)?,
            url,
            token: env_secret("token-env", &self.token_env)?,
            password,
            config: ChannelConfigInput {
                chat_id: self.chat_id,
                api_url: self.api_url,
                smtp_host: self.smtp_host,
                smtp_port: self.smtp_port,
                smtp_tls,
                smtp_user: self.smtp_user,
                from: self.from,
                to: self.to,
                tls_ca_file: self.tls_ca_file,
                route: Route {
                    severities: self
                        .severities
                        .iter()
                        .map(|s| Severity::parse(s))
                        .collect::<Result<_, _>>()
                        .map_err(anyhow::Error::msg)?,
                    matchers: self.matchers,
                },
                send_resolved: !self.no_resolved,
            },
        })
    }
}

pub(crate) fn run_channels(
    config: &ServerConfig,
    db: &ControlDb,
    command: ChannelsCommand,
    actor: &str,
) -> Result<()> {
    let secrets = || SecretBox::open(&config.data_dir);
    match command {
        ChannelsCommand::Add(a) => {
            let c = db.add_alert_channel(&secrets()?, &a.new_channel()?, actor, None)?;
            println!(
                "added {} channel {}; try it with `dcmon channels test {}`",
                c.kind.as_str(),
                c.name,
                c.name
            );
            Ok(())
        }
        ChannelsCommand::List { json } => {
            let list = db.list_alert_channels()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            if list.is_empty() {
                println!("no channels; add one with `dcmon channels add`");
                return Ok(());
            }
            println!("{:<24} {:<9} ROUTE", "NAME", "TYPE");
            for c in list {
                let r = &c.config.route;
                let mut route: Vec<String> =
                    r.severities.iter().map(|s| s.as_str().to_owned()).collect();
                route.extend(r.matchers.iter().cloned());
                println!(
                    "{:<24} {:<9} {}",
                    c.name,
                    c.kind.as_str(),
                    if route.is_empty() {
                        "all alerts".into()
                    } else {
                        route.join(", ")
                    }
                );
            }
            Ok(())
        }
        ChannelsCommand::Remove { name } => {
            db.remove_alert_channel(&name, actor, None)?;
            println!("removed channel {name}");
            Ok(())
        }
        ChannelsCommand::Test { name } => {
            let channel = db.alert_channel(&secrets()?, &name)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(dcmon_server::alerts::send_test(
                &channel,
                &config.public_url(),
            ))
            .map_err(|e| anyhow::anyhow!("channel {name}: test message not delivered: {e}"))?;
            println!("test message delivered to channel {name}");
            Ok(())
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum AlertsCommand {
    /// Open alerts and those resolved in the last day.
    List {
        /// pending, firing or resolved.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an alert: no repeat notifications for it.
    Ack { id: i64 },
    /// Silence alerts matching every --match for a while.
    Silence {
        /// Label matcher: 'host=gpu-07', 'alertname=~Gpu.*' (repeatable, at least one).
        #[arg(long = "match", value_name = "MATCHER", required = true)]
        matchers: Vec<String>,
        #[arg(long = "for", default_value = "2h")]
        duration: humantime::Duration,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// End a silence now.
    Unsilence { id: i64 },
    /// Silences in force (all with --all).
    Silences {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// The notification outbox: deliveries and their attempts.
    Notifications {
        /// Only those given up on.
        #[arg(long)]
        failed: bool,
        #[arg(long)]
        json: bool,
    },
}

fn ago(ms: i64) -> String {
    let s = (dcmon_server::control::now_ms() - ms).max(0) / 1000;
    format!(
        "{} ago",
        humantime::format_duration(std::time::Duration::from_secs(s as u64))
    )
}

pub(crate) fn run_alerts(db: &ControlDb, command: AlertsCommand, actor: &str) -> Result<()> {
    match command {
        AlertsCommand::List { state, json } => {
            let filter = state
                .map(|s| {
                    State::parse(&s)
                        .with_context(|| format!("--state {s:?}: use pending, firing or resolved"))
                })
                .transpose()?;
            let alerts =
                db.list_alerts(filter, dcmon_server::control::now_ms() - 86_400_000, 1000)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&alerts)?);
                return Ok(());
            }
            if alerts.is_empty() {
                println!("no alerts");
                return Ok(());
            }
            println!(
                "{:>6} {:<9} {:<26} {:<20} {:>10} {:<16} ACK",
                "ID", "STATE", "RULE", "HOST", "VALUE", "SINCE"
            );
            for a in alerts {
                println!(
                    "{:>6} {:<9} {:<26} {:<20} {:>10} {:<16} {}",
                    a.id,
                    a.state.as_str(),
                    a.rule,
                    a.labels
                        .get("host")
                        .or_else(|| a.labels.get("bmc"))
                        .map(String::as_str)
                        .unwrap_or("-"),
                    a.value,
                    ago(a.resolved_ms.or(a.fired_ms).unwrap_or(a.active_since_ms)),
                    a.acked_by.unwrap_or_default()
                );
            }
            Ok(())
        }
        AlertsCommand::Ack { id } => {
            let a = db.ack_alert(id, actor, None)?;
            println!("acknowledged alert {} ({})", a.id, a.rule);
            Ok(())
        }
        AlertsCommand::Silence {
            matchers,
            duration,
            comment,
        } => {
            let s = db.add_silence(
                &NewSilence {
                    matchers,
                    starts_ms: None,
                    ends_ms: None,
                    duration: Some(duration.into()),
                    comment,
                },
                actor,
                None,
            )?;
            println!(
                "silence {} until {} ({})",
                s.id,
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_millis(s.ends_ms.max(0) as u64)
                ),
                s.matchers.join(", ")
            );
            Ok(())
        }
        AlertsCommand::Unsilence { id } => {
            db.expire_silence(id, actor, None)?;
            println!("silence {id} ended");
            Ok(())
        }
        AlertsCommand::Silences { all, json } => {
            let list = db.list_silences(all)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            if list.is_empty() {
                println!("no silences");
            }
            for s in list {
                println!(
                    "{:>5}  {}  by {}  ends {}  {}",
                    s.id,
                    s.matchers.join(", "),
                    s.author,
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH
                            + std::time::Duration::from_millis(s.ends_ms.max(0) as u64)
                    ),
                    s.comment
                );
            }
            Ok(())
        }
        AlertsCommand::Notifications { failed, json } => {
            let list = db.list_notifications(failed.then_some("failed"), 100)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            if list.is_empty() {
                println!("no notifications");
            }
            for n in list {
                println!(
                    "{:>6} {:<7} {:<20} {:<24} attempts {:<3} {} {}",
                    n.id,
                    n.status,
                    n.channel,
                    n.message.title(),
                    n.attempts,
                    ago(n.created_ms),
                    n.last_error.unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}
