//! RMCP+ session packets for either end (IPMI 2.0 §13.6, §13.28.4, §13.29, §6.12.13):
//! [`seal`] encrypts a payload and appends the integrity trailer, [`open`] checks the
//! trailer and decrypts, [`SequenceNumbers`] numbers outgoing packets and
//! [`ReplayWindow`] refuses replayed or stale incoming ones.

use crate::CodecError;
use crate::crypto::{SessionKeys, same_mac};
use crate::packet::{
    self, NEXT_HEADER, Packet, PayloadType, RMCP_HEADER_LEN, SessionHeaderV20, SessionV20,
};

/// A datagram outside any session (session ID and sequence 0, neither encrypted nor
/// authenticated): Open Session and RAKP messages.
pub fn unauthenticated(payload_type: PayloadType, payload: &[u8]) -> Vec<u8> {
    packet::encode(&Packet::V20(SessionV20 {
        header: SessionHeaderV20 {
            payload_type,
            encrypted: false,
            authenticated: false,
            session_id: 0,
            sequence: 0,
        },
        payload: payload.to_vec(),
        trailer: Vec::new(),
    }))
}

/// An encrypted, authenticated datagram of an established session. `session_id` is the
/// receiver's ID; `iv` must be fresh random bytes for each packet (§13.29).
pub fn seal(
    keys: &SessionKeys,
    payload_type: PayloadType,
    session_id: u32,
    sequence: u32,
    payload: &[u8],
    iv: [u8; 16],
) -> Vec<u8> {
    let encrypted = keys.encrypt(iv, payload);
    let header = SessionHeaderV20 {
        payload_type,
        encrypted: true,
        authenticated: true,
        session_id,
        sequence,
    };
    let mut out = packet::encode(&Packet::V20(SessionV20 {
        header,
        payload: encrypted,
        trailer: Vec::new(),
    }));
    // Integrity pad: FFh bytes so that AuthType through Next Header is a whole number
    // of 4-byte words (§13.6, Table 13-8).
    let covered = out.len() - RMCP_HEADER_LEN + 2;
    let pad = (4 - covered % 4) % 4;
    out.extend(std::iter::repeat_n(0xFF, pad));
    out.push(pad as u8);
    out.push(NEXT_HEADER);
    let code = keys.auth_code(&out[RMCP_HEADER_LEN..]);
    out.extend_from_slice(&code);
    out
}

/// A payload received in an established session, authenticated and decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub header: SessionHeaderV20,
    pub payload: Vec<u8>,
}

/// Checks the AuthCode of an RMCP+ datagram with the session's K1 and decrypts its
/// payload with K2. Packets that are not authenticated are refused: both supported
/// suites authenticate every packet of a session.
pub fn open(keys: &SessionKeys, datagram: &[u8]) -> Result<Opened, CodecError> {
    let Packet::V20(p) = packet::decode(datagram)? else {
        return Err(CodecError::Field {
            what: "session packet format (not RMCP+)",
            value: 0,
        });
    };
    if !p.header.authenticated {
        return Err(CodecError::Integrity);
    }
    let code_len = keys.suite.auth_code_len();
    let t = &p.trailer;
    if t.len() < code_len + 2 {
        return Err(CodecError::Truncated {
            what: "RMCP+ session trailer",
            need: code_len + 2,
            got: t.len(),
        });
    }
    let next_header = t[t.len() - code_len - 1];
    let pad_len = t[t.len() - code_len - 2];
    if next_header != NEXT_HEADER || usize::from(pad_len) != t.len() - code_len - 2 {
        return Err(CodecError::Field {
            what: "RMCP+ session trailer pad length",
            value: pad_len.into(),
        });
    }
    let (covered, code) =
        datagram[RMCP_HEADER_LEN..].split_at(datagram.len() - RMCP_HEADER_LEN - code_len);
    if !same_mac(&keys.auth_code(covered), code) {
        return Err(CodecError::Integrity);
    }
    let payload = if p.header.encrypted {
        keys.decrypt(&p.payload)?
    } else {
        p.payload
    };
    Ok(Opened {
        header: p.header,
        payload,
    })
}

/// Outgoing session sequence numbers: start at 1, never 0 (0 marks packets outside a
/// session, §6.12.13), wrap from FFFFFFFFh to 1.
#[derive(Debug, Clone, Default)]
pub struct SequenceNumbers {
    last: u32,
}

impl SequenceNumbers {
    /// The number for the next outgoing packet.
    pub fn advance(&mut self) -> u32 {
        self.last = self.last.wrapping_add(1).max(1);
        self.last
    }
}

/// Incoming sequence numbers accepted so far (§6.12.13): a sliding window that takes
/// up to [`ReplayWindow::AHEAD`] numbers ahead of the highest seen and up to
/// [`ReplayWindow::BEHIND`] behind it, each number once. Zero is never accepted.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    highest: u32,
    /// Bit i set: `highest - i` was received.
    seen: u32,
}

impl ReplayWindow {
    pub const AHEAD: u32 = 15;
    pub const BEHIND: u32 = 16;

    /// Records `seq` and says whether the packet should be processed.
    pub fn accept(&mut self, seq: u32) -> bool {
        if seq == 0 {
            return false;
        }
        if self.highest == 0 {
            self.highest = seq;
            self.seen = 1;
            return true;
        }
        let ahead = seq.wrapping_sub(self.highest);
        if (1..=Self::AHEAD).contains(&ahead) {
            self.seen = self.seen.checked_shl(ahead).unwrap_or(0) | 1;
            self.highest = seq;
            return true;
        }
        let behind = self.highest.wrapping_sub(seq);
        // BEHIND < 32, so the bit fits in `seen`.
        if behind <= Self::BEHIND {
            let bit = 1u32 << behind;
            if self.seen & bit == 0 {
                self.seen |= bit;
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::CipherSuite;
    use proptest::prelude::*;

    fn keys(suite: CipherSuite) -> SessionKeys {
        SessionKeys::derive(suite, b"session integrity key")
    }

    #[test]
    fn sealed_packets_open_with_the_same_keys_only() {
        for suite in [CipherSuite::Suite3, CipherSuite::Suite17] {
            let k = keys(suite);
            let d = seal(&k, PayloadType::Ipmi, 0x1234, 7, b"payload", [3; 16]);
            // AuthType through Next Header is a whole number of words.
            assert_eq!((d.len() - 4 - suite.auth_code_len()) % 4, 0);
            let opened = open(&k, &d).expect("opens");
            assert_eq!(opened.payload, b"payload");
            assert_eq!(
                (opened.header.session_id, opened.header.sequence),
                (0x1234, 7)
            );
            let other = SessionKeys::derive(suite, b"another key");
            assert_eq!(open(&other, &d), Err(CodecError::Integrity));
            let mut tampered = d.clone();
            tampered[10] ^= 1;
            assert_eq!(open(&k, &tampered), Err(CodecError::Integrity));
        }
    }

    #[test]
    fn unauthenticated_packets_are_refused_in_a_session() {
        let d = unauthenticated(PayloadType::Ipmi, b"x");
        assert_eq!(
            open(&keys(CipherSuite::Suite3), &d),
            Err(CodecError::Integrity)
        );
    }

    #[test]
    fn sequence_numbers_skip_zero() {
        let mut s = SequenceNumbers { last: u32::MAX - 1 };
        assert_eq!([s.advance(), s.advance(), s.advance()], [u32::MAX, 1, 2]);
    }

    fn check_window(seqs: &[u32], expect: &[bool]) {
        let mut w = ReplayWindow::default();
        let got: Vec<bool> = seqs.iter().map(|&s| w.accept(s)).collect();
        assert_eq!(got, expect, "{seqs:?}");
    }

    #[test]
    fn replay_window() {
        check_window(&[1, 2, 3], &[true, true, true]);
        check_window(&[0], &[false]);
        check_window(&[5, 5], &[true, false]);
        check_window(&[5, 3, 4, 3], &[true, true, true, false]);
        check_window(&[5, 20, 21, 36], &[true, true, true, true]);
        check_window(&[5, 21], &[true, false]);
        check_window(&[40, 24, 23], &[true, true, false]);
        check_window(&[u32::MAX, 1, u32::MAX], &[true, true, false]);
    }

    proptest! {
        #[test]
        fn seal_open_round_trips(seq: u32, id: u32, iv: [u8; 16],
                                 data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let k = keys(CipherSuite::Suite17);
            let opened = open(&k, &seal(&k, PayloadType::Ipmi, id, seq, &data, iv)).expect("opens");
            prop_assert_eq!(opened.payload, data);
        }

        #[test]
        fn opening_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = open(&keys(CipherSuite::Suite3), &b);
            let mut d = vec![6, 0, 0xFF, 7, 6, 0xC0];
            d.extend(&b);
            let _ = open(&keys(CipherSuite::Suite3), &d);
        }
    }
}
