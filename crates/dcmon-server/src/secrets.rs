//! Secrets at rest (DESIGN §5): BMC passwords now, alert channel secrets later, sealed
//! with XChaCha20-Poly1305 under one per-installation key.
//!
//! The key is 32 random bytes, from `DCMON_SECRET_KEY` (base64) when set, else from
//! `<data_dir>/secret.key` (the same base64 text), which is created with mode 0600 on
//! first use and refused when other users could read it. Back it up apart from the
//! control store: a stolen `control.sqlite` without the key reveals no secret, and a
//! lost key makes every sealed value unreadable.
//!
//! A sealed value is `v1:<base64(nonce || ciphertext)>`, with a random 192-bit nonce per
//! value (safe to draw at random, unlike ChaCha's 96 bits). The *purpose* (for example
//! `bmc-password:17`) is authenticated as associated data, so a ciphertext copied into
//! another row, or used for another kind of secret, does not decrypt.
//!
//! Plaintexts travel as [`Secret`] or [`Zeroizing`] buffers: wiped when dropped, and
//! `Secret` prints as `***` in logs and debug output.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
pub use zeroize::Zeroizing;

/// Environment variable holding the key (base64 of 32 bytes); wins over the key file.
pub const KEY_ENV: &str = "DCMON_SECRET_KEY";
/// The key file in the data directory.
pub const KEY_FILE: &str = "secret.key";

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
const PREFIX: &str = "v1:";
/// Associated-data prefix, so that our ciphertexts mean nothing to any other use of the key.
const AAD_DOMAIN: &str = "dcmon-secret-v1\0";

/// Why a key could not be had or a sealed value not opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{KEY_ENV}: {0}; make a key with `head -c 32 /dev/urandom | base64`")]
    BadEnvKey(&'static str),
    #[error("{}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },
    #[error(
        "{} is readable by other users (mode {mode:o}); fix with `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyFileOpen { path: PathBuf, mode: u32 },
    #[error("{purpose}: not a sealed value ({reason})")]
    Malformed {
        purpose: String,
        reason: &'static str,
    },
    #[error(
        "{purpose}: cannot decrypt: the secret key changed? ({KEY_ENV} / {KEY_FILE}); \
         or the value was copied from another row. Restore the key, or set the secret again"
    )]
    Decrypt { purpose: String },
}

/// A plaintext secret: wiped from memory when dropped, printed as `***`.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(bytes.into()))
    }

    /// The plaintext, for the one place that needs it (a BMC login, an SMTP AUTH).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Zeroizing<Vec<u8>>> for Secret {
    fn from(z: Zeroizing<Vec<u8>>) -> Self {
        Self(z)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        Ok(Secret::new(s.as_bytes()))
    }
}

/// Seals and opens secrets with the installation's key, and authenticates values
/// (CSRF tokens of proxy users) with a key derived from it.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    /// HMAC-SHA256 key derived from the installation key, so the cipher key itself is
    /// used for nothing else.
    mac_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(***)")
    }
}

impl SecretBox {
    /// The key from `DCMON_SECRET_KEY`, else from `data_dir/secret.key` (created when absent).
    pub fn open(data_dir: &Path) -> Result<Self, SecretError> {
        let env = std::env::var(KEY_ENV).ok().map(Zeroizing::new);
        Self::open_with(data_dir, env.as_deref().map(String::as_str))
    }

    /// [`SecretBox::open`] with the environment variable's value given (tests cannot
    /// safely change the process environment).
    pub fn open_with(data_dir: &Path, env_key: Option<&str>) -> Result<Self, SecretError> {
        let key = match env_key {
            Some(text) => decode_key(text).map_err(SecretError::BadEnvKey)?,
            None => load_or_create(&data_dir.join(KEY_FILE))?,
        };
        Ok(Self::from_key(&key))
    }

    pub fn from_key(key: &[u8; KEY_BYTES]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
            mac_key: Zeroizing::new(hmac_sha256(key, MAC_KEY_LABEL.as_bytes())),
        }
    }

    /// HMAC-SHA256 of `message` for `purpose` under the installation's key: the same
    /// inputs give the same value on every start, and nobody without the key can make one.
    pub fn mac(&self, purpose: &str, message: &[u8]) -> [u8; 32] {
        let input = [purpose.as_bytes(), b"\0", message].concat();
        hmac_sha256(self.mac_key.as_slice(), &input)
    }

    /// Encrypts `plaintext` for `purpose` (which must be given again to open it).
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let nonce = crate::control::random_bytes::<NONCE_BYTES>();
        let aad = aad(purpose);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
        let mut blob = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", STANDARD.encode(blob))
    }

    /// Decrypts a value sealed for `purpose`.
    pub fn open_sealed(
        &self,
        purpose: &str,
        sealed: &str,
    ) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        let malformed = |reason| SecretError::Malformed {
            purpose: purpose.to_owned(),
            reason,
        };
        let body = sealed
            .strip_prefix(PREFIX)
            .ok_or_else(|| malformed("no v1: prefix"))?;
        let blob = STANDARD.decode(body).map_err(|_| malformed("not base64"))?;
        if blob.len() < NONCE_BYTES + TAG_BYTES {
            return Err(malformed("too short"));
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_BYTES);
        let aad = aad(purpose);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SecretError::Decrypt {
                purpose: purpose.to_owned(),
            })
    }
}

/// Label of the MAC key derived from the installation key.
const MAC_KEY_LABEL: &str = "dcmon-mac-key-v1";

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn aad(purpose: &str) -> Vec<u8> {
    [AAD_DOMAIN.as_bytes(), purpose.as_bytes()].concat()
}

fn decode_key(text: &str) -> Result<[u8; KEY_BYTES], &'static str> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(text.trim())
            .map_err(|_| "not valid base64")?,
    );
    <[u8; KEY_BYTES]>::try_from(bytes.as_slice()).map_err(|_| "the key must be 32 bytes")
}

/// Reads the key file, or creates it. Creation writes a private temporary file and
/// links it into place, so two processes starting at once agree on one key and nobody
/// ever reads a half-written file.
fn load_or_create(path: &Path) -> Result<[u8; KEY_BYTES], SecretError> {
    let fail = |reason: String| SecretError::KeyFile {
        path: path.to_owned(),
        reason,
    };
    if !path.exists() {
        let dir = path
            .parent()
            .ok_or_else(|| fail("has no parent directory".into()))?;
        crate::control::create_private_dir(dir).map_err(|e| fail(format!("{e:#}")))?;
        let tmp = dir.join(format!(
            ".{KEY_FILE}.{}",
            hex::encode(crate::control::random_bytes::<6>())
        ));
        let key = Zeroizing::new(crate::control::random_bytes::<KEY_BYTES>());
        let text = Zeroizing::new(format!("{}\n", STANDARD.encode(key.as_slice())));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_all()
            })
            .and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => {
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
                tracing::info!(path = %path.display(), "created the secret key; back it up");
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(format!("creating the key file: {e}"))),
        }
    }
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("is not a regular file".into()));
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(SecretError::KeyFileOpen {
            path: path.to_owned(),
            mode: mode & 0o777,
        });
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?);
    decode_key(&text).map_err(|reason| fail(format!("{reason}; restore it from a backup")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_round_trip_with_a_fresh_nonce_each_time() {
        let b = SecretBox::from_key(&[7; 32]);
        let a1 = b.seal("bmc-password:1", b"s3cret");
        let a2 = b.seal("bmc-password:1", b"s3cret");
        assert_ne!(a1, a2, "random nonce per value");
        assert!(a1.starts_with("v1:"));
        assert!(!a1.contains("s3cret"));
        assert_eq!(
            b.open_sealed("bmc-password:1", &a1).unwrap().as_slice(),
            b"s3cret"
        );
        assert_eq!(b.open_sealed("x", &b.seal("x", b"")).unwrap().len(), 0);
    }

    #[test]
    fn a_wrong_key_or_another_purpose_is_refused() {
        let sealed = SecretBox::from_key(&[1; 32]).seal("bmc-password:1", b"pw");
        let e = SecretBox::from_key(&[2; 32])
            .open_sealed("bmc-password:1", &sealed)
            .unwrap_err();
        assert!(e.to_string().contains("the secret key changed?"), "{e}");
        assert!(e.to_string().contains(KEY_ENV), "{e}");
        let b = SecretBox::from_key(&[1; 32]);
        assert!(matches!(
            b.open_sealed("bmc-password:2", &sealed),
            Err(SecretError::Decrypt { .. })
        ));
        for bad in ["pw", "v1:%%%", "v1:AAAA", "v2:AAAA"] {
            assert!(
                matches!(b.open_sealed("p", bad), Err(SecretError::Malformed { .. })),
                "{bad}"
            );
        }
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(b.open_sealed("bmc-password:1", &tampered).is_err());
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let b1 = SecretBox::open_with(&data, None).unwrap();
        let path = data.join(KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = b1.seal("p", b"v");
        let b2 = SecretBox::open_with(&data, None).unwrap();
        assert_eq!(b2.open_sealed("p", &sealed).unwrap().as_slice(), b"v");
        // The environment's key wins over the file.
        let env = STANDARD.encode([9u8; 32]);
        let b3 = SecretBox::open_with(&data, Some(&env)).unwrap();
        assert!(b3.open_sealed("p", &sealed).is_err());
        assert_eq!(
            b3.open_sealed("p", &SecretBox::from_key(&[9; 32]).seal("p", b"e"))
                .unwrap()
                .as_slice(),
            b"e"
        );
        assert!(matches!(
            SecretBox::open_with(&data, Some("c2hvcnQ=")),
            Err(SecretError::BadEnvKey(_))
        ));
        assert!(matches!(
            SecretBox::open_with(&data, Some("not base64!")),
            Err(SecretError::BadEnvKey(_))
        ));
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        SecretBox::open_with(dir.path(), None).unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = SecretBox::open_with(dir.path(), None).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "garbage\n").unwrap();
        let e = SecretBox::open_with(dir.path(), None).unwrap_err();
        assert!(e.to_string().contains("restore it from a backup"), "{e}");
    }

    #[test]
    fn macs_depend_on_key_purpose_and_message() {
        let b = SecretBox::from_key(&[1; 32]);
        let m = b.mac("csrf", b"ann");
        assert_eq!(m, SecretBox::from_key(&[1; 32]).mac("csrf", b"ann"));
        assert_ne!(m, SecretBox::from_key(&[2; 32]).mac("csrf", b"ann"));
        assert_ne!(m, b.mac("other", b"ann"));
        assert_ne!(m, b.mac("csrf", b"bob"));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "***");
        let parsed: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(parsed.expose(), b"hunter2");
    }
}
