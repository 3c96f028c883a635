//! The server certificate: given files, or a self-signed one made on first start in
//! `data_dir/tls`. Fails closed: no certificate, no server (never plain HTTP).
//!
//! Renewal re-issues the certificate with the same key, so the SPKI pin agents hold
//! stays valid.

use anyhow::{Context, Result, bail};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::ServerConfig;

/// Generated certificates are valid this long and re-issued when less than 30 days remain.
const VALIDITY_DAYS: i64 = 825;
const RENEW_BEFORE_DAYS: i64 = 30;

/// A loaded certificate chain and key, with the pin agents compare.
pub struct TlsMaterial {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// `SHA256:<base64>` of the leaf certificate's SubjectPublicKeyInfo.
    pub fingerprint: String,
    pub cert_path: PathBuf,
}

impl TlsMaterial {
    /// A rustls server configuration (ring provider, TLS 1.2 and 1.3, h2 and http/1.1).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(self.certs.clone(), self.key.clone_key())
        .context("the certificate and key do not form a usable pair")?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// Paths of the generated certificate and key in a data directory.
pub fn generated_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("server.crt"), dir.join("server.key"))
}

/// Loads the configured files, or the generated pair (making or renewing it as needed).
pub fn load_or_generate(config: &ServerConfig) -> Result<TlsMaterial> {
    match (&config.tls.cert_file, &config.tls.key_file) {
        (Some(cert), Some(key)) => load(cert, key),
        _ => {
            let (cert, key) = generated_paths(&config.data_dir);
            if !key.exists() || !cert.exists() {
                generate(&cert, &key, config, None)?;
            } else if expires_within(&cert, RENEW_BEFORE_DAYS)? {
                tracing::info!(cert = %cert.display(), "renewing the self-signed certificate with the same key");
                let pem = std::fs::read_to_string(&key)
                    .with_context(|| format!("reading {}", key.display()))?;
                let pair = KeyPair::from_pem(&pem)
                    .with_context(|| format!("parsing {}", key.display()))?;
                generate(&cert, &key, config, Some(pair))?;
            }
            load(&cert, &key)
        }
    }
}

/// Reads the pin of the certificate in use without starting anything (for admin commands).
pub fn fingerprint(config: &ServerConfig) -> Result<String> {
    let cert = match &config.tls.cert_file {
        Some(c) => c.clone(),
        None => generated_paths(&config.data_dir).0,
    };
    let certs = read_certs(&cert)?;
    leaf_fingerprint(&certs, &cert)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificate {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificate {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

fn leaf_fingerprint(certs: &[CertificateDer<'static>], path: &Path) -> Result<String> {
    dcmon_wire::pin::certificate_fingerprint(&certs[0])
        .with_context(|| format!("{}", path.display()))
}

fn load(cert: &Path, key: &Path) -> Result<TlsMaterial> {
    let certs = read_certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "reading private key {} (PEM: PKCS#8, SEC1 or PKCS#1)",
            key.display()
        )
    })?;
    let fingerprint = leaf_fingerprint(&certs, cert)?;
    Ok(TlsMaterial {
        certs,
        key: key_der,
        fingerprint,
        cert_path: cert.to_owned(),
    })
}

fn expires_within(cert: &Path, days: i64) -> Result<bool> {
    let certs = read_certs(cert)?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&certs[0])
        .map_err(|e| anyhow::anyhow!("parsing {}: {e}", cert.display()))?;
    let not_after = parsed.validity().not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(not_after - now < days * 86400)
}

fn generate(
    cert_path: &Path,
    key_path: &Path,
    config: &ServerConfig,
    key: Option<KeyPair>,
) -> Result<()> {
    let dir = cert_path
        .parent()
        .context("certificate path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))?;
    let key = match key {
        Some(k) => k,
        None => KeyPair::generate().context("generating the certificate key")?,
    };
    let mut names: Vec<String> = vec![
        crate::hostname(),
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
    ];
    if !config.listen.ip().is_unspecified() {
        names.push(config.listen.ip().to_string());
    }
    if let Ok(ifaces) = if_addrs::get_if_addrs() {
        names.extend(ifaces.into_iter().map(|i| i.ip().to_string()));
    }
    if let Some(url) = &config.public_url {
        if let Some(host) = url
            .strip_prefix("https://")
            .and_then(|r| r.split(['/', ':']).next())
        {
            names.push(host.trim_matches(['[', ']']).to_owned());
        }
    }
    names.extend(config.tls.san.iter().cloned());
    names.sort();
    names.dedup();
    let mut params = CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .with_context(|| format!("SAN {n:?}")),
        })
        .collect::<Result<_>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("dcmon server {}", crate::hostname()),
    );
    dn.push(DnType::OrganizationName, "dcmon");
    params.distinguished_name = dn;
    // Back-dated one day: tolerates clients whose clocks run slightly behind.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
    let cert = params
        .self_signed(&key)
        .context("signing the self-signed certificate")?;
    write_private(key_path, key.serialize_pem().as_bytes())?;
    write_atomic(cert_path, cert.pem().as_bytes(), 0o644)?;
    tracing::info!(cert = %cert_path.display(), sans = ?names, "generated a self-signed certificate");
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes, 0o600)
}

/// Writes to a temporary file with `mode`, fsyncs, renames over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
