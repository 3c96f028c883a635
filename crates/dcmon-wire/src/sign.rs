//! Request signing: every agent request carries an Ed25519 signature over a canonical
//! form of method, path, timestamp, nonce and body digest (see PROTOCOL.md §Signing).
//!
//! Pure: the caller supplies the clock reading and the nonce.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// Header carrying the agent id (absent on registration, which carries its key in the body).
pub const HEADER_AGENT: &str = "x-dcmon-agent";
/// Header carrying the signing time, milliseconds since the Unix epoch.
pub const HEADER_TIMESTAMP: &str = "x-dcmon-timestamp";
/// Header carrying a random nonce: 16 to 64 characters of `[0-9a-f]`.
pub const HEADER_NONCE: &str = "x-dcmon-nonce";
/// Header carrying the base64 Ed25519 signature of the canonical form.
pub const HEADER_SIGNATURE: &str = "x-dcmon-signature";

/// Prefix of the public key text form: `ed25519:<base64 of 32 bytes>`.
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";

/// The four signature headers of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub agent_id: Option<String>,
    pub timestamp_ms: i64,
    pub nonce: String,
    pub signature: String,
}

/// Why a signature or key could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    #[error("header {0} is malformed: {1}")]
    MalformedHeader(&'static str, &'static str),
    #[error("public key is malformed: expected \"ed25519:\" and 32 bytes of base64")]
    MalformedKey,
    #[error("signature does not match the request")]
    Mismatch,
}

/// The bytes that are signed: `dcmon-sig-v1`, then method, path with query, agent id
/// (`-` when none), timestamp, nonce and the hex SHA-256 of the body, one per line.
pub fn canonical(
    method: &str,
    path_and_query: &str,
    agent_id: Option<&str>,
    timestamp_ms: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let digest = Sha256::digest(body);
    let mut out = String::with_capacity(160 + path_and_query.len());
    out.push_str("dcmon-sig-v1\n");
    out.push_str(&method.to_ascii_uppercase());
    out.push('\n');
    out.push_str(path_and_query);
    out.push('\n');
    out.push_str(agent_id.unwrap_or("-"));
    out.push('\n');
    out.push_str(&timestamp_ms.to_string());
    out.push('\n');
    out.push_str(nonce);
    out.push('\n');
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out.into_bytes()
}

/// Signs a request. `nonce` must be fresh randomness for every request.
pub fn sign(
    key: &SigningKey,
    agent_id: Option<&str>,
    method: &str,
    path_and_query: &str,
    timestamp_ms: i64,
    nonce: &str,
    body: &[u8],
) -> SignatureHeaders {
    let msg = canonical(method, path_and_query, agent_id, timestamp_ms, nonce, body);
    let sig = key.sign(&msg);
    SignatureHeaders {
        agent_id: agent_id.map(str::to_owned),
        timestamp_ms,
        nonce: nonce.to_owned(),
        signature: STANDARD.encode(sig.to_bytes()),
    }
}

/// Reads the signature headers through `get` (a header lookup by lower-case name).
pub fn parse_headers<'a>(
    get: impl Fn(&'static str) -> Option<&'a str>,
) -> Result<SignatureHeaders, SignError> {
    let ts = get(HEADER_TIMESTAMP).ok_or(SignError::MissingHeader(HEADER_TIMESTAMP))?;
    let timestamp_ms = ts.parse::<i64>().map_err(|_| {
        SignError::MalformedHeader(HEADER_TIMESTAMP, "expected integer milliseconds")
    })?;
    let nonce = get(HEADER_NONCE).ok_or(SignError::MissingHeader(HEADER_NONCE))?;
    if !(16..=64).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SignError::MalformedHeader(
            HEADER_NONCE,
            "expected 16 to 64 hex digits",
        ));
    }
    let signature = get(HEADER_SIGNATURE).ok_or(SignError::MissingHeader(HEADER_SIGNATURE))?;
    let agent_id = get(HEADER_AGENT).map(str::to_owned);
    if let Some(id) = &agent_id {
        if id.is_empty()
            || id.len() > 64
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(SignError::MalformedHeader(
                HEADER_AGENT,
                "expected an agent id",
            ));
        }
    }
    Ok(SignatureHeaders {
        agent_id,
        timestamp_ms,
        nonce: nonce.to_ascii_lowercase(),
        signature: signature.to_owned(),
    })
}

/// Checks `headers.signature` against the request with `key`.
pub fn verify(
    key: &VerifyingKey,
    headers: &SignatureHeaders,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Result<(), SignError> {
    let raw = STANDARD
        .decode(headers.signature.as_bytes())
        .map_err(|_| SignError::MalformedHeader(HEADER_SIGNATURE, "expected base64"))?;
    let bytes: [u8; 64] = raw
        .try_into()
        .map_err(|_| SignError::MalformedHeader(HEADER_SIGNATURE, "expected 64 bytes"))?;
    let sig = Signature::from_bytes(&bytes);
    let msg = canonical(
        method,
        path_and_query,
        headers.agent_id.as_deref(),
        headers.timestamp_ms,
        &headers.nonce,
        body,
    );
    key.verify(&msg, &sig).map_err(|_| SignError::Mismatch)
}

/// `ed25519:<base64>` text form of a public key.
pub fn public_key_to_text(key: &VerifyingKey) -> String {
    format!("{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(key.as_bytes()))
}

/// Parses the `ed25519:<base64>` form.
pub fn public_key_from_text(text: &str) -> Result<VerifyingKey, SignError> {
    let b64 = text
        .strip_prefix(PUBLIC_KEY_PREFIX)
        .ok_or(SignError::MalformedKey)?;
    let raw = STANDARD
        .decode(b64.trim())
        .map_err(|_| SignError::MalformedKey)?;
    let bytes: [u8; 32] = raw.try_into().map_err(|_| SignError::MalformedKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| SignError::MalformedKey)
}

/// `SHA256:<base64>` fingerprint of a public key, as OpenSSH prints one.
pub fn public_key_fingerprint(key: &VerifyingKey) -> String {
    format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(Sha256::digest(key.as_bytes()))
    )
}

/// `SHA256:<base64>` fingerprint of a DER SubjectPublicKeyInfo: what agents pin.
pub fn spki_fingerprint(spki_der: &[u8]) -> String {
    format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(Sha256::digest(spki_der))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn headers_of<'a>(h: &'a SignatureHeaders) -> impl Fn(&'static str) -> Option<&'a str> + 'a {
        move |name| match name {
            HEADER_AGENT => h.agent_id.as_deref(),
            HEADER_TIMESTAMP => None,
            HEADER_NONCE => Some(h.nonce.as_str()),
            HEADER_SIGNATURE => Some(h.signature.as_str()),
            _ => None,
        }
    }

    #[test]
    fn sign_then_verify_and_every_tamper_fails() {
        let k = key(7);
        let h = sign(
            &k,
            Some("a1"),
            "post",
            "/api/agent/push?x=1",
            1_700_000_000_000,
            "00112233445566778899aabbccddeeff",
            b"body",
        );
        let vk = k.verifying_key();
        assert_eq!(
            verify(&vk, &h, "POST", "/api/agent/push?x=1", b"body"),
            Ok(())
        );
        assert_eq!(
            verify(&vk, &h, "POST", "/api/agent/push?x=1", b"bodY"),
            Err(SignError::Mismatch)
        );
        assert_eq!(
            verify(&vk, &h, "GET", "/api/agent/push?x=1", b"body"),
            Err(SignError::Mismatch)
        );
        assert_eq!(
            verify(&vk, &h, "POST", "/api/agent/push?x=2", b"body"),
            Err(SignError::Mismatch)
        );
        assert_eq!(
            verify(
                &key(8).verifying_key(),
                &h,
                "POST",
                "/api/agent/push?x=1",
                b"body"
            ),
            Err(SignError::Mismatch)
        );
        let mut later = h.clone();
        later.timestamp_ms += 1;
        assert_eq!(
            verify(&vk, &later, "POST", "/api/agent/push?x=1", b"body"),
            Err(SignError::Mismatch)
        );
        let mut other = h.clone();
        other.agent_id = Some("a2".into());
        assert_eq!(
            verify(&vk, &other, "POST", "/api/agent/push?x=1", b"body"),
            Err(SignError::Mismatch)
        );
    }

    #[test]
    fn header_parsing_names_the_problem() {
        let h = sign(&key(1), None, "GET", "/", 5, "zz", b"");
        let e = parse_headers(headers_of(&h)).unwrap_err();
        assert_eq!(e.to_string(), "header x-dcmon-timestamp is missing");
        let e = parse_headers(|n| match n {
            HEADER_TIMESTAMP => Some("5"),
            HEADER_NONCE => Some("zz"),
            _ => None,
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "header x-dcmon-nonce is malformed: expected 16 to 64 hex digits"
        );
    }

    #[test]
    fn public_key_text_round_trip() {
        let vk = key(3).verifying_key();
        let text = public_key_to_text(&vk);
        assert_eq!(public_key_from_text(&text), Ok(vk));
        assert_eq!(
            public_key_from_text("ed25519:AAAA"),
            Err(SignError::MalformedKey)
        );
        assert_eq!(
            public_key_from_text("rsa:AAAA"),
            Err(SignError::MalformedKey)
        );
        assert!(public_key_fingerprint(&vk).starts_with("SHA256:"));
    }
}
