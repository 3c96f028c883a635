//! TOTP second factor (RFC 6238 as authenticator apps use it: HMAC-SHA1, 6 digits,
//! 30-second steps) and recovery codes. Pure: the time comes in as an argument, and the
//! store keeps the secret sealed (see `accounts`).

use totp_rs::{Algorithm, TOTP};

/// Seconds per code.
pub const STEP_S: i64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// Recovery codes made at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// Bytes of a secret: 160 bits, RFC 4226's recommendation for HMAC-SHA1.
pub const SECRET_BYTES: usize = 20;
/// The name authenticator apps show for the account.
pub const ISSUER: &str = "dcmon";

fn totp(secret: &[u8]) -> Result<TOTP, String> {
    // Skew is handled by `matching_step`, which needs to know which step matched.
    TOTP::new(Algorithm::SHA1, DIGITS, 0, STEP_S as u64, secret.to_vec())
        .map_err(|e| format!("TOTP secret: {e}"))
}

/// A new random secret.
pub fn new_secret() -> [u8; SECRET_BYTES] {
    crate::control::random_bytes::<SECRET_BYTES>()
}

/// The secret as authenticator apps take it when typed in (base32, no padding).
pub fn secret_base32(secret: &[u8]) -> String {
    base32::encode(base32::Alphabet::Rfc4648 { padding: false }, secret)
}

/// The code for time step `step` (Unix seconds / 30).
pub fn code_at(secret: &[u8], step: i64) -> Result<String, String> {
    let t = u64::try_from(step.saturating_mul(STEP_S)).map_err(|_| "time before 1970")?;
    Ok(totp(secret)?.generate(t))
}

/// The time step, among the previous, the current and the next (clocks drift), whose
/// code is `code`; `None` when none is. Callers accept a step only once.
pub fn matching_step(secret: &[u8], code: &str, now_ms: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = now_ms.div_euclid(1000).div_euclid(STEP_S);
    (now - 1..=now + 1).find(|&step| {
        code_at(secret, step).is_ok_and(|c| crate::auth::same_secret(c.as_bytes(), code.as_bytes()))
    })
}

/// The `otpauth://` URL that authenticator apps read from the QR code.
pub fn otpauth_url(secret: &[u8], user: &str) -> String {
    let enc = |s: &str| -> String {
        form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_S}",
        enc(ISSUER),
        enc(user),
        secret_base32(secret),
        enc(ISSUER)
    )
}

/// `text` as a QR code in an SVG document (black on white, with the quiet zone).
pub fn qr_svg(text: &str) -> Result<String, String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| format!("QR code: {e}"))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build())
}

/// A recovery code: 80 random bits as four groups of four base32 letters and digits,
/// easy to type and too many to guess, so a fast hash is enough to store it.
pub fn new_recovery_code() -> String {
    let raw = base32::encode(
        base32::Alphabet::Rfc4648 { padding: false },
        &crate::control::random_bytes::<10>(),
    )
    .to_ascii_lowercase();
    raw.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// A recovery code as typed (any case, with or without dashes and spaces), normalised
/// to the form that is hashed.
pub fn normalise_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA1 (the last six digits of its eight-digit codes).
    #[test]
    fn codes_match_the_rfc_vectors() {
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(secret, t / STEP_S).unwrap(), code, "{t}");
        }
    }

    #[test]
    fn a_code_matches_its_step_and_the_neighbours_only() {
        let secret = new_secret();
        let now_ms = 1_800_000_000_000;
        let step = now_ms / 1000 / STEP_S;
        for delta in [-1, 0, 1] {
            let code = code_at(&secret, step + delta).unwrap();
            assert_eq!(matching_step(&secret, &code, now_ms), Some(step + delta));
        }
        for delta in [-3, -2, 2, 3] {
            let code = code_at(&secret, step + delta).unwrap();
            // Another step's code may collide by chance (1 in 10^6); it must not be this one.
            assert_ne!(
                matching_step(&secret, &code, now_ms),
                Some(step + delta),
                "{delta}"
            );
        }
        for bad in ["", "12345", "1234567", "abcdef", " 12 34 5"] {
            assert_eq!(matching_step(&secret, bad, now_ms), None, "{bad:?}");
        }
    }

    #[test]
    fn enrolment_material_is_what_apps_read() {
        let secret = [0u8; SECRET_BYTES];
        let url = otpauth_url(&secret, "ann@example.org");
        assert_eq!(
            url,
            "otpauth://totp/dcmon:ann%40example.org?secret=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&issuer=dcmon&algorithm=SHA1&digits=6&period=30"
        );
        let svg = qr_svg(&url).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{svg}");
        let code = new_recovery_code();
        assert_eq!(code.len(), 19, "{code}");
        assert_eq!(code.matches('-').count(), 3, "{code}");
        assert_eq!(
            normalise_recovery_code(&code.to_uppercase().replace('-', " ")),
            code.replace('-', "")
        );
    }
}
