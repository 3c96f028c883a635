//! The BMC model: one request (network function, command, data, session privilege) in,
//! one response (completion code, data) out. No IO; time is an argument.

use super::sdr::{self, Quantity, Reading};
use super::sel::{Event, Sel, SelError};
use super::thermal::{MAX_STEP_S, SplitMix, Thermal, ZONES};
use crate::msg::{CompletionCode, netfn};
use crate::rakp::Privilege;
use std::time::Duration;

/// Whose BMC to imitate: IANA enterprise number, controller name and OEM fan
/// commands. The sensors are the same for all (Supermicro X11 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    /// Supermicro X10/X11: fan modes and zone duties (DESIGN §8).
    Supermicro,
    /// Dell iDRAC: manual/automatic fan control and one duty for all fans.
    Dell,
    /// No OEM commands.
    Generic,
}

impl Vendor {
    /// IANA Private Enterprise Number, as Get Device ID reports it.
    pub fn manufacturer_id(self) -> u32 {
        match self {
            Vendor::Supermicro => 0x2A7C,
            Vendor::Dell => 674,
            Vendor::Generic => 0,
        }
    }

    /// Device ID string of the MC device locator record.
    pub(crate) fn controller_name(self) -> &'static str {
        match self {
            Vendor::Dell => "iDRAC",
            Vendor::Supermicro | Vendor::Generic => "BMC",
        }
    }

    fn product_id(self) -> u16 {
        match self {
            Vendor::Supermicro => 0x1B12,
            Vendor::Dell => 0x0100,
            Vendor::Generic => 0x0001,
        }
    }

    /// Firmware revision, major and minor (BCD), as Get Device ID reports it.
    fn firmware(self) -> (u8, u8) {
        match self {
            Vendor::Supermicro => (0x01, 0x73),
            Vendor::Dell => (0x03, 0x30),
            Vendor::Generic => (0x01, 0x00),
        }
    }
}

/// DCMI's defining body code in group extension requests and responses.
const DCMI_GROUP: u8 = 0xDC;

/// One BMC's fixed properties.
#[derive(Debug, Clone, PartialEq)]
pub struct BmcConfig {
    pub vendor: Vendor,
    /// Spreads (inlet temperature, load, fan speeds) and the GUID derive from it.
    pub seed: u64,
    /// Behave like iDRAC 9 firmware 3.34 and later, which refuses the manual fan
    /// commands with completion code D4h (insufficient privilege) even to an
    /// administrator; only meaningful with [`Vendor::Dell`].
    pub dell_refuses_manual_fans: bool,
}

/// Fan modes of Supermicro's `0x30 0x45` (DESIGN §8).
mod supermicro_mode {
    pub const STANDARD: u8 = 0;
    pub const FULL: u8 = 1;
    pub const OPTIMAL: u8 = 2;
    pub const HEAVY_IO: u8 = 4;
}

/// How long a Supermicro BMC holds all fans at 100 % after a fan read below its
/// lower critical threshold. Duties too low for the fans therefore give the well-known
/// cycle: fans slow below the threshold, ramp to full, recover, slow down again.
const FAN_RECOVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct FanControl {
    /// Supermicro fan mode.
    mode: u8,
    /// Duties in percent set by OEM command: Supermicro per zone (used in Full mode),
    /// Dell for all fans (used in manual mode).
    manual: [u8; ZONES],
    dell_manual: bool,
    /// Supermicro: all fans at 100 % until then.
    recovery_until: Option<Duration>,
}

/// Power statistics for DCMI Get Power Reading, since the BMC started.
#[derive(Debug)]
struct PowerStats {
    min: f64,
    max: f64,
    sum: f64,
    samples: u64,
}

/// A request as the BMC sees it after the session layer: LUN and sequence are the
/// transport's business.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub netfn: u8,
    pub cmd: u8,
    pub data: &'a [u8],
    /// The privilege level of the session the request came in on.
    pub privilege: Privilege,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub completion: CompletionCode,
    pub data: Vec<u8>,
}

impl Response {
    fn ok(data: Vec<u8>) -> Self {
        Self {
            completion: CompletionCode::OK,
            data,
        }
    }

    fn code(completion: CompletionCode) -> Self {
        Self {
            completion,
            data: Vec::new(),
        }
    }
}

impl From<SelError> for Response {
    fn from(e: SelError) -> Self {
        Response::code(match e {
            SelError::Reservation => CompletionCode::RESERVATION_CANCELLED,
            SelError::NotPresent => CompletionCode::NOT_PRESENT,
            SelError::OutOfRange => CompletionCode::PARAMETER_OUT_OF_RANGE,
            SelError::Full => CompletionCode::OUT_OF_SPACE,
        })
    }
}

/// One simulated BMC and the server it manages.
#[derive(Debug)]
pub struct Bmc {
    config: BmcConfig,
    guid: [u8; 16],
    thermal: Thermal,
    fans: FanControl,
    powered: bool,
    /// Chassis status byte 2 "last power event": bit 4 = powered on by IPMI command.
    last_power_event: u8,
    /// Get System Restart Cause code (§28.11): 0 unknown, 1 chassis control command.
    restart_cause: u8,
    sdr_reservation: u16,
    sel: Sel,
    power: PowerStats,
    temperatures_lost: bool,
    started: Duration,
    /// Time the model has been advanced to, since the Unix epoch.
    now: Duration,
}

impl Bmc {
    /// A BMC whose server is powered on and in steady state at `now` (time since the
    /// Unix epoch; the SEL clock reads it).
    pub fn new(config: BmcConfig, now: Duration) -> Self {
        let mut rng = SplitMix(config.seed ^ 0x6463_6d6f_6e2d_626d);
        let mut guid = [0u8; 16];
        guid[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
        guid[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
        let fans = FanControl {
            mode: supermicro_mode::STANDARD,
            manual: [100; ZONES],
            dell_manual: false,
            recovery_until: None,
        };
        // Start at the automatic duty for a cool machine; the curve settles it.
        let duty = [auto_duty(config.vendor, fans.mode, 0, 40.0); ZONES];
        let thermal = Thermal::new(config.seed, duty, true);
        let watts = thermal.system_watts(true);
        let mut bmc = Self {
            config,
            guid,
            thermal,
            fans,
            powered: true,
            last_power_event: 0,
            restart_cause: 0,
            sdr_reservation: 0,
            sel: Sel::new(),
            power: PowerStats {
                min: watts,
                max: watts,
                sum: 0.0,
                samples: 0,
            },
            temperatures_lost: false,
            started: now,
            now,
        };
        // Sensor-specific offset 01h of System Event: OEM system boot event.
        bmc.log(0x12, 0xFF, 0x6F, [0x01, 0xFF, 0xFF]);
        bmc
    }

    pub fn guid(&self) -> [u8; 16] {
        self.guid
    }

    /// Sets the CPU utilisation (0–1) that heats the simulated server.
    pub fn set_load(&mut self, load: f64) {
        self.thermal.load = load.clamp(0.0, 1.0);
    }

    /// Fault: temperature sensors answer "reading unavailable" (or stop doing so).
    pub fn set_temperatures_lost(&mut self, lost: bool) {
        self.temperatures_lost = lost;
    }

    /// Present fan speeds in RPM, FAN1–FAN4 then FANA.
    pub fn fan_rpm(&self) -> [f64; 5] {
        self.thermal.fan_rpm
    }

    pub fn cpu_temperature(&self) -> f64 {
        self.thermal.cpu_c
    }

    /// Runs the model up to `now`; an earlier `now` changes nothing. Gaps longer than
    /// an hour count as an hour: the model is in steady state long before.
    pub fn advance(&mut self, now: Duration) {
        let gap = now
            .saturating_sub(self.now)
            .min(Duration::from_secs(3600))
            .as_secs_f64();
        let mut done = 0.0;
        while done < gap {
            let dt = (gap - done).min(MAX_STEP_S);
            done += dt;
            let t = self.now + Duration::from_secs_f64(done);
            let duty = self.effective_duty(t);
            self.thermal.step(dt, duty, self.powered);
            self.watch_fans(t);
            let watts = self.thermal.system_watts(self.powered);
            self.power.min = self.power.min.min(watts);
            self.power.max = self.power.max.max(watts);
            self.power.sum += watts;
            self.power.samples += 1;
        }
        self.now = self.now.max(now);
    }

    /// Duty per zone in percent that the BMC drives the fans with at `t`.
    fn effective_duty(&self, t: Duration) -> [f64; ZONES] {
        if self.fans.recovery_until.is_some_and(|until| t < until) {
            return [100.0; ZONES];
        }
        let manual = match self.config.vendor {
            Vendor::Supermicro => self.fans.mode == supermicro_mode::FULL,
            Vendor::Dell => self.fans.dell_manual,
            Vendor::Generic => false,
        };
        if manual {
            return self.fans.manual.map(f64::from);
        }
        let temps = [self.thermal.cpu_c, self.thermal.peripheral_c];
        std::array::from_fn(|zone| auto_duty(self.config.vendor, self.fans.mode, zone, temps[zone]))
    }

    /// Supermicro: a fan below its lower critical threshold sends every fan to 100 %
    /// and logs the event (once per excursion).
    fn watch_fans(&mut self, t: Duration) {
        if self.config.vendor != Vendor::Supermicro || !self.powered {
            return;
        }
        let [_, lower_critical, ..] = sdr::FAN_THRESHOLDS;
        // The BMC compares raw readings: "at or below" the threshold (IPMI 2.0 §35.14).
        let raws = self.thermal.fan_rpm.map(|rpm| sdr::FAN_LINEAR.raw(rpm));
        let Some(fan) = raws.iter().position(|&raw| raw <= lower_critical) else {
            return;
        };
        if self.fans.recovery_until.is_none_or(|until| t >= until) {
            let raw = raws[fan];
            // Threshold event, lower critical going low, reading and threshold in
            // event data 2 and 3 (IPMI 2.0 §29.7).
            self.log(
                sdr::TYPE_FAN,
                0x41 + fan as u8,
                0x01,
                [0x52, raw, lower_critical],
            );
        }
        self.fans.recovery_until = Some(t + FAN_RECOVERY);
    }

    fn log(&mut self, sensor_type: u8, sensor_number: u8, event_dir_type: u8, data: [u8; 3]) {
        let event = Event {
            sensor_type,
            sensor_number,
            event_dir_type,
            data,
        };
        // A full SEL drops new events, as real BMCs do without overflow wrap.
        let _ = self.sel.add_event(event, self.sel_time());
    }

    fn sel_time(&self) -> u32 {
        u32::try_from(self.now.as_secs()).unwrap_or(u32::MAX)
    }

    /// Answers one request at `now`, after advancing the model to it.
    pub fn handle(&mut self, req: &Request<'_>, now: Duration) -> Response {
        self.advance(now);
        let needed = required_privilege(req);
        if req.privilege < needed {
            return Response::code(CompletionCode::INSUFFICIENT_PRIVILEGE);
        }
        match (req.netfn, req.cmd) {
            (netfn::APP, 0x01) => self.device_id(),
            (netfn::APP, 0x37) => Response::ok(self.guid.to_vec()),
            (netfn::APP, 0x38) => channel_auth_capabilities(req.data),
            (netfn::APP, 0x54) => channel_cipher_suites(req.data),
            (netfn::CHASSIS, 0x01) => self.chassis_status(),
            (netfn::CHASSIS, 0x02) => self.chassis_control(req.data),
            (netfn::CHASSIS, 0x07) => Response::ok(vec![self.restart_cause, 0x01]),
            (netfn::STORAGE, 0x20) => self.sdr_repository_info(),
            (netfn::STORAGE, 0x22) => {
                self.sdr_reservation = self.sdr_reservation.wrapping_add(1).max(1);
                Response::ok(self.sdr_reservation.to_le_bytes().to_vec())
            }
            (netfn::STORAGE, 0x23) => self.get_sdr(req.data),
            (netfn::STORAGE, 0x40) => Response::ok(self.sel.info()),
            (netfn::STORAGE, 0x42) => Response::ok(self.sel.reserve().to_le_bytes().to_vec()),
            (netfn::STORAGE, 0x43) => self.get_sel_entry(req.data),
            (netfn::STORAGE, 0x44) => self.add_sel_entry(req.data),
            (netfn::STORAGE, 0x47) => self.clear_sel(req.data),
            (netfn::STORAGE, 0x48) => Response::ok(self.sel_time().to_le_bytes().to_vec()),
            (netfn::SENSOR_EVENT, 0x2D) => self.sensor_reading(req.data),
            (netfn::SENSOR_EVENT, 0x27) => sensor_thresholds(req.data),
            (netfn::GROUP_EXTENSION, 0x02) => self.dcmi_power_reading(req.data),
            (netfn::OEM, cmd) => match self.config.vendor {
                Vendor::Supermicro => self.supermicro(cmd, req.data),
                Vendor::Dell => self.dell(cmd, req.data),
                Vendor::Generic => Response::code(CompletionCode::INVALID_COMMAND),
            },
            _ => Response::code(CompletionCode::INVALID_COMMAND),
        }
    }

    /// Get Device ID (IPMI 2.0 §20.1).
    fn device_id(&self) -> Response {
        let vendor = self.config.vendor;
        let (major, minor) = vendor.firmware();
        let mut d = vec![0x20, 0x01, major, minor, 0x02];
        // Additional device support: chassis, IPMB event generator and receiver, FRU,
        // SEL, SDR repository, sensor device.
        d.push(0xBF);
        d.extend_from_slice(&vendor.manufacturer_id().to_le_bytes()[..3]);
        d.extend_from_slice(&vendor.product_id().to_le_bytes());
        d.extend_from_slice(&[0, 0, 0, 0]);
        Response::ok(d)
    }

    /// Get Chassis Status (IPMI 2.0 §28.2).
    fn chassis_status(&self) -> Response {
        // Byte 1: power on, restore policy "previous state" (01b in bits 6:5).
        let current = 0x20 | u8::from(self.powered);
        Response::ok(vec![current, self.last_power_event, 0x00])
    }

    /// Chassis Control (IPMI 2.0 §28.3): power state changes take effect at once.
    fn chassis_control(&mut self, data: &[u8]) -> Response {
        let [action] = data else {
            return Response::code(CompletionCode::DATA_LENGTH_INVALID);
        };
        // Power Unit sensor-specific offsets (Table 42-3): 00h power off, 01h power
        // cycle; logged against the PSU sensor number.
        let power_unit =
            |bmc: &mut Self, offset: u8| bmc.log(0x09, 0xC8, 0x6F, [offset, 0xFF, 0xFF]);
        match action {
            0x00 | 0x05 => {
                self.powered = false;
                power_unit(self, 0x00);
            }
            0x01 => {
                self.powered = true;
                self.last_power_event = 0x10;
                self.restart_cause = 0x01;
            }
            0x02 | 0x03 => {
                self.powered = true;
                self.last_power_event = 0x10;
                self.restart_cause = 0x01;
                power_unit(self, 0x01);
            }
            0x04 => {}
            _ => return Response::code(CompletionCode::INVALID_DATA_FIELD),
        }
        Response::ok(Vec::new())
    }

    /// Get SDR Repository Info (IPMI 2.0 §33.9).
    fn sdr_repository_info(&self) -> Response {
        let repo = sdr::repository(self.config.vendor);
        let mut d = vec![sdr::SDR_VERSION];
        d.extend_from_slice(&(repo.records.len() as u16).to_le_bytes());
        d.extend_from_slice(&[0x00, 0x00]); // free space: none (read-only repository)
        let started = u32::try_from(self.started.as_secs()).unwrap_or(u32::MAX);
        d.extend_from_slice(&started.to_le_bytes()); // most recent addition
        d.extend_from_slice(&0u32.to_le_bytes()); // most recent erase
        d.push(0x02); // Reserve SDR Repository supported
        Response::ok(d)
    }

    /// Get SDR (IPMI 2.0 §33.12): partial reads need the current reservation.
    fn get_sdr(&self, data: &[u8]) -> Response {
        let &[r0, r1, i0, i1, offset, len] = data else {
            return Response::code(CompletionCode::DATA_LENGTH_INVALID);
        };
        let reservation = u16::from_le_bytes([r0, r1]);
        if offset != 0 && (reservation == 0 || reservation != self.sdr_reservation) {
            return Response::code(CompletionCode::RESERVATION_CANCELLED);
        }
        let repo = sdr::repository(self.config.vendor);
        let Some((record, next)) = repo.get(u16::from_le_bytes([i0, i1])) else {
            return Response::code(CompletionCode::NOT_PRESENT);
        };
        let start = usize::from(offset);
        if start > record.len() {
            return Response::code(CompletionCode::PARAMETER_OUT_OF_RANGE);
        }
        let end = if len == 0xFF {
            record.len()
        } else {
            (start + usize::from(len)).min(record.len())
        };
        let mut d = next.to_le_bytes().to_vec();
        d.extend_from_slice(&record[start..end]);
        Response::ok(d)
    }

    fn get_sel_entry(&self, data: &[u8]) -> Response {
        let &[r0, r1, i0, i1, offset, len] = data else {
            return Response::code(CompletionCode::DATA_LENGTH_INVALID);
        };
        let reservation = u16::from_le_bytes([r0, r1]);
        match self
            .sel
            .get(reservation, u16::from_le_bytes([i0, i1]), offset, len)
        {
            Ok(d) => Response::ok(d),
            Err(e) => e.into(),
        }
    }

    fn add_sel_entry(&mut self, data: &[u8]) -> Response {
        let Ok(record) = <[u8; 16]>::try_from(data) else {
            return Response::code(CompletionCode::DATA_LENGTH_INVALID);
        };
        match self.sel.add_record(record, self.sel_time()) {
            Ok(id) => Response::ok(id.to_le_bytes().to_vec()),
            Err(e) => e.into(),
        }
    }

    /// Clear SEL (IPMI 2.0 §31.9): reservation, "CLR", then AAh to erase or 00h for
    /// the status; erasure is instant, so the status is always "completed".
    fn clear_sel(&mut self, data: &[u8]) -> Response {
        let &[r0, r1, b'C', b'L', b'R', action] = data else {
            return Response::code(if data.len() == 6 {
                CompletionCode::INVALID_DATA_FIELD
            } else {
                CompletionCode::DATA_LENGTH_INVALID
            });
        };
        let reservation = u16::from_le_bytes([r0, r1]);
        let result = match action {
            0xAA => self.sel.clear(reservation, self.sel_time()),
            0x00 if self.sel.is_reserved(reservation) => Ok(()),
            0x00 => Err(SelError::Reservation),
            _ => return Response::code(CompletionCode::INVALID_DATA_FIELD),
        };
        match result {
            Ok(()) => Response::ok(vec![0x01]),
            Err(e) => e.into(),
        }
    }

    /// The physical value of a threshold sensor, or `None` when it has no reading.
    fn value(&self, quantity: Quantity) -> Option<f64> {
        let t = &self.thermal;
        let temperature = |c: f64| (!self.temperatures_lost).then_some(c);
        match quantity {
            Quantity::CpuTemp if !self.powered => None,
            Quantity::CpuTemp => temperature(t.cpu_c),
            Quantity::SystemTemp => temperature(t.system_c),
            Quantity::PeripheralTemp => temperature(t.peripheral_c),
            Quantity::InletTemp => temperature(t.inlet_c),
            Quantity::Fan(_) if !self.powered => None,
            Quantity::Fan(i) => t.fan_rpm.get(i).copied(),
            // Rails sit a little off nominal, by board.
            Quantity::Rail12V => Some(12.0 + self.rail_offset(0) * 0.12),
            Quantity::Rail5V => Some(5.0 + self.rail_offset(1) * 0.05),
            Quantity::Rail3V3 => Some(3.3 + self.rail_offset(2) * 0.033),
            Quantity::PsuStatus | Quantity::ChassisIntrusion => None,
        }
    }

    /// A fixed per-board deviation in [-1, 1] for rail `i`.
    fn rail_offset(&self, i: usize) -> f64 {
        f64::from(self.guid[i]) / 127.5 - 1.0
    }

    /// Get Sensor Reading (IPMI 2.0 §35.14).
    fn sensor_reading(&self, data: &[u8]) -> Response {
        let [number] = data else {
            return Response::code(CompletionCode::DATA_LENGTH_INVALID);
        };
        let Some(def) = sdr::sensor(*number) else {
            return Response::code(CompletionCode::NOT_PRESENT);
        };
        // Byte 2: event messages and scanning enabled; bit 5 "reading unavailable".
        const ENABLED: u8 = 0xC0;
        const UNAVAILABLE: u8 = 0x20;
        match def.reading {
            Reading::Threshold {
                linear, thresholds, ..
            } => match self.value(def.quantity) {
                Some(v) => {
                    let raw = linear.raw(v);
                    let [lnc, lc, lnr, unc, uc, unr] = thresholds;
                    let status = u8::from(raw <= lnc)
                        | u8::from(raw <= lc) << 1
                        | u8::from(raw <= lnr) << 2
                        | u8::from(raw >= unc) << 3
                        | u8::from(raw >= uc) << 4
                        | u8::from(raw >= unr) << 5;
                    Response::ok(vec![raw, ENABLED, status, 0x80])
                }
                None => Response::ok(vec![0, ENABLED | UNAVAILABLE, 0, 0x80]),
            },
            Reading::Discrete { .. } => {
                let states = match def.quantity {
                    Quantity::PsuStatus => 0x01, // presence detected
                    _ => 0x00,
                };
                Response::ok(vec![0, ENABLED, states, 0x80])
            }
        }
    }

    /// DCMI Get Power Reading, mode 01h "system power statistics" (DCMI 1.5 §6.6.1).
    fn dcmi_power_reading(&self, data: &[u8]) -> Response {
        let &[DCMI_GROUP, mode, _, _] = data else {
            return Response::code(if data.len() == 4 {
                CompletionCode::INVALID_DATA_FIELD
            } else {
                CompletionCode::DATA_LENGTH_INVALID
            });
        };
        if mode != 0x01 {
            return Response::code(CompletionCode::INVALID_DATA_FIELD);
        }
        let watts = |w: f64| (w.round().clamp(0.0, 65535.0) as u16).to_le_bytes();
        let current = self.thermal.system_watts(self.powered);
        let average = if self.power.samples == 0 {
            current
        } else {
            self.power.sum / self.power.samples as f64
        };
        let mut d = vec![DCMI_GROUP];
        d.extend_from_slice(&watts(current));
        d.extend_from_slice(&watts(self.power.min.min(current)));
        d.extend_from_slice(&watts(self.power.max.max(current)));
        d.extend_from_slice(&watts(average));
        d.extend_from_slice(&self.sel_time().to_le_bytes());
        let period_ms = self.now.saturating_sub(self.started).as_millis();
        d.extend_from_slice(&u32::try_from(period_ms).unwrap_or(u32::MAX).to_le_bytes());
        d.push(0x40); // power measurement active
        Response::ok(d)
    }

    /// Supermicro OEM fan commands (DESIGN §8). Set commands must carry exactly the
    /// documented bytes: a trailing extra byte is refused with C7h so that a client
    /// bug such as the stray byte in `0x30 0x70 0x66 0x01 0x00 0x00 0x18` shows up.
    fn supermicro(&mut self, cmd: u8, data: &[u8]) -> Response {
        match (cmd, data) {
            (0x45, [0x00]) => Response::ok(vec![self.fans.mode]),
            (0x45, [0x01, mode]) => {
                if ![
                    supermicro_mode::STANDARD,
                    supermicro_mode::FULL,
                    supermicro_mode::OPTIMAL,
                    supermicro_mode::HEAVY_IO,
                ]
                .contains(mode)
                {
                    return Response::code(CompletionCode::INVALID_DATA_FIELD);
                }
                if *mode == supermicro_mode::FULL {
                    // Entering Full mode runs every zone at 100 % until a duty is set.
                    self.fans.manual = [100; ZONES];
                }
                self.fans.mode = *mode;
                Response::ok(Vec::new())
            }
            (0x45, [0x00 | 0x01, ..]) => Response::code(CompletionCode::DATA_LENGTH_INVALID),
            (0x70, [0x66, 0x00, zone]) => {
                let Some(&manual) = self.fans.manual.get(usize::from(*zone)) else {
                    return Response::code(CompletionCode::PARAMETER_OUT_OF_RANGE);
                };
                let duty = if self.fans.mode == supermicro_mode::FULL {
                    manual
                } else {
                    self.effective_duty(self.now)[usize::from(*zone)].round() as u8
                };
                Response::ok(vec![duty])
            }
            (0x70, [0x66, 0x01, zone, duty]) => {
                if *duty > 100 {
                    return Response::code(CompletionCode::PARAMETER_OUT_OF_RANGE);
                }
                let Some(slot) = self.fans.manual.get_mut(usize::from(*zone)) else {
                    return Response::code(CompletionCode::PARAMETER_OUT_OF_RANGE);
                };
                // Accepted in every mode, as the boards do; only Full mode uses it.
                *slot = *duty;
                Response::ok(Vec::new())
            }
            (0x70, [0x66, ..]) => Response::code(CompletionCode::DATA_LENGTH_INVALID),
            _ => Response::code(CompletionCode::INVALID_COMMAND),
        }
    }

    /// Dell iDRAC OEM fan commands (DESIGN §8).
    fn dell(&mut self, cmd: u8, data: &[u8]) -> Response {
        if cmd != 0x30 {
            return Response::code(CompletionCode::INVALID_COMMAND);
        }
        let refused = self.config.dell_refuses_manual_fans;
        match data {
            [0x01, 0x00 | 0x01] if refused => {
                Response::code(CompletionCode::INSUFFICIENT_PRIVILEGE)
            }
            [0x01, setting @ (0x00 | 0x01)] => {
                self.fans.dell_manual = *setting == 0x00;
                Response::ok(Vec::new())
            }
            [0x02, 0xFF, _] if refused => Response::code(CompletionCode::INSUFFICIENT_PRIVILEGE),
            [0x02, 0xFF, duty] if *duty <= 100 => {
                // Kept in automatic mode too; used once manual mode is on.
                self.fans.manual = [*duty; ZONES];
                Response::ok(Vec::new())
            }
            [0x01 | 0x02, ..] => Response::code(CompletionCode::INVALID_DATA_FIELD),
            _ => Response::code(CompletionCode::INVALID_COMMAND),
        }
    }
}

/// The automatic fan curve of a vendor's firmware: a floor duty, then 2.5 % per °C
/// above a start temperature. Zone 0 follows the CPU, zone 1 the peripheral sensor.
fn auto_duty(vendor: Vendor, mode: u8, zone: usize, temperature: f64) -> f64 {
    let (floor, start) = match (vendor, mode, zone) {
        (Vendor::Supermicro, supermicro_mode::OPTIMAL, _) => (30.0, 45.0),
        (Vendor::Supermicro, supermicro_mode::HEAVY_IO, 1) => (75.0, 45.0),
        (Vendor::Supermicro, _, _) => (50.0, 50.0),
        (Vendor::Dell | Vendor::Generic, _, _) => (20.0, 45.0),
    };
    (floor + (temperature - start) * 2.5).clamp(floor, 100.0)
}

/// Commands that change the machine need Operator; reading needs User. Session-less
/// discovery commands are open to everyone (IPMI 2.0 Appendix G).
fn required_privilege(req: &Request<'_>) -> Privilege {
    let changes = match (req.netfn, req.cmd) {
        (netfn::CHASSIS, 0x02) => true,
        (netfn::STORAGE, 0x44 | 0x47) => true,
        // OEM fan commands: the "set" forms.
        (netfn::OEM, 0x45) => req.data.first() == Some(&0x01),
        (netfn::OEM, 0x70) => req.data.get(1) == Some(&0x01),
        (netfn::OEM, 0x30) => true,
        _ => false,
    };
    match (req.netfn, req.cmd) {
        _ if changes => Privilege::Operator,
        (netfn::APP, 0x37 | 0x38 | 0x54) => Privilege::Callback,
        _ => Privilege::User,
    }
}

/// Get Channel Authentication Capabilities (IPMI 2.0 §22.13), for the LAN channel:
/// IPMI 2.0 (RMCP+) only, non-null user names.
fn channel_auth_capabilities(data: &[u8]) -> Response {
    let [channel, _privilege] = data else {
        return Response::code(CompletionCode::DATA_LENGTH_INVALID);
    };
    if !matches!(channel & 0x0F, 0x01 | 0x0E) {
        return Response::code(CompletionCode::INVALID_DATA_FIELD);
    }
    // Bit 7 of the request asks for the IPMI 2.0 extended data.
    let extended = channel & 0x80 != 0;
    Response::ok(vec![
        0x01,
        if extended { 0x80 } else { 0x00 },
        0x04, // non-null user names enabled; per-message and user-level auth on
        0x02, // IPMI 2.0 connections supported
        0,
        0,
        0, // OEM ID
        0, // OEM auxiliary data
    ])
}

/// Cipher suite records of Get Channel Cipher Suites (IPMI 2.0 §22.15, Table 22-19):
/// suite 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) and suite 17
/// (RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128).
const CIPHER_SUITE_RECORDS: [u8; 10] = [0xC0, 0x03, 0x01, 0x41, 0x81, 0xC0, 0x11, 0x03, 0x44, 0x81];

fn channel_cipher_suites(data: &[u8]) -> Response {
    let [channel, payload_type, index] = data else {
        return Response::code(CompletionCode::DATA_LENGTH_INVALID);
    };
    if !matches!(channel & 0x0F, 0x01 | 0x0E) || *payload_type != 0 {
        return Response::code(CompletionCode::INVALID_DATA_FIELD);
    }
    // 16 bytes of record data per list index.
    let start = (usize::from(index & 0x3F) * 16).min(CIPHER_SUITE_RECORDS.len());
    let end = (start + 16).min(CIPHER_SUITE_RECORDS.len());
    let mut d = vec![0x01];
    d.extend_from_slice(&CIPHER_SUITE_RECORDS[start..end]);
    Response::ok(d)
}

/// Get Sensor Thresholds (IPMI 2.0 §35.9).
fn sensor_thresholds(data: &[u8]) -> Response {
    let [number] = data else {
        return Response::code(CompletionCode::DATA_LENGTH_INVALID);
    };
    match sdr::sensor(*number).map(|d| d.reading) {
        Some(Reading::Threshold { thresholds, .. }) => {
            let mut d = vec![0x3F];
            d.extend_from_slice(&thresholds);
            Response::ok(d)
        }
        Some(Reading::Discrete { .. }) => Response::code(CompletionCode::INVALID_COMMAND),
        None => Response::code(CompletionCode::NOT_PRESENT),
    }
}

#[cfg(test)]
mod tests;
