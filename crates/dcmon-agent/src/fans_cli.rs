//! `dcmon-agent fans status | mode [MODE] | zone <0|1> [DUTY%]`: the BMC's fans, in-band
//! through the IPMI device by default, or over RMCP+ with `--lan`. The drop-in for the
//! old `fans.sh`; the work is `dcmon_ipmi::fans`, shared with `dcmon ipmi fan`.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use dcmon_agent::collectors::bmc_fan::SupermicroBoard;
use dcmon_agent::collectors::ipmi::{IpmiConfig, describe_open_error};
use dcmon_ipmi::fans::{self, FanAction, FanOptions};
use dcmon_ipmi::transport::Transport;
use dcmon_ipmi::transport::inband::InbandDevice;
use dcmon_ipmi::transport::lan::{LanConfig, LanSession, parse_target};
use std::io::BufRead;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct FansArgs {
    /// IPMI device of this machine [default: `ipmi.device` of the config, /dev/ipmi0].
    #[arg(long, value_name = "PATH", conflicts_with = "lan")]
    device: Option<PathBuf>,
    /// Drive a BMC over the network (RMCP+) instead: HOST, HOST:PORT or [V6]:PORT.
    #[arg(long, value_name = "HOST[:PORT]", requires = "user")]
    lan: Option<String>,
    /// BMC user name (with --lan).
    #[arg(short = 'U', long, requires = "lan")]
    user: Option<String>,
    /// BMC password (visible to other users of this machine; prefer --password-env).
    #[arg(short = 'P', long, requires = "lan", conflicts_with_all = ["password_env", "password_stdin"])]
    password: Option<String>,
    /// Read the BMC password from this environment variable.
    #[arg(
        long,
        value_name = "VAR",
        requires = "lan",
        conflicts_with = "password_stdin"
    )]
    password_env: Option<String>,
    /// Read the BMC password from the first line of standard input.
    #[arg(long, requires = "lan")]
    password_stdin: bool,
    /// The BMC is on a Supermicro X9 board (duties use `30 91 5A`); in-band this is
    /// read from DMI.
    #[arg(long)]
    supermicro_x9: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: FansCommand,
}

#[derive(Subcommand)]
enum FansCommand {
    /// Fan mode, zone duties and fan speeds.
    Status,
    /// Show the fan mode, or set it: standard, full, optimal or heavy_io.
    Mode {
        #[arg(value_parser = parse_mode)]
        mode: Option<String>,
    },
    /// Show a zone's duty, or set it (percent, e.g. 40 or 40%; switches to full mode).
    Zone {
        /// 0: CPU/system fans, 1: peripheral fans (FANA...).
        zone: u8,
        #[arg(value_parser = parse_duty)]
        duty: Option<u8>,
    },
}

fn parse_mode(s: &str) -> Result<String, String> {
    fans::parse_mode(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

fn parse_duty(s: &str) -> Result<u8, String> {
    s.trim_end_matches('%')
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|d| *d <= 100)
        .ok_or_else(|| format!("{s:?} is not a duty: use a percentage from 0 to 100"))
}

impl FansArgs {
    fn action(&self) -> FanAction {
        match &self.command {
            FansCommand::Status => FanAction::Status,
            FansCommand::Mode { mode } => FanAction::Mode { mode: mode.clone() },
            FansCommand::Zone { zone, duty } => FanAction::Zone {
                zone: *zone,
                duty: *duty,
            },
        }
    }

    fn password(&self) -> Result<Vec<u8>> {
        let password = match (&self.password, &self.password_env) {
            (Some(p), _) => p.clone(),
            (None, Some(var)) => std::env::var(var).with_context(|| {
                format!("--password-env: the environment variable {var} is not set")
            })?,
            (None, None) if self.password_stdin => {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("--password-stdin: reading standard input")?;
                line.trim_end_matches(['\r', '\n']).to_string()
            }
            (None, None) => {
                bail!("--lan needs a password: -P PASSWORD, --password-env VAR or --password-stdin")
            }
        };
        if password.len() > 20 {
            bail!("IPMI 2.0 passwords are at most 20 bytes");
        }
        Ok(password.into_bytes())
    }
}

/// Runs the command; `ipmi` supplies the default device and the DMI root.
pub(crate) fn run(args: FansArgs, ipmi: &IpmiConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let action = args.action();
    let (text, warnings) = match &args.lan {
        Some(target) => {
            let (host, port) = parse_target(target).map_err(anyhow::Error::msg)?;
            let user = args.user.clone().unwrap_or_default();
            if user.len() > 16 {
                bail!("IPMI user names are at most 16 bytes");
            }
            let mut config = LanConfig::new(host, user, args.password()?);
            config.port = port;
            let options = FanOptions {
                supermicro_x9: args.supermicro_x9,
            };
            rt.block_on(async {
                let bmc = LanSession::connect(config).await?;
                let out = execute(&bmc, &action, options, args.json).await;
                bmc.close().await;
                out
            })?
        }
        None => {
            let path = args.device.clone().unwrap_or_else(|| ipmi.device.clone());
            let path = path.to_string_lossy();
            let bmc = InbandDevice::open(&path, ipmi.timeout).map_err(|e| {
                anyhow::anyhow!(
                    "{}; or drive the BMC over the network: --lan HOST -U USER --password-env VAR",
                    describe_open_error(&path, &e)
                )
            })?;
            let options = FanOptions {
                supermicro_x9: args.supermicro_x9
                    || SupermicroBoard::detect(&ipmi.sys_root).is_some_and(|b| b.is_x9()),
            };
            rt.block_on(execute(&bmc, &action, options, args.json))?
        }
    };
    for w in warnings {
        eprintln!("warning: {w}");
    }
    print!("{text}");
    Ok(())
}

/// The text to print (the report as text or JSON) and the warnings.
async fn execute<T: Transport>(
    bmc: &T,
    action: &FanAction,
    options: FanOptions,
    json: bool,
) -> Result<(String, Vec<String>)> {
    let report = fans::execute_with(bmc, action, options).await?;
    let text = if json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        fans::render_text(action, &report)
    };
    Ok((text, report.warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use dcmon_ipmi::sim::{Fleet, SimConfig, Vendor};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        fans: FansArgs,
    }

    fn parse(args: &[&str]) -> Result<FansArgs, String> {
        Cli::try_parse_from(std::iter::once("fans").chain(args.iter().copied()))
            .map(|c| c.fans)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn arguments_as_fans_sh_took_them() {
        let action = |args: &[&str]| parse(args).expect("parses").action();
        assert_eq!(action(&["status"]), FanAction::Status);
        assert_eq!(
            action(&["mode", "heavy_io"]),
            FanAction::Mode {
                mode: Some("heavy_io".into())
            }
        );
        assert_eq!(
            action(&["zone", "1", "40%"]),
            FanAction::Zone {
                zone: 1,
                duty: Some(40)
            }
        );
        let e = parse(&["mode", "quiet"]).err().expect("refused");
        assert!(e.contains("use standard, full, optimal or heavy_io"), "{e}");
        let e = parse(&["zone", "0", "140"]).err().expect("refused");
        assert!(e.contains("percentage from 0 to 100"), "{e}");
        assert!(parse(&["--lan", "bmc", "status"]).is_err(), "needs -U");
        assert!(
            parse(&[
                "--lan",
                "bmc",
                "--device",
                "/dev/ipmi1",
                "-U",
                "a",
                "status"
            ])
            .is_err()
        );
    }

    #[test]
    fn missing_device_says_how_to_get_one() {
        let args = parse(&["--device", "/nonexistent/ipmi0", "status"]).expect("parses");
        let e = run(args, &IpmiConfig::default())
            .expect_err("no device")
            .to_string();
        assert_eq!(
            e,
            "/nonexistent/ipmi0 does not exist: load the IPMI driver (modprobe ipmi_devintf ipmi_si); or drive the BMC over the network: --lan HOST -U USER --password-env VAR"
        );
    }

    /// The whole command over RMCP+ against the simulator's LAN server.
    #[test]
    fn drives_the_simulator_over_lan() {
        let server = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let fleet = server
            .block_on(Fleet::start(SimConfig::loopback(
                Vendor::Supermicro,
                "admin",
                "s3cret",
            )))
            .expect("simulator");
        let target = format!("127.0.0.1:{}", fleet.addrs()[0].port());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let fans = |args: &[&str]| {
            let args = parse(args).expect("parses");
            let mut config = LanConfig::new("127.0.0.1", "admin", b"s3cret".to_vec());
            config.port = fleet.addrs()[0].port();
            rt.block_on(async {
                let bmc = LanSession::connect(config).await?;
                execute(&bmc, &args.action(), FanOptions::default(), args.json).await
            })
        };
        let lan = ["--lan", &target, "-U", "admin", "-P", "s3cret"];
        let (text, _) = fans(&[&lan[..], &["zone", "0", "40"]].concat()).expect("set");
        assert_eq!(text, "Zone 0 duty set to 40 % (fan mode full)\n");
        let (text, _) = fans(&[&lan[..], &["--json", "status"]].concat()).expect("status");
        let report: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(report["mode"], "full");
        assert_eq!(report["zones"][0]["duty_percent"], 40);
        let e = fans(&[&lan[..], &["zone", "0", "10"]].concat()).expect_err("below minimum");
        assert!(
            e.to_string().contains("below Supermicro's minimum of 20 %"),
            "{e}"
        );
        server.block_on(fleet.shutdown());
    }
}
