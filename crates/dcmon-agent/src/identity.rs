//! The agent's identity: its Ed25519 key (made on first run, mode 0600), machine id
//! and host name.

use crate::config::{check_private, write_atomic};
use anyhow::{Context, Result, bail};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const KEY_FILE: &str = "agent.key";
const MACHINE_ID_FILE: &str = "machine-id";

/// Loads the agent key from `state_dir`, creating it (and the directory, mode 0700) on first run.
pub fn load_or_create_key(state_dir: &Path) -> Result<SigningKey> {
    let path = state_dir.join(KEY_FILE);
    if path.exists() {
        check_private(&path)?;
        let pem = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{} is not a PKCS#8 Ed25519 key: {e}", path.display()));
    }
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", state_dir.display()))?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("operating system randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?;
    write_atomic(&path, pem.as_bytes(), 0o600)?;
    tracing::info!(path = %path.display(), "generated the agent key");
    Ok(key)
}

/// The stable machine id: systemd's, D-Bus's, the DMI product UUID, or one made and
/// kept in `state_dir`.
pub fn machine_id(state_dir: &Path) -> Result<String> {
    for p in [
        "/etc/machine-id",
        "/var/lib/dbus/machine-id",
        "/sys/class/dmi/id/product_uuid",
    ] {
        if let Ok(s) = std::fs::read_to_string(p) {
            let s = s.trim();
            if !s.is_empty() {
                return Ok(s.to_owned());
            }
        }
    }
    let path = state_dir.join(MACHINE_ID_FILE);
    if let Ok(s) = std::fs::read_to_string(&path) {
        if !s.trim().is_empty() {
            return Ok(s.trim().to_owned());
        }
    }
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("operating system randomness: {e}"))?;
    let id = hex::encode(b);
    std::fs::create_dir_all(state_dir)?;
    write_atomic(&path, id.as_bytes(), 0o600)?;
    if id.is_empty() {
        bail!("could not make a machine id");
    }
    Ok(id)
}

/// The kernel's host name, or `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_made_once_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let k1 = load_or_create_key(&state).unwrap();
        let mode = std::fs::metadata(state.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let k2 = load_or_create_key(&state).unwrap();
        assert_eq!(k1.to_bytes(), k2.to_bytes());
        std::fs::set_permissions(state.join(KEY_FILE), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let e = load_or_create_key(&state).unwrap_err().to_string();
        assert!(e.contains("readable by other users"), "{e}");
    }
}
