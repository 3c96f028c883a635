//! Server certificate pinning: agents pin the SHA-256 of the server certificate's
//! SubjectPublicKeyInfo, so a renewed certificate with the same key stays trusted.

use rustls_pki_types::CertificateDer;

/// The end-entity certificate could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate cannot be parsed: {0}")]
pub struct PinError(String);

/// `SHA256:<base64>` of the certificate's SubjectPublicKeyInfo (DER, outer SEQUENCE included).
pub fn certificate_fingerprint(cert: &CertificateDer<'_>) -> Result<String, PinError> {
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|e| PinError(e.to_string()))?;
    Ok(crate::sign::spki_fingerprint(
        ee.subject_public_key_info().as_ref(),
    ))
}
