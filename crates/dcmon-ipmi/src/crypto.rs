//! RMCP+ cryptography for cipher suites 3 and 17 (IPMI 2.0 §13.28–13.32), written for
//! both ends: the BMC computes what the console verifies and the other way round.
//!
//! | suite | authentication | integrity | confidentiality |
//! |---|---|---|---|
//! | 3 | RAKP-HMAC-SHA1 | HMAC-SHA1-96 | AES-CBC-128 |
//! | 17 | RAKP-HMAC-SHA256 | HMAC-SHA256-128 | AES-CBC-128 |

use crate::CodecError;
use aes::Aes128;
use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};

/// The cipher suites this crate speaks (IPMI 2.0 §22.15.2, Table 22-20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128.
    Suite3,
    /// RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128.
    Suite17,
}

/// Authentication algorithm numbers (§13.28, Table 13-17).
const AUTH_HMAC_SHA1: u8 = 0x01;
const AUTH_HMAC_SHA256: u8 = 0x03;
/// Integrity algorithm numbers (§13.28.4, Table 13-18).
const INTEGRITY_HMAC_SHA1_96: u8 = 0x01;
const INTEGRITY_HMAC_SHA256_128: u8 = 0x04;
/// Confidentiality algorithm number of AES-CBC-128 (§13.28.5, Table 13-19).
const CONFIDENTIALITY_AES_CBC_128: u8 = 0x01;

impl CipherSuite {
    pub fn id(self) -> u8 {
        match self {
            CipherSuite::Suite3 => 3,
            CipherSuite::Suite17 => 17,
        }
    }

    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            3 => Some(CipherSuite::Suite3),
            17 => Some(CipherSuite::Suite17),
            _ => None,
        }
    }

    /// (authentication, integrity, confidentiality) algorithm numbers as Open Session
    /// messages carry them.
    pub fn algorithms(self) -> (u8, u8, u8) {
        match self {
            CipherSuite::Suite3 => (
                AUTH_HMAC_SHA1,
                INTEGRITY_HMAC_SHA1_96,
                CONFIDENTIALITY_AES_CBC_128,
            ),
            CipherSuite::Suite17 => (
                AUTH_HMAC_SHA256,
                INTEGRITY_HMAC_SHA256_128,
                CONFIDENTIALITY_AES_CBC_128,
            ),
        }
    }

    pub fn from_algorithms(auth: u8, integrity: u8, confidentiality: u8) -> Option<Self> {
        [CipherSuite::Suite3, CipherSuite::Suite17]
            .into_iter()
            .find(|s| s.algorithms() == (auth, integrity, confidentiality))
    }

    /// Length of the RAKP 2 and RAKP 3 key exchange authentication codes and of SIK.
    pub fn digest_len(self) -> usize {
        match self {
            CipherSuite::Suite3 => 20,
            CipherSuite::Suite17 => 32,
        }
    }

    /// Length of the RAKP 4 integrity check value and of each packet's AuthCode
    /// (HMAC-SHA1-96, HMAC-SHA256-128; §13.28.4).
    pub fn auth_code_len(self) -> usize {
        match self {
            CipherSuite::Suite3 => 12,
            CipherSuite::Suite17 => 16,
        }
    }

    /// HMAC of the concatenation of `parts` under `key`.
    pub fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any length");
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            CipherSuite::Suite3 => run::<Hmac<sha1::Sha1>>(key, parts),
            CipherSuite::Suite17 => run::<Hmac<sha2::Sha256>>(key, parts),
        }
    }
}

/// Everything both sides know after RAKP 2 that the key exchange HMACs cover
/// (§13.31). `m` in the spec is the remote console, `c` the managed system (BMC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RakpExchange {
    pub suite: CipherSuite,
    /// SIDm: the console's session ID.
    pub console_session_id: u32,
    /// SIDc: the BMC's session ID.
    pub bmc_session_id: u32,
    /// Rm.
    pub console_random: [u8; 16],
    /// Rc.
    pub bmc_random: [u8; 16],
    /// GUIDc.
    pub bmc_guid: [u8; 16],
    /// ROLEm: the role byte of RAKP 1 as sent, lookup bit included.
    pub role: u8,
    /// UNAMEm, at most 16 bytes.
    pub username: Vec<u8>,
}

impl RakpExchange {
    fn name_len(&self) -> [u8; 1] {
        [self.username.len().min(16) as u8]
    }

    /// RAKP 2 key exchange authentication code, keyed with the user's password Kuid:
    /// HMAC(SIDm, SIDc, Rm, Rc, GUIDc, ROLEm, ULENGTHm, UNAMEm) (§13.31).
    /// The BMC sends it; the console checks it to learn that its password is right.
    pub fn rakp2_auth_code(&self, password: &[u8]) -> Vec<u8> {
        self.suite.hmac(
            password,
            &[
                &self.console_session_id.to_le_bytes(),
                &self.bmc_session_id.to_le_bytes(),
                &self.console_random,
                &self.bmc_random,
                &self.bmc_guid,
                &[self.role],
                &self.name_len(),
                &self.username,
            ],
        )
    }

    /// RAKP 3 key exchange authentication code: HMAC_Kuid(Rc, SIDm, ROLEm, ULENGTHm,
    /// UNAMEm) (§13.31). The console sends it; the BMC checks it.
    pub fn rakp3_auth_code(&self, password: &[u8]) -> Vec<u8> {
        self.suite.hmac(
            password,
            &[
                &self.bmc_random,
                &self.console_session_id.to_le_bytes(),
                &[self.role],
                &self.name_len(),
                &self.username,
            ],
        )
    }

    /// Session Integrity Key: HMAC_KG(Rm, Rc, ROLEm, ULENGTHm, UNAMEm) (§13.31), where
    /// KG is the BMC key, or the user's password when no BMC key is set.
    pub fn session_integrity_key(&self, kg: &[u8]) -> Vec<u8> {
        self.suite.hmac(
            kg,
            &[
                &self.console_random,
                &self.bmc_random,
                &[self.role],
                &self.name_len(),
                &self.username,
            ],
        )
    }

    /// RAKP 4 integrity check value: HMAC_SIK(Rm, SIDc, GUIDc), truncated to the
    /// suite's AuthCode length (§13.31, §13.28.4).
    pub fn rakp4_integrity_check(&self, sik: &[u8]) -> Vec<u8> {
        let mut mac = self.suite.hmac(
            sik,
            &[
                &self.console_random,
                &self.bmc_session_id.to_le_bytes(),
                &self.bmc_guid,
            ],
        );
        mac.truncate(self.suite.auth_code_len());
        mac
    }
}

/// Keys of an established session (§13.32): K1 authenticates packets, the first 16
/// bytes of K2 encrypt them.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    pub suite: CipherSuite,
    k1: Vec<u8>,
    k2: [u8; 16],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// K1 = HMAC_SIK(const 1), K2 = HMAC_SIK(const 2), where the constants are 20 bytes
    /// of 01h and 02h (§13.32). The constants stay 20 bytes for SHA-256 too, as
    /// ipmitool and FreeIPMI do.
    pub fn derive(suite: CipherSuite, sik: &[u8]) -> Self {
        let k1 = suite.hmac(sik, &[&[0x01; 20]]);
        let k2_full = suite.hmac(sik, &[&[0x02; 20]]);
        let mut k2 = [0u8; 16];
        k2.copy_from_slice(&k2_full[..16]);
        SessionKeys { suite, k1, k2 }
    }

    pub fn k1(&self) -> &[u8] {
        &self.k1
    }

    pub fn k2(&self) -> &[u8; 16] {
        &self.k2
    }

    /// Packet AuthCode (§13.28.4): HMAC_K1 over the session header through Next Header,
    /// truncated.
    pub fn auth_code(&self, integrity_data: &[u8]) -> Vec<u8> {
        let mut mac = self.suite.hmac(&self.k1, &[integrity_data]);
        mac.truncate(self.suite.auth_code_len());
        mac
    }

    /// AES-CBC-128 payload (§13.29): IV, then `data`, pad bytes 01h 02h …, the pad
    /// length, all encrypted. The IV must be random per packet.
    pub fn encrypt(&self, iv: [u8; 16], data: &[u8]) -> Vec<u8> {
        let pad = (16 - (data.len() + 1) % 16) % 16;
        let mut buf = Vec::with_capacity(16 + data.len() + pad + 1);
        buf.extend_from_slice(&iv);
        buf.extend_from_slice(data);
        buf.extend((1..=pad as u8).collect::<Vec<_>>());
        buf.push(pad as u8);
        let len = buf.len() - 16;
        cbc::Encryptor::<Aes128>::new(&self.k2.into(), &iv.into())
            .encrypt_padded_mut::<NoPadding>(&mut buf[16..], len)
            .expect("data, pad and pad length fill whole blocks");
        buf
    }

    /// Inverse of [`SessionKeys::encrypt`]; checks the confidentiality pad.
    pub fn decrypt(&self, payload: &[u8]) -> Result<Vec<u8>, CodecError> {
        if payload.len() < 32 || payload.len() % 16 != 0 {
            return Err(CodecError::Confidentiality(
                "not an IV and whole AES blocks",
            ));
        }
        let (iv, body) = payload.split_at(16);
        let mut iv_block = [0u8; 16];
        iv_block.copy_from_slice(iv);
        let mut buf = body.to_vec();
        cbc::Decryptor::<Aes128>::new(&self.k2.into(), &iv_block.into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| CodecError::Confidentiality("not whole AES blocks"))?;
        let pad = usize::from(buf[buf.len() - 1]);
        if pad > 15 {
            return Err(CodecError::Confidentiality("pad length over 15"));
        }
        let data_len = buf.len() - 1 - pad;
        if buf[data_len..buf.len() - 1]
            .iter()
            .zip(1u8..)
            .any(|(b, want)| *b != want)
        {
            return Err(CodecError::Confidentiality("pad bytes are not 01h 02h …"));
        }
        buf.truncate(data_len);
        Ok(buf)
    }
}

/// Compares two MACs in time independent of where they differ.
pub fn same_mac(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn exchange(suite: CipherSuite) -> RakpExchange {
        RakpExchange {
            suite,
            console_session_id: 0x0403_0201,
            bmc_session_id: 0x0807_0605,
            console_random: [0x11; 16],
            bmc_random: [0x22; 16],
            bmc_guid: [0x33; 16],
            role: 0x14,
            username: b"admin".to_vec(),
        }
    }

    /// The HMAC inputs spelt out byte by byte from the §13.31 formulas, so a change in
    /// field order or byte order shows.
    #[test]
    fn rakp_inputs_follow_the_spec_formulas() {
        for suite in [CipherSuite::Suite3, CipherSuite::Suite17] {
            let x = exchange(suite);
            let mut rakp2 = vec![1, 2, 3, 4, 5, 6, 7, 8];
            rakp2.extend([0x11; 16]);
            rakp2.extend([0x22; 16]);
            rakp2.extend([0x33; 16]);
            rakp2.extend([0x14, 5]);
            rakp2.extend(b"admin");
            assert_eq!(x.rakp2_auth_code(b"pw"), suite.hmac(b"pw", &[&rakp2]));
            let mut rakp3 = vec![0x22; 16];
            rakp3.extend([1, 2, 3, 4, 0x14, 5]);
            rakp3.extend(b"admin");
            assert_eq!(x.rakp3_auth_code(b"pw"), suite.hmac(b"pw", &[&rakp3]));
            let mut sik = vec![0x11; 16];
            sik.extend([0x22; 16]);
            sik.extend([0x14, 5]);
            sik.extend(b"admin");
            assert_eq!(x.session_integrity_key(b"kg"), suite.hmac(b"kg", &[&sik]));
            let mut rakp4 = vec![0x11; 16];
            rakp4.extend([5, 6, 7, 8]);
            rakp4.extend([0x33; 16]);
            assert_eq!(
                x.rakp4_integrity_check(b"sik"),
                suite.hmac(b"sik", &[&rakp4])[..suite.auth_code_len()]
            );
        }
    }

    #[test]
    fn hmac_matches_rfc_2202_and_4231() {
        let msg: &[u8] = b"what do ya want for nothing?";
        assert_eq!(
            hex(&CipherSuite::Suite3.hmac(b"Jefe", &[&msg[..4], &msg[4..]])),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex(&CipherSuite::Suite17.hmac(b"Jefe", &[msg])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// Known answers computed independently (Python's hmac/hashlib) from the §13.31
    /// and §13.32 formulas with the inputs of `exchange`, password "password".
    #[test]
    fn key_derivation_known_answers() {
        let check = |suite: CipherSuite, expect: [&str; 5]| {
            let x = exchange(suite);
            let sik = x.session_integrity_key(b"password");
            let keys = SessionKeys::derive(suite, &sik);
            let got = [
                hex(&x.rakp2_auth_code(b"password")),
                hex(&x.rakp3_auth_code(b"password")),
                hex(&sik),
                hex(keys.k1()),
                hex(keys.k2()),
            ];
            assert_eq!(got, expect.map(String::from), "{suite:?}");
        };
        check(CipherSuite::Suite3, KNOWN_SHA1);
        check(CipherSuite::Suite17, KNOWN_SHA256);
    }

    const KNOWN_SHA1: [&str; 5] = [
        "a1d50c10143d13101601bb03b76eba56ba8f4da6",
        "b29072eb52f5248de1655fdb0a9c80409eb73991",
        "98a9d2c88483c45501f3417ecfb8fe1b4c8eab57",
        "407c12e1ea8aa8f5138e05273e759d24bcc38c30",
        "98685ae46be3ea0f146874e5e0627660",
    ];
    const KNOWN_SHA256: [&str; 5] = [
        "17e5a2d58ef1fcc227a4c03531b03c8783d9b3271a3c985e3e2392c662873c04",
        "d7abeeb2363f7857c1d8c811c815b099c797b2c7b50d4881fdf7631a12d6ebc7",
        "088689899b0faf0da44a33fef425740a4ab4c903563518aec9f6aef8e4eaa53e",
        "f9827649c9c35fea0bd2d35c206f9843e662ef0a22e76bb5972596e7132b006e",
        "a8bf5d763a517ea61b09f01640e69efc",
    ];

    fn check_pad(data_len: usize, expect_payload_len: usize) {
        let keys = SessionKeys::derive(CipherSuite::Suite3, b"sik");
        let data: Vec<u8> = (0..data_len).map(|i| i as u8).collect();
        let payload = keys.encrypt([9; 16], &data);
        assert_eq!(payload.len(), expect_payload_len);
        assert_eq!(keys.decrypt(&payload), Ok(data));
    }

    #[test]
    fn confidentiality_pad_fills_whole_blocks() {
        check_pad(0, 32);
        check_pad(15, 32);
        check_pad(16, 48);
        check_pad(31, 48);
        check_pad(32, 64);
    }

    #[test]
    fn decrypt_rejects_bad_lengths_and_pads() {
        let keys = SessionKeys::derive(CipherSuite::Suite3, b"sik");
        assert!(keys.decrypt(&[0; 16]).is_err());
        assert!(keys.decrypt(&[0; 33]).is_err());
        let other = SessionKeys::derive(CipherSuite::Suite3, b"other");
        // Decrypting under the wrong key yields a random pad: almost always rejected.
        let payload = keys.encrypt([1; 16], b"hello");
        assert!(other.decrypt(&payload).is_err());
    }

    proptest! {
        #[test]
        fn encryption_round_trips(iv: [u8; 16], data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let keys = SessionKeys::derive(CipherSuite::Suite17, b"sik");
            prop_assert_eq!(keys.decrypt(&keys.encrypt(iv, &data)), Ok(data));
        }

        #[test]
        fn decrypting_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..100)) {
            let keys = SessionKeys::derive(CipherSuite::Suite3, b"sik");
            let _ = keys.decrypt(&b);
        }
    }
}
