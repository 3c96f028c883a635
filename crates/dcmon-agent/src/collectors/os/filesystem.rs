//! File systems: the mount table from `<proc>/1/mountinfo` (node_exporter reads init's, so
//! a hardened unit's private mount namespace does not show its read-only bind mounts;
//! `self/mountinfo` when that is not readable), sizes from statvfs(2), and the
//! dashboard's Root% and Docker% as `dcmon_filesystem_used_ratio{role}`.
//!
//! statvfs on a dead NFS or CIFS mount blocks until the server answers, possibly forever.
//! So the calls run on a helper thread and one collection waits at most `mount_timeout`
//! for all of them; the mount a call is stuck on is reported with
//! `node_filesystem_device_error 1` and skipped until that call returns (node_exporter's
//! "stuck mounts"). Network file systems stay reported, as users expect to see them.

use super::{NameFilter, OsConfig, io_error, parse_error, push, read_all};
use crate::collectors::CollectError;
use dcmon_wire::MetricSample;
use serde::Deserialize;
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub(super) struct Filesystems {
    /// `1/mountinfo`, then `self/mountinfo`.
    mountinfo: [PathBuf; 2],
    /// Index into `mountinfo` of the file that worked last.
    mountinfo_choice: usize,
    /// Where the host's `/` is visible (canonical when it could be resolved).
    rootfs: PathBuf,
    /// `rootfs` as it prefixes mount points in a container's own mount table; `None` for `/`.
    rootfs_prefix: Option<String>,
    /// Docker's data directory on the host (absolute, looked up below `rootfs`).
    docker_data_dir: PathBuf,
    fs_types: NameFilter,
    mount_points: MountFilter,
    statfs: StatfsRunner,
    mounts: Vec<Mount>,
    paths: Vec<PathBuf>,
    outcomes: Vec<Outcome>,
}

/// One line of mountinfo.
#[derive(Debug)]
struct Mount {
    mountpoint: String,
    fstype: String,
    device: String,
    readonly: bool,
}

/// What a `node_filesystem_*` family reports for a mount.
#[derive(Clone, Copy)]
enum Value {
    Stat(fn(&FsStats) -> u64),
    /// 1 when statvfs failed or is stuck (the other families are then absent).
    DeviceError,
    ReadOnly,
}

const FAMILIES: [(&str, Value); 7] = [
    ("node_filesystem_avail_bytes", Value::Stat(|s| s.avail)),
    ("node_filesystem_device_error", Value::DeviceError),
    ("node_filesystem_files", Value::Stat(|s| s.files)),
    ("node_filesystem_files_free", Value::Stat(|s| s.files_free)),
    ("node_filesystem_free_bytes", Value::Stat(|s| s.free)),
    ("node_filesystem_readonly", Value::ReadOnly),
    ("node_filesystem_size_bytes", Value::Stat(|s| s.size)),
];

/// Mount points matched as a tree (`/dev` is `/dev` and below) or, with a trailing `*`,
/// as a plain prefix (`/var/lib/docker/*` is only what is below).
#[derive(Debug, Default)]
struct MountFilter {
    trees: Vec<String>,
    prefixes: Vec<String>,
}

impl MountFilter {
    fn new(patterns: &[String]) -> Self {
        let mut f = Self::default();
        for p in patterns {
            match p.strip_suffix('*') {
                Some(prefix) => f.prefixes.push(prefix.to_owned()),
                None => f.trees.push(p.trim_end_matches('/').to_owned()),
            }
        }
        f
    }

    fn matches(&self, mountpoint: &str) -> bool {
        self.trees.iter().any(|t| contains(t, mountpoint))
            || self
                .prefixes
                .iter()
                .any(|p| mountpoint.starts_with(p.as_str()))
    }
}

/// Whether `path` is `dir` or below it (`dir` without a trailing slash; "" is `/`).
fn contains(dir: &str, path: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The part of `/etc/docker/daemon.json` we read.
#[derive(Deserialize)]
struct DaemonJson {
    #[serde(rename = "data-root")]
    data_root: Option<PathBuf>,
}

/// Docker's data directory: `data-root` of daemon.json when set, else the configured one.
fn resolve_docker_data_dir(cfg: &OsConfig) -> PathBuf {
    let path = cfg.rootfs.join("etc/docker/daemon.json");
    let parsed = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<DaemonJson>(&bytes).map_err(|e| e.to_string()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return cfg.docker_data_dir.clone(),
        Err(e) => Err(e.to_string()),
    };
    match parsed {
        Ok(DaemonJson {
            data_root: Some(dir),
        }) if dir.is_absolute() => dir,
        Ok(_) => cfg.docker_data_dir.clone(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, docker_data_dir = %cfg.docker_data_dir.display(),
                "cannot read Docker's data-root; using docker_data_dir");
            cfg.docker_data_dir.clone()
        }
    }
}

impl Filesystems {
    pub(super) fn new(cfg: &OsConfig) -> Self {
        let rootfs = std::fs::canonicalize(&cfg.rootfs).unwrap_or_else(|_| cfg.rootfs.clone());
        let rootfs_prefix = match rootfs.to_str() {
            Some("/") | None => None,
            Some(s) => Some(s.trim_end_matches('/').to_owned()),
        };
        Self {
            mountinfo: [
                cfg.proc_root.join("1/mountinfo"),
                cfg.proc_root.join("self/mountinfo"),
            ],
            mountinfo_choice: 0,
            docker_data_dir: resolve_docker_data_dir(cfg),
            rootfs,
            rootfs_prefix,
            fs_types: NameFilter::new(&cfg.exclude_fs_types),
            mount_points: MountFilter::new(&cfg.exclude_mount_points),
            statfs: StatfsRunner::new(statvfs, cfg.mount_timeout),
            mounts: Vec::new(),
            paths: Vec::new(),
            outcomes: Vec::new(),
        }
    }

    #[cfg(test)]
    pub(super) fn set_statfs(&mut self, statfs: StatFs) {
        self.statfs = StatfsRunner::new(statfs, self.statfs.timeout);
    }

    fn read_mountinfo(&mut self, buf: &mut Vec<u8>) -> Result<(), CollectError> {
        loop {
            let path = &self.mountinfo[self.mountinfo_choice];
            match read_all(path, buf) {
                Ok(()) => break,
                // init's mount table is hidden by `hidepid` and from unprivileged users.
                Err(e)
                    if self.mountinfo_choice == 0
                        && matches!(
                            e.kind(),
                            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                        ) =>
                {
                    tracing::debug!(path = %path.display(), error = %e, "using the agent's own mount table");
                    self.mountinfo_choice = 1;
                }
                Err(e) => return Err(io_error(path, e)),
            }
        }
        let text = String::from_utf8_lossy(buf);
        self.mounts.clear();
        parse_mountinfo(&text, &mut self.mounts)
            .map_err(|m| parse_error(&self.mountinfo[self.mountinfo_choice], m))?;
        if let Some(prefix) = &self.rootfs_prefix {
            for m in &mut self.mounts {
                if let Some(rest) = m.mountpoint.strip_prefix(prefix.as_str()) {
                    if rest.is_empty() {
                        m.mountpoint = "/".to_owned();
                    } else if rest.starts_with('/') {
                        m.mountpoint = rest.to_owned();
                    }
                }
            }
        }
        Ok(())
    }

    /// Docker's data directory as a host path with symbolic links resolved (people move
    /// it to a bigger disk with a link), or `None` when it does not exist.
    fn docker_dir(&self) -> Option<String> {
        let relative = self
            .docker_data_dir
            .strip_prefix("/")
            .unwrap_or(&self.docker_data_dir);
        let real = std::fs::canonicalize(self.rootfs.join(relative)).ok()?;
        let host = match real.strip_prefix(&self.rootfs) {
            Ok(rest) => Path::new("/").join(rest),
            Err(_) => real,
        };
        host.to_str().map(str::to_owned)
    }

    pub(super) fn collect(
        &mut self,
        buf: &mut Vec<u8>,
        out: &mut Vec<MetricSample>,
    ) -> Result<(), CollectError> {
        self.read_mountinfo(buf)?;
        let mounts = &self.mounts;

        // A mount point mounted over is hidden: the last line for it is the visible one.
        let mut seen = HashSet::with_capacity(mounts.len());
        let mut visible = vec![false; mounts.len()];
        for (i, m) in mounts.iter().enumerate().rev() {
            visible[i] = seen.insert(m.mountpoint.as_str());
        }
        let reported: Vec<bool> = mounts
            .iter()
            .zip(&visible)
            .map(|(m, &v)| {
                v && !self.fs_types.matches(&m.fstype) && !self.mount_points.matches(&m.mountpoint)
            })
            .collect();
        let root = (0..mounts.len()).find(|&i| visible[i] && mounts[i].mountpoint == "/");
        let docker = self.docker_dir().and_then(|dir| {
            (0..mounts.len())
                .filter(|&i| visible[i] && contains(&mounts[i].mountpoint, &dir))
                .max_by_key(|&i| mounts[i].mountpoint.len())
        });

        // statvfs every reported mount, and the role mounts even when not reported.
        let wanted: Vec<usize> = (0..mounts.len())
            .filter(|&i| reported[i] || Some(i) == root || Some(i) == docker)
            .collect();
        self.paths.clear();
        for &i in &wanted {
            self.paths.push(
                self.rootfs
                    .join(mounts[i].mountpoint.trim_start_matches('/')),
            );
        }
        self.statfs.run(&self.paths, &mut self.outcomes);
        let mut slot = vec![None; mounts.len()];
        for (k, &i) in wanted.iter().enumerate() {
            slot[i] = Some(k);
        }
        let outcome = |i: usize| slot[i].map_or(&Outcome::NotRun, |k| &self.outcomes[k]);

        // Family by family, in node_exporter's (alphabetical) order.
        for (metric, value) in FAMILIES {
            for (i, m) in mounts.iter().enumerate().filter(|&(i, _)| reported[i]) {
                let value = match (value, outcome(i)) {
                    (_, Outcome::NotRun) => continue,
                    (Value::DeviceError, o) => f64::from(u8::from(!matches!(o, Outcome::Stats(_)))),
                    (Value::ReadOnly, _) => f64::from(u8::from(m.readonly)),
                    (Value::Stat(get), Outcome::Stats(s)) => get(s) as f64,
                    (Value::Stat(_), _) => continue,
                };
                let labels = [
                    ("device", m.device.as_str()),
                    ("fstype", &m.fstype),
                    ("mountpoint", &m.mountpoint),
                ];
                push(out, metric, &labels, value);
            }
        }
        for (role, index) in [("root", root), ("docker", docker)] {
            let Some(i) = index else { continue };
            if let Outcome::Stats(s) = outcome(i) {
                if let Some(ratio) = s.used_ratio() {
                    push(
                        out,
                        "dcmon_filesystem_used_ratio",
                        &[("role", role), ("mountpoint", &mounts[i].mountpoint)],
                        ratio,
                    );
                }
            }
        }
        Ok(())
    }
}

/// Parses mountinfo (proc(5)): `id parent major:minor root mountpoint options [optional
/// fields...] - fstype source super-options`.
fn parse_mountinfo(text: &str, mounts: &mut Vec<Mount>) -> Result<(), String> {
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split(' ');
        let (Some(mountpoint), Some(options)) = (fields.nth(4), fields.next()) else {
            return Err(format!("line {}: fewer than 6 fields", n + 1));
        };
        if !fields.by_ref().any(|f| f == "-") {
            return Err(format!("line {}: no ` - ` separator", n + 1));
        }
        let (Some(fstype), Some(source)) = (fields.next(), fields.next()) else {
            return Err(format!("line {}: no file system type and source", n + 1));
        };
        mounts.push(Mount {
            mountpoint: unescape(mountpoint),
            fstype: fstype.to_owned(),
            device: unescape(source),
            readonly: options.split(',').any(|o| o == "ro"),
        });
    }
    Ok(())
}

/// Undoes the kernel's octal escapes of space, tab, newline and backslash (`\040`).
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What statvfs reported, in bytes and inodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct FsStats {
    pub(super) size: u64,
    pub(super) free: u64,
    pub(super) avail: u64,
    pub(super) files: u64,
    pub(super) files_free: u64,
}

impl FsStats {
    /// Used fraction as df computes Use%: used / (used + available to users), so the
    /// blocks reserved for root count as neither. `None` for an empty file system.
    fn used_ratio(&self) -> Option<f64> {
        let used = self.size.saturating_sub(self.free) as f64;
        let denominator = used + self.avail as f64;
        (denominator > 0.0).then(|| used / denominator)
    }
}

pub(super) type StatFs = fn(&Path) -> io::Result<FsStats>;

fn statvfs(path: &Path) -> io::Result<FsStats> {
    let s = rustix::fs::statvfs(path)?;
    // f_blocks and friends count fragments of f_frsize bytes (POSIX statvfs).
    let unit = s.f_frsize;
    Ok(FsStats {
        size: s.f_blocks.saturating_mul(unit),
        free: s.f_bfree.saturating_mul(unit),
        avail: s.f_bavail.saturating_mul(unit),
        files: s.f_files,
        files_free: s.f_ffree,
    })
}

/// The result of one mount's statvfs in this collection.
#[derive(Debug, PartialEq)]
enum Outcome {
    Stats(FsStats),
    /// statvfs failed (logged at debug level).
    Failed,
    /// statvfs has not returned, in this collection or an earlier one.
    Stuck,
    /// Not attempted: the helper thread was stuck on an earlier mount.
    NotRun,
}

/// Runs statvfs calls on a long-lived helper thread, waiting at most `timeout` for one
/// collection's calls. A thread stuck in a call is abandoned (it exits once the call
/// returns) and the next collection starts a fresh one.
struct StatfsRunner {
    statfs: StatFs,
    timeout: Duration,
    worker: Option<Arc<Worker>>,
    /// Paths whose call has not returned, shared with the abandoned threads running them.
    stuck: Arc<Mutex<Vec<PathBuf>>>,
}

#[derive(Default)]
struct Worker {
    job: Mutex<Job>,
    posted: Condvar,
    finished: Condvar,
}

#[derive(Default)]
struct Job {
    paths: Vec<PathBuf>,
    slots: Vec<Slot>,
    /// The next slot the thread looks at.
    next: usize,
    /// The slot whose call is under way.
    running: Option<usize>,
    /// Posted and not finished.
    pending: bool,
    /// The collector gave up on this thread: exit.
    abandoned: bool,
}

enum Slot {
    Todo,
    Skip,
    Done(io::Result<FsStats>),
}

/// Locks, ignoring poisoning: the guarded data are plain values that a panic cannot leave
/// half-updated in a way that matters here.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StatfsRunner {
    fn new(statfs: StatFs, timeout: Duration) -> Self {
        Self {
            statfs,
            timeout,
            worker: None,
            stuck: Arc::default(),
        }
    }

    fn spawn(&mut self) -> io::Result<Arc<Worker>> {
        let worker = Arc::new(Worker::default());
        let (w, statfs, stuck) = (Arc::clone(&worker), self.statfs, Arc::clone(&self.stuck));
        std::thread::Builder::new()
            .name("dcmon-statfs".to_owned())
            .stack_size(64 * 1024)
            .spawn(move || work(&w, statfs, &stuck))?;
        self.worker = Some(Arc::clone(&worker));
        Ok(worker)
    }

    /// Fills `outcomes` (one per path) within about `timeout`.
    fn run(&mut self, paths: &[PathBuf], outcomes: &mut Vec<Outcome>) {
        outcomes.clear();
        if paths.is_empty() {
            return;
        }
        let worker = match self.worker.clone().map_or_else(|| self.spawn(), Ok) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the statvfs thread; file systems not measured");
                outcomes.extend(paths.iter().map(|_| Outcome::NotRun));
                return;
            }
        };
        let mut job = lock(&worker.job);
        paths.clone_into(&mut job.paths);
        {
            let stuck = lock(&self.stuck);
            job.slots.clear();
            job.slots.extend(paths.iter().map(|p| {
                if stuck.contains(p) {
                    Slot::Skip
                } else {
                    Slot::Todo
                }
            }));
        }
        job.next = 0;
        job.pending = true;
        worker.posted.notify_one();
        let (mut job, _) = worker
            .finished
            .wait_timeout_while(job, self.timeout, |j| j.pending)
            .unwrap_or_else(PoisonError::into_inner);
        let hung = if job.pending {
            job.abandoned = true;
            self.worker = None;
            job.running
        } else {
            None
        };
        if let Some(i) = hung {
            tracing::warn!(path = %paths[i].display(), timeout = ?self.timeout,
                "statvfs did not return in time; skipping this mount until it does");
            lock(&self.stuck).push(paths[i].clone());
        }
        for (i, slot) in job.slots.iter_mut().enumerate() {
            outcomes.push(match std::mem::replace(slot, Slot::Todo) {
                Slot::Done(Ok(s)) => Outcome::Stats(s),
                Slot::Done(Err(e)) => {
                    tracing::debug!(path = %paths[i].display(), error = %e, "statvfs failed");
                    Outcome::Failed
                }
                Slot::Skip => Outcome::Stuck,
                Slot::Todo if hung == Some(i) => Outcome::Stuck,
                Slot::Todo => Outcome::NotRun,
            });
        }
    }
}

impl Drop for StatfsRunner {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            lock(&w.job).abandoned = true;
            w.posted.notify_one();
        }
    }
}

/// The helper thread: runs posted jobs until abandoned.
fn work(worker: &Worker, statfs: StatFs, stuck: &Mutex<Vec<PathBuf>>) {
    let mut job = lock(&worker.job);
    loop {
        if job.abandoned {
            return;
        }
        if !job.pending {
            job = worker
                .posted
                .wait(job)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        let i = job.next;
        if i >= job.slots.len() {
            job.pending = false;
            worker.finished.notify_one();
            continue;
        }
        job.next += 1;
        if !matches!(job.slots[i], Slot::Todo) {
            continue;
        }
        let path = job.paths[i].clone();
        job.running = Some(i);
        drop(job);
        let result = statfs(&path);
        job = lock(&worker.job);
        job.running = None;
        if job.abandoned {
            // The collector marked this path stuck when it gave up; the call is back now.
            lock(stuck).retain(|p| *p != path);
            return;
        }
        job.slots[i] = Slot::Done(result);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Deterministic sizes for the fixture's mounts, by mount point below the rootfs.
    pub(in crate::collectors::os) fn fake_statfs(path: &Path) -> io::Result<FsStats> {
        let p = path.to_string_lossy();
        let mountpoint = p
            .split_once("testdata/rootfs")
            .map_or("?", |(_, m)| m.trim_end_matches('/'));
        const G: u64 = 1 << 30;
        let (size, free, avail, files, files_free) = match mountpoint {
            "" => (915 * G, 400 * G, 353 * G, 61_054_976, 59_000_000),
            "/boot/efi" => (G / 2, G / 2 - 6_385_664, G / 2 - 6_385_664, 0, 0),
            "/run" => (
                6_590_000_000,
                6_580_000_000,
                6_580_000_000,
                8_044_830,
                8_043_900,
            ),
            "/run/user/1000" => (
                6_590_000_000,
                6_590_000_000,
                6_590_000_000,
                1_608_966,
                1_608_930,
            ),
            "/data" => (7_450 * G, 1_200 * G, 1_200 * G, 745_000_000, 744_000_000),
            "/srv/datasets" => (7_450 * G, 1_200 * G, 1_200 * G, 745_000_000, 744_000_000),
            "/mnt/team share" => return Err(io::Error::from_raw_os_error(116)), // ESTALE
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no fake for {p}"),
                ));
            }
        };
        Ok(FsStats {
            size,
            free,
            avail,
            files,
            files_free,
        })
    }

    fn check(input: &str, expect: &str) {
        let mut mounts = Vec::new();
        let got = match parse_mountinfo(input, &mut mounts) {
            Ok(()) => mounts
                .iter()
                .map(|m| {
                    format!(
                        "{} {} {} {}\n",
                        m.mountpoint,
                        m.fstype,
                        m.device,
                        if m.readonly { "ro" } else { "rw" }
                    )
                })
                .collect(),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect);
    }

    #[test]
    fn parses_mountinfo() {
        check(
            "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n\
             36 35 98:0 /mnt1 /mnt/my\\040disk ro,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n\
             40 27 0:38 / /mnt/a\\134b rw - fuse.sshfs me@host:/x\\040y rw\n",
            "/ ext4 /dev/vda rw\n/mnt/my disk ext3 /dev/root ro\n/mnt/a\\b fuse.sshfs me@host:/x y rw\n",
        );
        check("1 2 3:4 / /x rw\n", "error: line 1: no ` - ` separator");
        check("1 2 3:4 /\n", "error: line 1: fewer than 6 fields");
        check(
            "1 2 3:4 / /x rw - ext4\n",
            "error: line 1: no file system type and source",
        );
        check("", "");
    }

    #[test]
    fn unescapes_octal_only() {
        let check = |input: &str, expect: &str| assert_eq!(unescape(input), expect);
        check("/a\\040b", "/a b");
        check("/a\\011b\\012", "/a\tb\n");
        check("/a\\9", "/a\\9");
        check("/a\\04", "/a\\04");
        check("/plain", "/plain");
    }

    #[test]
    fn mount_filter_trees_and_prefixes() {
        let f = MountFilter::new(&[
            "/dev".into(),
            "/var/lib/docker/*".into(),
            "/run/credentials/*".into(),
        ]);
        let check = |mp: &str, expect: bool| assert_eq!(f.matches(mp), expect, "{mp}");
        check("/dev", true);
        check("/dev/shm", true);
        check("/devices", false);
        check("/var/lib/docker", false);
        check("/var/lib/docker/overlay2/x/merged", true);
        check("/run/credentials/getty.service", true);
        check("/", false);
        assert!(MountFilter::new(&["/".into()]).matches("/home"));
    }

    #[test]
    fn used_ratio_is_dfs_use_percent() {
        let s = |size, free, avail| FsStats {
            size,
            free,
            avail,
            files: 0,
            files_free: 0,
        };
        // df: 100 blocks, 40 free, 35 available to users: used 60, Use% = 60/95.
        assert_eq!(s(100, 40, 35).used_ratio(), Some(60.0 / 95.0));
        assert_eq!(s(100, 100, 100).used_ratio(), Some(0.0));
        assert_eq!(s(0, 0, 0).used_ratio(), None);
    }

    #[test]
    fn docker_data_root_from_daemon_json() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = OsConfig {
            rootfs: dir.path().to_path_buf(),
            ..OsConfig::default()
        };
        assert_eq!(
            resolve_docker_data_dir(&cfg),
            PathBuf::from("/var/lib/docker")
        );
        std::fs::create_dir_all(dir.path().join("etc/docker")).unwrap();
        let json = dir.path().join("etc/docker/daemon.json");
        std::fs::write(
            &json,
            r#"{"data-root": "/mnt/fast/docker", "log-driver": "json-file"}"#,
        )
        .unwrap();
        assert_eq!(
            resolve_docker_data_dir(&cfg),
            PathBuf::from("/mnt/fast/docker")
        );
        std::fs::write(&json, r#"{"log-driver": "json-file"}"#).unwrap();
        assert_eq!(
            resolve_docker_data_dir(&cfg),
            PathBuf::from("/var/lib/docker")
        );
        std::fs::write(&json, "{not json").unwrap();
        assert_eq!(
            resolve_docker_data_dir(&cfg),
            PathBuf::from("/var/lib/docker")
        );
    }

    #[test]
    fn falls_back_to_own_mount_table() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        std::fs::create_dir_all(proc.join("self")).unwrap();
        std::fs::write(
            proc.join("self/mountinfo"),
            "27 1 254:0 / / rw - ext4 /dev/vda rw\n",
        )
        .unwrap();
        let cfg = OsConfig {
            proc_root: proc,
            rootfs: dir.path().to_path_buf(),
            ..OsConfig::default()
        };
        let mut fs = Filesystems::new(&cfg);
        let mut out = Vec::new();
        fs.collect(&mut Vec::new(), &mut out).unwrap();
        assert_eq!(fs.mountinfo_choice, 1);
        let text = super::super::tests::render(&out);
        assert!(
            text.contains(
                r#"node_filesystem_device_error{device="/dev/vda",fstype="ext4",mountpoint="/"} 0"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"dcmon_filesystem_used_ratio{mountpoint="/",role="root"} "#),
            "{text}"
        );
    }

    static SLOW_CALLS: AtomicU32 = AtomicU32::new(0);

    /// `/slow` hangs on its first call only (a NFS server that comes back).
    fn slow_statfs(path: &Path) -> io::Result<FsStats> {
        if path.ends_with("slow") && SLOW_CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(400));
        }
        Ok(FsStats {
            size: 2,
            free: 1,
            avail: 1,
            files: 0,
            files_free: 0,
        })
    }

    #[test]
    fn stuck_mount_is_skipped_until_its_call_returns() {
        let mut r = StatfsRunner::new(slow_statfs, Duration::from_millis(100));
        let paths: Vec<PathBuf> = ["/a", "/slow", "/b"].iter().map(PathBuf::from).collect();
        let mut out = Vec::new();
        let ok = || {
            Outcome::Stats(FsStats {
                size: 2,
                free: 1,
                avail: 1,
                files: 0,
                files_free: 0,
            })
        };
        let started = std::time::Instant::now();
        r.run(&paths, &mut out);
        assert!(started.elapsed() < Duration::from_millis(350));
        assert_eq!(out, [ok(), Outcome::Stuck, Outcome::NotRun]);
        // A fresh thread measures the others; the stuck mount is not asked again.
        r.run(&paths, &mut out);
        assert_eq!(out, [ok(), Outcome::Stuck, ok()]);
        std::thread::sleep(Duration::from_millis(500));
        r.run(&paths, &mut out);
        assert_eq!(out, [ok(), ok(), ok()]);
    }
}
