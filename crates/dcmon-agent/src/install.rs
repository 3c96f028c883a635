//! `dcmon-agent install` and `uninstall`: the agent as a hardened systemd service running
//! as an unprivileged system user.
//!
//! The agent needs no root: a udev rule gives its group the in-band IPMI device and read
//! access to the NVMe controllers, a polkit rule lets its user ask logind for a reboot (the
//! `reboot` command runs `systemctl reboot`), and `/etc/dcmon` belongs to its group so that
//! `config_update` can replace `agent.yaml`. The one privilege left is CAP_SYS_ADMIN, which
//! the kernel demands for NVMe admin passthrough; the unit grants it only on machines that
//! have NVMe controllers. With `root` set every file is written below that directory and
//! no command runs (packaging, tests).

use crate::config::{AgentConfig, DEFAULT_CONFIG_PATH};
use anyhow::{Context, Result, bail};
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The system user (and group) the service runs as by default.
pub const DEFAULT_USER: &str = "dcmon-agent";
/// Where the binary is installed by default.
pub const DEFAULT_BINARY: &str = "/usr/local/bin/dcmon-agent";

const UNIT: &str = "dcmon-agent.service";
const UNIT_PATH: &str = "/etc/systemd/system/dcmon-agent.service";
const UDEV_RULE_PATH: &str = "/etc/udev/rules.d/60-dcmon-agent.rules";
const POLKIT_RULE_PATH: &str = "/etc/polkit-1/rules.d/60-dcmon-agent.rules";
const CONFIG_DIR: &str = "/etc/dcmon";
/// The unit's `StateDirectory=dcmon-agent`; also `AgentConfig::default().state_dir`.
const STATE_DIR: &str = "/var/lib/dcmon-agent";
/// setgid: files root writes here (`dcmon-agent register` under sudo) keep the agent's
/// group, so the agent can still read them. Sticky: the agent's group may replace
/// `agent.yaml` (owned by the agent) but no root-owned neighbour such as `server.yaml`.
const CONFIG_DIR_MODE: u32 = 0o3770;

/// What `dcmon-agent install` sets up.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The system user (with a group of the same name) the service runs as.
    pub user: String,
    /// Where the agent binary is installed: the unit's `ExecStart`.
    pub binary: PathBuf,
    /// The executable copied to `binary` (the running one).
    pub executable: PathBuf,
    /// Enable the service, and start it once the agent is registered.
    pub start: bool,
    /// Write every file below this directory, change no ownership and run no command.
    pub root: Option<PathBuf>,
}

/// What `dcmon-agent uninstall` removes.
#[derive(Debug, Clone)]
pub struct UninstallOptions {
    /// The user the service ran as; removed with `purge`.
    pub user: String,
    /// The installed binary; removed only when the installed unit runs it.
    pub binary: PathBuf,
    /// Also remove the key, the spool, `agent.yaml` and the user.
    pub purge: bool,
    /// Remove below this directory and run no command.
    pub root: Option<PathBuf>,
}

/// What an install or uninstall did, for the operator.
#[derive(Debug, Default)]
pub struct Report {
    /// Each change made (or found already in place).
    pub done: Vec<String>,
    /// What was left as it was, and why.
    pub kept: Vec<String>,
    /// Steps that failed without spoiling the rest (udev not running, ...), with the fix.
    pub warnings: Vec<String>,
    /// What the operator does next.
    pub next: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.done {
            writeln!(f, "  {d}")?;
        }
        for k in &self.kept {
            writeln!(f, "  kept {k}")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        for n in &self.next {
            writeln!(f, "next: {n}")?;
        }
        Ok(())
    }
}

/// Installs the binary, the user, the configuration, the unit and the udev and polkit
/// rules; enables the service and (re)starts it when the agent is registered.
pub fn install(opts: &InstallOptions) -> Result<Report> {
    check_user_name(&opts.user)?;
    check_binary_path(&opts.binary)?;
    let root = opts.root.as_deref();
    require_root(root, "install")?;
    let mut r = Report::default();

    install_binary(&opts.executable, &below(root, &opts.binary), &mut r)?;
    let account = match root {
        None => Some(ensure_account(&opts.user, &mut r)?),
        Some(_) => None,
    };
    let group = account
        .as_ref()
        .map_or_else(|| opts.user.clone(), |a| a.group.clone());

    let config_dir = below(root, Path::new(CONFIG_DIR));
    make_dir(
        &config_dir,
        CONFIG_DIR_MODE,
        account.as_ref().map(|a| (0, a.gid)),
    )?;
    let config_path = below(root, Path::new(DEFAULT_CONFIG_PATH));
    if config_path.symlink_metadata().is_ok() {
        r.kept.push(format!("{} (exists)", config_path.display()));
        if let Some(a) = &account {
            check_config_ownership(&config_path, a, &mut r)?;
        }
    } else {
        AgentConfig::default().save(&config_path)?;
        if let Some(a) = &account {
            chown(&config_path, a.uid, a.gid)?;
        }
        r.done
            .push(format!("wrote {} (defaults)", config_path.display()));
    }
    make_dir(
        &below(root, Path::new(STATE_DIR)),
        0o700,
        account.as_ref().map(|a| (a.uid, a.gid)),
    )?;

    let nvme = has_nvme_controllers(root);
    let unit = unit_text(&opts.user, &group, &opts.binary, nvme);
    put(&below(root, Path::new(UNIT_PATH)), &unit, &mut r)?;
    put(
        &below(root, Path::new(UDEV_RULE_PATH)),
        &udev_rules(&group),
        &mut r,
    )?;
    put(
        &below(root, Path::new(POLKIT_RULE_PATH)),
        &polkit_rules(&opts.user),
        &mut r,
    )?;
    if root.is_none() {
        retrigger_udev(&mut r);
    }

    let registered = match AgentConfig::load(&config_path, |_| None) {
        Ok(cfg) => {
            if cfg.state_dir != Path::new(STATE_DIR) {
                r.warnings.push(format!(
                    "{}: state_dir is {}, but the unit can write only {STATE_DIR}; remove the \
                     state_dir line",
                    config_path.display(),
                    cfg.state_dir.display()
                ));
            }
            cfg.server.is_some()
        }
        Err(e) => {
            r.warnings.push(format!("{e:#}"));
            false
        }
    };
    let started = root.is_none() && opts.start;
    if started {
        start_service(registered, &mut r)?;
    }
    if !registered {
        r.next.push(format!(
            "sudo -u {} {} register --server URL --token T   (as the agent's user, so that \
             it owns its key)",
            opts.user,
            opts.binary.display()
        ));
    }
    match (started, registered) {
        (true, true) => r
            .next
            .push(format!("journalctl -u {UNIT} -f   (the agent's log)")),
        (true, false) => r.next.push(format!("sudo systemctl start {UNIT}")),
        (false, _) => r.next.push(format!(
            "sudo systemctl daemon-reload && sudo systemctl enable --now {UNIT}"
        )),
    }
    Ok(r)
}

/// Stops and removes the service and the rules, the binary when the unit ran it, and with
/// `purge` the key, the spool, `agent.yaml` and the user.
pub fn uninstall(opts: &UninstallOptions) -> Result<Report> {
    check_user_name(&opts.user)?;
    check_binary_path(&opts.binary)?;
    let root = opts.root.as_deref();
    require_root(root, "uninstall")?;
    let mut r = Report::default();
    let systemd = root.is_none() && systemd_running();
    if systemd {
        match run_command("systemctl", &["disable", "--now", UNIT]) {
            Ok(_) => r.done.push(format!("stopped and disabled {UNIT}")),
            Err(e) => r.warnings.push(format!("{e:#}")),
        }
    } else if root.is_none() {
        r.warnings
            .push("systemd is not running here: stop a running `dcmon-agent run` yourself".into());
    }

    let unit_path = below(root, Path::new(UNIT_PATH));
    let unit_binary = match std::fs::read_to_string(&unit_path) {
        Ok(text) => exec_start_binary(&text),
        Err(_) => None,
    };
    remove(&unit_path, &mut r)?;
    let udev_rules_removed = remove(&below(root, Path::new(UDEV_RULE_PATH)), &mut r)?;
    remove(&below(root, Path::new(POLKIT_RULE_PATH)), &mut r)?;
    if systemd {
        if let Err(e) = run_command("systemctl", &["daemon-reload"]) {
            r.warnings.push(format!("{e:#}"));
        }
    }
    if root.is_none() && udev_rules_removed {
        retrigger_udev(&mut r);
    }

    let binary = below(root, &opts.binary);
    if unit_binary.as_deref() == Some(opts.binary.as_path()) {
        remove(&binary, &mut r)?;
    } else if binary.exists() {
        r.kept
            .push(format!("{} (no installed unit runs it)", binary.display()));
    }

    let config_path = below(root, Path::new(DEFAULT_CONFIG_PATH));
    let state_dir = below(root, Path::new(STATE_DIR));
    if opts.purge {
        match std::fs::remove_dir_all(&state_dir) {
            Ok(()) => r
                .done
                .push(format!("removed {} (key, spool)", state_dir.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("removing {}", state_dir.display()));
            }
        }
        remove(&config_path, &mut r)?;
        remove(&config_path.with_extension("tmp"), &mut r)?;
        let config_dir = below(root, Path::new(CONFIG_DIR));
        match std::fs::remove_dir(&config_dir) {
            Ok(()) => r.done.push(format!("removed {}", config_dir.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => r
                .kept
                .push(format!("{} (other files are in it)", config_dir.display())),
        }
        if root.is_none() && lookup_account(&opts.user)?.is_some() {
            run_command("userdel", &[&opts.user])?;
            r.done.push(format!("removed the user {}", opts.user));
        }
    } else {
        for path in [&config_path, &state_dir] {
            if path.exists() {
                r.kept.push(format!("{}", path.display()));
            }
        }
        if root.is_none() && lookup_account(&opts.user)?.is_some() {
            r.kept.push(format!("the user {}", opts.user));
        }
        r.next.push(
            "--purge also removes the key, the spool, agent.yaml and the user (registering \
             again then needs a new enrollment token)"
                .into(),
        );
    }
    Ok(r)
}

/// The unit: the agent as `user`, everything read-only but its state and config, only the
/// devices the collectors open, and no capability but CAP_SYS_ADMIN where NVMe needs it.
fn unit_text(user: &str, group: &str, binary: &Path, nvme: bool) -> String {
    let caps = if nvme {
        "# The kernel requires CAP_SYS_ADMIN for NVMe admin passthrough (the SMART/health log\n\
         # page); this machine had NVMe controllers at install time.\n\
         CapabilityBoundingSet=CAP_SYS_ADMIN\n\
         AmbientCapabilities=CAP_SYS_ADMIN\n"
    } else {
        "# No capability at all: this machine had no NVMe controller at install time (run\n\
         # `dcmon-agent install` again after adding one).\n\
         CapabilityBoundingSet=\n"
    };
    format!(
        "# Written by `dcmon-agent install`; `dcmon-agent uninstall` removes it.\n\
         [Unit]\n\
         Description=dcmon agent: this machine's metrics to the dcmon server\n\
         Wants=network-online.target\n\
         # The IPMI driver modules must be loaded before DeviceAllow= resolves their device.\n\
         After=network-online.target systemd-modules-load.service\n\
         \n\
         [Service]\n\
         User={user}\n\
         Group={group}\n\
         ExecStart={binary} --config {DEFAULT_CONFIG_PATH} run\n\
         Restart=always\n\
         RestartSec=5s\n\
         # {STATE_DIR}: the agent key and the spool.\n\
         StateDirectory=dcmon-agent\n\
         StateDirectoryMode=0700\n\
         # config_update commands replace agent.yaml (a temporary file, then a rename).\n\
         ReadWritePaths={CONFIG_DIR}\n\
         \n\
         NoNewPrivileges=yes\n\
         ProtectSystem=strict\n\
         # Read-only rather than hidden: statvfs of a /home mount must see the real file system.\n\
         ProtectHome=read-only\n\
         PrivateTmp=yes\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\n\
         ProtectClock=yes\n\
         ProtectHostname=yes\n\
         RestrictNamespaces=yes\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         LockPersonality=yes\n\
         # NVML is loaded with dlopen; neither it nor the agent maps writable code.\n\
         MemoryDenyWriteExecute=yes\n\
         SystemCallArchitectures=native\n\
         SystemCallFilter=@system-service\n\
         # A refused system call fails with EPERM (logged by the agent) instead of killing it.\n\
         SystemCallErrorNumber=EPERM\n\
         # HTTPS to the server and the exporter (INET), D-Bus to logind for reboot (UNIX),\n\
         # glibc's getaddrinfo asking for the local addresses (NETLINK, AI_ADDRCONFIG).\n\
         RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK\n\
         \n\
         # Devices: only those the collectors open. ipmidev is every /dev/ipmiN (ipmi.device\n\
         # may name another than ipmi0); NVMe controllers are opened read-only; NVML needs\n\
         # nvidiactl, the per-GPU nodes (nvidia-frontend) and nvidia-uvm.\n\
         DevicePolicy=closed\n\
         DeviceAllow=char-ipmidev rw\n\
         DeviceAllow=char-nvme r\n\
         DeviceAllow=/dev/nvidiactl rw\n\
         DeviceAllow=char-nvidia-frontend rw\n\
         DeviceAllow=/dev/nvidia-uvm rw\n\
         \n\
         {caps}\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        binary = binary.display(),
    )
}

/// Gives `group` the IPMI devices and read access to the NVMe controllers (not their
/// namespaces: `SUBSYSTEM=="nvme"` excludes the block devices `nvme0n1`).
fn udev_rules(group: &str) -> String {
    format!(
        "# Written by `dcmon-agent install`: the agent reads sensors and sets fans through the\n\
         # in-band IPMI device, and reads NVMe health (the kernel still demands CAP_SYS_ADMIN\n\
         # for that), without running as root.\n\
         KERNEL==\"ipmi[0-9]*\", GROUP=\"{group}\", MODE=\"0660\"\n\
         SUBSYSTEM==\"nvme\", KERNEL==\"nvme[0-9]*\", GROUP=\"{group}\", MODE=\"0640\"\n"
    )
}

/// Lets `user` reboot through logind (what `systemctl reboot` asks for when not root),
/// and nothing else.
fn polkit_rules(user: &str) -> String {
    format!(
        "// Written by `dcmon-agent install`: the agent's `reboot` command runs\n\
         // `systemctl reboot` as {user}; this allows that and nothing else.\n\
         polkit.addRule(function(action, subject) {{\n\
         \x20   if (subject.user == \"{user}\" &&\n\
         \x20       (action.id == \"org.freedesktop.login1.reboot\" ||\n\
         \x20        action.id == \"org.freedesktop.login1.reboot-multiple-sessions\" ||\n\
         \x20        action.id == \"org.freedesktop.login1.reboot-ignore-inhibit\")) {{\n\
         \x20       return polkit.Result.YES;\n\
         \x20   }}\n\
         }});\n"
    )
}

/// The program of the unit's `ExecStart=` line.
fn exec_start_binary(unit: &str) -> Option<PathBuf> {
    unit.lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .and_then(|cmd| cmd.split_whitespace().next())
        .map(PathBuf::from)
}

/// `abs` below `root`, or `abs` itself.
fn below(root: Option<&Path>, abs: &Path) -> PathBuf {
    match root {
        Some(root) => root.join(abs.strip_prefix("/").unwrap_or(abs)),
        None => abs.to_path_buf(),
    }
}

/// The name lands in the unit, the udev rule and the polkit JavaScript, so only what
/// `useradd` accepts by default is let through.
fn check_user_name(user: &str) -> Result<()> {
    let ok = !user.is_empty()
        && user.len() <= 32
        && user.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b == b'_' || (i > 0 && (b.is_ascii_digit() || b == b'-'))
        });
    if !ok {
        bail!(
            "--user {user:?}: a system user name is lower-case letters, digits, '-' and '_', \
             starts with a letter or '_', and has at most 32 characters"
        );
    }
    Ok(())
}

/// The path lands unquoted in `ExecStart=`, where spaces, quotes, `%` and `$` mean
/// something.
fn check_binary_path(binary: &Path) -> Result<()> {
    let text = binary.to_str().unwrap_or_default();
    let ok = text.starts_with('/')
        && !text.ends_with('/')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._+-".contains(&b));
    if !ok {
        bail!(
            "--binary {}: expected an absolute file path of letters, digits and /._+-",
            binary.display()
        );
    }
    Ok(())
}

fn require_root(root: Option<&Path>, what: &str) -> Result<()> {
    if root.is_none() && !rustix::process::geteuid().is_root() {
        bail!(
            "`dcmon-agent {what}` changes /etc, users and systemd: run it as root (sudo), or \
             pass --root DIR to work on the files below DIR only"
        );
    }
    Ok(())
}

/// Whether systemd is PID 1 (sd_booted(3)).
fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn has_nvme_controllers(root: Option<&Path>) -> bool {
    std::fs::read_dir(below(root, Path::new("/sys/class/nvme")))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("nvme"))
        })
        .unwrap_or(false)
}

/// Copies `executable` to `target` (mode 0755) through a temporary file and a rename, so
/// a running copy at `target` is replaced rather than written into (ETXTBSY).
fn install_binary(executable: &Path, target: &Path, r: &mut Report) -> Result<()> {
    if let (Ok(a), Ok(b)) = (std::fs::metadata(executable), std::fs::metadata(target)) {
        if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
            std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod 755 {}", target.display()))?;
            r.done
                .push(format!("{} is the running binary", target.display()));
            return Ok(());
        }
    }
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = target.with_extension("tmp");
    let copy = || -> std::io::Result<()> {
        let mut src = std::fs::File::open(executable)?;
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&tmp)?;
        std::io::copy(&mut src, &mut dst)?;
        dst.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        dst.flush()?;
        dst.sync_all()
    };
    copy().with_context(|| format!("copying {} to {}", executable.display(), tmp.display()))?;
    std::fs::rename(&tmp, target).with_context(|| format!("replacing {}", target.display()))?;
    r.done.push(format!(
        "installed {} (from {})",
        target.display(),
        executable.display()
    ));
    Ok(())
}

/// The service's account, as the system knows it.
#[derive(Debug)]
struct Account {
    uid: u32,
    gid: u32,
    /// The name of its primary group (the user's own with `--user-group`).
    group: String,
}

fn ensure_account(user: &str, r: &mut Report) -> Result<Account> {
    if let Some(a) = lookup_account(user)? {
        r.kept.push(format!("the user {user} (exists)"));
        return Ok(a);
    }
    run_command(
        "useradd",
        &[
            "--system",
            "--user-group",
            "--home-dir",
            STATE_DIR,
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            user,
        ],
    )?;
    r.done
        .push(format!("created the system user and group {user}"));
    lookup_account(user)?.with_context(|| {
        format!("`useradd {user}` succeeded but `getent passwd {user}` finds no such user")
    })
}

/// Looks the user up through NSS (`getent`): `None` when there is no such user.
fn lookup_account(user: &str) -> Result<Option<Account>> {
    let out = Command::new("getent")
        .args(["passwd", user])
        .output()
        .context("running `getent passwd` (package libc-bin)")?;
    // getent(1): exit status 2 is "key not found".
    if out.status.code() == Some(2) {
        return Ok(None);
    }
    if !out.status.success() {
        bail!("`getent passwd {user}` failed ({})", out.status);
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let (uid, gid) = parse_passwd_ids(&line)
        .with_context(|| format!("`getent passwd {user}` printed {:?}", line.trim()))?;
    let group = run_command("getent", &["group", &gid.to_string()])
        .ok()
        .and_then(|l| l.split(':').next().map(str::to_owned))
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| user.to_owned());
    Ok(Some(Account { uid, gid, group }))
}

/// uid and gid of a passwd(5) line.
fn parse_passwd_ids(line: &str) -> Option<(u32, u32)> {
    let mut fields = line.trim().split(':').skip(2);
    let uid = fields.next()?.parse().ok()?;
    let gid = fields.next()?.parse().ok()?;
    Some((uid, gid))
}

/// In the sticky directory the agent can replace only an `agent.yaml` it owns; say so
/// with the fix, but leave the file as it is.
fn check_config_ownership(path: &Path, a: &Account, r: &mut Report) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.uid() != a.uid {
        r.warnings.push(format!(
            "{p} is owned by {}:{}: the agent must own it to rewrite it (register, \
             config_update); fix with `chown {}:{} {p}`",
            meta.uid(),
            meta.gid(),
            a.uid,
            a.gid,
            p = path.display()
        ));
    }
    Ok(())
}

/// Creates `dir` if needed and sets its mode, and its owner when one is given.
fn make_dir(dir: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if let Some((uid, gid)) = owner {
        chown(dir, uid, gid)?;
    }
    // chmod last: chown(2) may clear set-group-ID bits.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", dir.display()))
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {uid}:{gid} {}", path.display()))
}

/// Writes `text` (mode 0644) unless the file already holds exactly it.
fn put(path: &Path, text: &str, r: &mut Report) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("chmod 644 {}", path.display()))?;
        r.done.push(format!("{} is up to date", path.display()));
        return Ok(());
    }
    crate::config::write_atomic(path, text.as_bytes(), 0o644)?;
    r.done.push(format!("wrote {}", path.display()));
    Ok(())
}

/// Removes a file if present; says whether it was.
fn remove(path: &Path, r: &mut Report) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            r.done.push(format!("removed {}", path.display()));
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Applies the udev rules to devices that exist already; a failure only delays that to
/// the next boot, so it is a warning.
fn retrigger_udev(r: &mut Report) {
    let args = [
        "trigger",
        "--settle",
        "--subsystem-match=ipmi",
        "--subsystem-match=nvme",
    ];
    match run_command("udevadm", &args) {
        Ok(_) => r
            .done
            .push("applied the udev rules to the IPMI and NVMe devices".into()),
        Err(e) => r.warnings.push(format!(
            "{e:#}; the device permissions change at the next boot (or run `udevadm {}`)",
            args.join(" ")
        )),
    }
}

fn start_service(registered: bool, r: &mut Report) -> Result<()> {
    if !systemd_running() {
        bail!(
            "systemd is not running here: start the agent with `dcmon-agent run` (the files \
             are in place; --no-start skips this step)"
        );
    }
    run_command("systemctl", &["daemon-reload"])?;
    run_command("systemctl", &["enable", UNIT])?;
    r.done.push(format!("enabled {UNIT} (starts at boot)"));
    if registered {
        // restart rather than `enable --now`: a re-install must run the new binary and unit.
        run_command("systemctl", &["restart", UNIT])?;
        r.done.push(format!("started {UNIT}"));
    } else {
        r.done.push(format!(
            "did not start {UNIT}: the agent is not registered yet"
        ));
    }
    Ok(())
}

/// Runs `program args`, returning its stdout; the error carries its stderr.
fn run_command(program: &str, args: &[&str]) -> Result<String> {
    let line = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn install_opts(root: &Path) -> InstallOptions {
        let exe = root.join("build/dcmon-agent");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        std::fs::write(&exe, b"#!/bin/sh\nexit 0\n").unwrap();
        InstallOptions {
            user: DEFAULT_USER.into(),
            binary: DEFAULT_BINARY.into(),
            executable: exe,
            start: true,
            root: Some(root.join("root")),
        }
    }

    fn uninstall_opts(root: &Path, purge: bool) -> UninstallOptions {
        UninstallOptions {
            user: DEFAULT_USER.into(),
            binary: DEFAULT_BINARY.into(),
            purge,
            root: Some(root.join("root")),
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .mode()
            & 0o7777
    }

    fn at(root: &Path, abs: &str) -> PathBuf {
        below(Some(&root.join("root")), Path::new(abs))
    }

    /// Every path below `dir` with its mode and content (None for directories).
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, Option<Vec<u8>>)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p.clone());
                    out.insert(p.clone(), (mode(&p), None));
                } else {
                    out.insert(p.clone(), (mode(&p), Some(std::fs::read(&p).unwrap())));
                }
            }
        }
        out
    }

    #[test]
    fn install_writes_every_file_with_its_mode() {
        let t = tempfile::tempdir().unwrap();
        let report = install(&install_opts(t.path())).unwrap();
        let check = |abs: &str, want: u32| assert_eq!(mode(&at(t.path(), abs)), want, "{abs}");
        check(DEFAULT_BINARY, 0o755);
        check(UNIT_PATH, 0o644);
        check(UDEV_RULE_PATH, 0o644);
        check(POLKIT_RULE_PATH, 0o644);
        check(DEFAULT_CONFIG_PATH, 0o640);
        check(CONFIG_DIR, 0o3770);
        check(STATE_DIR, 0o700);
        assert_eq!(
            std::fs::read(at(t.path(), DEFAULT_BINARY)).unwrap(),
            b"#!/bin/sh\nexit 0\n"
        );
        let cfg = AgentConfig::load(&at(t.path(), DEFAULT_CONFIG_PATH), |_| None).unwrap();
        assert_eq!(cfg, AgentConfig::default());
        let udev = std::fs::read_to_string(at(t.path(), UDEV_RULE_PATH)).unwrap();
        assert!(
            udev.contains("KERNEL==\"ipmi[0-9]*\", GROUP=\"dcmon-agent\", MODE=\"0660\"\n"),
            "{udev}"
        );
        let polkit = std::fs::read_to_string(at(t.path(), POLKIT_RULE_PATH)).unwrap();
        assert!(
            polkit.contains("subject.user == \"dcmon-agent\""),
            "{polkit}"
        );
        assert_eq!(polkit.matches("action.id == ").count(), 3, "{polkit}");
        let text = report.to_string();
        assert!(
            text.contains(
                "next: sudo -u dcmon-agent /usr/local/bin/dcmon-agent register --server URL --token T"
            ),
            "{text}"
        );
    }

    #[test]
    fn unit_is_hardened_and_runs_the_binary_as_the_user() {
        let t = tempfile::tempdir().unwrap();
        install(&install_opts(t.path())).unwrap();
        let unit = std::fs::read_to_string(at(t.path(), UNIT_PATH)).unwrap();
        let lines: Vec<&str> = unit.lines().collect();
        for want in [
            "ExecStart=/usr/local/bin/dcmon-agent --config /etc/dcmon/agent.yaml run",
            "User=dcmon-agent",
            "Group=dcmon-agent",
            "Restart=always",
            "StateDirectory=dcmon-agent",
            "StateDirectoryMode=0700",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=read-only",
            "PrivateTmp=yes",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "ProtectControlGroups=yes",
            "ProtectClock=yes",
            "ProtectHostname=yes",
            "RestrictNamespaces=yes",
            "RestrictRealtime=yes",
            "RestrictSUIDSGID=yes",
            "LockPersonality=yes",
            "MemoryDenyWriteExecute=yes",
            "SystemCallArchitectures=native",
            "SystemCallFilter=@system-service",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
            "ReadWritePaths=/etc/dcmon",
            "DevicePolicy=closed",
            "DeviceAllow=char-ipmidev rw",
            "DeviceAllow=char-nvme r",
            "DeviceAllow=/dev/nvidiactl rw",
            "DeviceAllow=char-nvidia-frontend rw",
            "DeviceAllow=/dev/nvidia-uvm rw",
            "CapabilityBoundingSet=",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{unit}");
        }
        assert!(!unit.contains("CAP_SYS_ADMIN"), "{unit}");
        assert_eq!(
            exec_start_binary(&unit).as_deref(),
            Some(Path::new(DEFAULT_BINARY))
        );
    }

    #[test]
    fn cap_sys_admin_only_with_nvme_controllers() {
        let t = tempfile::tempdir().unwrap();
        let opts = install_opts(t.path());
        std::fs::create_dir_all(at(t.path(), "/sys/class/nvme/nvme0")).unwrap();
        install(&opts).unwrap();
        let unit = std::fs::read_to_string(at(t.path(), UNIT_PATH)).unwrap();
        let lines: Vec<&str> = unit.lines().collect();
        assert!(
            lines.contains(&"CapabilityBoundingSet=CAP_SYS_ADMIN"),
            "{unit}"
        );
        assert!(
            lines.contains(&"AmbientCapabilities=CAP_SYS_ADMIN"),
            "{unit}"
        );
        assert!(unit.contains("NVMe admin passthrough"), "{unit}");
        assert!(!lines.contains(&"CapabilityBoundingSet="), "{unit}");
    }

    #[test]
    fn existing_config_is_kept_untouched() {
        let t = tempfile::tempdir().unwrap();
        let path = at(t.path(), DEFAULT_CONFIG_PATH);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "interval: 10s\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let report = install(&install_opts(t.path())).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "interval: 10s\n");
        assert_eq!(mode(&path), 0o600);
        assert!(
            report.kept.iter().any(|k| k.contains("agent.yaml")),
            "{report}"
        );
    }

    #[test]
    fn install_twice_changes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let opts = install_opts(t.path());
        install(&opts).unwrap();
        let first = snapshot(&t.path().join("root"));
        let report = install(&opts).unwrap();
        assert_eq!(snapshot(&t.path().join("root")), first);
        assert!(
            report.done.iter().all(|d| !d.starts_with("wrote")),
            "{report}"
        );
        // Installing from the installed copy keeps it in place.
        let again = InstallOptions {
            executable: at(t.path(), DEFAULT_BINARY),
            ..opts
        };
        let report = install(&again).unwrap();
        assert!(
            report
                .done
                .iter()
                .any(|d| d.ends_with("is the running binary")),
            "{report}"
        );
        assert_eq!(snapshot(&t.path().join("root")), first);
    }

    #[test]
    fn uninstall_removes_the_service_and_purge_the_state() {
        let t = tempfile::tempdir().unwrap();
        install(&install_opts(t.path())).unwrap();
        let key = at(t.path(), "/var/lib/dcmon-agent/agent.key");
        std::fs::write(&key, "key").unwrap();
        let report = uninstall(&uninstall_opts(t.path(), false)).unwrap();
        for gone in [UNIT_PATH, UDEV_RULE_PATH, POLKIT_RULE_PATH, DEFAULT_BINARY] {
            assert!(!at(t.path(), gone).exists(), "{gone} left\n{report}");
        }
        assert!(key.exists());
        assert!(at(t.path(), DEFAULT_CONFIG_PATH).exists());
        assert_eq!(report.kept.len(), 2, "{report}");

        let report = uninstall(&uninstall_opts(t.path(), true)).unwrap();
        for gone in [STATE_DIR, DEFAULT_CONFIG_PATH, CONFIG_DIR] {
            assert!(!at(t.path(), gone).exists(), "{gone} left\n{report}");
        }
    }

    #[test]
    fn uninstall_keeps_a_binary_the_unit_does_not_run() {
        let t = tempfile::tempdir().unwrap();
        install(&install_opts(t.path())).unwrap();
        let other = at(t.path(), "/usr/bin/dcmon-agent");
        std::fs::create_dir_all(other.parent().unwrap()).unwrap();
        std::fs::write(&other, "packaged").unwrap();
        let opts = UninstallOptions {
            binary: "/usr/bin/dcmon-agent".into(),
            ..uninstall_opts(t.path(), false)
        };
        let report = uninstall(&opts).unwrap();
        assert!(other.exists(), "{report}");
        assert!(at(t.path(), DEFAULT_BINARY).exists(), "{report}");
        assert!(!at(t.path(), UNIT_PATH).exists(), "{report}");
    }

    #[test]
    fn names_that_would_break_the_unit_are_refused() {
        let user = |u: &str, ok: bool| assert_eq!(check_user_name(u).is_ok(), ok, "{u:?}");
        user("dcmon-agent", true);
        user("_dcmon2", true);
        user("", false);
        user("2dcmon", false);
        user("-dcmon", false);
        user("Dcmon", false);
        user("dc\"mon", false);
        user(&"a".repeat(33), false);
        let binary =
            |b: &str, ok: bool| assert_eq!(check_binary_path(Path::new(b)).is_ok(), ok, "{b:?}");
        binary("/usr/local/bin/dcmon-agent", true);
        binary("/opt/dcmon_1.2+x/dcmon-agent", true);
        binary("usr/local/bin/dcmon-agent", false);
        binary("/usr/local/bin/", false);
        binary("/opt/my agent", false);
        binary("/opt/%h", false);
    }

    #[test]
    fn passwd_lines() {
        let check = |line: &str, want: Option<(u32, u32)>| {
            assert_eq!(parse_passwd_ids(line), want, "{line:?}")
        };
        check(
            "dcmon-agent:x:998:997::/var/lib/dcmon-agent:/usr/sbin/nologin\n",
            Some((998, 997)),
        );
        check("dcmon-agent:x:998\n", None);
        check("dcmon-agent:x:abc:997::/:/bin/sh", None);
    }

    /// `systemd-analyze verify --root`: the unit and its ExecStart are looked up below the
    /// temporary root, so the host's units (sysinit.target, ...) are copied there. Unknown
    /// keys and bad values are warnings on stderr, hence the empty-stderr check.
    #[test]
    fn systemd_analyze_accepts_the_unit() {
        let host_units = Path::new("/usr/lib/systemd/system");
        let tool = Command::new("systemd-analyze").arg("--version").output();
        if !tool.is_ok_and(|o| o.status.success()) || !host_units.is_dir() {
            eprintln!(
                "systemd-analyze or {} missing: skipped",
                host_units.display()
            );
            return;
        }
        for nvme in [false, true] {
            let t = tempfile::tempdir().unwrap();
            if nvme {
                std::fs::create_dir_all(at(t.path(), "/sys/class/nvme/nvme0")).unwrap();
            }
            install(&install_opts(t.path())).unwrap();
            let units = at(t.path(), "/usr/lib/systemd");
            std::fs::create_dir_all(&units).unwrap();
            let cp = Command::new("cp")
                .arg("-a")
                .arg(host_units)
                .arg(&units)
                .status()
                .unwrap();
            assert!(cp.success());
            let out = Command::new("systemd-analyze")
                .arg("verify")
                .arg(format!("--root={}", t.path().join("root").display()))
                .arg(UNIT_PATH)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
        }
    }
}
