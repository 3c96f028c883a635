//! `dcmon bmc add|list|remove|set|import|check`: the BMC inventory in the control store.
//! A running server sees changes at once (see `dcmon_server::bmcs`).

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use dcmon_server::bmcs::{BmcRecord, BmcUpdate, NewBmc, check_bmc};
use dcmon_server::control::ControlDb;
use dcmon_server::secrets::{Secret, SecretBox, Zeroizing};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Subcommand)]
pub(crate) enum BmcCommand {
    /// Add a BMC to poll (credentials are stored encrypted).
    Add(AddArgs),
    /// Show the BMCs (never their passwords).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a BMC (by name or id).
    Remove { bmc: String },
    /// Change a BMC's interval, agent link, credentials or vendor.
    Set(SetArgs),
    /// Add every BMC of a CSV file with a header line:
    /// name,address,user,password[,interval][,agent][,vendor]. All rows or none.
    Import { file: PathBuf },
    /// Log in with the stored credentials, read the device ID, record the vendor.
    Check {
        bmc: String,
        /// Give up after this long.
        #[arg(long, default_value = "5s")]
        timeout: humantime::Duration,
        #[arg(long)]
        json: bool,
    },
}

/// Where a password comes from. On the command line it is visible to other users.
#[derive(Args)]
#[group(multiple = false)]
pub(crate) struct PasswordArgs {
    /// The password (visible to other users in the process list; prefer the others).
    #[arg(long)]
    password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Read the password from this environment variable.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
}

impl PasswordArgs {
    fn given(&self) -> bool {
        self.password.is_some() || self.password_stdin || self.password_env.is_some()
    }

    fn read(&self) -> Result<Secret> {
        if let Some(p) = &self.password {
            eprintln!(
                "warning: a password on the command line is visible to other users in the process list; prefer --password-stdin or --password-env"
            );
            return Ok(Secret::new(p.as_bytes()));
        }
        if let Some(var) = &self.password_env {
            let value = Zeroizing::new(std::env::var(var).with_context(|| {
                format!("--password-env: environment variable {var} is not set")
            })?);
            return Ok(Secret::new(value.as_bytes()));
        }
        if !self.password_stdin {
            bail!("a password is required: --password-stdin, --password-env VAR or --password P");
        }
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("--password-stdin: reading standard input")?;
        let password = line.strip_suffix('\n').unwrap_or(&line);
        let password = password.strip_suffix('\r').unwrap_or(password);
        Ok(Secret::new(password.as_bytes()))
    }
}

#[derive(Args)]
pub(crate) struct AddArgs {
    #[arg(long)]
    name: String,
    /// HOST, HOST:PORT or [V6]:PORT (port 623 unless given).
    #[arg(long)]
    address: String,
    #[arg(long)]
    user: String,
    #[command(flatten)]
    password: PasswordArgs,
    /// Poll interval, 10s to 1d.
    #[arg(long, default_value = "5m")]
    interval: humantime::Duration,
    /// The agent host whose machine the BMC is in.
    #[arg(long, value_name = "HOST")]
    agent: Option<String>,
    /// Vendor override (supermicro, dell, hpe); default: detected at first contact.
    #[arg(long)]
    vendor: Option<String>,
}

#[derive(Args)]
pub(crate) struct SetArgs {
    bmc: String,
    #[arg(long)]
    interval: Option<humantime::Duration>,
    #[arg(long, value_name = "HOST", conflicts_with = "no_agent")]
    agent: Option<String>,
    /// Unlink the agent.
    #[arg(long)]
    no_agent: bool,
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    password: PasswordArgs,
    /// Vendor override (supermicro, dell, hpe), or `detect` to clear it.
    #[arg(long)]
    vendor: Option<String>,
}

pub(crate) fn run(data_dir: &Path, db: &ControlDb, command: BmcCommand, actor: &str) -> Result<()> {
    let secrets = || SecretBox::open(data_dir);
    match command {
        BmcCommand::Add(a) => {
            let new = NewBmc {
                name: a.name,
                address: a.address,
                user: a.user,
                password: a.password.read()?,
                interval: Some(a.interval.into()),
                agent: a.agent,
                vendor: a.vendor,
            };
            let r = db.add_bmc(&secrets()?, &new, actor, None)?;
            println!(
                "added BMC {} ({}); check it with `dcmon bmc check {}`",
                r.name,
                r.target(),
                r.name
            );
            Ok(())
        }
        BmcCommand::List { json } => {
            let list = db.list_bmcs()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_table(&list);
            }
            Ok(())
        }
        BmcCommand::Remove { bmc } => {
            let r = db.remove_bmc(&bmc, actor, None)?;
            println!("removed BMC {} ({})", r.name, r.target());
            Ok(())
        }
        BmcCommand::Set(a) => {
            let update = BmcUpdate {
                interval: a.interval.map(Duration::from),
                agent: match (a.agent, a.no_agent) {
                    (Some(h), _) => Some(Some(h)),
                    (None, true) => Some(None),
                    (None, false) => None,
                },
                user: a.user,
                password: a.password.given().then(|| a.password.read()).transpose()?,
                vendor_override: a.vendor.map(|v| (v != "detect").then_some(v)),
            };
            let r = db.update_bmc(&secrets()?, &a.bmc, &update, actor, None)?;
            println!("updated BMC {} ({})", r.name, r.target());
            Ok(())
        }
        BmcCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let added = db
                .import_bmcs_csv(&secrets()?, &text, actor, None)
                .with_context(|| format!("importing {}", file.display()))?;
            println!("imported {} BMCs from {}", added.len(), file.display());
            Ok(())
        }
        BmcCommand::Check { bmc, timeout, json } => {
            let found = check_bmc(db, &secrets()?, &bmc, timeout.into())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else {
                println!(
                    "{} ({}): {}, firmware {}, IPMI {}, manufacturer {}, product {}",
                    found.name,
                    found.target,
                    found.vendor,
                    found.firmware,
                    found.ipmi_version,
                    found.device.manufacturer_id,
                    found.device.product_id
                );
            }
            Ok(())
        }
    }
}

fn print_table(list: &[BmcRecord]) {
    if list.is_empty() {
        println!("no BMCs; add one with `dcmon bmc add` or `dcmon bmc import`");
        return;
    }
    println!(
        "{:<24} {:<28} {:<12} {:>8} {:<14} {:<16} STATE",
        "NAME", "ADDRESS", "USER", "INTERVAL", "VENDOR", "AGENT"
    );
    for b in list {
        let vendor = match (&b.vendor_override, &b.vendor) {
            (Some(o), _) => format!("{o} (set)"),
            (None, Some(v)) => v.clone(),
            (None, None) => "-".into(),
        };
        let state = match (&b.last_state, b.consecutive_failures) {
            (None, _) => "not polled yet".to_owned(),
            (Some(s), 0) => s.clone(),
            (Some(s), n) => format!("{s} ({n} failures in a row)"),
        };
        // When the poller last reached it, so a stale state is seen as stale.
        let state = match b.last_poll_ms {
            Some(at) => {
                let age_s = (dcmon_server::control::now_ms() - at).max(0) / 1000;
                format!("{state}, polled {age_s}s ago")
            }
            None => state,
        };
        println!(
            "{:<24} {:<28} {:<12} {:>8} {:<14} {:<16} {}",
            b.name,
            b.target(),
            b.username,
            format!("{}s", b.interval_s),
            vendor,
            b.agent_host.as_deref().unwrap_or("-"),
            state
        );
    }
}
