//! Multi-step operations over any [`Transport`]: whole SDR repository reads with
//! partial reads and reservation retries, sensor readings, SEL iteration and clearing.
//! Commands that complete with anything but 00h become [`IpmiError::Completion`].

use crate::cmd::{app, chassis, dcmi, sdr, sel, sensor};
use crate::msg::{CompletionCode, Request, Response};
use crate::transport::Transport;
use crate::{CodecError, IpmiError};
use std::time::Duration;

/// Sends `req`; its data on completion code 00h, else [`IpmiError::Completion`].
pub async fn call<T: Transport>(t: &T, req: &Request, command: &str) -> Result<Vec<u8>, IpmiError> {
    let rsp = t.send(req).await?;
    match rsp.ok() {
        Ok(_) => Ok(rsp.data),
        Err(code) => Err(IpmiError::Completion {
            host: t.host().to_string(),
            command: command.to_string(),
            code,
        }),
    }
}

fn malformed<T: Transport>(t: &T) -> impl Fn(CodecError) -> IpmiError + '_ {
    |source| IpmiError::Malformed {
        host: t.host().to_string(),
        source,
    }
}

pub async fn device_id<T: Transport>(t: &T) -> Result<app::DeviceId, IpmiError> {
    let d = call(t, &app::get_device_id(), "Get Device ID").await?;
    app::DeviceId::parse(&d).map_err(malformed(t))
}

pub async fn chassis_status<T: Transport>(t: &T) -> Result<chassis::ChassisStatus, IpmiError> {
    let d = call(t, &chassis::get_chassis_status(), "Get Chassis Status").await?;
    chassis::ChassisStatus::parse(&d).map_err(malformed(t))
}

pub async fn chassis_control<T: Transport>(
    t: &T,
    action: chassis::PowerAction,
) -> Result<(), IpmiError> {
    call(t, &chassis::chassis_control(action), "Chassis Control").await?;
    Ok(())
}

pub async fn power_reading<T: Transport>(t: &T) -> Result<dcmi::PowerReading, IpmiError> {
    let d = call(t, &dcmi::get_power_reading(), "DCMI Get Power Reading").await?;
    dcmi::PowerReading::parse(&d).map_err(malformed(t))
}

/// Tries of one record before giving up when other readers keep cancelling the
/// reservation.
const RESERVATION_RETRIES: u32 = 5;
/// More records than any BMC holds: stops a Next Record ID chain that loops.
const MAX_RECORDS: usize = 4096;

/// Every record of the SDR repository, read in [`sdr::SDR_CHUNK`]-byte parts.
pub async fn sdr_records<T: Transport>(t: &T) -> Result<Vec<sdr::SdrRecord>, IpmiError> {
    let reserve = || async {
        let d = call(t, &sdr::reserve_repository(), "Reserve SDR Repository").await?;
        sdr::parse_reservation(&d).map_err(malformed(t))
    };
    let mut reservation = reserve().await?;
    let mut records = Vec::new();
    let mut id = 0u16;
    while id != sdr::LAST_RECORD && records.len() < MAX_RECORDS {
        let mut tries = 0;
        let (next, bytes) = loop {
            match read_record(t, reservation, id).await {
                Err(e)
                    if e.completion() == Some(CompletionCode::RESERVATION_CANCELLED)
                        && tries < RESERVATION_RETRIES =>
                {
                    tries += 1;
                    reservation = reserve().await?;
                }
                other => break other?,
            }
        };
        records.push(sdr::parse_record(&bytes).map_err(malformed(t))?);
        if next == id {
            break;
        }
        id = next;
    }
    Ok(records)
}

async fn read_record<T: Transport>(
    t: &T,
    reservation: u16,
    id: u16,
) -> Result<(u16, Vec<u8>), IpmiError> {
    let header = sdr::HEADER_LEN as u8;
    let d = call(t, &sdr::get_sdr(reservation, id, 0, header), "Get SDR").await?;
    let (next, part) = sdr::parse_get_sdr(&d).map_err(malformed(t))?;
    if part.len() < sdr::HEADER_LEN {
        return Err(malformed(t)(CodecError::Truncated {
            what: "SDR record header",
            need: sdr::HEADER_LEN,
            got: part.len(),
        }));
    }
    let total = sdr::HEADER_LEN + usize::from(part[4]);
    let mut record = part[..sdr::HEADER_LEN].to_vec();
    while record.len() < total {
        let want = (total - record.len()).min(usize::from(sdr::SDR_CHUNK)) as u8;
        let offset = record.len() as u8;
        let d = call(t, &sdr::get_sdr(reservation, id, offset, want), "Get SDR").await?;
        let (_, part) = sdr::parse_get_sdr(&d).map_err(malformed(t))?;
        if part.is_empty() {
            return Err(malformed(t)(CodecError::Truncated {
                what: "SDR record",
                need: total,
                got: record.len(),
            }));
        }
        record.extend_from_slice(&part[..part.len().min(total - record.len())]);
    }
    Ok((next, record))
}

/// What one sensor shows now.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SensorValue {
    pub record: sdr::SensorRecord,
    /// Converted analog value, when the sensor has one and it is readable.
    pub value: Option<f64>,
    /// Raw reading byte, when readable.
    pub raw: Option<u8>,
    /// Discrete state bits 0–14, when readable.
    pub states: Option<u16>,
    /// "ok", "nc", "cr", "nr", or "ns" (no reading), as ipmitool shows them.
    pub status: &'static str,
}

impl SensorValue {
    /// A sensor without a reading ("ns").
    pub fn unreadable(record: &sdr::SensorRecord) -> Self {
        SensorValue {
            record: record.clone(),
            value: None,
            raw: None,
            states: None,
            status: "ns",
        }
    }

    /// What a Get Sensor Reading answer says about `record`: "ns" when it is an error,
    /// cannot be parsed, or marks the reading unavailable.
    pub fn from_response(record: &sdr::SensorRecord, rsp: &Response) -> Self {
        let reading = match rsp.ok().map(sensor::SensorReading::parse) {
            Ok(Ok(r)) if r.valid() => r,
            _ => return Self::unreadable(record),
        };
        let analog = record.is_analog();
        SensorValue {
            record: record.clone(),
            value: if analog {
                record.conversion.and_then(|c| c.convert(reading.raw))
            } else {
                None
            },
            raw: Some(reading.raw),
            states: Some(u16::from(reading.states) | (u16::from(reading.states_high) << 8)),
            status: if analog {
                reading.threshold_status().abbreviation()
            } else {
                "ok"
            },
        }
    }

    /// Whether the BMC itself owns the sensor; others need IPMB bridging, which is not
    /// done, so they are reported without a reading.
    pub fn readable_directly(record: &sdr::SensorRecord) -> bool {
        record.owner_id == crate::msg::BMC_ADDR && record.owner_lun == 0
    }
}

/// Reads every sensor record's current value. A sensor that cannot be read is
/// reported with status "ns"; only transport failures abort.
pub async fn read_sensors<T: Transport>(
    t: &T,
    records: &[sdr::SdrRecord],
) -> Result<Vec<SensorValue>, IpmiError> {
    let mut out = Vec::new();
    for r in records {
        let sdr::SdrRecord::Sensor(s) = r else {
            continue;
        };
        if !SensorValue::readable_directly(s) {
            out.push(SensorValue::unreadable(s));
            continue;
        }
        let rsp: Response = t.send(&sensor::get_sensor_reading(s.number)).await?;
        out.push(SensorValue::from_response(s, &rsp));
    }
    Ok(out)
}

pub async fn sel_info<T: Transport>(t: &T) -> Result<sel::SelInfo, IpmiError> {
    let d = call(t, &sel::get_info(), "Get SEL Info").await?;
    sel::SelInfo::parse(&d).map_err(malformed(t))
}

/// Every SEL entry, oldest first.
pub async fn sel_entries<T: Transport>(t: &T) -> Result<Vec<sel::SelEntry>, IpmiError> {
    if sel_info(t).await?.entries == 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut id = sel::FIRST_ENTRY;
    while id != sel::LAST_ENTRY && out.len() < 65536 {
        let d = call(t, &sel::get_entry(id), "Get SEL Entry").await?;
        let (next, entry) = sel::parse_get_entry(&d).map_err(malformed(t))?;
        out.push(entry);
        if next == id {
            break;
        }
        id = next;
    }
    Ok(out)
}

/// Clears the SEL (reserve, initiate with 'CLR', poll until the erase completes).
pub async fn sel_clear<T: Transport>(t: &T) -> Result<(), IpmiError> {
    let d = call(t, &sel::reserve(), "Reserve SEL").await?;
    let reservation = sdr::parse_reservation(&d).map_err(malformed(t))?;
    let d = call(t, &sel::clear(reservation, true), "Clear SEL").await?;
    let mut done = sel::parse_clear(&d).map_err(malformed(t))?;
    for _ in 0..50 {
        if done {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let d = call(t, &sel::clear(reservation, false), "Clear SEL (status)").await?;
        done = sel::parse_clear(&d).map_err(malformed(t))?;
    }
    if done {
        Ok(())
    } else {
        Err(IpmiError::Unexpected {
            host: t.host().to_string(),
            command: "Clear SEL".into(),
            detail: "erase still in progress after 5 s".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// Answers requests from a script and records what was asked.
    struct Scripted {
        answers: Mutex<VecDeque<(u8, Vec<u8>)>>,
        asked: Mutex<Vec<Request>>,
    }

    impl Scripted {
        fn new(answers: &[(u8, &[u8])]) -> Self {
            Scripted {
                answers: Mutex::new(answers.iter().map(|(c, d)| (*c, d.to_vec())).collect()),
                asked: Mutex::new(Vec::new()),
            }
        }
    }

    impl Transport for Scripted {
        async fn send(&self, req: &Request) -> Result<Response, IpmiError> {
            self.asked.lock().expect("not poisoned").push(req.clone());
            let (code, data) = self
                .answers
                .lock()
                .expect("not poisoned")
                .pop_front()
                .expect("script long enough");
            Ok(Response::to(req, CompletionCode(code), data))
        }

        fn host(&self) -> &str {
            "scripted"
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn sdr_read_retries_a_record_when_the_reservation_is_cancelled() {
        // One compact record of 5 + 35 bytes: header, then 16 + 16 + 3 bytes.
        let mut record = vec![0x01, 0x00, 0x51, 0x02, 35];
        record.extend([0u8; 35]);
        record[31] = 0xC3;
        record[32..35].copy_from_slice(b"PS1");
        let with_next = |part: &[u8]| {
            let mut v = vec![0xFF, 0xFF];
            v.extend_from_slice(part);
            v
        };
        let header = with_next(&record[..5]);
        let p1 = with_next(&record[5..21]);
        let p2 = with_next(&record[21..37]);
        let p3 = with_next(&record[37..40]);
        let t = Scripted::new(&[
            (0, &[1, 0]),
            (0, &header),
            (0xC5, &[]),
            (0, &[2, 0]),
            (0, &header),
            (0, &p1),
            (0, &p2),
            (0, &p3),
        ]);
        let records = block_on(sdr_records(&t)).expect("reads");
        let [sdr::SdrRecord::Sensor(s)] = records.as_slice() else {
            panic!("one sensor record: {records:?}");
        };
        assert_eq!(s.name, "PS1");
        let asked = t.asked.lock().expect("not poisoned");
        // The retry uses the new reservation 0002h.
        assert_eq!(asked[4].data[..2], [2, 0]);
        assert_eq!(asked[7].data[4..], [37, 3]);
    }

    #[test]
    fn completion_codes_become_errors_naming_the_command() {
        let t = Scripted::new(&[(0xD4, &[])]);
        let e = block_on(chassis_control(&t, chassis::PowerAction::Off)).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "scripted: Chassis Control: insufficient privilege level (0xD4)"
        );
    }

    #[test]
    fn sel_clear_polls_until_done() {
        let t = Scripted::new(&[(0, &[7, 0]), (0, &[0]), (0, &[1])]);
        block_on(sel_clear(&t)).expect("clears");
        let asked = t.asked.lock().expect("not poisoned");
        assert_eq!(asked[1].data, [7, 0, b'C', b'L', b'R', 0xAA]);
        assert_eq!(asked[2].data[5], 0);
    }
}
