//! System Event Log (IPMI 2.0 §31, §32): info, reservation, entry reads, clearing, and
//! the text of common events (sensor types of §42.2, Table 42-3; generic event types
//! of Table 42-2).

use super::{need, u16_le, u32_le};
use crate::CodecError;
use crate::msg::{Request, netfn};

/// Get SEL Info (§31.2).
pub fn get_info() -> Request {
    Request::new(netfn::STORAGE, 0x40, [])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SelInfo {
    pub version: u8,
    pub entries: u16,
    pub free_bytes: u16,
    pub last_add: u32,
    pub last_erase: u32,
    pub overflow: bool,
}

impl SelInfo {
    pub fn parse(d: &[u8]) -> Result<Self, CodecError> {
        need(d, 14, "Get SEL Info response")?;
        Ok(SelInfo {
            version: d[0],
            entries: u16_le(&d[1..]),
            free_bytes: u16_le(&d[3..]),
            last_add: u32_le(&d[5..]),
            last_erase: u32_le(&d[9..]),
            overflow: d[13] & 0x80 != 0,
        })
    }
}

/// Reserve SEL (§31.4); the reservation ID parses with
/// [`super::sdr::parse_reservation`].
pub fn reserve() -> Request {
    Request::new(netfn::STORAGE, 0x42, [])
}

/// Record ID of the first entry in Get SEL Entry.
pub const FIRST_ENTRY: u16 = 0x0000;
/// Next Record ID after the last entry.
pub const LAST_ENTRY: u16 = 0xFFFF;

/// Get SEL Entry (§31.5), the whole 16-byte record. Reading from offset 0 needs no
/// reservation (0000h).
pub fn get_entry(record_id: u16) -> Request {
    let [i0, i1] = record_id.to_le_bytes();
    Request::new(netfn::STORAGE, 0x43, [0, 0, i0, i1, 0, 0xFF])
}

/// Next record ID and the entry.
pub fn parse_get_entry(d: &[u8]) -> Result<(u16, SelEntry), CodecError> {
    need(d, 2 + 16, "Get SEL Entry response")?;
    Ok((u16_le(d), SelEntry::parse(&d[2..18])?))
}

/// Clear SEL (§31.9): `initiate` starts the erase, otherwise asks for its progress.
pub fn clear(reservation: u16, initiate: bool) -> Request {
    let [r0, r1] = reservation.to_le_bytes();
    let action = if initiate { 0xAA } else { 0x00 };
    Request::new(netfn::STORAGE, 0x47, [r0, r1, b'C', b'L', b'R', action])
}

/// Whether the erase has completed.
pub fn parse_clear(d: &[u8]) -> Result<bool, CodecError> {
    need(d, 1, "Clear SEL response")?;
    Ok(d[0] & 0x0F == 1)
}

/// One 16-byte SEL record (§32.1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SelEntry {
    pub record_id: u16,
    pub record_type: u8,
    /// Seconds since 1970 (values up to 20000000h count from BMC initialisation).
    /// `None` for non-timestamped OEM records.
    pub timestamp: Option<u32>,
    /// System event records (type 02h) only.
    pub event: Option<SystemEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SystemEvent {
    pub generator_id: u16,
    pub sensor_type: u8,
    pub sensor_number: u8,
    pub deassertion: bool,
    pub event_type: u8,
    pub data: [u8; 3],
}

impl SelEntry {
    pub fn parse(r: &[u8]) -> Result<Self, CodecError> {
        need(r, 16, "SEL record")?;
        let record_type = r[2];
        let timestamp = (record_type < 0xE0).then(|| u32_le(&r[3..]));
        let event = (record_type == 0x02).then(|| SystemEvent {
            generator_id: u16_le(&r[7..]),
            sensor_type: r[10],
            sensor_number: r[11],
            deassertion: r[12] & 0x80 != 0,
            event_type: r[12] & 0x7F,
            data: [r[13], r[14], r[15]],
        });
        Ok(SelEntry {
            record_id: u16_le(r),
            record_type,
            timestamp,
            event,
        })
    }
}

/// Timestamps at or below this count seconds since the BMC started (§37.1).
pub const PRE_INIT_TIMESTAMP: u32 = 0x2000_0000;

impl SystemEvent {
    /// Offset of the event within its event type (event data 1, bits 3:0).
    pub fn offset(&self) -> u8 {
        self.data[0] & 0x0F
    }

    /// The event's description, as ipmitool words it where the spec names it.
    pub fn description(&self) -> String {
        let off = self.offset();
        let named = match self.event_type {
            0x01 => THRESHOLD.get(usize::from(off)).copied(),
            0x6F => sensor_specific(self.sensor_type, off),
            t => generic(t, off),
        };
        match named {
            Some(text) => text.to_string(),
            None => format!("Event type 0x{:02x} offset 0x{:02x}", self.event_type, off),
        }
    }
}

const THRESHOLD: [&str; 12] = [
    "Lower Non-critical going low",
    "Lower Non-critical going high",
    "Lower Critical going low",
    "Lower Critical going high",
    "Lower Non-recoverable going low",
    "Lower Non-recoverable going high",
    "Upper Non-critical going low",
    "Upper Non-critical going high",
    "Upper Critical going low",
    "Upper Critical going high",
    "Upper Non-recoverable going low",
    "Upper Non-recoverable going high",
];

/// Generic discrete event types (Table 42-2), the common ones.
fn generic(event_type: u8, off: u8) -> Option<&'static str> {
    let table: &[&str] = match event_type {
        0x02 => &[
            "Transition to Idle",
            "Transition to Active",
            "Transition to Busy",
        ],
        0x03 => &["State Deasserted", "State Asserted"],
        0x04 => &[
            "Predictive Failure Deasserted",
            "Predictive Failure Asserted",
        ],
        0x05 => &["Limit Not Exceeded", "Limit Exceeded"],
        0x06 => &["Performance Met", "Performance Lags"],
        0x07 => &[
            "Transition to OK",
            "Transition to Non-critical from OK",
            "Transition to Critical from less severe",
            "Transition to Non-recoverable from less severe",
            "Transition to Non-critical from more severe",
            "Transition to Critical from Non-recoverable",
            "Transition to Non-recoverable",
            "Monitor",
            "Informational",
        ],
        0x08 => &["Device Absent", "Device Present"],
        0x09 => &["Device Disabled", "Device Enabled"],
        0x0B => &[
            "Fully Redundant",
            "Redundancy Lost",
            "Redundancy Degraded",
            "Non-Redundant: Sufficient from Redundant",
            "Non-Redundant: Sufficient from Insufficient",
            "Non-Redundant: Insufficient Resources",
            "Redundancy Degraded from Fully Redundant",
            "Redundancy Degraded from Non-Redundant",
        ],
        _ => return None,
    };
    table.get(usize::from(off)).copied()
}

/// Sensor-specific offsets (event type 6Fh) of common sensor types (Table 42-3).
fn sensor_specific(sensor_type: u8, off: u8) -> Option<&'static str> {
    let table: &[&str] = match sensor_type {
        0x05 => &[
            "General Chassis intrusion",
            "Drive Bay intrusion",
            "I/O Card area intrusion",
            "Processor area intrusion",
            "LAN Leash Lost",
            "Unauthorized dock",
            "FAN area intrusion",
        ],
        0x07 => &[
            "IERR",
            "Thermal Trip",
            "FRB1/BIST failure",
            "FRB2/Hang in POST failure",
            "FRB3/Processor startup/init failure",
            "Configuration Error",
            "SM BIOS Uncorrectable CPU-complex Error",
            "Presence detected",
            "Disabled",
            "Terminator presence detected",
            "Throttled",
        ],
        0x08 => &[
            "Presence detected",
            "Failure detected",
            "Predictive failure",
            "Power Supply AC lost",
            "AC lost or out-of-range",
            "AC out-of-range, but present",
            "Config Error",
        ],
        0x09 => &[
            "Power off/down",
            "Power cycle",
            "240VA power down",
            "Interlock power down",
            "AC lost",
            "Soft-power control failure",
            "Failure detected",
            "Predictive failure",
        ],
        0x0C => &[
            "Correctable ECC",
            "Uncorrectable ECC",
            "Parity",
            "Memory Scrub Failed",
            "Memory Device Disabled",
            "Correctable ECC logging limit reached",
            "Presence Detected",
            "Configuration Error",
            "Spare",
            "Throttled",
            "Critical Overtemperature",
        ],
        0x0D => &[
            "Drive Present",
            "Drive Fault",
            "Predictive Failure",
            "Hot Spare",
            "Parity Check In Progress",
            "In Critical Array",
            "In Failed Array",
            "Rebuild In Progress",
            "Rebuild Aborted",
        ],
        0x10 => &[
            "Correctable memory error logging disabled",
            "Event logging disabled",
            "Log area reset/cleared",
            "All event logging disabled",
            "Log full",
            "Log almost full",
        ],
        0x12 => &[
            "System Reconfigured",
            "OEM System boot event",
            "Undetermined system hardware failure",
            "Entry added to auxiliary log",
            "PEF Action",
            "Timestamp Clock Sync",
        ],
        0x13 => &[
            "NMI/Diag Interrupt",
            "Bus Timeout",
            "I/O Channel check NMI",
            "Software NMI",
            "PCI PERR",
            "PCI SERR",
            "EISA failsafe timeout",
            "Bus Correctable error",
            "Bus Uncorrectable error",
            "Fatal NMI",
            "Bus Fatal Error",
            "Bus Degraded",
        ],
        0x23 => &[
            "Timer expired",
            "Hard reset",
            "Power down",
            "Power cycle",
            "",
            "",
            "",
            "",
            "Timer interrupt",
        ],
        0x29 => &["Low", "Failed", "Presence Detected"],
        0x2A => &[
            "Session Activated",
            "Session Deactivated",
            "Invalid Username or Password",
            "Invalid password disable",
        ],
        _ => return None,
    };
    table
        .get(usize::from(off))
        .copied()
        .filter(|s| !s.is_empty())
}

/// Sensor type names (Table 42-3), as ipmitool prints them in `sel list`.
pub fn sensor_type_name(t: u8) -> &'static str {
    const NAMES: [&str; 0x2D] = [
        "Reserved",
        "Temperature",
        "Voltage",
        "Current",
        "Fan",
        "Physical Security",
        "Platform Security",
        "Processor",
        "Power Supply",
        "Power Unit",
        "Cooling Device",
        "Other",
        "Memory",
        "Drive Slot / Bay",
        "POST Memory Resize",
        "System Firmware Progress",
        "Event Logging Disabled",
        "Watchdog1",
        "System Event",
        "Critical Interrupt",
        "Button",
        "Module / Board",
        "Microcontroller",
        "Add-in Card",
        "Chassis",
        "Chip Set",
        "Other FRU",
        "Cable / Interconnect",
        "Terminator",
        "System Boot Initiated",
        "Boot Error",
        "OS Boot",
        "OS Critical Stop",
        "Slot / Connector",
        "System ACPI Power State",
        "Watchdog2",
        "Platform Alert",
        "Entity Presence",
        "Monitor ASIC",
        "LAN",
        "Management Subsys Health",
        "Battery",
        "Session Audit",
        "Version Change",
        "FRU State",
    ];
    match t {
        0xC0..=0xFF => "OEM",
        _ => NAMES.get(usize::from(t)).copied().unwrap_or("Unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(record: [u8; 16], expect: (&str, &str, bool)) {
        let e = SelEntry::parse(&record).expect("parses");
        let ev = e.event.expect("a system event");
        assert_eq!(
            (
                sensor_type_name(ev.sensor_type),
                ev.description().as_str(),
                ev.deassertion
            ),
            expect
        );
    }

    #[test]
    fn event_texts() {
        check(
            [
                1, 0, 2, 0, 0, 0, 0x60, 0x20, 0, 4, 0x01, 0x01, 0x01, 0x59, 90, 85,
            ],
            ("Temperature", "Upper Critical going high", false),
        );
        check(
            [
                2, 0, 2, 0, 0, 0, 0x60, 0x20, 0, 4, 0x08, 0x09, 0xEF, 0x01, 0xFF, 0xFF,
            ],
            ("Power Supply", "Failure detected", true),
        );
        check(
            [
                3, 0, 2, 0, 0, 0, 0x60, 0x20, 0, 4, 0x0C, 0x09, 0x6F, 0x01, 0xFF, 0xFF,
            ],
            ("Memory", "Uncorrectable ECC", false),
        );
        check(
            [
                4, 0, 2, 0, 0, 0, 0x60, 0x20, 0, 4, 0x04, 0x09, 0x21, 0x0E, 0xFF, 0xFF,
            ],
            ("Fan", "Event type 0x21 offset 0x0e", false),
        );
        let oem =
            SelEntry::parse(&[5, 0, 0xE0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).expect("parses");
        assert_eq!((oem.timestamp, oem.event), (None, None));
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_entries_never_panics(b in proptest::collection::vec(any::<u8>(), 0..20)) {
            if let Ok((_, e)) = parse_get_entry(&b) {
                if let Some(ev) = e.event { let _ = ev.description(); }
            }
            let _ = SelInfo::parse(&b);
        }
    }
}
