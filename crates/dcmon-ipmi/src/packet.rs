//! UDP datagrams on port 623: the RMCP header (IPMI 2.0 §13.1.3), ASF presence ping and
//! pong (§13.2.3), the IPMI 1.5 session wrapper (§13.6, Table 13-8) and the IPMI 2.0
//! RMCP+ session header and trailer (§13.6, §13.28.4). Payloads stay bytes here:
//! [`crate::session`] authenticates and decrypts them, [`crate::msg`] and
//! [`crate::rakp`] give them meaning.

use crate::CodecError;

const RMCP_VERSION: u8 = 0x06;
/// RMCP sequence number meaning "no RMCP ACK wanted"; IPMI always uses it.
const RMCP_NO_ACK: u8 = 0xFF;
const CLASS_ASF: u8 = 0x06;
const CLASS_IPMI: u8 = 0x07;
/// IANA enterprise number of the ASF (DMTF) in ASF messages.
const ASF_IANA: u32 = 4542;
const ASF_PING: u8 = 0x80;
const ASF_PONG: u8 = 0x40;
/// Authentication type/format byte meaning "RMCP+ session header follows" (§13.6).
const AUTH_RMCP_PLUS: u8 = 0x06;
/// Next Header byte of the RMCP+ session trailer (§13.6, Table 13-8).
pub const NEXT_HEADER: u8 = 0x07;

/// ASF messages used for discovery (DSP0136 §3.2.4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asf {
    Ping {
        tag: u8,
    },
    Pong {
        tag: u8,
        /// IANA number of the responder (ASF's own, 4542, when not OEM).
        enterprise: u32,
        oem: u32,
        /// Bit 7: IPMI supported; low bits: ASF version.
        entities: u8,
        interactions: u8,
    },
}

/// IPMI 1.5 session: used by consoles only for Get Channel Authentication Capabilities
/// before an RMCP+ session exists (auth type none), and by old BMCs for everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionV15 {
    /// 0 none, 1 MD2, 2 MD5, 4 straight password, 5 OEM.
    pub auth_type: u8,
    pub sequence: u32,
    pub session_id: u32,
    /// Present whenever `auth_type` is not none.
    pub auth_code: Option<[u8; 16]>,
    pub payload: Vec<u8>,
}

/// RMCP+ payload types (IPMI 2.0 §13.27.3, Table 13-16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadType {
    Ipmi,
    Sol,
    OpenSessionRequest,
    OpenSessionResponse,
    Rakp1,
    Rakp2,
    Rakp3,
    Rakp4,
    /// Any other 6-bit code except OEM explicit (02h), which this crate does not use.
    Other(u8),
}

impl PayloadType {
    pub fn code(self) -> u8 {
        match self {
            PayloadType::Ipmi => 0x00,
            PayloadType::Sol => 0x01,
            PayloadType::OpenSessionRequest => 0x10,
            PayloadType::OpenSessionResponse => 0x11,
            PayloadType::Rakp1 => 0x12,
            PayloadType::Rakp2 => 0x13,
            PayloadType::Rakp3 => 0x14,
            PayloadType::Rakp4 => 0x15,
            PayloadType::Other(c) => c & 0x3F,
        }
    }

    fn from_code(code: u8) -> Result<Self, CodecError> {
        Ok(match code {
            0x00 => PayloadType::Ipmi,
            0x01 => PayloadType::Sol,
            0x02 => {
                return Err(CodecError::Field {
                    what: "payload type (OEM explicit not supported)",
                    value: 2,
                });
            }
            0x10 => PayloadType::OpenSessionRequest,
            0x11 => PayloadType::OpenSessionResponse,
            0x12 => PayloadType::Rakp1,
            0x13 => PayloadType::Rakp2,
            0x14 => PayloadType::Rakp3,
            0x15 => PayloadType::Rakp4,
            c => PayloadType::Other(c),
        })
    }
}

/// The RMCP+ session header (IPMI 2.0 §13.6, Table 13-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionHeaderV20 {
    pub payload_type: PayloadType,
    pub encrypted: bool,
    pub authenticated: bool,
    /// The receiver's session ID; 0 outside a session.
    pub session_id: u32,
    /// 0 outside a session.
    pub sequence: u32,
}

/// An RMCP+ packet with its payload as sent (possibly encrypted) and the session
/// trailer (integrity pad, pad length, next header, AuthCode) as raw bytes: only the
/// session's keys tell where the AuthCode starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionV20 {
    pub header: SessionHeaderV20,
    pub payload: Vec<u8>,
    /// Empty unless `header.authenticated`.
    pub trailer: Vec<u8>,
}

/// One RMCP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Asf(Asf),
    V15(SessionV15),
    V20(SessionV20),
}

/// Length of the RMCP header; the RMCP+ AuthCode covers the datagram from here.
pub const RMCP_HEADER_LEN: usize = 4;
/// Length of the RMCP+ session header without OEM fields.
pub const SESSION_HEADER_V20_LEN: usize = 12;

fn need(bytes: &[u8], n: usize, what: &'static str) -> Result<(), CodecError> {
    if bytes.len() < n {
        Err(CodecError::Truncated {
            what,
            need: n,
            got: bytes.len(),
        })
    } else {
        Ok(())
    }
}

fn u32_le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn u32_be(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The 12-byte RMCP+ session header plus payload length, as the AuthCode covers it.
pub fn encode_header_v20(header: &SessionHeaderV20, payload_len: u16, out: &mut Vec<u8>) {
    out.push(AUTH_RMCP_PLUS);
    out.push(
        header.payload_type.code()
            | (u8::from(header.encrypted) << 7)
            | (u8::from(header.authenticated) << 6),
    );
    out.extend_from_slice(&header.session_id.to_le_bytes());
    out.extend_from_slice(&header.sequence.to_le_bytes());
    out.extend_from_slice(&payload_len.to_le_bytes());
}

pub fn encode(packet: &Packet) -> Vec<u8> {
    let class = match packet {
        Packet::Asf(_) => CLASS_ASF,
        _ => CLASS_IPMI,
    };
    let mut out = vec![RMCP_VERSION, 0, RMCP_NO_ACK, class];
    match packet {
        Packet::Asf(Asf::Ping { tag }) => {
            out.extend_from_slice(&ASF_IANA.to_be_bytes());
            out.extend_from_slice(&[ASF_PING, *tag, 0, 0]);
        }
        Packet::Asf(Asf::Pong {
            tag,
            enterprise,
            oem,
            entities,
            interactions,
        }) => {
            out.extend_from_slice(&ASF_IANA.to_be_bytes());
            out.extend_from_slice(&[ASF_PONG, *tag, 0, 16]);
            out.extend_from_slice(&enterprise.to_be_bytes());
            out.extend_from_slice(&oem.to_be_bytes());
            out.extend_from_slice(&[*entities, *interactions, 0, 0, 0, 0, 0, 0]);
        }
        Packet::V15(s) => {
            out.push(s.auth_type);
            out.extend_from_slice(&s.sequence.to_le_bytes());
            out.extend_from_slice(&s.session_id.to_le_bytes());
            if let Some(code) = &s.auth_code {
                out.extend_from_slice(code);
            }
            // The length field is one byte: longer payloads do not exist in IPMI 1.5.
            out.push(s.payload.len().min(255) as u8);
            out.extend_from_slice(&s.payload[..s.payload.len().min(255)]);
        }
        Packet::V20(s) => {
            let len = s.payload.len().min(usize::from(u16::MAX));
            encode_header_v20(&s.header, len as u16, &mut out);
            out.extend_from_slice(&s.payload[..len]);
            if s.header.authenticated {
                out.extend_from_slice(&s.trailer);
            }
        }
    }
    out
}

pub fn decode(bytes: &[u8]) -> Result<Packet, CodecError> {
    need(bytes, RMCP_HEADER_LEN, "RMCP header")?;
    if bytes[0] != RMCP_VERSION {
        return Err(CodecError::Field {
            what: "RMCP version",
            value: bytes[0].into(),
        });
    }
    let body = &bytes[RMCP_HEADER_LEN..];
    match bytes[3] {
        CLASS_ASF => decode_asf(body).map(Packet::Asf),
        CLASS_IPMI => {
            need(body, 1, "IPMI session header")?;
            // Bits 7:4 of the auth type/format byte are reserved (§13.6): IPMI 1.5
            // decoding ignores them, so the RMCP+ test must too, or 26h would decode
            // as a 1.5 session of auth type 6 and re-encode as RMCP+.
            if body[0] & 0x0F == AUTH_RMCP_PLUS {
                decode_v20(body).map(Packet::V20)
            } else {
                decode_v15(body).map(Packet::V15)
            }
        }
        class => Err(CodecError::Field {
            what: "RMCP message class",
            value: class.into(),
        }),
    }
}

fn decode_asf(b: &[u8]) -> Result<Asf, CodecError> {
    need(b, 8, "ASF message")?;
    if u32_be(b) != ASF_IANA {
        return Err(CodecError::Field {
            what: "ASF IANA enterprise number",
            value: u32_be(b),
        });
    }
    let tag = b[5];
    match b[4] {
        ASF_PING => Ok(Asf::Ping { tag }),
        ASF_PONG => {
            need(b, 8 + 16, "ASF presence pong")?;
            Ok(Asf::Pong {
                tag,
                enterprise: u32_be(&b[8..]),
                oem: u32_be(&b[12..]),
                entities: b[16],
                interactions: b[17],
            })
        }
        t => Err(CodecError::Field {
            what: "ASF message type",
            value: t.into(),
        }),
    }
}

fn decode_v15(b: &[u8]) -> Result<SessionV15, CodecError> {
    need(b, 10, "IPMI 1.5 session header")?;
    let auth_type = b[0] & 0x0F;
    let (auth_code, rest) = if auth_type == 0 {
        (None, &b[9..])
    } else {
        need(b, 26, "IPMI 1.5 session header")?;
        let mut code = [0u8; 16];
        code.copy_from_slice(&b[9..25]);
        (Some(code), &b[25..])
    };
    let len = usize::from(rest[0]);
    // A trailing legacy pad byte (IPMI 2.0 §13.6, Table 13-8) may follow; it is ignored.
    need(&rest[1..], len, "IPMI 1.5 payload")?;
    Ok(SessionV15 {
        auth_type,
        sequence: u32_le(&b[1..]),
        session_id: u32_le(&b[5..]),
        auth_code,
        payload: rest[1..1 + len].to_vec(),
    })
}

fn decode_v20(b: &[u8]) -> Result<SessionV20, CodecError> {
    need(b, SESSION_HEADER_V20_LEN, "RMCP+ session header")?;
    let header = SessionHeaderV20 {
        payload_type: PayloadType::from_code(b[1] & 0x3F)?,
        encrypted: b[1] & 0x80 != 0,
        authenticated: b[1] & 0x40 != 0,
        session_id: u32_le(&b[2..]),
        sequence: u32_le(&b[6..]),
    };
    let len = usize::from(u16::from_le_bytes([b[10], b[11]]));
    let rest = &b[SESSION_HEADER_V20_LEN..];
    need(rest, len, "RMCP+ payload")?;
    let trailer = if header.authenticated {
        rest[len..].to_vec()
    } else {
        Vec::new()
    };
    Ok(SessionV20 {
        header,
        payload: rest[..len].to_vec(),
        trailer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(packet: Packet, expect: &[u8]) {
        assert_eq!(encode(&packet), expect);
        assert_eq!(decode(expect), Ok(packet));
    }

    #[test]
    fn asf_ping_and_v15_get_channel_auth_caps_match_spec_layouts() {
        check(
            Packet::Asf(Asf::Ping { tag: 7 }),
            &[6, 0, 0xFF, 6, 0, 0, 0x11, 0xBE, 0x80, 7, 0, 0],
        );
        check(
            Packet::V15(SessionV15 {
                auth_type: 0,
                sequence: 0,
                session_id: 0,
                auth_code: None,
                payload: vec![0x20, 0x18, 0xC8],
            }),
            &[
                6, 0, 0xFF, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0x20, 0x18, 0xC8,
            ],
        );
    }

    #[test]
    fn v20_header_bits_and_little_endian_fields() {
        check(
            Packet::V20(SessionV20 {
                header: SessionHeaderV20 {
                    payload_type: PayloadType::Ipmi,
                    encrypted: true,
                    authenticated: true,
                    session_id: 0x0403_0201,
                    sequence: 5,
                },
                payload: vec![0xAA],
                trailer: vec![0xFF, 0xFF, 2, 7, 1, 2, 3],
            }),
            &[
                6, 0, 0xFF, 7, 6, 0xC0, 1, 2, 3, 4, 5, 0, 0, 0, 1, 0, 0xAA, 0xFF, 0xFF, 2, 7, 1, 2,
                3,
            ],
        );
    }

    #[test]
    fn malformed_datagrams_are_errors() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[5, 0, 0xFF, 7]).is_err());
        assert!(decode(&[6, 0, 0xFF, 9, 0]).is_err());
        // RMCP+ header claiming a longer payload than present.
        assert!(decode(&[6, 0, 0xFF, 7, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0]).is_err());
        // OEM explicit payload type.
        assert!(decode(&[6, 0, 0xFF, 7, 6, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn reserved_auth_format_bits_do_not_turn_rmcp_plus_into_ipmi_15() {
        // Found by the ipmi_packet_decode fuzz target: format byte 26h.
        let datagram = [6, 0, 0xFF, 7, 0x26, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0xAA];
        let Ok(Packet::V20(p)) = decode(&datagram) else {
            panic!("RMCP+: {:?}", decode(&datagram));
        };
        assert_eq!((p.header.session_id, &p.payload[..]), (1, &[0xAA][..]));
        assert_eq!(decode(&encode(&Packet::V20(p.clone()))), Ok(Packet::V20(p)));
    }

    fn payload_type() -> impl Strategy<Value = PayloadType> {
        prop_oneof![
            Just(PayloadType::Ipmi),
            Just(PayloadType::Sol),
            Just(PayloadType::OpenSessionRequest),
            Just(PayloadType::OpenSessionResponse),
            Just(PayloadType::Rakp1),
            Just(PayloadType::Rakp2),
            Just(PayloadType::Rakp3),
            Just(PayloadType::Rakp4),
            (0x16u8..0x40).prop_map(PayloadType::Other),
        ]
    }

    fn packet() -> impl Strategy<Value = Packet> {
        let bytes = |n| proptest::collection::vec(any::<u8>(), 0..n);
        prop_oneof![
            any::<u8>().prop_map(|tag| Packet::Asf(Asf::Ping { tag })),
            (
                any::<u8>(),
                any::<u32>(),
                any::<u32>(),
                any::<u8>(),
                any::<u8>()
            )
                .prop_map(
                    |(tag, enterprise, oem, entities, interactions)| Packet::Asf(Asf::Pong {
                        tag,
                        enterprise,
                        oem,
                        entities,
                        interactions
                    })
                ),
            (
                0u8..6,
                any::<u32>(),
                any::<u32>(),
                any::<[u8; 16]>(),
                bytes(255)
            )
                .prop_map(|(auth_type, sequence, session_id, code, payload)| {
                    Packet::V15(SessionV15 {
                        auth_type,
                        sequence,
                        session_id,
                        auth_code: (auth_type != 0).then_some(code),
                        payload,
                    })
                }),
            (
                payload_type(),
                any::<bool>(),
                any::<bool>(),
                any::<u32>(),
                any::<u32>(),
                bytes(300),
                bytes(24)
            )
                .prop_map(
                    |(
                        payload_type,
                        encrypted,
                        authenticated,
                        session_id,
                        sequence,
                        payload,
                        trailer,
                    )| {
                        Packet::V20(SessionV20 {
                            header: SessionHeaderV20 {
                                payload_type,
                                encrypted,
                                authenticated,
                                session_id,
                                sequence,
                            },
                            payload,
                            trailer: if authenticated { trailer } else { Vec::new() },
                        })
                    }
                ),
        ]
    }

    proptest! {
        #[test]
        fn packets_round_trip(p in packet()) {
            prop_assert_eq!(decode(&encode(&p)), Ok(p));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decoding_arbitrary_ipmi_class_bodies_never_panics(
            auth: u8, bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut d = vec![6, 0, 0xFF, 7, auth];
            d.extend(bytes);
            let _ = decode(&d);
        }
    }
}
