//! The `os` collector: CPU, memory, load, file systems, network, disks, hardware sensors
//! and system identity, named as node_exporter names them.
//!
//! One file per source: [`stat`] (`/proc/stat`), [`meminfo`], [`loadavg`], [`netdev`]
//! (`/proc/net/dev`), [`diskstats`], [`filesystem`] (mountinfo + statvfs), [`hwmon`]
//! (`/sys/class/hwmon`, thermal zones), [`system`] (uname, time, pids).
//!
//! Everything is read below the configured roots, so tests run on the fixture tree in
//! `testdata/`. Files are parsed by hand from one reused buffer: a collection of ~200
//! series must cost under 2 ms (DESIGN §10), which a general procfs library does not give.
//!
//! Partial failure: every source is collected even when another fails; the first error is
//! returned after all of them ran, and the samples of the sources that worked stay in
//! `out` (the runner then reports `dcmon_collector_up{collector="os"} 0`). Sources that
//! a machine may simply lack (hwmon, thermal zones, Docker) are not errors.

mod diskstats;
mod filesystem;
mod hwmon;
mod loadavg;
mod meminfo;
mod netdev;
mod stat;
mod system;

use super::push;
use super::{CollectError, Collector};
use dcmon_wire::MetricSample;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Settings of the `os` collector (`collectors.os` in `agent.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OsConfig {
    /// Where procfs is mounted (e.g. `/host/proc` when the agent runs in a container).
    pub proc_root: PathBuf,
    /// Where sysfs is mounted (e.g. `/host/sys`).
    pub sys_root: PathBuf,
    /// Where the host's root file system is visible, like node_exporter's `--path.rootfs`:
    /// statvfs, Docker's data directory and `/etc/docker/daemon.json` are looked up below
    /// it. In a container, mount the host's `/` there and share the host's PID namespace,
    /// so that `<proc_root>/1/mountinfo` lists the host's mounts.
    pub rootfs: PathBuf,
    /// Docker's data directory, for `dcmon_filesystem_used_ratio{role="docker"}`;
    /// `data-root` in `/etc/docker/daemon.json` wins when set (read once at start-up).
    pub docker_data_dir: PathBuf,
    /// Network interfaces not reported: exact names, or prefixes ending in `*` (`veth*`).
    pub exclude_interfaces: Vec<String>,
    /// File system types not reported: exact names, or prefixes ending in `*`.
    /// Default: the pseudo file systems node_exporter ignores (tmpfs is reported).
    pub exclude_fs_types: Vec<String>,
    /// Mount points not reported: `/dev` excludes `/dev` and everything below it,
    /// `/var/lib/docker/*` only what is below `/var/lib/docker` (node_exporter's default
    /// plus kubelet's and containerd's per-pod mounts).
    pub exclude_mount_points: Vec<String>,
    /// How long the statvfs calls of one collection may take together. A mount whose call
    /// has not returned by then (a dead NFS server) is reported with
    /// `node_filesystem_device_error 1` and skipped until that call returns.
    #[serde(with = "humantime_serde")]
    pub mount_timeout: Duration,
}

impl Default for OsConfig {
    fn default() -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        Self {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            rootfs: PathBuf::from("/"),
            docker_data_dir: PathBuf::from("/var/lib/docker"),
            exclude_interfaces: strings(&[
                "lo", "veth*", "docker*", "br-*", "virbr*", "vnet*", "cali*", "flannel*", "cni*",
            ]),
            exclude_fs_types: strings(&[
                "autofs",
                "binfmt_misc",
                "bpf",
                "cgroup",
                "cgroup2",
                "configfs",
                "debugfs",
                "devpts",
                "devtmpfs",
                "erofs",
                "fusectl",
                "hugetlbfs",
                "iso9660",
                "mqueue",
                "nsfs",
                "overlay",
                "proc",
                "procfs",
                "pstore",
                "rpc_pipefs",
                "securityfs",
                "selinuxfs",
                "squashfs",
                "sysfs",
                "tracefs",
            ]),
            exclude_mount_points: strings(&[
                "/dev",
                "/proc",
                "/sys",
                "/run/credentials/*",
                "/var/lib/docker/*",
                "/var/lib/containers/storage/*",
                "/var/lib/kubelet/*",
                "/run/containerd/*",
            ]),
            mount_timeout: Duration::from_secs(2),
        }
    }
}

impl OsConfig {
    /// Every problem, each naming its setting under `collectors.os`.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut p = Vec::new();
        for (field, list) in [
            ("exclude_interfaces", &self.exclude_interfaces),
            ("exclude_fs_types", &self.exclude_fs_types),
            ("exclude_mount_points", &self.exclude_mount_points),
        ] {
            for (i, pattern) in list.iter().enumerate() {
                if pattern.trim_end_matches('*').contains('*') || pattern.ends_with("**") {
                    p.push(format!(
                        "collectors.os.{field}[{i}]: {pattern:?}: `*` is only allowed once, at the end"
                    ));
                }
                if field == "exclude_mount_points" && !pattern.starts_with('/') {
                    p.push(format!(
                        "collectors.os.{field}[{i}]: {pattern:?} must be an absolute path"
                    ));
                }
            }
        }
        if self.mount_timeout.is_zero() {
            p.push("collectors.os.mount_timeout: must be more than 0s".to_owned());
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }
}

/// Names matched exactly, or by prefix when the pattern ends in `*`.
#[derive(Debug, Default)]
struct NameFilter {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl NameFilter {
    fn new(patterns: &[String]) -> Self {
        let mut f = Self::default();
        for p in patterns {
            match p.strip_suffix('*') {
                Some(prefix) => f.prefixes.push(prefix.to_owned()),
                None => f.exact.push(p.clone()),
            }
        }
        f
    }

    fn matches(&self, name: &str) -> bool {
        self.exact.iter().any(|e| e == name)
            || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }
}

/// Reads procfs and sysfs by hand; see the module documentation.
pub struct OsCollector {
    proc_root: PathBuf,
    stat_path: PathBuf,
    meminfo_path: PathBuf,
    loadavg_path: PathBuf,
    netdev_path: PathBuf,
    diskstats_path: PathBuf,
    interfaces: NameFilter,
    filesystems: filesystem::Filesystems,
    hwmon: hwmon::Hwmon,
    system: system::System,
    /// The one buffer every file is read into, reused across collections.
    buf: Vec<u8>,
    /// The clock of `node_time_seconds`; tests fix it.
    now: fn() -> SystemTime,
}

impl OsCollector {
    /// Builds the collector; reads `/etc/docker/daemon.json` once (a problem there is
    /// logged once and the configured `docker_data_dir` used).
    pub fn new(cfg: OsConfig) -> Self {
        let proc = |rel: &str| cfg.proc_root.join(rel);
        Self {
            stat_path: proc("stat"),
            meminfo_path: proc("meminfo"),
            loadavg_path: proc("loadavg"),
            netdev_path: proc("net/dev"),
            diskstats_path: proc("diskstats"),
            interfaces: NameFilter::new(&cfg.exclude_interfaces),
            filesystems: filesystem::Filesystems::new(&cfg),
            hwmon: hwmon::Hwmon::new(&cfg.sys_root),
            system: system::System::new(&cfg.proc_root),
            proc_root: cfg.proc_root,
            buf: Vec::with_capacity(16 * 1024),
            now: SystemTime::now,
        }
    }

    fn collect_stat(&mut self, out: &mut Vec<MetricSample>) -> Result<(), CollectError> {
        let text = read_text(&self.stat_path, &mut self.buf)?;
        stat::parse(text, out).map_err(|m| parse_error(&self.stat_path, m))
    }

    fn collect_meminfo(&mut self, out: &mut Vec<MetricSample>) -> Result<(), CollectError> {
        let text = read_text(&self.meminfo_path, &mut self.buf)?;
        meminfo::parse(text, out).map_err(|m| parse_error(&self.meminfo_path, m))
    }

    fn collect_loadavg(&mut self, out: &mut Vec<MetricSample>) -> Result<(), CollectError> {
        let text = read_text(&self.loadavg_path, &mut self.buf)?;
        loadavg::parse(text, out).map_err(|m| parse_error(&self.loadavg_path, m))
    }

    fn collect_netdev(&mut self, out: &mut Vec<MetricSample>) -> Result<(), CollectError> {
        let text = read_text(&self.netdev_path, &mut self.buf)?;
        netdev::parse(text, &self.interfaces, out).map_err(|m| parse_error(&self.netdev_path, m))
    }

    fn collect_diskstats(&mut self, out: &mut Vec<MetricSample>) -> Result<(), CollectError> {
        let text = read_text(&self.diskstats_path, &mut self.buf)?;
        diskstats::parse(text, out).map_err(|m| parse_error(&self.diskstats_path, m))
    }
}

impl Collector for OsCollector {
    fn name(&self) -> &'static str {
        "os"
    }

    fn is_available(&self) -> bool {
        std::fs::File::open(&self.stat_path).is_ok()
    }

    fn collect(&mut self, out: &mut Vec<MetricSample>) -> Result<(), CollectError> {
        let results = [
            self.collect_stat(out),
            self.collect_loadavg(out),
            self.collect_meminfo(out),
            self.filesystems.collect(&mut self.buf, out),
            self.collect_netdev(out),
            self.collect_diskstats(out),
            self.hwmon.collect(&mut self.buf, out),
            self.system
                .collect(&self.proc_root, (self.now)(), &mut self.buf, out),
        ];
        results.into_iter().find(Result::is_err).unwrap_or(Ok(()))
    }
}

fn io_error(path: &Path, source: std::io::Error) -> CollectError {
    CollectError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn parse_error(path: &Path, message: String) -> CollectError {
    CollectError::Parse {
        path: path.display().to_string(),
        message,
    }
}

/// Reads all of `path` into `buf` (cleared first) and returns it as text.
///
/// procfs files larger than a page come in several reads (seq_file hands out one page of
/// records per read), so this reads until end of file; the open/read/close is done by
/// hand because `std::fs::read` also stats the file and sizes a fresh buffer each time.
fn read_text<'b>(path: &Path, buf: &'b mut Vec<u8>) -> Result<&'b str, CollectError> {
    read_all(path, buf).map_err(|e| io_error(path, e))?;
    std::str::from_utf8(buf).map_err(|e| parse_error(path, format!("not UTF-8: {e}")))
}

fn read_all(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    let mut file = std::fs::File::open(path)?;
    loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(buf.capacity().max(4096));
        }
        let start = buf.len();
        buf.resize(buf.capacity(), 0);
        match file.read(&mut buf[start..]) {
            Ok(0) => {
                buf.truncate(start);
                return Ok(());
            }
            Ok(n) => buf.truncate(start + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => buf.truncate(start),
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        }
    }
}

/// Reads a sysfs attribute with a single `read`: attributes are at most a page, and some
/// hwmon drivers answer a second read with EAGAIN (node_exporter reads them the same way).
/// Returns the value with surrounding white space trimmed.
fn read_attribute<'b>(path: &Path, buf: &'b mut Vec<u8>) -> std::io::Result<&'b str> {
    buf.clear();
    buf.resize(4096, 0);
    let n = std::fs::File::open(path)?.read(buf)?;
    buf.truncate(n);
    std::str::from_utf8(buf)
        .map(str::trim)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Parses a decimal field of a procfs line.
fn parse_u64(field: &str, what: &str) -> Result<u64, String> {
    field
        .parse()
        .map_err(|_| format!("{what}: {field:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::Collector;
    use dcmon_wire::Scrape;
    use std::fmt::Write as _;

    /// One line per sample, `name{labels} value`, in emission order.
    /// Runs a parser on `input`; its rendered samples (or its error) must equal `expect`.
    pub(super) fn check_parse(
        parse: impl FnOnce(&str, &mut Vec<MetricSample>) -> Result<(), String>,
        input: &str,
        expect: &str,
    ) {
        let mut out = Vec::new();
        let got = match parse(input, &mut out) {
            Ok(()) => render(&out),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect);
    }

    pub(super) fn render(samples: &[MetricSample]) -> String {
        let mut s = String::new();
        for m in samples {
            let _ = writeln!(s, "{} {}", m.labels, m.value);
        }
        s
    }

    pub(super) fn testdata() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/collectors/os/testdata")
    }

    fn fixture_config() -> OsConfig {
        let root = testdata();
        OsConfig {
            proc_root: root.join("proc"),
            sys_root: root.join("sys"),
            rootfs: root.join("rootfs"),
            ..OsConfig::default()
        }
    }

    fn fixture_collector() -> OsCollector {
        let mut c = OsCollector::new(fixture_config());
        c.now = || SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_123_456);
        c.filesystems.set_statfs(filesystem::tests::fake_statfs);
        c
    }

    #[test]
    fn config_defaults_round_trip_and_validate() {
        let c = OsConfig::default();
        let yaml = serde_norway::to_string(&c).unwrap();
        assert_eq!(serde_norway::from_str::<OsConfig>(&yaml).unwrap(), c);
        assert_eq!(c.validate(), Ok(()));
        let partial: OsConfig = serde_norway::from_str("proc_root: /host/proc\n").unwrap();
        assert_eq!(partial.proc_root, PathBuf::from("/host/proc"));
        assert_eq!(partial.sys_root, PathBuf::from("/sys"));
        assert!(serde_norway::from_str::<OsConfig>("proc_rot: /x\n").is_err());
        let bad = OsConfig {
            exclude_interfaces: vec!["e*th".into()],
            exclude_mount_points: vec!["dev".into()],
            mount_timeout: Duration::ZERO,
            ..OsConfig::default()
        };
        assert_eq!(
            bad.validate().unwrap_err(),
            [
                r#"collectors.os.exclude_interfaces[0]: "e*th": `*` is only allowed once, at the end"#,
                r#"collectors.os.exclude_mount_points[0]: "dev" must be an absolute path"#,
                "collectors.os.mount_timeout: must be more than 0s",
            ]
        );
    }

    #[test]
    fn name_filter_matches_exact_names_and_trailing_wildcards() {
        let f = NameFilter::new(&["lo".into(), "veth*".into()]);
        let check = |name: &str, expect: bool| assert_eq!(f.matches(name), expect, "{name}");
        check("lo", true);
        check("lo0", false);
        check("veth", true);
        check("veth12ab", true);
        check("eth0", false);
    }

    /// The whole collector on the fixture tree, rendered as `/metrics` shows it. Set
    /// `UPDATE_EXPECT=1` to rewrite `testdata/expected.prom` after an intended change.
    #[test]
    fn fixture_tree_renders_expected_exposition() {
        let mut c = fixture_collector();
        assert!(c.is_available());
        let mut samples = Vec::new();
        let result = c.collect(&mut samples);
        assert!(result.is_ok(), "{result:?}");
        crate::collectors::check_exposition_snapshot(samples, &testdata().join("expected.prom"));
        // A second collection (cached hwmon discovery, warm statfs worker) gives the same.
        let mut again = Vec::new();
        c.collect(&mut again).unwrap();
        crate::collectors::check_exposition_snapshot(again, &testdata().join("expected.prom"));
    }

    #[test]
    fn missing_source_keeps_the_others_and_returns_the_first_error() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        std::fs::create_dir_all(&proc).unwrap();
        std::fs::write(proc.join("loadavg"), "0.50 0.40 0.30 1/100 42\n").unwrap();
        let mut c = OsCollector::new(OsConfig {
            proc_root: proc,
            sys_root: dir.path().join("sys"),
            rootfs: dir.path().to_path_buf(),
            ..OsConfig::default()
        });
        assert!(!c.is_available());
        let mut out = Vec::new();
        let err = c.collect(&mut out).unwrap_err().to_string();
        assert!(
            err.starts_with("reading ") && err.contains("proc/stat"),
            "{err}"
        );
        let text = render(&out);
        assert!(text.contains("node_load1 0.5\n"), "{text}");
        assert!(text.contains("node_time_seconds "), "{text}");
    }

    /// The real `/proc` and `/sys` of the machine running the tests.
    #[test]
    fn real_machine_has_cpu_load_and_root_filesystem() {
        let mut c = OsCollector::new(OsConfig::default());
        assert!(c.is_available());
        let mut out = Vec::new();
        let result = c.collect(&mut out);
        let text = render(&out);
        assert!(result.is_ok(), "{result:?}\n{text}");
        assert!(
            out.iter().any(|s| s.labels.metric() == "node_load1"),
            "{text}"
        );
        assert!(
            out.iter()
                .any(|s| s.labels.metric() == "node_cpu_seconds_total"
                    && s.labels.get("cpu") == Some("0")
                    && s.labels.get("mode") == Some("idle")),
            "{text}"
        );
        let root = out
            .iter()
            .find(|s| {
                s.labels.metric() == "dcmon_filesystem_used_ratio"
                    && s.labels.get("role") == Some("root")
            })
            .unwrap_or_else(|| panic!("no root ratio in\n{text}"));
        assert_eq!(root.labels.get("mountpoint"), Some("/"));
        assert!((0.0..=1.0).contains(&root.value), "{}", root.value);
        for s in &out {
            assert!(s.labels.get("host").is_none() && s.labels.get("instance").is_none());
        }
    }

    /// `cargo test --release -p dcmon-agent --lib -- --ignored --nocapture os_collection_timing`
    #[test]
    #[ignore = "timing; run by hand in release mode"]
    fn os_collection_timing() {
        for (what, mut c) in [
            ("real machine", OsCollector::new(OsConfig::default())),
            ("fixture", fixture_collector()),
        ] {
            let mut out = Vec::with_capacity(512);
            c.collect(&mut out).unwrap();
            let series = out.len();
            if std::env::var_os("PRINT_EXPOSITION").is_some() {
                let mut text = String::new();
                crate::exposition::prometheus_text(
                    &Scrape {
                        timestamp_ms: 0,
                        samples: out.clone(),
                    },
                    &mut text,
                );
                println!("{text}");
            }
            let rounds: u32 = 2000;
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                out.clear();
                let _ = c.collect(&mut out);
            }
            let per = started.elapsed() / rounds;
            println!("{what}: {series} series, {per:?} per collection");
        }
    }
}
