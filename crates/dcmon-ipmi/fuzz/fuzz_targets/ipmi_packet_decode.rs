//! RMCP datagrams as a BMC or console receives them: the RMCP header, ASF ping/pong,
//! the IPMI 1.5 session wrapper and the RMCP+ session header never panic on arbitrary
//! bytes. What decodes re-encodes to a datagram that decodes to the same packet. The
//! payload then goes where the receiver would send it: the IPMI message framing (both
//! directions) and, for RMCP+, the session trailer check and decryption of
//! [`session::open`] under fixed keys of both cipher suites.

#![no_main]

use dcmon_ipmi::crypto::{CipherSuite, SessionKeys};
use dcmon_ipmi::msg;
use dcmon_ipmi::packet::{self, Packet};
use dcmon_ipmi::session;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static KEYS: LazyLock<[SessionKeys; 2]> = LazyLock::new(|| {
    [
        SessionKeys::derive(CipherSuite::Suite3, b"fuzz sik"),
        SessionKeys::derive(CipherSuite::Suite17, b"fuzz sik"),
    ]
});

fn message(bytes: &[u8]) {
    if let Ok((addr, req)) = msg::decode_request(bytes) {
        assert_eq!(msg::encode_request(&addr, &req), bytes);
    }
    if let Ok((addr, rsp)) = msg::decode_response(bytes) {
        assert_eq!(msg::encode_response(&addr, &rsp), bytes);
        let _ = rsp.ok();
        let _ = rsp.completion.to_string();
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(p) = packet::decode(data) else {
        return;
    };
    let again = packet::decode(&packet::encode(&p)).expect("an encoded packet decodes");
    assert_eq!(again, p);
    match &p {
        Packet::Asf(_) => {}
        Packet::V15(s) => message(&s.payload),
        Packet::V20(s) => {
            message(&s.payload);
            for keys in KEYS.iter() {
                if let Ok(opened) = session::open(keys, data) {
                    message(&opened.payload);
                }
            }
        }
    }
});
