//! The `bmc_fan` collector: the fan mode and zone duties of Supermicro BMCs, which the
//! SDR does not show: `dcmon_bmc_fan_mode{mode}` (the mode's code: 0 standard, 1 full,
//! 2 optimal, 4 heavy I/O) and `dcmon_bmc_fan_zone_duty_percent{zone}`.
//!
//! Only Supermicro X9–X12 and H11–H13 boards are read, recognised by the DMI board
//! vendor and name AND the BMC's manufacturer id (10876): the OEM commands mean other
//! things on other firmware, so both must agree before any is sent.

use super::ipmi::{IpmiConfig, runtime};
use super::push;
use super::{CollectError, Collector};
use dcmon_ipmi::client;
use dcmon_ipmi::msg::CompletionCode;
use dcmon_ipmi::transport::Transport;
use dcmon_ipmi::transport::inband::InbandDevice;
use dcmon_ipmi::vendor::{Vendor, supermicro};
use dcmon_wire::MetricSample;
use std::path::Path;
use tokio::runtime::Runtime;

/// A Supermicro board this collector knows, from DMI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupermicroBoard {
    /// `X11SPH-nCTF`, `H12SSL-i`, ...
    pub name: String,
    /// 'X' (Intel) or 'H' (AMD).
    pub family: char,
    /// 9 for X9, 12 for H12, ...
    pub generation: u8,
}

impl SupermicroBoard {
    /// X9 boards set duties with `30 91 5A 03` (DESIGN §8).
    pub fn is_x9(&self) -> bool {
        self.family == 'X' && self.generation == 9
    }

    /// Parses a DMI board name; `None` for boards outside X9–X12 and H11–H13.
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        let mut chars = name.chars();
        let family = chars.next()?.to_ascii_uppercase();
        let rest = chars.as_str();
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let generation: u8 = rest[..digits].parse().ok()?;
        // A model letter follows the generation (X11SPH, H12SSL, X9DRi).
        if !rest[digits..].starts_with(|c: char| c.is_ascii_alphabetic()) {
            return None;
        }
        let known = match family {
            'X' => (9..=12).contains(&generation),
            'H' => (11..=13).contains(&generation),
            _ => false,
        };
        known.then(|| Self {
            name: name.to_string(),
            family,
            generation,
        })
    }

    /// The board of this machine, from `<sys_root>/class/dmi/id/board_{vendor,name}`;
    /// `None` when DMI is unreadable or the board is not a known Supermicro one.
    pub fn detect(sys_root: &Path) -> Option<Self> {
        let dmi = sys_root.join("class/dmi/id");
        let read = |file: &str| std::fs::read_to_string(dmi.join(file)).ok();
        // "Supermicro" on recent boards, "Super Micro Computer, Inc." on older ones.
        let vendor = read("board_vendor")?.to_ascii_lowercase().replace(' ', "");
        if !vendor.starts_with("supermicro") {
            return None;
        }
        Self::from_name(&read("board_name")?)
    }
}

/// Reads the fan mode and zone duties; see the module documentation.
pub struct BmcFanCollector<T> {
    rt: Runtime,
    board: Option<SupermicroBoard>,
    /// The BMC, or why it could not be reached.
    bmc: Result<T, String>,
    /// Zones whose duty read failed with a completion code (a board without FANA has
    /// no zone 1; X9 firmware may not know the read): not asked again.
    absent_zones: Vec<u8>,
}

impl BmcFanCollector<InbandDevice> {
    /// The collector of this machine: DMI below `cfg.sys_root`, the BMC through
    /// `cfg.device` (opened only on a known Supermicro board).
    pub fn inband(cfg: &IpmiConfig) -> std::io::Result<Self> {
        let board = SupermicroBoard::detect(&cfg.sys_root);
        let bmc = match board {
            Some(_) => cfg.open(),
            None => Err("not a Supermicro X9-X12 or H11-H13 board (DMI)".to_owned()),
        };
        Ok(Self::new(runtime()?, board, bmc))
    }
}

impl<T: Transport> BmcFanCollector<T> {
    /// `bmc` must have been created inside `rt`.
    pub fn new(rt: Runtime, board: Option<SupermicroBoard>, bmc: Result<T, String>) -> Self {
        Self {
            rt,
            board,
            bmc,
            absent_zones: Vec::new(),
        }
    }
}

impl<T: Transport> Collector for BmcFanCollector<T> {
    fn name(&self) -> &'static str {
        "bmc_fan"
    }

    fn is_available(&self) -> bool {
        let (Some(board), Ok(bmc)) = (&self.board, &self.bmc) else {
            if let Err(why) = &self.bmc {
                tracing::info!(collector = "bmc_fan", "{why}");
            }
            return false;
        };
        match self.rt.block_on(client::device_id(bmc)) {
            Ok(id) if id.vendor() == Vendor::Supermicro => true,
            Ok(id) => {
                tracing::info!(
                    collector = "bmc_fan",
                    board = %board.name,
                    manufacturer = id.manufacturer_id,
                    "the BMC is not Supermicro's although the board is; fan mode not read"
                );
                false
            }
            Err(e) => {
                tracing::info!(collector = "bmc_fan", error = %e, "the BMC does not answer Get Device ID");
                false
            }
        }
    }

    fn collect(&mut self, out: &mut Vec<MetricSample>) -> Result<(), CollectError> {
        let bmc = self
            .bmc
            .as_ref()
            .map_err(|why| CollectError::Ipmi(why.clone()))?;
        let absent = &mut self.absent_zones;
        self.rt.block_on(async {
            let d = client::call(bmc, &supermicro::get_fan_mode(), "get fan mode")
                .await
                .map_err(|e| CollectError::Ipmi(e.to_string()))?;
            let mode = supermicro::parse_fan_mode(&d).map_err(|e| {
                CollectError::Ipmi(format!("{}: fan mode response: {e}", bmc.host()))
            })?;
            push(
                out,
                "dcmon_bmc_fan_mode",
                &[("mode", &mode.name())],
                f64::from(mode.code()),
            );
            for zone in 0..=1u8 {
                if absent.contains(&zone) {
                    continue;
                }
                let req = supermicro::get_zone_duty(zone)
                    .map_err(|e| CollectError::Ipmi(e.to_string()))?;
                match client::call(bmc, &req, "get zone duty").await {
                    Ok(d) => {
                        let duty = supermicro::parse_zone_duty(&d).map_err(|e| {
                            CollectError::Ipmi(format!("{}: zone duty response: {e}", bmc.host()))
                        })?;
                        push(
                            out,
                            "dcmon_bmc_fan_zone_duty_percent",
                            &[("zone", &zone.to_string())],
                            f64::from(duty),
                        );
                    }
                    Err(e) if e.completion().is_some_and(|c| c != CompletionCode::NODE_BUSY) => {
                        tracing::info!(collector = "bmc_fan", zone, error = %e, "zone duty not readable; not asked again");
                        absent.push(zone);
                    }
                    Err(e) => return Err(CollectError::Ipmi(e.to_string())),
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::ipmi::tests::SimBmc;
    use dcmon_ipmi::sim::Vendor as SimVendor;

    #[test]
    fn board_names() {
        let check = |name: &str, expect: Option<(char, u8)>| {
            let got = SupermicroBoard::from_name(name).map(|b| (b.family, b.generation));
            assert_eq!(got, expect, "{name}");
        };
        check("X11SPH-nCTF", Some(('X', 11)));
        check("X9DRi-LN4+", Some(('X', 9)));
        check("X10DRU-i+", Some(('X', 10)));
        check("H12SSL-i", Some(('H', 12)));
        check("H13SSL-N\n", Some(('H', 13)));
        check("X13SAE", None);
        check("X8DTL", None);
        check("H10DSi", None);
        check("X11", None);
        check("É11SPH", None);
        check("X1é", None);
        check("", None);
        check("PowerEdge R740", None);
    }

    /// A DMI tree with the given board vendor and name.
    fn dmi(vendor: &str, name: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = dir.path().join("class/dmi/id");
        std::fs::create_dir_all(&id).expect("mkdir");
        std::fs::write(id.join("board_vendor"), format!("{vendor}\n")).expect("write");
        std::fs::write(id.join("board_name"), format!("{name}\n")).expect("write");
        dir
    }

    #[test]
    fn detects_supermicro_boards_from_dmi() {
        let b = SupermicroBoard::detect(dmi("Supermicro", "X9SRL-F").path()).expect("X9");
        assert!(b.is_x9());
        assert_eq!(b.name, "X9SRL-F");
        let b = SupermicroBoard::detect(dmi("Super Micro Computer, Inc.", "H11DSi").path());
        assert_eq!(b.map(|b| b.generation), Some(11));
        assert_eq!(
            SupermicroBoard::detect(dmi("Dell Inc.", "X11SPH").path()),
            None
        );
        assert_eq!(SupermicroBoard::detect(Path::new("/nonexistent")), None);
        let cfg = IpmiConfig {
            sys_root: dmi("ASUSTeK", "Z790").path().to_path_buf(),
            ..IpmiConfig::default()
        };
        assert!(
            !BmcFanCollector::inband(&cfg)
                .expect("runtime")
                .is_available()
        );
    }

    fn collector(vendor: SimVendor, board: &str) -> BmcFanCollector<SimBmc> {
        BmcFanCollector::new(
            runtime().expect("runtime"),
            SupermicroBoard::from_name(board),
            Ok(SimBmc::new(vendor)),
        )
    }

    fn rendered(c: &mut BmcFanCollector<SimBmc>) -> Vec<String> {
        let mut out = Vec::new();
        c.collect(&mut out).expect("collects");
        out.iter()
            .map(|s| format!("{} {}", s.labels, s.value))
            .collect()
    }

    #[test]
    fn reads_mode_and_zone_duties_from_the_simulator() {
        let mut c = collector(SimVendor::Supermicro, "X11SPH-nCTF");
        assert!(c.is_available());
        assert_eq!(
            rendered(&mut c),
            [
                r#"dcmon_bmc_fan_mode{mode="standard"} 0"#,
                r#"dcmon_bmc_fan_zone_duty_percent{zone="0"} 50"#,
                r#"dcmon_bmc_fan_zone_duty_percent{zone="1"} 50"#,
            ]
        );
        let bmc = c.bmc.as_ref().expect("sim");
        let action = dcmon_ipmi::fans::FanAction::Zone {
            zone: 1,
            duty: Some(35),
        };
        c.rt.block_on(dcmon_ipmi::fans::execute(bmc, &action))
            .expect("set");
        assert_eq!(
            rendered(&mut c),
            [
                r#"dcmon_bmc_fan_mode{mode="full"} 1"#,
                r#"dcmon_bmc_fan_zone_duty_percent{zone="0"} 100"#,
                r#"dcmon_bmc_fan_zone_duty_percent{zone="1"} 35"#,
            ]
        );
    }

    #[test]
    fn needs_both_the_board_and_a_supermicro_bmc() {
        assert!(!collector(SimVendor::Dell, "X11SPH-nCTF").is_available());
        assert!(!collector(SimVendor::Supermicro, "X13SAE").is_available());
    }
}
