//! `dcmon ipmi`: talk to one BMC over RMCP+ natively, with output shaped like
//! ipmitool's (or JSON). Thin: parses arguments, calls `dcmon_ipmi`, prints.

use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use dcmon_ipmi::client::{self, SensorValue};
use dcmon_ipmi::cmd::chassis::{ChassisStatus, PowerAction};
use dcmon_ipmi::cmd::{app, sel};
use dcmon_ipmi::crypto::CipherSuite;
use dcmon_ipmi::fans::{self, FanAction};
use dcmon_ipmi::msg::Request;
use dcmon_ipmi::rakp::Privilege;
use dcmon_ipmi::transport::Transport;
use dcmon_ipmi::transport::lan::{LanConfig, LanSession, parse_target};
use dcmon_ipmi::vendor::Vendor;
use std::time::Duration;

/// Prints any serializable value as pretty JSON and evaluates to `Ok(())`.
macro_rules! print_json {
    ($v:expr) => {{
        println!("{}", serde_json::to_string_pretty($v)?);
        Ok(())
    }};
}

#[derive(Args)]
pub(crate) struct IpmiArgs {
    /// BMC address, optionally with the UDP port (default 623): HOST, HOST:PORT, [V6]:PORT.
    #[arg(short = 'H', long = "host", value_name = "HOST[:PORT]")]
    host: String,
    /// User name.
    #[arg(short = 'U', long = "user")]
    user: String,
    /// Password (visible to other users of this machine; prefer -E).
    #[arg(short = 'P', long = "password", conflicts_with = "env_password")]
    password: Option<String>,
    /// Read the password from the IPMI_PASSWORD environment variable.
    #[arg(short = 'E', long = "env-password")]
    env_password: bool,
    /// Cipher suite: 3 (SHA-1, AES) or 17 (SHA-256, AES).
    #[arg(short = 'C', long = "cipher-suite", default_value = "3", value_parser = parse_suite)]
    suite: CipherSuite,
    /// Session privilege level.
    #[arg(short = 'L', long = "privilege", value_enum, default_value_t = PrivilegeArg::Administrator)]
    privilege: PrivilegeArg,
    /// Total time budget of one request, retries and session set-up included.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Sends per message within the budget.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    retries: u32,
    /// Print JSON instead of ipmitool-style text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: IpmiCommand,
}

#[derive(Clone, Copy, ValueEnum)]
enum PrivilegeArg {
    User,
    Operator,
    Administrator,
}

#[derive(Subcommand)]
enum IpmiCommand {
    /// Management controller.
    Mc {
        #[command(subcommand)]
        command: McCommand,
    },
    /// Chassis status and power control.
    Chassis {
        #[command(subcommand)]
        command: ChassisCommand,
    },
    /// Sensors from the SDR repository.
    Sdr {
        #[command(subcommand)]
        command: SdrCommand,
    },
    /// System event log.
    Sel {
        #[command(subcommand)]
        command: SelCommand,
    },
    /// Fan mode and duties (Supermicro, Dell).
    Fan {
        #[command(subcommand)]
        command: FanCommand,
    },
    /// DCMI.
    Dcmi {
        #[command(subcommand)]
        command: DcmiCommand,
    },
    /// Any command: NETFN CMD [DATA...], bytes in hex (0x optional).
    Raw {
        #[arg(value_parser = parse_hex_byte)]
        netfn: u8,
        #[arg(value_parser = parse_hex_byte)]
        cmd: u8,
        #[arg(value_parser = parse_hex_byte)]
        data: Vec<u8>,
    },
}

#[derive(Subcommand)]
enum McCommand {
    /// Get Device ID.
    Info,
}

#[derive(Subcommand)]
enum ChassisCommand {
    /// Get Chassis Status.
    Status,
    /// Power control.
    Power {
        #[arg(value_enum)]
        action: PowerArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PowerArg {
    Status,
    On,
    Off,
    Cycle,
    Reset,
    Soft,
}

#[derive(Subcommand)]
enum SdrCommand {
    /// Every sensor: name | value unit | status.
    List,
}

#[derive(Subcommand)]
enum SelCommand {
    /// Every entry: id | date | time | sensor | event | direction.
    List,
    /// Erase the log.
    Clear,
}

#[derive(Subcommand)]
enum FanCommand {
    /// Mode, zone duties and fan speeds.
    Status,
    /// Show the fan mode, or set it.
    Mode {
        #[arg(value_parser = parse_fan_mode)]
        mode: Option<String>,
    },
    /// Show a zone's duty, or set it (percent; switches to Full mode first).
    Zone {
        zone: u8,
        #[arg(value_parser = clap::value_parser!(u8).range(0..=100))]
        duty: Option<u8>,
    },
}

#[derive(Subcommand)]
enum DcmiCommand {
    /// DCMI Get Power Reading.
    Power,
}

fn parse_suite(s: &str) -> Result<CipherSuite, String> {
    s.parse::<u8>()
        .ok()
        .and_then(CipherSuite::from_id)
        .ok_or_else(|| format!("cipher suite {s:?} is not supported (use 3 or 17)"))
}

fn parse_hex_byte(s: &str) -> Result<u8, String> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if digits.is_empty() || digits.len() > 2 {
        return Err(format!("{s:?} is not a hex byte (00-ff)"));
    }
    u8::from_str_radix(digits, 16).map_err(|_| format!("{s:?} is not a hex byte (00-ff)"))
}

fn parse_fan_mode(s: &str) -> Result<String, String> {
    fans::parse_mode(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// A usage error: printed like clap's and exits with status 2.
fn usage_error(msg: impl std::fmt::Display) -> ! {
    clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{msg}\n")).exit()
}

pub(crate) fn run(args: IpmiArgs) -> Result<()> {
    let (host, port) = parse_target(&args.host).unwrap_or_else(|e| usage_error(e));
    let password = match (&args.password, args.env_password) {
        (Some(p), _) => p.clone(),
        (None, true) => std::env::var("IPMI_PASSWORD").unwrap_or_else(|_| {
            usage_error("-E: the IPMI_PASSWORD environment variable is not set")
        }),
        (None, false) => usage_error("a password is required: -P PASSWORD or -E (IPMI_PASSWORD)"),
    };
    if password.len() > 20 {
        usage_error("IPMI 2.0 passwords are at most 20 bytes");
    }
    if args.user.len() > 16 {
        usage_error("IPMI user names are at most 16 bytes");
    }
    let mut config = LanConfig::new(host, args.user.clone(), password.into_bytes());
    config.port = port;
    config.suite = args.suite;
    config.privilege = match args.privilege {
        PrivilegeArg::User => Privilege::User,
        PrivilegeArg::Operator => Privilege::Operator,
        PrivilegeArg::Administrator => Privilege::Administrator,
    };
    config.timeout = args.timeout;
    config.attempts = args.retries;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let bmc = LanSession::connect(config).await?;
        let result = execute(&bmc, &args.command, args.json).await;
        bmc.close().await;
        result
    })
}

async fn execute(bmc: &LanSession, command: &IpmiCommand, json: bool) -> Result<()> {
    match command {
        IpmiCommand::Mc {
            command: McCommand::Info,
        } => {
            let id = client::device_id(bmc).await?;
            if json {
                print_json!(&id)
            } else {
                print!("{}", format_mc_info(&id));
                Ok(())
            }
        }
        IpmiCommand::Chassis {
            command: ChassisCommand::Status,
        } => {
            let s = client::chassis_status(bmc).await?;
            if json {
                print_json!(&s)
            } else {
                print!("{}", format_chassis_status(&s));
                Ok(())
            }
        }
        IpmiCommand::Chassis {
            command: ChassisCommand::Power { action },
        } => power(bmc, *action, json).await,
        IpmiCommand::Sdr {
            command: SdrCommand::List,
        } => {
            let records = client::sdr_records(bmc).await?;
            let values = client::read_sensors(bmc, &records).await?;
            if json {
                print_json!(&values)
            } else {
                for v in &values {
                    println!("{}", format_sdr_line(v));
                }
                Ok(())
            }
        }
        IpmiCommand::Sel {
            command: SelCommand::List,
        } => {
            let entries = client::sel_entries(bmc).await?;
            if json {
                print_json!(&entries)
            } else {
                if entries.is_empty() {
                    println!("SEL has no entries");
                }
                for e in &entries {
                    println!("{}", format_sel_line(e));
                }
                Ok(())
            }
        }
        IpmiCommand::Sel {
            command: SelCommand::Clear,
        } => {
            client::sel_clear(bmc).await?;
            if json {
                print_json!(&serde_json::json!({"cleared": true}))
            } else {
                println!("Clearing SEL.  Please allow a few seconds to erase.");
                Ok(())
            }
        }
        IpmiCommand::Fan { command } => fan(bmc, command, json).await,
        IpmiCommand::Dcmi {
            command: DcmiCommand::Power,
        } => {
            let p = client::power_reading(bmc).await?;
            if json {
                print_json!(&p)
            } else {
                println!(
                    "    Instantaneous power reading:              {:>4} Watts",
                    p.current_watts
                );
                println!(
                    "    Minimum during sampling period:           {:>4} Watts",
                    p.minimum_watts
                );
                println!(
                    "    Maximum during sampling period:           {:>4} Watts",
                    p.maximum_watts
                );
                println!(
                    "    Average power reading over sample period: {:>4} Watts",
                    p.average_watts
                );
                println!(
                    "    Sampling period:                          {:08} Seconds.",
                    p.period_ms / 1000
                );
                println!(
                    "    Power reading state is:                   {}",
                    if p.active { "activated" } else { "deactivated" }
                );
                Ok(())
            }
        }
        IpmiCommand::Raw { netfn, cmd, data } => {
            let rsp = bmc.send(&Request::new(*netfn, *cmd, data.clone())).await?;
            if json {
                return print_json!(&serde_json::json!({
                    "completion_code": rsp.completion.0,
                    "completion": rsp.completion.name(),
                    "data": rsp.data,
                }));
            }
            if let Err(code) = rsp.ok() {
                bail!(
                    "Unable to send RAW command (channel=0x0 netfn=0x{netfn:x} lun=0x0 cmd=0x{cmd:x} rsp=0x{:x}): {}",
                    code.0,
                    code.name()
                );
            }
            println!("{}", format_raw(&rsp.data));
            Ok(())
        }
    }
}

async fn power(bmc: &LanSession, action: PowerArg, json: bool) -> Result<()> {
    let action = match action {
        PowerArg::Status => {
            let s = client::chassis_status(bmc).await?;
            let state = if s.power_on { "on" } else { "off" };
            if json {
                return print_json!(&serde_json::json!({ "power": state }));
            }
            println!("Chassis Power is {state}");
            return Ok(());
        }
        PowerArg::On => PowerAction::On,
        PowerArg::Off => PowerAction::Off,
        PowerArg::Cycle => PowerAction::Cycle,
        PowerArg::Reset => PowerAction::Reset,
        PowerArg::Soft => PowerAction::Soft,
    };
    client::chassis_control(bmc, action).await?;
    if json {
        print_json!(&serde_json::json!({ "power_control": action.name() }))
    } else {
        println!("Chassis Power Control: {}", action.name());
        Ok(())
    }
}

/// Runs a fan action through `dcmon_ipmi::fans`: warnings to standard error, the report
/// as text or JSON.
async fn fan(bmc: &LanSession, command: &FanCommand, json: bool) -> Result<()> {
    let action = match command {
        FanCommand::Status => FanAction::Status,
        FanCommand::Mode { mode } => FanAction::Mode { mode: mode.clone() },
        FanCommand::Zone { zone, duty } => FanAction::Zone {
            zone: *zone,
            duty: *duty,
        },
    };
    let report = fans::execute(bmc, &action).await?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    if json {
        print_json!(&report)
    } else {
        print!("{}", fans::render_text(&action, &report));
        Ok(())
    }
}

fn manufacturer_name(vendor: Vendor) -> String {
    match vendor {
        Vendor::Supermicro => "Super Micro Computer Inc.".into(),
        Vendor::Dell => "DELL Inc".into(),
        Vendor::Hpe => "Hewlett Packard Enterprise".into(),
        Vendor::Other(id) => format!("Unknown (0x{id:X})"),
    }
}

fn format_mc_info(id: &app::DeviceId) -> String {
    let line = |label: &str, value: String| format!("{label:<26}: {value}\n");
    let mut out = String::new();
    out += &line("Device ID", id.device_id.to_string());
    out += &line("Device Revision", id.device_revision.to_string());
    out += &line("Firmware Revision", id.firmware());
    out += &line("IPMI Version", id.ipmi_version_string());
    out += &line("Manufacturer ID", id.manufacturer_id.to_string());
    out += &line("Manufacturer Name", manufacturer_name(id.vendor()));
    out += &line(
        "Product ID",
        format!("{} (0x{:04x})", id.product_id, id.product_id),
    );
    out += &line("Device Available", yes_no(id.available).into());
    out += &line("Provides Device SDRs", yes_no(id.provides_sdrs).into());
    out += "Additional Device Support :\n";
    for name in id.additional_support() {
        out += &format!("    {name}\n");
    }
    if let Some(aux) = id.aux_firmware {
        out += "Aux Firmware Rev Info     : \n";
        for b in aux {
            out += &format!("    0x{b:02x}\n");
        }
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn format_chassis_status(s: &ChassisStatus) -> String {
    let line = |label: &str, value: &str| format!("{label:<21}: {value}\n");
    let active = |b: bool| if b { "active" } else { "inactive" };
    let tf = |b: bool| if b { "true" } else { "false" };
    [
        line("System Power", if s.power_on { "on" } else { "off" }),
        line("Power Overload", tf(s.power_overload)),
        line("Power Interlock", active(s.power_interlock)),
        line("Main Power Fault", tf(s.main_power_fault)),
        line("Power Control Fault", tf(s.power_control_fault)),
        line("Power Restore Policy", s.power_restore_policy),
        line("Last Power Event", s.last_power_event),
        line("Chassis Intrusion", active(s.intrusion)),
        line("Front-Panel Lockout", active(s.front_panel_lockout)),
        line("Drive Fault", tf(s.drive_fault)),
        line("Cooling/Fan Fault", tf(s.cooling_fault)),
    ]
    .concat()
}

/// `name | value unit | status`, padded as ipmitool's `sdr list`.
fn format_sdr_line(v: &SensorValue) -> String {
    let value = match (v.value, v.raw) {
        (Some(x), _) => {
            let digits = if x == x.trunc() { 0 } else { 2 };
            format!("{x:.digits$} {}", v.record.unit_name())
        }
        (None, Some(raw)) => format!("0x{raw:02x}"),
        (None, None) if v.record.conversion.is_some() => "no reading".into(),
        (None, None) => "Not Readable".into(),
    };
    format!("{:<16} | {value:<17} | {}", v.record.name, v.status)
}

/// `id | date | time | sensor | event | Asserted`, as ipmitool's `sel list`.
fn format_sel_line(e: &sel::SelEntry) -> String {
    let mut out = format!("{:>4x} | ", e.record_id);
    match e.timestamp {
        Some(t) if t > sel::PRE_INIT_TIMESTAMP => {
            let (date, time) = utc_date_time(t);
            out += &format!("{date} | {time} | ");
        }
        Some(t) => out += &format!(" Pre-Init  |{t:010}| "),
        None => out += " OEM record | ",
    }
    match &e.event {
        Some(ev) => {
            out += &format!(
                "{} #0x{:02x} | {} | {}",
                sel::sensor_type_name(ev.sensor_type),
                ev.sensor_number,
                ev.description(),
                if ev.deassertion {
                    "Deasserted"
                } else {
                    "Asserted"
                }
            );
        }
        None => out += &format!("OEM record {:02x}", e.record_type),
    }
    out
}

/// MM/DD/YYYY and HH:MM:SS in UTC, as ipmitool prints SEL times.
fn utc_date_time(t: u32) -> (String, String) {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::from(t))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (
        format!("{:02}/{:02}/{:04}", u8::from(t.month()), t.day(), t.year()),
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
    )
}

/// Response bytes as ipmitool prints them: " xx" each, 16 per line.
fn format_raw(data: &[u8]) -> String {
    data.chunks(16)
        .map(|c| c.iter().map(|b| format!(" {b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_bytes() {
        assert_eq!(parse_hex_byte("0x2c"), Ok(0x2C));
        assert_eq!(parse_hex_byte("ff"), Ok(0xFF));
        assert!(parse_hex_byte("0xzz").is_err());
        assert!(parse_hex_byte("100").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(
            utc_date_time(1_763_937_840),
            ("11/23/2025".into(), "22:44:00".into())
        );
        assert_eq!(utc_date_time(951_782_400).0, "02/29/2000");
    }

    #[test]
    fn raw_output_wraps_at_16_bytes() {
        assert_eq!(format_raw(&[1, 0xab]), " 01 ab");
        assert_eq!(format_raw(&[0; 17]).lines().count(), 2);
    }
}
