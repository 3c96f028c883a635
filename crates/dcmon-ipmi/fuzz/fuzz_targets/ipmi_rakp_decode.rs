//! RMCP+ session establishment bodies (IPMI 2.0 §13.17–13.23): Open Session
//! request/response and RAKP messages 1–4 decode arbitrary bytes without panicking, and
//! whatever decodes survives an encode/decode round trip. The first byte picks the
//! message so that each decoder sees the rest as a whole payload.

#![no_main]

use dcmon_ipmi::crypto::CipherSuite;
use dcmon_ipmi::rakp::{
    OpenSessionRequest, OpenSessionResponse, Privilege, Rakp1, Rakp2, Rakp3, Rakp4,
};
use libfuzzer_sys::fuzz_target;

macro_rules! round_trip {
    ($ty:ty, $bytes:expr) => {
        if let Ok(m) = <$ty>::decode($bytes) {
            let again = <$ty>::decode(&m.encode()).expect("an encoded message decodes");
            assert_eq!(again, m);
            m
        } else {
            return;
        }
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            let m = round_trip!(OpenSessionRequest, body);
            let _ = Privilege::from_code(m.max_privilege);
            let _ = CipherSuite::from_algorithms(m.authentication, m.integrity, m.confidentiality);
        }
        1 => {
            let m = round_trip!(OpenSessionResponse, body);
            let _ = (m.status.name(), m.status.is_authentication_failure());
            let _ = m.status.to_string();
            let _ = CipherSuite::from_algorithms(m.authentication, m.integrity, m.confidentiality);
        }
        2 => {
            let m = round_trip!(Rakp1, body);
            assert!(m.username.len() <= 16);
            let _ = Privilege::from_code(m.role & 0x0F);
        }
        3 => {
            let m = round_trip!(Rakp2, body);
            let _ = m.status.to_string();
        }
        4 => {
            round_trip!(Rakp3, body);
        }
        _ => {
            let m = round_trip!(Rakp4, body);
            let _ = m.status.to_string();
        }
    }
});
