//! `dcmon bmc-sim`: simulated BMCs on UDP ports, for development and tests (DESIGN §8).
//! Parses the flags, starts the fleet, and forwards control lines from stdin.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use dcmon_ipmi::rakp::Privilege;
use dcmon_ipmi::sim::{Faults, Fleet, SimConfig, User, Vendor, parse_control};
use std::io::Write as _;
use std::net::IpAddr;

const CONTROL_HELP: &str = "\
Control lines on stdin; each is answered with `ok`, `error: ...` or, for status,
one line per BMC:
  fault <bmcs> silent|garbage|reject-credentials|lose-temperatures on|off
  fault <bmcs> delay <milliseconds>
  load <bmcs> <0.0-1.0>
  power <bmcs> on|off
  status <bmcs>
<bmcs> is `all`, an index (3) or a range (0-9); BMC i listens on --base-port + i.
End of stdin leaves the BMCs running; SIGINT or SIGTERM stops them.";

#[derive(Args)]
#[command(after_help = CONTROL_HELP)]
pub(crate) struct BmcSimArgs {
    /// How many BMCs to run; BMC i listens on --base-port + i.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// UDP port of the first BMC (623 is the standard port, which needs root).
    #[arg(long, default_value_t = 6230)]
    base_port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Whose BMC to imitate: manufacturer ID and OEM fan commands.
    #[arg(long, value_enum, default_value_t = VendorArg::Supermicro)]
    vendor: VendorArg,
    /// User name for RMCP+ sessions (up to 16 bytes).
    #[arg(long, default_value = "admin")]
    user: String,
    /// Password of --user (up to 20 bytes).
    #[arg(long, default_value = "admin")]
    password: String,
    /// Privilege limit of --user.
    #[arg(long, value_enum, default_value_t = PrivilegeArg::Administrator)]
    privilege: PrivilegeArg,
    /// Another user, as NAME:PASSWORD:PRIVILEGE (privilege user, operator or
    /// administrator); repeatable.
    #[arg(long = "add-user", value_name = "NAME:PASSWORD:PRIVILEGE")]
    add_user: Vec<String>,
    /// Seed of the simulated servers (temperatures, load, fan spread); BMC i gets
    /// seed + i.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// CPU load of every simulated server, 0.0 to 1.0 (default: drawn from the seed).
    #[arg(long)]
    load: Option<f64>,
    /// Dell: behave like iDRAC 9 firmware 3.34 and later, which refuses manual fan
    /// control with completion code 0xD4 (insufficient privilege).
    #[arg(long)]
    idrac_refuses_manual_fans: bool,
    /// Fault: drop every datagram.
    #[arg(long)]
    silent: bool,
    /// Fault: answer every datagram this late (e.g. 2s, 500ms).
    #[arg(long, value_name = "DURATION")]
    delay: Option<humantime::Duration>,
    /// Fault: answer with random bytes.
    #[arg(long)]
    garbage: bool,
    /// Fault: refuse every user name.
    #[arg(long)]
    reject_credentials: bool,
    /// Fault: temperature sensors answer "reading unavailable".
    #[arg(long)]
    lose_temperatures: bool,
    /// Log filter for stderr (e.g. debug shows every dropped datagram).
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum VendorArg {
    Supermicro,
    Dell,
    Generic,
}

#[derive(Clone, Copy, ValueEnum)]
enum PrivilegeArg {
    User,
    Operator,
    Administrator,
}

impl From<PrivilegeArg> for Privilege {
    fn from(p: PrivilegeArg) -> Self {
        match p {
            PrivilegeArg::User => Privilege::User,
            PrivilegeArg::Operator => Privilege::Operator,
            PrivilegeArg::Administrator => Privilege::Administrator,
        }
    }
}

fn user(name: &str, password: &str, privilege: Privilege) -> Result<User> {
    if name.is_empty() || name.len() > 16 {
        bail!("user name {name:?} must be 1 to 16 bytes (IPMI 2.0 §13.20)");
    }
    if password.len() > 20 {
        bail!("password of {name:?} is longer than 20 bytes (IPMI 2.0 §13.31)");
    }
    Ok(User {
        name: name.into(),
        password: password.into(),
        max_privilege: privilege,
    })
}

fn config(args: &BmcSimArgs) -> Result<SimConfig> {
    let mut users = vec![user(&args.user, &args.password, args.privilege.into())?];
    for spec in &args.add_user {
        let mut parts = spec.splitn(3, ':');
        let (Some(name), Some(password), Some(privilege)) =
            (parts.next(), parts.next(), parts.next())
        else {
            bail!("--add-user {spec:?}: expected NAME:PASSWORD:PRIVILEGE");
        };
        let privilege = PrivilegeArg::from_str(privilege, true).map_err(|_| {
            anyhow::anyhow!(
                "--add-user {spec:?}: privilege must be user, operator or administrator"
            )
        })?;
        users.push(user(name, password, privilege.into())?);
    }
    if let Some(load) = args.load
        && !(0.0..=1.0).contains(&load)
    {
        bail!("--load {load}: must be from 0.0 to 1.0");
    }
    Ok(SimConfig {
        bind: args.bind,
        base_port: args.base_port,
        count: args.count,
        vendor: match args.vendor {
            VendorArg::Supermicro => Vendor::Supermicro,
            VendorArg::Dell => Vendor::Dell,
            VendorArg::Generic => Vendor::Generic,
        },
        seed: args.seed,
        dell_refuses_manual_fans: args.idrac_refuses_manual_fans,
        users,
        faults: Faults {
            silent: args.silent,
            delay: args.delay.map(Into::into).unwrap_or_default(),
            garbage: args.garbage,
            reject_credentials: args.reject_credentials,
            lose_temperatures: args.lose_temperatures,
        },
        load: args.load,
    })
}

pub(crate) fn run(args: BmcSimArgs) -> Result<()> {
    let config = config(&args)?;
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("--log-level {:?}", args.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let fleet = Fleet::start(config.clone())
            .await
            .context("starting the simulated BMCs")?;
        let addrs = fleet.addrs();
        let (first, last) = (addrs[0], addrs[addrs.len() - 1]);
        println!(
            "bmc-sim: {} {} BMC(s) listening on udp {}-{} (user {:?})",
            addrs.len(),
            args.vendor
                .to_possible_value()
                .map(|v| v.get_name().to_owned())
                .unwrap_or_default(),
            first,
            last.port(),
            args.user
        );
        std::io::stdout().flush()?;
        // Stdin is read on a plain thread: a blocking read cannot be cancelled, and
        // the control lines are rare.
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stop = crate::shutdown_signal();
        tokio::pin!(stop);
        let mut stdin_open = true;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                line = lines.recv(), if stdin_open => match line {
                    Some(line) if line.trim().is_empty() => {}
                    Some(line) => {
                        let answer = match parse_control(&line) {
                            Ok(command) => fleet.execute(command).await,
                            Err(e) => format!("error: {e}\n"),
                        };
                        print!("{answer}");
                        std::io::stdout().flush()?;
                    }
                    None => stdin_open = false,
                },
            }
        }
        fleet.shutdown().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BmcSimArgs,
    }

    /// BMC count and (user, privilege limit) pairs of a configuration.
    type Expected<'a> = (usize, &'a [(&'a str, Privilege)]);

    /// Parses `flags` and builds the configuration, or returns its error message.
    fn check(flags: &[&str], expect: Result<Expected<'_>, &str>) {
        let cli = Cli::try_parse_from(std::iter::once("bmc-sim").chain(flags.iter().copied()))
            .map_err(|e| e.to_string());
        let got = cli.and_then(|c| config(&c.args).map_err(|e| e.to_string()));
        match (got, expect) {
            (Ok(c), Ok((count, users))) => {
                assert_eq!(c.count, count);
                let names: Vec<(&str, Privilege)> = c
                    .users
                    .iter()
                    .map(|u| (u.name.as_str(), u.max_privilege))
                    .collect();
                assert_eq!(names, users, "{flags:?}");
            }
            (Err(e), Err(want)) => assert!(e.contains(want), "{flags:?}: {e}"),
            (got, expect) => panic!("{flags:?}: {:?} != {expect:?}", got.map(|c| c.count)),
        }
    }

    #[test]
    fn flags_build_users_and_refuse_what_ipmi_cannot_carry() {
        check(&[], Ok((1, &[("admin", Privilege::Administrator)])));
        check(
            &[
                "--count",
                "3",
                "--add-user",
                "ro:pw:user",
                "--privilege",
                "operator",
            ],
            Ok((
                3,
                &[("admin", Privilege::Operator), ("ro", Privilege::User)],
            )),
        );
        check(
            &["--add-user", "ro:pw"],
            Err("expected NAME:PASSWORD:PRIVILEGE"),
        );
        check(&["--add-user", "ro:pw:root"], Err("privilege must be"));
        check(&["--user", "a-name-longer-than-16"], Err("1 to 16 bytes"));
        check(
            &["--password", "a-password-longer-than-20"],
            Err("longer than 20"),
        );
        check(&["--load", "1.5"], Err("from 0.0 to 1.0"));
    }
}
