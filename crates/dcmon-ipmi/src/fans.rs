//! Fan operations over any [`Transport`]: show the mode, zone duties and fan speeds, set
//! the mode, set a zone's duty. One implementation behind `dcmon ipmi fan`,
//! `dcmon-agent fans` and the agent's `fan_control` command, so that every path refuses
//! the same requests (duties below the vendor minimum, unknown zones and modes) before
//! anything is written to the BMC.
//!
//! The vendor comes from Get Device ID; the commands are the request builders of
//! [`vendor`](crate::vendor). HPE iLO and unknown BMCs get a clear refusal.

use crate::client::{self, SensorValue};
use crate::msg::{CompletionCode, Request};
use crate::transport::Transport;
use crate::vendor::{self, FanRequestError, Vendor, dell, hpe, supermicro};
use crate::{CodecError, IpmiError};

/// What to do with the fans.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FanAction {
    /// Mode, zone duties and fan speeds.
    Status,
    /// Show the fan mode (`None`) or set it: standard, full, optimal or heavy_io.
    Mode { mode: Option<String> },
    /// Show a zone's duty (`None`) or set it, in percent.
    Zone { zone: u8, duty: Option<u8> },
}

/// One zone's duty as the BMC reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ZoneDuty {
    pub zone: u8,
    pub duty_percent: u8,
}

/// One fan sensor of the SDR.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FanSpeed {
    pub name: String,
    /// `None` when the BMC has no reading (fan absent or stopped being scanned).
    pub rpm: Option<f64>,
    pub lower_critical_rpm: Option<f64>,
    /// "ok", "nc", "cr", "nr", or "ns" (no reading), as ipmitool shows them.
    pub status: &'static str,
}

/// The outcome of one [`FanAction`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct FanReport {
    /// "Supermicro", "Dell", ...
    pub vendor: String,
    /// The fan mode after the action, when the vendor has modes.
    pub mode: Option<String>,
    pub zones: Vec<ZoneDuty>,
    pub fans: Vec<FanSpeed>,
    /// The one-line human result: "Zone 0 duty set to 40 % (fan mode full)".
    pub message: String,
    /// Things the user should know although the action succeeded (a fan predicted to
    /// drop below its lower-critical threshold, an ignored zone).
    pub warnings: Vec<String>,
}

/// Board facts that Get Device ID does not tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanOptions {
    /// Supermicro X9 boards set duties with `30 91 5A 03` instead of `30 70 66 01`
    /// (known from the DMI board name in-band, or from the user over LAN).
    pub supermicro_x9: bool,
}

/// Why a fan action failed; every variant says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum FanError {
    #[error(transparent)]
    Ipmi(#[from] IpmiError),
    /// Refused before anything was written to the BMC.
    #[error("{host}: {reason}; nothing was changed")]
    Refused {
        host: String,
        reason: FanRequestError,
    },
    #[error("{given:?} is not a fan mode: use standard, full, optimal or heavy_io")]
    UnknownMode { given: String },
    #[error("{host}: {why}")]
    VendorRefused { host: String, why: &'static str },
    #[error(
        "{host}: {command}: the BMC does not know this OEM command (wrong vendor profile or board generation: Supermicro X9 boards set duties with 30 91 5A)"
    )]
    UnknownOemCommand { host: String, command: &'static str },
    #[error("{host}: {what} (only fan speeds can be shown: use the status action)")]
    NotReported { host: String, what: &'static str },
    #[error("{host}: {}", unsupported(*.vendor))]
    Unsupported { host: String, vendor: Vendor },
}

fn unsupported(vendor: Vendor) -> String {
    match vendor {
        Vendor::Hpe => hpe::FAN_CONTROL.to_string(),
        v => {
            format!("no fan profile for {v} (fan control is offered for Supermicro and Dell BMCs)")
        }
    }
}

/// Parses a fan mode name (standard, full, optimal, heavy_io; also heavyio, heavy-io).
pub fn parse_mode(name: &str) -> Result<supermicro::FanMode, FanError> {
    supermicro::FanMode::from_name(name).ok_or_else(|| FanError::UnknownMode {
        given: name.to_string(),
    })
}

/// Who made the BMC, from Get Device ID.
pub async fn detect_vendor<T: Transport>(t: &T) -> Result<Vendor, IpmiError> {
    Ok(client::device_id(t).await?.vendor())
}

/// Carries out `action` for a board of X10 generation or later.
pub async fn execute<T: Transport>(t: &T, action: &FanAction) -> Result<FanReport, FanError> {
    execute_with(t, action, FanOptions::default()).await
}

/// Carries out `action`. Requests that the vendor profile refuses (a duty over 100 % or
/// below the minimum, an unknown zone or mode) fail before any write; only Get Device ID
/// and readings may have been sent by then.
pub async fn execute_with<T: Transport>(
    t: &T,
    action: &FanAction,
    options: FanOptions,
) -> Result<FanReport, FanError> {
    let host = || t.host().to_string();
    let mode = match action {
        FanAction::Mode { mode: Some(m) } => Some(parse_mode(m)?),
        _ => None,
    };
    if let FanAction::Zone {
        duty: Some(duty), ..
    } = action
        && *duty > 100
    {
        return Err(FanError::Refused {
            host: host(),
            reason: FanRequestError::DutyOver100 { duty: *duty },
        });
    }
    let vendor = detect_vendor(t).await?;
    if let FanAction::Zone {
        duty: Some(duty), ..
    } = action
    {
        vendor::check_duty(vendor, *duty).map_err(|reason| FanError::Refused {
            host: host(),
            reason,
        })?;
    }
    match vendor {
        Vendor::Supermicro => supermicro_action(t, action, mode, options).await,
        Vendor::Dell => dell_action(t, action, mode).await,
        Vendor::Hpe | Vendor::Other(_) => Err(FanError::Unsupported {
            host: host(),
            vendor,
        }),
    }
}

fn report(vendor: Vendor, message: String) -> FanReport {
    FanReport {
        vendor: vendor.to_string(),
        mode: None,
        zones: Vec::new(),
        fans: Vec::new(),
        message,
        warnings: Vec::new(),
    }
}

/// Fan sensors of the SDR with their readings.
async fn fan_sensors<T: Transport>(t: &T) -> Result<Vec<SensorValue>, IpmiError> {
    let records = client::sdr_records(t).await?;
    let values = client::read_sensors(t, &records).await?;
    Ok(values
        .into_iter()
        .filter(|v| v.record.sensor_type == SENSOR_TYPE_FAN && v.record.is_analog())
        .collect())
}

/// Sensor type 04h (IPMI 2.0 Table 42-3).
const SENSOR_TYPE_FAN: u8 = 0x04;

fn fan_speed(v: &SensorValue) -> FanSpeed {
    FanSpeed {
        name: v.record.name.clone(),
        rpm: v.value,
        lower_critical_rpm: v.record.threshold(v.record.thresholds.lower_critical),
        status: v.status,
    }
}

/// Sends a Supermicro OEM request; an unknown command (C1h) is explained.
async fn oem<T: Transport>(
    t: &T,
    req: &Request,
    command: &'static str,
) -> Result<Vec<u8>, FanError> {
    client::call(t, req, command).await.map_err(|e| {
        if e.completion() == Some(CompletionCode::INVALID_COMMAND) {
            FanError::UnknownOemCommand {
                host: t.host().to_string(),
                command,
            }
        } else {
            e.into()
        }
    })
}

fn malformed<T: Transport>(t: &T) -> impl Fn(CodecError) -> FanError + '_ {
    |source| {
        FanError::Ipmi(IpmiError::Malformed {
            host: t.host().to_string(),
            source,
        })
    }
}

async fn get_mode<T: Transport>(t: &T) -> Result<supermicro::FanMode, FanError> {
    let d = oem(t, &supermicro::get_fan_mode(), "get fan mode").await?;
    supermicro::parse_fan_mode(&d).map_err(malformed(t))
}

async fn get_duty<T: Transport>(t: &T, zone: u8) -> Result<u8, FanError> {
    let req = supermicro::get_zone_duty(zone).map_err(|reason| FanError::Refused {
        host: t.host().to_string(),
        reason,
    })?;
    let d = oem(t, &req, "get zone duty").await?;
    supermicro::parse_zone_duty(&d).map_err(malformed(t))
}

async fn supermicro_action<T: Transport>(
    t: &T,
    action: &FanAction,
    new_mode: Option<supermicro::FanMode>,
    options: FanOptions,
) -> Result<FanReport, FanError> {
    let vendor = Vendor::Supermicro;
    match (action, new_mode) {
        (FanAction::Status, _) => {
            let mode = get_mode(t).await?;
            let mut zones = Vec::new();
            for zone in 0..=1 {
                zones.push(ZoneDuty {
                    zone,
                    duty_percent: get_duty(t, zone).await?,
                });
            }
            let fans = fan_sensors(t).await?.iter().map(fan_speed).collect();
            let duties: Vec<String> = zones
                .iter()
                .map(|z| format!("zone {} at {} %", z.zone, z.duty_percent))
                .collect();
            Ok(FanReport {
                mode: Some(mode.name()),
                zones,
                fans,
                ..report(
                    vendor,
                    format!("Fan mode {}, {}", mode.name(), duties.join(", ")),
                )
            })
        }
        (FanAction::Mode { .. }, None) => {
            let mode = get_mode(t).await?;
            Ok(FanReport {
                mode: Some(mode.name()),
                ..report(vendor, format!("Fan mode: {}", mode.name()))
            })
        }
        (FanAction::Mode { .. }, Some(mode)) => {
            oem(t, &supermicro::set_fan_mode(mode), "set fan mode").await?;
            Ok(FanReport {
                mode: Some(mode.name()),
                ..report(vendor, format!("Fan mode set to {}", mode.name()))
            })
        }
        (FanAction::Zone { zone, duty: None }, _) => {
            let duty = get_duty(t, *zone).await?;
            Ok(FanReport {
                zones: vec![ZoneDuty {
                    zone: *zone,
                    duty_percent: duty,
                }],
                ..report(vendor, format!("Zone {zone} duty: {duty} %"))
            })
        }
        (
            FanAction::Zone {
                zone,
                duty: Some(duty),
            },
            _,
        ) => {
            // Builds the requests first: an unknown zone is refused before any command.
            let refused = |reason| FanError::Refused {
                host: t.host().to_string(),
                reason,
            };
            supermicro::manual_duty(None, *zone, *duty, options.supermicro_x9).map_err(refused)?;
            let mode = get_mode(t).await?;
            let mut warnings = Vec::new();
            // X9 boards have no documented duty read; without the present duty no
            // speed can be predicted.
            if !options.supermicro_x9 {
                let current = get_duty(t, *zone).await?;
                let fans: Vec<vendor::FanReading> = fan_sensors(t)
                    .await?
                    .iter()
                    .map(|v| vendor::FanReading {
                        name: v.record.name.clone(),
                        rpm: v.value.unwrap_or(0.0),
                        lower_critical_rpm: v.record.threshold(v.record.thresholds.lower_critical),
                    })
                    .collect();
                warnings = vendor::fans_below_lower_critical(&fans, current, *duty);
            }
            let plan = supermicro::manual_duty(Some(mode), *zone, *duty, options.supermicro_x9)
                .map_err(refused)?;
            for req in &plan {
                oem(t, req, "set fan duty").await?;
            }
            let full = supermicro::FanMode::Full.name();
            Ok(FanReport {
                mode: Some(full.clone()),
                zones: vec![ZoneDuty {
                    zone: *zone,
                    duty_percent: *duty,
                }],
                warnings,
                ..report(
                    vendor,
                    format!("Zone {zone} duty set to {duty} % (fan mode {full})"),
                )
            })
        }
    }
}

async fn dell_action<T: Transport>(
    t: &T,
    action: &FanAction,
    new_mode: Option<supermicro::FanMode>,
) -> Result<FanReport, FanError> {
    let vendor = Vendor::Dell;
    let host = || t.host().to_string();
    let send = |req: Request| async move {
        client::call(t, &req, "Dell fan control")
            .await
            .map_err(|e| match e.completion().and_then(dell::explain_refusal) {
                Some(why) => FanError::VendorRefused { host: host(), why },
                None => e.into(),
            })
    };
    let manual = |duty: u8| {
        dell::manual_duty(duty).map_err(|reason| FanError::Refused {
            host: host(),
            reason,
        })
    };
    match (action, new_mode) {
        (FanAction::Status, _) => {
            let fans = fan_sensors(t).await?.iter().map(fan_speed).collect();
            Ok(FanReport {
                fans,
                ..report(
                    vendor,
                    "iDRAC reports no fan mode over IPMI; fan speeds:".into(),
                )
            })
        }
        (FanAction::Mode { .. }, None) => Err(FanError::NotReported {
            host: host(),
            what: "iDRAC reports no fan mode over IPMI",
        }),
        (FanAction::Mode { .. }, Some(supermicro::FanMode::Full)) => {
            for req in manual(100)? {
                send(req).await?;
            }
            Ok(FanReport {
                mode: Some("manual".into()),
                ..report(vendor, "Fans set to 100 % (manual control)".into())
            })
        }
        (FanAction::Mode { .. }, Some(_)) => {
            send(dell::automatic_mode()).await?;
            Ok(FanReport {
                mode: Some("automatic".into()),
                ..report(
                    vendor,
                    "Fan control handed back to the iDRAC (automatic)".into(),
                )
            })
        }
        (FanAction::Zone { duty: None, .. }, _) => Err(FanError::NotReported {
            host: host(),
            what: "iDRAC reports no fan duty over IPMI",
        }),
        (
            FanAction::Zone {
                zone,
                duty: Some(duty),
            },
            _,
        ) => {
            let plan = manual(*duty)?;
            for req in plan {
                send(req).await?;
            }
            let mut warnings = Vec::new();
            if *zone != 0 {
                warnings.push(format!(
                    "iDRAC has no fan zones: zone {zone} was ignored and every fan set"
                ));
            }
            Ok(FanReport {
                mode: Some("manual".into()),
                warnings,
                ..report(vendor, format!("All fans set to {duty} % (manual control)"))
            })
        }
    }
}

/// The report as text for a terminal: for a status, the mode, the zone duties and one
/// `name | speed | status` line per fan (as ipmitool's `sdr list`); for a mode query,
/// the bare mode name (scripts of the `fans.sh` era read it); otherwise the message.
/// Warnings are not included: they go to standard error.
pub fn render_text(action: &FanAction, report: &FanReport) -> String {
    let mut out = String::new();
    match action {
        FanAction::Status => {
            match &report.mode {
                Some(mode) => out += &format!("Fan mode: {mode}\n"),
                None => out += &format!("{}\n", report.message),
            }
            for z in &report.zones {
                out += &format!("Zone {} duty: {} %\n", z.zone, z.duty_percent);
            }
            for f in &report.fans {
                out += &fan_line(f);
                out.push('\n');
            }
        }
        FanAction::Mode { mode: None } => {
            out += &format!("{}\n", report.mode.as_deref().unwrap_or(&report.message));
        }
        _ => out += &format!("{}\n", report.message),
    }
    out
}

/// `name | value unit | status`, padded as ipmitool's `sdr list`.
fn fan_line(f: &FanSpeed) -> String {
    let value = match f.rpm {
        Some(x) => {
            let digits = if x == x.trunc() { 0 } else { 2 };
            format!("{x:.digits$} RPM")
        }
        None => "no reading".into(),
    };
    format!("{:<16} | {value:<17} | {}", f.name, f.status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::Response;
    use crate::rakp::Privilege;
    use crate::sim::{Bmc, BmcConfig, Vendor as SimVendor};
    use std::sync::Mutex;
    use std::time::Duration;

    /// The simulator's BMC model answering in-process, recording what was asked.
    struct SimBmc {
        bmc: Mutex<Bmc>,
        asked: Mutex<Vec<Request>>,
    }

    const START: Duration = Duration::from_secs(1_700_000_000);

    impl SimBmc {
        fn new(vendor: SimVendor, dell_refuses_manual_fans: bool) -> Self {
            let config = BmcConfig {
                vendor,
                seed: 7,
                dell_refuses_manual_fans,
            };
            SimBmc {
                bmc: Mutex::new(Bmc::new(config, START)),
                asked: Mutex::new(Vec::new()),
            }
        }

        /// (netfn, cmd, data) of every OEM request sent.
        fn oem_asked(&self) -> Vec<Vec<u8>> {
            self.asked
                .lock()
                .expect("not poisoned")
                .iter()
                .filter(|r| r.netfn == crate::msg::netfn::OEM)
                .map(|r| [vec![r.netfn, r.cmd], r.data.clone()].concat())
                .collect()
        }
    }

    impl Transport for SimBmc {
        async fn send(&self, req: &Request) -> Result<Response, IpmiError> {
            self.asked.lock().expect("not poisoned").push(req.clone());
            let rsp = self.bmc.lock().expect("not poisoned").handle(
                &crate::sim::Request {
                    netfn: req.netfn,
                    cmd: req.cmd,
                    data: &req.data,
                    privilege: Privilege::Administrator,
                },
                START,
            );
            Ok(Response::to(req, rsp.completion, rsp.data))
        }

        fn host(&self) -> &str {
            "sim"
        }
    }

    fn run(t: &SimBmc, action: FanAction) -> Result<FanReport, FanError> {
        run_with(t, action, FanOptions::default())
    }

    fn run_with(t: &SimBmc, action: FanAction, options: FanOptions) -> Result<FanReport, FanError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(execute_with(t, &action, options))
    }

    fn mode(m: Option<&str>) -> FanAction {
        FanAction::Mode {
            mode: m.map(String::from),
        }
    }

    #[test]
    fn supermicro_status_shows_mode_duties_and_fans() {
        let t = SimBmc::new(SimVendor::Supermicro, false);
        let r = run(&t, FanAction::Status).expect("status");
        assert_eq!(r.vendor, "Supermicro");
        assert_eq!(r.mode.as_deref(), Some("standard"));
        assert_eq!(r.zones.len(), 2);
        assert_eq!(r.zones[0].duty_percent, 50, "standard mode floor");
        let names: Vec<&str> = r.fans.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["FAN1", "FAN2", "FAN3", "FAN4", "FANA"]);
        assert!(r.fans.iter().all(|f| f.rpm.is_some_and(|x| x > 1000.0)));
        assert_eq!(r.fans[0].lower_critical_rpm, Some(500.0));
        assert_eq!(
            r.message,
            "Fan mode standard, zone 0 at 50 %, zone 1 at 50 %"
        );
        let text = render_text(&FanAction::Status, &r);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..3],
            [
                "Fan mode: standard",
                "Zone 0 duty: 50 %",
                "Zone 1 duty: 50 %"
            ]
        );
        assert!(
            lines[3].starts_with("FAN1             | ") && lines[3].ends_with(" RPM          | ok"),
            "{text}"
        );
    }

    #[test]
    fn supermicro_zone_duty_switches_to_full_and_reads_back() {
        let t = SimBmc::new(SimVendor::Supermicro, false);
        let zone = |duty| FanAction::Zone { zone: 0, duty };
        let r = run(&t, zone(Some(40))).expect("set");
        assert_eq!(r.message, "Zone 0 duty set to 40 % (fan mode full)");
        assert_eq!(r.mode.as_deref(), Some("full"));
        assert_eq!(
            t.oem_asked()[2..],
            [
                vec![0x30, 0x45, 0x01, 1],
                vec![0x30, 0x70, 0x66, 0x01, 0, 40]
            ]
        );
        assert_eq!(run(&t, zone(None)).expect("get").zones[0].duty_percent, 40);
        assert_eq!(
            run(&t, mode(None)).expect("get").mode.as_deref(),
            Some("full")
        );
        // Already in Full mode: only the duty is sent.
        let before = t.oem_asked().len();
        run(&t, zone(Some(60))).expect("set");
        assert_eq!(
            t.oem_asked()[before..].last(),
            Some(&vec![0x30, 0x70, 0x66, 0x01, 0, 60])
        );
        assert_eq!(
            t.oem_asked()[before..]
                .iter()
                .filter(|r| r[1] == 0x45 && r[2] == 1)
                .count(),
            0
        );
    }

    #[test]
    fn refused_requests_send_no_write() {
        let check = |action: FanAction, expect: &str| {
            let t = SimBmc::new(SimVendor::Supermicro, false);
            let e = run(&t, action).expect_err("refused").to_string();
            assert!(e.contains(expect), "{e}");
            let writes = t
                .oem_asked()
                .into_iter()
                .filter(|r| r.get(2) == Some(&1) || r.get(3) == Some(&1));
            assert_eq!(writes.count(), 0, "{e}");
        };
        check(
            FanAction::Zone {
                zone: 0,
                duty: Some(10),
            },
            "sim: duty 10 % is below Supermicro's minimum of 20 %; nothing was changed",
        );
        check(
            FanAction::Zone {
                zone: 1,
                duty: Some(101),
            },
            "above 100 %",
        );
        check(
            FanAction::Zone {
                zone: 2,
                duty: Some(50),
            },
            "zone 2 does not exist",
        );
        check(
            FanAction::Zone {
                zone: 2,
                duty: None,
            },
            "zone 2 does not exist",
        );
        check(
            mode(Some("quiet")),
            "\"quiet\" is not a fan mode: use standard, full, optimal or heavy_io",
        );
    }

    #[test]
    fn supermicro_modes_by_name() {
        let t = SimBmc::new(SimVendor::Supermicro, false);
        let r = run(&t, mode(Some("heavy_io"))).expect("set");
        assert_eq!(r.message, "Fan mode set to heavyio");
        assert_eq!(t.oem_asked(), [vec![0x30, 0x45, 0x01, 4]]);
        let r = run(&t, mode(None)).expect("get");
        assert_eq!(render_text(&mode(None), &r), "heavyio\n");
    }

    #[test]
    fn x9_boards_get_the_x9_duty_command() {
        let t = SimBmc::new(SimVendor::Supermicro, false);
        let x9 = FanOptions {
            supermicro_x9: true,
        };
        // The simulator models X10/X11 and does not know 30 91: the refusal is explained.
        let e = run_with(
            &t,
            FanAction::Zone {
                zone: 1,
                duty: Some(50),
            },
            x9,
        )
        .expect_err("X11 sim");
        assert!(
            e.to_string().contains("does not know this OEM command"),
            "{e}"
        );
        assert_eq!(
            t.oem_asked().last(),
            Some(&vec![0x30, 0x91, 0x5A, 0x03, 0x11, 128])
        );
    }

    #[test]
    fn dell_manual_duty_and_the_newer_idrac_refusal() {
        let t = SimBmc::new(SimVendor::Dell, false);
        let r = run(
            &t,
            FanAction::Zone {
                zone: 1,
                duty: Some(30),
            },
        )
        .expect("set");
        assert_eq!(r.message, "All fans set to 30 % (manual control)");
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(
            t.oem_asked(),
            [
                vec![0x30, 0x30, 0x01, 0x00],
                vec![0x30, 0x30, 0x02, 0xFF, 30]
            ]
        );
        let r = run(&t, mode(Some("standard"))).expect("auto");
        assert_eq!(
            r.message,
            "Fan control handed back to the iDRAC (automatic)"
        );
        assert!(run(&t, FanAction::Status).expect("status").fans.len() == 5);
        let e = run(&t, mode(None)).expect_err("no mode").to_string();
        assert!(e.contains("iDRAC reports no fan mode"), "{e}");

        let refusing = SimBmc::new(SimVendor::Dell, true);
        let e = run(&refusing, mode(Some("full")))
            .expect_err("refused")
            .to_string();
        assert!(
            e.starts_with("sim: this iDRAC refuses manual fan control") && e.contains("3.34"),
            "{e}"
        );
    }

    #[test]
    fn generic_bmcs_are_refused_with_the_reason() {
        let t = SimBmc::new(SimVendor::Generic, false);
        let e = run(&t, FanAction::Status)
            .expect_err("no profile")
            .to_string();
        assert_eq!(
            e,
            "sim: no fan profile for manufacturer 0 (fan control is offered for Supermicro and Dell BMCs)"
        );
    }

    #[test]
    fn actions_round_trip_through_json() {
        for (action, json) in [
            (FanAction::Status, r#"{"action":"status"}"#),
            (mode(Some("full")), r#"{"action":"mode","mode":"full"}"#),
            (
                FanAction::Zone {
                    zone: 1,
                    duty: Some(40),
                },
                r#"{"action":"zone","zone":1,"duty":40}"#,
            ),
        ] {
            assert_eq!(serde_json::to_string(&action).expect("serialises"), json);
            assert_eq!(
                serde_json::from_str::<FanAction>(json).expect("parses"),
                action
            );
        }
    }
}
