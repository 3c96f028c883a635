//! The simulated BMC's System Event Log (IPMI 2.0 §31): 16-byte records, a
//! reservation that Clear SEL requires, bounded size.

/// Records kept; beyond it Add SEL Entry answers C4h (out of space). A thousand
/// simulated BMCs keep 16 KiB each at most.
const CAPACITY: usize = 1024;
const RECORD_LEN: usize = 16;

/// A system event record (IPMI 2.0 §32.1), before the SEL assigns ID and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Event {
    pub sensor_type: u8,
    pub sensor_number: u8,
    /// Event/reading type code; bit 7 set for a deassertion.
    pub event_dir_type: u8,
    pub data: [u8; 3],
}

#[derive(Debug, Default)]
pub(crate) struct Sel {
    records: Vec<[u8; RECORD_LEN]>,
    next_id: u16,
    reservation: u16,
    last_add: u32,
    last_erase: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SelError {
    /// Completion code C5h: reservation cancelled or invalid.
    Reservation,
    /// CBh: no such record.
    NotPresent,
    /// C9h: offset beyond the record.
    OutOfRange,
    /// C4h: out of space.
    Full,
}

impl Sel {
    pub(crate) fn new() -> Self {
        Self {
            next_id: 1,
            ..Self::default()
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Get SEL Info response data (IPMI 2.0 §31.2).
    pub(crate) fn info(&self) -> Vec<u8> {
        let mut out = vec![0x51];
        out.extend_from_slice(&(self.records.len() as u16).to_le_bytes());
        let free = ((CAPACITY - self.records.len()) * RECORD_LEN).min(0xFFFE) as u16;
        out.extend_from_slice(&free.to_le_bytes());
        out.extend_from_slice(&self.last_add.to_le_bytes());
        out.extend_from_slice(&self.last_erase.to_le_bytes());
        // Reserve SEL supported; no delete, partial add or allocation info.
        out.push(0x02);
        out
    }

    /// Reserve SEL (§31.4): a new reservation cancels the previous one. Never 0000h,
    /// which callers use for "no reservation".
    pub(crate) fn reserve(&mut self) -> u16 {
        self.reservation = self.reservation.wrapping_add(1).max(1);
        self.reservation
    }

    /// Adds a system event record stamped `now`; returns its record ID.
    pub(crate) fn add_event(&mut self, event: Event, now: u32) -> Result<u16, SelError> {
        let mut r = [0u8; RECORD_LEN];
        r[2] = 0x02; // system event record
        r[7] = 0x20; // generator: the BMC (IPMB address 20h, software ID 0)
        r[9] = 0x04; // event message format revision for IPMI 2.0
        r[10] = event.sensor_type;
        r[11] = event.sensor_number;
        r[12] = event.event_dir_type;
        r[13..16].copy_from_slice(&event.data);
        self.add_record(r, now)
    }

    /// Add SEL Entry (§31.6): the SEL assigns the record ID and, for records with a
    /// timestamp (types below E0h), the time.
    pub(crate) fn add_record(
        &mut self,
        mut record: [u8; RECORD_LEN],
        now: u32,
    ) -> Result<u16, SelError> {
        if self.records.len() >= CAPACITY {
            return Err(SelError::Full);
        }
        let id = self.next_id;
        // Skip 0000h and FFFFh, which Get SEL Entry reserves for "first" and "last".
        self.next_id = match self.next_id.wrapping_add(1) {
            0xFFFF | 0 => 1,
            n => n,
        };
        record[0..2].copy_from_slice(&id.to_le_bytes());
        if record[2] < 0xE0 {
            record[3..7].copy_from_slice(&now.to_le_bytes());
        }
        self.records.push(record);
        self.last_add = now;
        Ok(id)
    }

    /// Get SEL Entry (§31.5): `id` 0000h = first, FFFFh = last; the reservation is
    /// checked only for partial reads (offset ≠ 0), as the spec allows.
    pub(crate) fn get(
        &self,
        reservation: u16,
        id: u16,
        offset: u8,
        len: u8,
    ) -> Result<Vec<u8>, SelError> {
        if offset != 0 && !self.is_reserved(reservation) {
            return Err(SelError::Reservation);
        }
        let index = match id {
            0x0000 if !self.records.is_empty() => 0,
            0xFFFF if !self.records.is_empty() => self.records.len() - 1,
            id => self
                .records
                .iter()
                .position(|r| u16::from_le_bytes([r[0], r[1]]) == id)
                .ok_or(SelError::NotPresent)?,
        };
        let record = &self.records[index];
        let next = self
            .records
            .get(index + 1)
            .map_or(0xFFFF, |r| u16::from_le_bytes([r[0], r[1]]));
        let start = usize::from(offset);
        if start > RECORD_LEN {
            return Err(SelError::OutOfRange);
        }
        let end = if len == 0xFF {
            RECORD_LEN
        } else {
            (start + usize::from(len)).min(RECORD_LEN)
        };
        let mut out = next.to_le_bytes().to_vec();
        out.extend_from_slice(&record[start..end]);
        Ok(out)
    }

    /// Clear SEL (§31.9), erasure completing at once. The reservation stays valid so
    /// that a client can poll the erasure status with it.
    pub(crate) fn clear(&mut self, reservation: u16, now: u32) -> Result<(), SelError> {
        if !self.is_reserved(reservation) {
            return Err(SelError::Reservation);
        }
        self.records.clear();
        self.last_erase = now;
        Ok(())
    }

    /// Whether `reservation` is the current one (Clear SEL's status query checks it too).
    pub(crate) fn is_reserved(&self, reservation: u16) -> bool {
        reservation != 0 && reservation == self.reservation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAN_LOW: Event = Event {
        sensor_type: 0x04,
        sensor_number: 0x41,
        event_dir_type: 0x01,
        data: [0x52, 0x04, 0x05],
    };

    fn check(
        sel: &Sel,
        reservation: u16,
        id: u16,
        offset: u8,
        len: u8,
        expect: Result<&[u8], SelError>,
    ) {
        let got = sel.get(reservation, id, offset, len);
        assert_eq!(
            got.as_deref().map_err(|e| *e),
            expect,
            "get {id:#06x} +{offset} len {len}"
        );
    }

    #[test]
    fn entries_read_whole_or_in_parts_with_a_reservation() {
        let mut sel = Sel::new();
        assert_eq!(sel.add_event(FAN_LOW, 0x1122_3344), Ok(1));
        assert_eq!(sel.add_event(FAN_LOW, 0x1122_3345), Ok(2));
        let first = [
            2, 0, // next record
            1, 0, 0x02, 0x44, 0x33, 0x22, 0x11, 0x20, 0, 0x04, 0x04, 0x41, 0x01, 0x52, 0x04, 0x05,
        ];
        check(&sel, 0, 0, 0, 0xFF, Ok(&first));
        check(&sel, 0, 1, 0, 0xFF, Ok(&first));
        check(&sel, 0, 2, 0, 2, Ok(&[0xFF, 0xFF, 2, 0]));
        check(&sel, 0, 1, 4, 2, Err(SelError::Reservation));
        let r = sel.reserve();
        check(&sel, r, 1, 14, 8, Ok(&[2, 0, 0x04, 0x05]));
        check(&sel, r, 3, 0, 0xFF, Err(SelError::NotPresent));
    }

    #[test]
    fn clear_needs_the_current_reservation() {
        let mut sel = Sel::new();
        sel.add_event(FAN_LOW, 10).unwrap();
        let old = sel.reserve();
        let new = sel.reserve();
        assert_eq!(sel.clear(old, 20), Err(SelError::Reservation));
        assert_eq!(sel.clear(0, 20), Err(SelError::Reservation));
        assert_eq!(sel.clear(new, 20), Ok(()));
        assert_eq!(sel.len(), 0);
        assert!(sel.is_reserved(new));
        check(&sel, 0, 0, 0, 0xFF, Err(SelError::NotPresent));
        assert_eq!(&sel.info()[9..13], &20u32.to_le_bytes());
    }
}
