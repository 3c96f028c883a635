//! The BMC simulator's receiving side (`dcmon bmc-sim`): every datagram it gets comes
//! from the network. After a real RMCP+ handshake (cipher suite 3 or 17, built with the
//! crate's own console-side codecs), the input is cut into messages of
//! `[kind, length, bytes…]`; each goes to the endpoint as a raw datagram (RMCP, ASF,
//! IPMI 1.5, Open Session, RAKP), as a sealed in-session payload of arbitrary bytes, or
//! as a sealed, well-framed request `[netFn, cmd, data…]` that reaches the BMC model's
//! command parsers (SDR and SEL reads, chassis control, sensors, DCMI, OEM fan commands,
//! session privilege and close). Nothing panics, and every answer is a datagram that
//! decodes.

#![no_main]

use dcmon_ipmi::crypto::{CipherSuite, RakpExchange, SessionKeys};
use dcmon_ipmi::msg::{self, Addressing, Request};
use dcmon_ipmi::packet::{self, Packet, PayloadType};
use dcmon_ipmi::rakp::{
    NAME_ONLY_LOOKUP, OpenSessionRequest, OpenSessionResponse, Privilege, Rakp1, Rakp2, Rakp3,
    Rakp4, RakpStatus,
};
use dcmon_ipmi::session;
use dcmon_ipmi::sim::{Bmc, BmcConfig, Endpoint, User, Vendor};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use std::time::Duration;

const USER: &str = "admin";
const PASSWORD: &str = "fuzz";
const CONSOLE_ID: u32 = 0xC0C0_C0C0;

/// A deterministic stand-in for the server's random source.
fn counter() -> impl FnMut(&mut [u8]) {
    let mut n = 0u8;
    move |buf: &mut [u8]| {
        for b in buf {
            n = n.wrapping_add(0x3B);
            *b = n;
        }
    }
}

/// The payload of the endpoint's answer to an unauthenticated RMCP+ message.
fn exchange(
    ep: &mut Endpoint,
    now: Duration,
    random: &mut dyn FnMut(&mut [u8]),
    ty: PayloadType,
    body: &[u8],
) -> Vec<u8> {
    let reply = ep
        .handle(&session::unauthenticated(ty, body), now, random)
        .expect("the handshake is answered");
    let Ok(Packet::V20(p)) = packet::decode(&reply) else {
        panic!("an RMCP+ answer to {ty:?}: {reply:02x?}");
    };
    p.payload
}

/// Opens an administrator session as a console does; returns its keys and the BMC's
/// session ID.
fn handshake(
    ep: &mut Endpoint,
    suite: CipherSuite,
    now: Duration,
    random: &mut dyn FnMut(&mut [u8]),
) -> (SessionKeys, u32) {
    let (authentication, integrity, confidentiality) = suite.algorithms();
    let open = OpenSessionRequest {
        tag: 1,
        max_privilege: Privilege::Administrator.code(),
        console_session_id: CONSOLE_ID,
        authentication,
        integrity,
        confidentiality,
    };
    let body = exchange(
        ep,
        now,
        random,
        PayloadType::OpenSessionRequest,
        &open.encode(),
    );
    let open = OpenSessionResponse::decode(&body).expect("an Open Session Response");
    assert_eq!(open.status, RakpStatus::OK);
    let role = NAME_ONLY_LOOKUP | Privilege::Administrator.code();
    let rakp1 = Rakp1 {
        tag: 2,
        bmc_session_id: open.bmc_session_id,
        console_random: [0x5A; 16],
        role,
        username: USER.into(),
    };
    let rakp2 = Rakp2::decode(&exchange(
        ep,
        now,
        random,
        PayloadType::Rakp1,
        &rakp1.encode(),
    ))
    .expect("a RAKP 2");
    assert_eq!(rakp2.status, RakpStatus::OK);
    let kex = RakpExchange {
        suite,
        console_session_id: CONSOLE_ID,
        bmc_session_id: open.bmc_session_id,
        console_random: rakp1.console_random,
        bmc_random: rakp2.bmc_random,
        bmc_guid: rakp2.bmc_guid,
        role,
        username: USER.into(),
    };
    let rakp3 = Rakp3 {
        tag: 3,
        status: RakpStatus::OK,
        bmc_session_id: open.bmc_session_id,
        auth_code: kex.rakp3_auth_code(PASSWORD.as_bytes()),
    };
    let rakp4 = Rakp4::decode(&exchange(
        ep,
        now,
        random,
        PayloadType::Rakp3,
        &rakp3.encode(),
    ))
    .expect("a RAKP 4");
    assert_eq!(rakp4.status, RakpStatus::OK);
    let sik = kex.session_integrity_key(PASSWORD.as_bytes());
    (SessionKeys::derive(suite, &sik), open.bmc_session_id)
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, mut rest)) = data.split_first() else {
        return;
    };
    let vendor = [Vendor::Supermicro, Vendor::Dell, Vendor::Generic][usize::from(setup % 3)];
    let suite = if setup & 0x10 == 0 {
        CipherSuite::Suite3
    } else {
        CipherSuite::Suite17
    };
    let mut now = Duration::from_secs(1_700_000_000);
    let config = BmcConfig {
        vendor,
        seed: u64::from(setup),
        dell_refuses_manual_fans: setup & 0x20 != 0,
    };
    let users: Arc<[User]> = Arc::new([User {
        name: USER.into(),
        password: PASSWORD.into(),
        max_privilege: Privilege::Administrator,
    }]);
    let mut ep = Endpoint::new(Bmc::new(config, now), users);
    let mut random = counter();
    let (keys, bmc_id) = handshake(&mut ep, suite, now, &mut random);

    let mut sequence = 0u32;
    let mut rq_seq = 0u8;
    while let [kind, len, tail @ ..] = rest {
        let (bytes, tail) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = tail;
        now += Duration::from_millis(u64::from(*kind >> 2) * 250);
        let datagram = match kind & 3 {
            0 => bytes.to_vec(),
            k => {
                let payload = if k == 1 {
                    bytes.to_vec()
                } else {
                    let [netfn, cmd, data @ ..] = bytes else {
                        continue;
                    };
                    rq_seq = rq_seq.wrapping_add(1) & 0x3F;
                    msg::encode_request(
                        &Addressing::console_to_bmc(rq_seq),
                        &Request::new(*netfn & 0x3F, *cmd, data),
                    )
                };
                // Kind 3 replays the last sequence number, which the window refuses.
                if k != 3 {
                    sequence = sequence.wrapping_add(1);
                }
                session::seal(
                    &keys,
                    PayloadType::Ipmi,
                    bmc_id,
                    sequence,
                    &payload,
                    [0x11; 16],
                )
            }
        };
        if let Ok(reply) = ep.handle(&datagram, now, &mut random) {
            packet::decode(&reply).expect("the simulator's answers decode");
        }
    }
});
