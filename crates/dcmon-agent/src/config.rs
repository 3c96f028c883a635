//! `/etc/dcmon/agent.yaml`: file, then environment, then command line.

use crate::collectors::apt::AptConfig;
use crate::collectors::gpu::GpuConfig;
use crate::collectors::ipmi::IpmiConfig;
use crate::collectors::nvme::NvmeConfig;
use crate::collectors::os::OsConfig;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default location of the agent configuration.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/dcmon/agent.yaml";

/// The whole agent configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// The server this agent reports to; written by `dcmon-agent register`.
    pub server: Option<ServerLink>,
    /// Time between collections (at least 1s).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Where the agent keeps its private key and machine id (mode 0700).
    pub state_dir: PathBuf,
    /// The host name reported at registration; default: the kernel's host name.
    pub hostname: Option<String>,
    /// Scrapes kept in memory when there is no spool or it cannot be written (oldest
    /// dropped first).
    pub max_pending_scrapes: usize,
    /// Bound of the on-disk spool (`<state_dir>/spool`) that keeps scrapes while the
    /// server is unreachable, in MiB; oldest dropped first. 0 turns the spool off.
    pub spool_max_mib: u64,
    pub collectors: CollectorsConfig,
    /// This machine's BMC: the `ipmi` and `bmc_fan` collectors and `dcmon-agent fans`.
    pub ipmi: IpmiConfig,
    pub exporter: ExporterConfig,
    pub commands: CommandsConfig,
    /// Reach the BMC over the network (RMCP+) for fan commands, instead of `/dev/ipmi0`.
    pub bmc_lan: Option<BmcLan>,
    /// A fan curve this agent runs itself (set by the server's `config_update`, or by
    /// hand); none: the fans are left to the BMC.
    pub fan_curve: Option<dcmon_ipmi::curve::CurveConfig>,
}

/// The optional local `/metrics` endpoint, for an existing Prometheus to scrape.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExporterConfig {
    /// Address to serve `/metrics` on, e.g. `0.0.0.0:9835`; unset: no exporter.
    pub listen: Option<String>,
    /// When set, scrapes must send `Authorization: Bearer <the file's content>`
    /// (Prometheus: `authorization: {credentials_file: ...}`).
    pub bearer_token_file: Option<PathBuf>,
}

/// Live commands from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandsConfig {
    /// Keep a long-poll open for commands (fan control, reboot, config, collect now).
    pub enabled: bool,
    /// The program and arguments a `reboot` command runs.
    pub reboot_command: Vec<String>,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            reboot_command: vec!["systemctl".into(), "reboot".into()],
        }
    }
}

/// A BMC reached over RMCP+ (IPMI 2.0 lanplus).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcLan {
    /// `host` or `host:port` (default port 623).
    pub address: String,
    pub user: String,
    /// File holding the password (keep it mode 0600).
    pub password_file: PathBuf,
}

/// Where to push, and how to recognise the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerLink {
    /// `https://host:port` of the dcmon server.
    pub url: String,
    /// Pin of the server certificate's public key (`SHA256:...`), verified on every connection.
    pub fingerprint: String,
    /// The id the server gave this agent.
    pub agent_id: String,
}

/// Collector switches and settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorsConfig {
    /// Names of collectors to turn off (e.g. `[os]`).
    pub disabled: Vec<String>,
    pub os: OsConfig,
    /// NVIDIA GPUs through NVML, or nvidia-smi when NVML cannot load.
    pub gpu: GpuConfig,
    /// SMART / Health of the NVMe drives (needs root).
    pub nvme: NvmeConfig,
    /// Pending upgrades and reboot-required, from apt's and dpkg's state files.
    pub apt: AptConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            server: None,
            interval: Duration::from_secs(30),
            state_dir: PathBuf::from("/var/lib/dcmon-agent"),
            hostname: None,
            max_pending_scrapes: 2880,
            spool_max_mib: 256,
            collectors: CollectorsConfig::default(),
            exporter: ExporterConfig::default(),
            commands: CommandsConfig::default(),
            bmc_lan: None,
            fan_curve: None,
            ipmi: IpmiConfig::default(),
        }
    }
}

/// Environment variables that override settings.
pub const ENV_INTERVAL: &str = "DCMON_AGENT_INTERVAL";
pub const ENV_STATE_DIR: &str = "DCMON_AGENT_STATE_DIR";

impl AgentConfig {
    /// Reads `path` (defaults when it does not exist), then applies the environment.
    pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut cfg = match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Self::default(),
            Ok(text) => serde_norway::from_str::<Self>(&text).map_err(|e| {
                let at = e
                    .location()
                    .map(|l| format!(":{}:{}", l.line(), l.column()))
                    .unwrap_or_default();
                let msg = e.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
                anyhow::anyhow!("{}{at}: {msg}", path.display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if let Some(v) = env(ENV_INTERVAL) {
            cfg.interval = humantime::parse_duration(&v).with_context(|| {
                format!("environment variable {ENV_INTERVAL}={v:?}: expected a duration like 30s")
            })?;
        }
        if let Some(v) = env(ENV_STATE_DIR) {
            cfg.state_dir = PathBuf::from(v);
        }
        cfg.validate()
            .map_err(|p| anyhow::anyhow!("{}: {}", path.display(), p.join("; ")))?;
        Ok(cfg)
    }

    /// Every problem, each naming its setting.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut p = Vec::new();
        if self.interval < Duration::from_secs(1) {
            p.push("interval: must be at least 1s".to_owned());
        }
        if self.max_pending_scrapes == 0 {
            p.push("max_pending_scrapes: must be at least 1".to_owned());
        }
        if let Some(s) = &self.server {
            if !s.url.starts_with("https://") {
                p.push(format!("server.url: {:?} must start with https://", s.url));
            }
            if !s.fingerprint.starts_with("SHA256:") {
                p.push(
                    "server.fingerprint: must be SHA256:<base64> as printed by the server"
                        .to_owned(),
                );
            }
        }
        if let Err(ipmi) = self.ipmi.validate() {
            p.extend(ipmi);
        }
        if let Some(l) = &self.exporter.listen {
            if l.parse::<std::net::SocketAddr>().is_err() {
                p.push(format!(
                    "exporter.listen: {l:?} is not an address; use e.g. 0.0.0.0:9835"
                ));
            }
        }
        if self.commands.reboot_command.is_empty() {
            p.push("commands.reboot_command: must name a program, e.g. [systemctl, reboot]".into());
        }
        if let Some(b) = &self.bmc_lan {
            if b.address.is_empty() || b.user.is_empty() {
                p.push("bmc_lan: address and user must not be empty".into());
            }
        }
        if let Some(c) = &self.fan_curve {
            if let Err(curve) = c.validate() {
                p.extend(curve.into_iter().map(|e| format!("fan_curve.{e}")));
            }
        }
        if let Err(os) = self.collectors.os.validate() {
            p.extend(os);
        }
        if let Err(gpu) = self.collectors.gpu.validate() {
            p.extend(gpu);
        }
        if let Err(nvme) = self.collectors.nvme.validate() {
            p.extend(nvme);
        }
        if let Err(apt) = self.collectors.apt.validate() {
            p.extend(apt);
        }
        for name in &self.collectors.disabled {
            if !crate::collectors::NAMES.contains(&name.as_str()) {
                p.push(format!(
                    "collectors.disabled: unknown collector {name:?}; known: {}",
                    crate::collectors::NAMES.join(", ")
                ));
            }
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }

    /// Writes the configuration atomically (temporary file, fsync, rename), mode 0640.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut text = String::from(
            "# dcmon agent configuration; `dcmon-agent register` and config_update commands rewrite it.\n",
        );
        text.push_str(&serde_norway::to_string(self).context("serialising the agent config")?);
        write_atomic(path, text.as_bytes(), 0o640)
    }

    /// The host name to report.
    pub fn hostname(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(crate::identity::hostname)
    }
}

/// Writes `bytes` to `path` via a temporary file with `mode`, fsync'd, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
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
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Refuses a file that group or others can read (like OpenSSH does for keys).
pub fn check_private(path: &Path) -> Result<()> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by other users (mode {:o}); fix with `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        let c = AgentConfig {
            server: Some(ServerLink {
                url: "https://x:8443".into(),
                fingerprint: "SHA256:abc".into(),
                agent_id: "a1".into(),
            }),
            interval: Duration::from_secs(5),
            ..AgentConfig::default()
        };
        c.save(&path).unwrap();
        assert_eq!(AgentConfig::load(&path, |_| None).unwrap(), c);
        let env =
            AgentConfig::load(&path, |k| (k == ENV_INTERVAL).then(|| "2s".to_owned())).unwrap();
        assert_eq!(env.interval, Duration::from_secs(2));
        std::fs::write(&path, "interval: 30s\nintervall: 3s\n").unwrap();
        let e = AgentConfig::load(&path, |_| None).unwrap_err().to_string();
        assert!(
            e.contains("agent.yaml:2:1: unknown field `intervall`"),
            "{e}"
        );
        std::fs::write(&path, "interval: 100ms\n").unwrap();
        let e = AgentConfig::load(&path, |_| None).unwrap_err().to_string();
        assert!(e.ends_with("interval: must be at least 1s"), "{e}");
    }
}
