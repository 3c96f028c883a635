use super::*;
use crate::packet::Packet;
use crate::sim::bmc::{BmcConfig, Vendor};

const T0: Duration = Duration::from_secs(1_700_000_000);
const CONSOLE_ID: u32 = 0xA0A1_A2A3;

fn endpoint() -> Endpoint {
    let bmc = Bmc::new(
        BmcConfig {
            vendor: Vendor::Supermicro,
            seed: 3,
            dell_refuses_manual_fans: false,
        },
        T0,
    );
    let users = vec![
        User {
            name: "admin".into(),
            password: "secret".into(),
            max_privilege: Privilege::Administrator,
        },
        User {
            name: "viewer".into(),
            password: "look".into(),
            max_privilege: Privilege::User,
        },
    ];
    Endpoint::new(bmc, users.into())
}

fn counter() -> impl FnMut(&mut [u8]) {
    let mut n = 0u8;
    move |buf: &mut [u8]| {
        for b in buf {
            n = n.wrapping_add(37);
            *b = n;
        }
    }
}

/// The console side of one session, built from the crate's console-side codecs; the
/// independent check of the same exchange is ipmitool in the e2e tests.
struct Console {
    keys: SessionKeys,
    bmc_id: u32,
    seq: u32,
    /// Flip a bit of the next datagram's AuthCode.
    tamper: bool,
}

fn payload(datagram: &[u8]) -> Vec<u8> {
    match packet::decode(datagram).unwrap() {
        Packet::V20(p) => p.payload,
        other => panic!("not RMCP+: {other:?}"),
    }
}

/// Opens a session; `Err` carries the RMCP+ status code that refused it.
fn open(
    ep: &mut Endpoint,
    suite: CipherSuite,
    user: &str,
    password: &str,
    role: u8,
) -> Result<Console, u8> {
    let mut random = counter();
    let (authentication, integrity, confidentiality) = suite.algorithms();
    let req = OpenSessionRequest {
        tag: 1,
        max_privilege: 0,
        console_session_id: CONSOLE_ID,
        authentication,
        integrity,
        confidentiality,
    };
    let datagram = session::unauthenticated(PayloadType::OpenSessionRequest, &req.encode());
    let resp =
        OpenSessionResponse::decode(&payload(&ep.handle(&datagram, T0, &mut random).unwrap()))
            .unwrap();
    if resp.status != RakpStatus::OK {
        return Err(resp.status.0);
    }
    let rakp1 = Rakp1 {
        tag: 2,
        bmc_session_id: resp.bmc_session_id,
        console_random: [0x5A; 16],
        role: 0x10 | role,
        username: user.as_bytes().to_vec(),
    };
    let datagram = session::unauthenticated(PayloadType::Rakp1, &rakp1.encode());
    let rakp2 = Rakp2::decode(&payload(&ep.handle(&datagram, T0, &mut random).unwrap())).unwrap();
    if rakp2.status != RakpStatus::OK {
        return Err(rakp2.status.0);
    }
    let exchange = RakpExchange {
        suite,
        console_session_id: CONSOLE_ID,
        bmc_session_id: resp.bmc_session_id,
        console_random: rakp1.console_random,
        bmc_random: rakp2.bmc_random,
        bmc_guid: rakp2.bmc_guid,
        role: rakp1.role,
        username: rakp1.username.clone(),
    };
    let password_ok = exchange.rakp2_auth_code(password.as_bytes()) == rakp2.auth_code;
    let rakp3 = Rakp3 {
        tag: 3,
        status: RakpStatus::OK,
        bmc_session_id: resp.bmc_session_id,
        auth_code: exchange.rakp3_auth_code(password.as_bytes()),
    };
    let datagram = session::unauthenticated(PayloadType::Rakp3, &rakp3.encode());
    let rakp4 = Rakp4::decode(&payload(&ep.handle(&datagram, T0, &mut random).unwrap())).unwrap();
    if rakp4.status != RakpStatus::OK {
        assert!(!password_ok, "BMC refused a console that verified RAKP 2");
        return Err(rakp4.status.0);
    }
    assert!(password_ok, "RAKP 2 HMAC");
    let sik = exchange.session_integrity_key(password.as_bytes());
    assert_eq!(
        rakp4.integrity_check,
        exchange.rakp4_integrity_check(&sik),
        "RAKP 4 ICV"
    );
    Ok(Console {
        keys: SessionKeys::derive(suite, &sik),
        bmc_id: resp.bmc_session_id,
        seq: 0,
        tamper: false,
    })
}

impl Console {
    /// Sends `netfn cmd data…` encrypted and returns (completion, data).
    fn send(&mut self, ep: &mut Endpoint, raw: &[u8]) -> Result<(u8, Vec<u8>), Dropped> {
        let req = msg::Request::new(raw[0], raw[1], &raw[2..]);
        let message = msg::encode_request(&msg::Addressing::console_to_bmc(1), &req);
        self.seq += 1;
        let mut datagram = session::seal(
            &self.keys,
            PayloadType::Ipmi,
            self.bmc_id,
            self.seq,
            &message,
            [0x11; 16],
        );
        if self.tamper {
            *datagram.last_mut().unwrap() ^= 1;
        }
        let reply = ep.handle(&datagram, T0 + Duration::from_secs(1), &mut counter())?;
        let opened = session::open(&self.keys, &reply).expect("AuthCode and pad verify");
        assert_eq!(opened.header.session_id, CONSOLE_ID);
        let (addr, resp) = msg::decode_response(&opened.payload).unwrap();
        assert_eq!((addr.rq_seq, resp.netfn, resp.cmd), (1, raw[0] | 1, raw[1]));
        Ok((resp.completion.0, resp.data))
    }
}

fn check(suite: CipherSuite, user: &str, password: &str, role: u8, expect: Result<(), u8>) {
    let mut ep = endpoint();
    let got = open(&mut ep, suite, user, password, role).map(|_| ());
    assert_eq!(got, expect, "{suite:?} {user}/{password} role {role}");
    assert_eq!(ep.active_sessions(), usize::from(expect.is_ok()));
}

#[test]
fn sessions_open_only_with_the_right_name_password_and_role() {
    for suite in [CipherSuite::Suite3, CipherSuite::Suite17] {
        check(suite, "admin", "secret", 4, Ok(()));
        check(
            suite,
            "admin",
            "wrong",
            4,
            Err(RakpStatus::INVALID_INTEGRITY_CHECK.0),
        );
        check(
            suite,
            "nobody",
            "secret",
            4,
            Err(RakpStatus::UNAUTHORIZED_NAME.0),
        );
        check(
            suite,
            "viewer",
            "look",
            4,
            Err(RakpStatus::UNAUTHORIZED_ROLE.0),
        );
        check(suite, "viewer", "look", 2, Ok(()));
    }
}

#[test]
fn encrypted_requests_reach_the_bmc_with_the_session_privilege() {
    for suite in [CipherSuite::Suite3, CipherSuite::Suite17] {
        let mut ep = endpoint();
        let mut console = open(&mut ep, suite, "admin", "secret", 4).unwrap();
        let (cc, id) = console.send(&mut ep, &[0x06, 0x01]).unwrap();
        assert_eq!((cc, &id[6..9]), (0, &[0x7C, 0x2A, 0x00][..]));
        // The session starts at User: writes need Set Session Privilege Level first.
        assert_eq!(
            console.send(&mut ep, &[0x30, 0x45, 0x01, 0x01]).unwrap().0,
            0xD4
        );
        assert_eq!(
            console.send(&mut ep, &[0x06, 0x3B, 0x04]).unwrap(),
            (0, vec![4])
        );
        assert_eq!(
            console.send(&mut ep, &[0x30, 0x45, 0x01, 0x01]).unwrap().0,
            0
        );
        assert_eq!(
            console.send(&mut ep, &[0x30, 0x45, 0x00]).unwrap(),
            (0, vec![1])
        );
        let id = console.bmc_id.to_le_bytes();
        assert_eq!(
            console
                .send(&mut ep, &[0x06, 0x3C, id[0], id[1], id[2], id[3]])
                .unwrap()
                .0,
            0
        );
        assert_eq!(ep.active_sessions(), 0);
        assert_eq!(
            console.send(&mut ep, &[0x06, 0x01]),
            Err(Dropped::UnknownSession(console.bmc_id))
        );
    }
}

#[test]
fn user_cannot_raise_its_privilege_past_its_limit() {
    let mut ep = endpoint();
    let mut console = open(&mut ep, CipherSuite::Suite17, "viewer", "look", 2).unwrap();
    assert_eq!(console.send(&mut ep, &[0x06, 0x3B, 0x03]).unwrap().0, 0x81);
}

#[test]
fn replayed_and_tampered_datagrams_are_dropped() {
    let mut ep = endpoint();
    let mut console = open(&mut ep, CipherSuite::Suite3, "admin", "secret", 4).unwrap();
    for _ in 0..20 {
        console.send(&mut ep, &[0x06, 0x01]).unwrap();
    }
    console.seq = 2;
    assert_eq!(
        console.send(&mut ep, &[0x06, 0x01]),
        Err(Dropped::Sequence(console.bmc_id, 3))
    );
    console.seq = 40;
    console.tamper = true;
    assert_eq!(
        console.send(&mut ep, &[0x06, 0x01]).map(|_| ()),
        Err(Dropped::Refused(console.bmc_id, CodecError::Integrity))
    );
}

#[test]
fn sessions_expire_when_idle() {
    let mut ep = endpoint();
    open(&mut ep, CipherSuite::Suite3, "admin", "secret", 4).unwrap();
    assert_eq!(ep.active_sessions(), 1);
    let ping = [
        0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x80, 0x07, 0x00, 0x00,
    ];
    let pong = ep
        .handle(&ping, T0 + SESSION_TIMEOUT, &mut counter())
        .unwrap();
    assert_eq!((pong[8], pong[9], pong[16]), (0x40, 0x07, 0x00));
    assert_eq!(ep.active_sessions(), 0);
}

#[test]
fn credentials_fault_refuses_every_user() {
    let mut ep = endpoint();
    ep.set_reject_credentials(true);
    assert_eq!(
        open(&mut ep, CipherSuite::Suite3, "admin", "secret", 4).map(|_| ()),
        Err(RakpStatus::UNAUTHORIZED_NAME.0)
    );
}

#[test]
fn ipmi15_discovery_is_answered_without_a_session() {
    let mut ep = endpoint();
    // Get Channel Authentication Capabilities, channel E "this channel", v2 data.
    let mut message = vec![0x20, 0x18];
    message.push(msg::checksum(&message));
    message.extend_from_slice(&[0x81, 0x00, 0x38, 0x8E, 0x04]);
    message.push(msg::checksum(&message[3..]));
    let mut datagram = vec![0x06, 0x00, 0xFF, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
    datagram.push(message.len() as u8);
    datagram.extend_from_slice(&message);
    let reply = ep.handle(&datagram, T0, &mut counter()).unwrap();
    let m = &reply[14..];
    assert_eq!(
        (m[1], m[5], m[6], m[7], m[8]),
        (0x1C, 0x38, 0x00, 0x01, 0x80)
    );
    // Anything beyond discovery needs a session.
    let mut message = vec![0x20, 0x00 << 2];
    message.push(msg::checksum(&message));
    message.extend_from_slice(&[0x81, 0x00, 0x01]);
    message.push(msg::checksum(&message[3..]));
    let mut datagram = vec![0x06, 0x00, 0xFF, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
    datagram.push(message.len() as u8);
    datagram.extend_from_slice(&message);
    let reply = ep.handle(&datagram, T0, &mut counter()).unwrap();
    assert_eq!(reply[14 + 6], 0xD4);
}

#[test]
fn garbage_is_dropped_not_answered() {
    let mut ep = endpoint();
    for bad in [
        &[][..],
        &[0x06; 40][..],
        &[
            0x06, 0x00, 0xFF, 0x07, 0x06, 0xC0, 1, 2, 3, 4, 0, 0, 0, 0, 0xFF, 0xFF,
        ][..],
    ] {
        assert!(ep.handle(bad, T0, &mut counter()).is_err());
    }
}

#[test]
fn several_sessions_run_at_once_up_to_the_table_size() {
    let mut ep = endpoint();
    let mut consoles: Vec<Console> = (0..MAX_SESSIONS)
        .map(|_| open(&mut ep, CipherSuite::Suite17, "admin", "secret", 4).unwrap())
        .collect();
    assert_eq!(ep.active_sessions(), MAX_SESSIONS);
    for console in consoles.iter_mut().rev() {
        assert_eq!(console.send(&mut ep, &[0x06, 0x01]).unwrap().0, 0);
    }
    assert_eq!(
        open(&mut ep, CipherSuite::Suite3, "admin", "secret", 4).map(|_| ()),
        Err(INSUFFICIENT_RESOURCES.0)
    );
}
