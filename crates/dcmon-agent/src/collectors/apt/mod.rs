//! The `apt` collector (Debian, Ubuntu): upgrades pending, security upgrades pending,
//! reboot required and the packages that require it, and how old apt's package lists
//! are. Computed from dpkg's and apt's state files alone ([`lists`]): apt is never run,
//! `apt update` least of all, and no subprocess is started.
//!
//! Reading every `Packages` file costs a few hundred ms on a real host, so the result is
//! cached: the state files' modification times are checked at most every
//! `recompute_interval`, and the lists are read again only when one of them changed.
//! Between recomputations a collection only emits the cached values. A file that could
//! not be used is reported as the collection's error (so `dcmon_collector_up` is 0) for as
//! long as it stays cached, while the values from every other file are still emitted.

mod lists;
mod stanza;
mod version;

use super::push;
use super::{CollectError, Collector};
use dcmon_wire::MetricSample;
use lists::{FileProblem, Upgrades};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Most `dcmon_reboot_required_packages_info` series: the list can hold every library of
/// a big upgrade, and each name is a series.
const MAX_REBOOT_PACKAGES: usize = 32;

/// Settings of the `apt` collector (`collectors.apt` in `agent.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AptConfig {
    /// Where the host's root file system is visible: `var/lib/dpkg/status`,
    /// `var/lib/apt/lists` and `var/run/reboot-required` are looked up below it.
    pub root: PathBuf,
    /// How often the state files' modification times are checked; the package lists are
    /// read again only when one changed. Reading them takes a noticeable moment of CPU.
    #[serde(with = "humantime_serde")]
    pub recompute_interval: Duration,
}

impl Default for AptConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/"),
            recompute_interval: Duration::from_secs(3600),
        }
    }
}

impl AptConfig {
    /// Every problem, each naming its setting under `collectors.apt`.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut p = Vec::new();
        if !self.root.is_absolute() {
            p.push(format!(
                "collectors.apt.root: {} must be an absolute path",
                self.root.display()
            ));
        }
        if self.recompute_interval < Duration::from_secs(1) {
            p.push("collectors.apt.recompute_interval: must be at least 1s".to_owned());
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }
}

/// Modification times of what the result depends on (`None`: the file is missing).
#[derive(Debug, PartialEq)]
struct Fingerprint([Option<SystemTime>; 4]);

/// The last computation's result.
#[derive(Default)]
struct Cached {
    upgrades: Option<Upgrades>,
    reboot_required: bool,
    reboot_packages: Vec<String>,
    problem: Option<FileProblem>,
}

/// Reads apt's state; see the module documentation.
pub struct AptCollector {
    dpkg_status: PathBuf,
    lists_dir: PathBuf,
    reboot_required: PathBuf,
    reboot_required_pkgs: PathBuf,
    recompute_interval: Duration,
    available: bool,
    last_check: Option<SystemTime>,
    fingerprint: Option<Fingerprint>,
    cached: Cached,
    /// The clock of the interval and of the lists' age; tests set it.
    now: Box<dyn Fn() -> SystemTime + Send>,
}

impl AptCollector {
    pub fn new(cfg: AptConfig) -> Self {
        let dpkg_status = cfg.root.join("var/lib/dpkg/status");
        Self {
            available: dpkg_status.is_file(),
            dpkg_status,
            lists_dir: cfg.root.join("var/lib/apt/lists"),
            reboot_required: cfg.root.join("var/run/reboot-required"),
            reboot_required_pkgs: cfg.root.join("var/run/reboot-required.pkgs"),
            recompute_interval: cfg.recompute_interval,
            last_check: None,
            fingerprint: None,
            cached: Cached::default(),
            now: Box::new(SystemTime::now),
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Fingerprint([
            mtime(&self.dpkg_status),
            mtime(&self.lists_dir),
            mtime(&self.reboot_required),
            mtime(&self.reboot_required_pkgs),
        ])
    }

    fn recompute(&mut self) {
        let mut problems = Vec::new();
        let upgrades = lists::compute(&self.dpkg_status, &self.lists_dir, &mut problems);
        let reboot_required = self.reboot_required.exists();
        let reboot_packages = if reboot_required {
            self.read_reboot_packages(&mut problems)
        } else {
            Vec::new()
        };
        for p in &problems {
            tracing::warn!(collector = "apt", path = %p.path.display(), error = %p.message,
                "apt state file not used");
        }
        self.cached = Cached {
            upgrades,
            reboot_required,
            reboot_packages,
            problem: problems.into_iter().next(),
        };
    }

    /// The package names in `reboot-required.pkgs` (one a line, repeated when several
    /// upgrades asked), sorted, without repeats, at most [`MAX_REBOOT_PACKAGES`].
    fn read_reboot_packages(&self, problems: &mut Vec<FileProblem>) -> Vec<String> {
        let text = match std::fs::read(&self.reboot_required_pkgs) {
            Ok(t) => t,
            // Written only by the packages that name themselves; often absent.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                problems.push(FileProblem {
                    path: self.reboot_required_pkgs.clone(),
                    message: e.to_string(),
                    io: Some(e.kind()),
                });
                return Vec::new();
            }
        };
        let mut names: Vec<String> = String::from_utf8_lossy(&text)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        names.sort();
        names.dedup();
        names.truncate(MAX_REBOOT_PACKAGES);
        names
    }
}

impl Collector for AptCollector {
    fn name(&self) -> &'static str {
        "apt"
    }

    fn is_available(&self) -> bool {
        self.available
    }

    fn collect(&mut self, out: &mut Vec<MetricSample>) -> Result<(), CollectError> {
        let now = (self.now)();
        // A clock that went backwards also counts as due.
        let due = self.last_check.is_none_or(|t| {
            now.duration_since(t)
                .map_or(true, |d| d >= self.recompute_interval)
        });
        if due {
            self.last_check = Some(now);
            let fingerprint = self.fingerprint();
            if self.fingerprint.as_ref() != Some(&fingerprint) {
                self.recompute();
                self.fingerprint = Some(fingerprint);
            }
        }
        let c = &self.cached;
        if let Some(u) = &c.upgrades {
            push(out, "dcmon_apt_upgrades_pending", &[], u.pending as f64);
            push(
                out,
                "dcmon_apt_security_upgrades_pending",
                &[],
                u.security as f64,
            );
            if let Some(newest) = u.newest_list {
                let age = now.duration_since(newest).unwrap_or_default();
                push(out, "dcmon_apt_lists_age_seconds", &[], age.as_secs_f64());
            }
        }
        push(
            out,
            "dcmon_reboot_required",
            &[],
            if c.reboot_required { 1.0 } else { 0.0 },
        );
        for p in &c.reboot_packages {
            push(
                out,
                "dcmon_reboot_required_packages_info",
                &[("package", p)],
                1.0,
            );
        }
        match &c.problem {
            None => Ok(()),
            Some(p) => Err(match p.io {
                Some(kind) => CollectError::Io {
                    path: p.path.display().to_string(),
                    source: std::io::Error::new(kind, p.message.clone()),
                },
                None => CollectError::Parse {
                    path: p.path.display().to_string(),
                    message: p.message.clone(),
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn testdata() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/collectors/apt/testdata/root")
    }

    fn render(samples: &[MetricSample]) -> String {
        let mut s = String::new();
        for m in samples {
            let _ = writeln!(s, "{} {}", m.labels, m.value);
        }
        s
    }

    /// A copy of the fixture tree, so tests can change it.
    fn fixture_copy() -> tempfile::TempDir {
        fn copy(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).unwrap();
            for e in std::fs::read_dir(from).unwrap() {
                let e = e.unwrap();
                let target = to.join(e.file_name());
                if e.file_type().unwrap().is_dir() {
                    copy(&e.path(), &target);
                } else {
                    std::fs::copy(e.path(), &target).unwrap();
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        copy(&testdata(), dir.path());
        dir
    }

    /// A collector on `root` whose clock reads `clock` seconds since the epoch.
    fn collector(root: &Path, clock: &Arc<AtomicU64>) -> AptCollector {
        let mut c = AptCollector::new(AptConfig {
            root: root.to_path_buf(),
            ..AptConfig::default()
        });
        let clock = Arc::clone(clock);
        c.now = Box::new(move || {
            SystemTime::UNIX_EPOCH + Duration::from_secs(clock.load(Ordering::Relaxed))
        });
        c
    }

    /// Sets every list file's mtime, so the age is exact.
    fn set_list_mtimes(root: &Path, secs: u64) {
        for e in std::fs::read_dir(root.join("var/lib/apt/lists")).unwrap() {
            let f = std::fs::File::options()
                .append(true)
                .open(e.unwrap().path())
                .unwrap();
            f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                .unwrap();
        }
    }

    /// libc6 (security), curl (bookworm main), tzdata (arch all) and libfoo:amd64 have
    /// upgrades; vim only in NotAutomatic backports, openssl held, oldpkg removed,
    /// libfoo:i386 not offered for i386, zlib1g's list version lacks its epoch.
    const EXPECTED: &str = r#"dcmon_apt_upgrades_pending 4
dcmon_apt_security_upgrades_pending 1
dcmon_apt_lists_age_seconds 600
dcmon_reboot_required 1
dcmon_reboot_required_packages_info{package="libc6"} 1
dcmon_reboot_required_packages_info{package="linux-image-6.1.0-18-amd64"} 1
"#;

    #[test]
    fn fixture_tree_counts_upgrades_and_reboot() {
        let root = fixture_copy();
        set_list_mtimes(root.path(), 1_700_000_000);
        let clock = Arc::new(AtomicU64::new(1_700_000_600));
        let mut c = collector(root.path(), &clock);
        assert!(c.is_available());
        let mut out = Vec::new();
        let result = c.collect(&mut out);
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(render(&out), EXPECTED);
    }

    #[test]
    fn cached_until_interval_passes_and_a_file_changed() {
        let root = fixture_copy();
        set_list_mtimes(root.path(), 1_700_000_000);
        let clock = Arc::new(AtomicU64::new(1_700_000_600));
        let mut c = collector(root.path(), &clock);
        let mut out = Vec::new();
        c.collect(&mut out).unwrap();
        std::fs::remove_file(root.path().join("var/run/reboot-required")).unwrap();
        // Within the interval: cached, only the age moves.
        clock.store(1_700_000_700, Ordering::Relaxed);
        out.clear();
        c.collect(&mut out).unwrap();
        assert!(render(&out).contains("dcmon_reboot_required 1\n"));
        assert!(render(&out).contains("dcmon_apt_lists_age_seconds 700\n"));
        // Past it, and the file is gone: recomputed.
        clock.store(1_700_004_300, Ordering::Relaxed);
        out.clear();
        c.collect(&mut out).unwrap();
        let text = render(&out);
        assert!(text.contains("dcmon_reboot_required 0\n"), "{text}");
        assert!(!text.contains("packages_info"), "{text}");
        assert!(text.contains("dcmon_apt_upgrades_pending 4\n"), "{text}");
    }

    #[test]
    fn malformed_list_is_an_error_naming_file_and_line_and_the_others_count() {
        let root = fixture_copy();
        set_list_mtimes(root.path(), 1_700_000_000);
        let broken = root
            .path()
            .join("var/lib/apt/lists/broken.example_dists_x_main_binary-amd64_Packages");
        std::fs::write(
            &broken,
            "Package: curl\nVersion: 99\n\nthis is not deb822\n",
        )
        .unwrap();
        let clock = Arc::new(AtomicU64::new(1_700_000_600));
        let mut c = collector(root.path(), &clock);
        let mut out = Vec::new();
        let err = c.collect(&mut out).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "parsing {}: line 4: expected `Field: value`: \"this is not deb822\"",
                broken.display()
            )
        );
        // The broken file's stanzas before the bad line still count (curl was already an
        // upgrade), and every other file was read.
        let text = render(&out);
        assert!(text.contains("dcmon_apt_upgrades_pending 4\n"), "{text}");
        assert!(
            text.contains("dcmon_apt_security_upgrades_pending 1\n"),
            "{text}"
        );
        // Cached, the error stays until the file changes.
        assert!(c.collect(&mut Vec::new()).is_err());
    }

    #[test]
    fn lz4_lists_are_read_and_other_compressions_reported() {
        let root = fixture_copy();
        let lists = root.path().join("var/lib/apt/lists");
        let name = "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages";
        let text = std::fs::read(lists.join(name)).unwrap();
        std::fs::remove_file(lists.join(name)).unwrap();
        let mut enc = lz4_flex::frame::FrameEncoder::new(
            std::fs::File::create(lists.join(format!("{name}.lz4"))).unwrap(),
        );
        std::io::Write::write_all(&mut enc, &text).unwrap();
        enc.finish().unwrap();
        std::fs::write(lists.join("x_dists_y_main_binary-amd64_Packages.xz"), b"").unwrap();
        let clock = Arc::new(AtomicU64::new(1_700_000_600));
        let mut c = collector(root.path(), &clock);
        let mut out = Vec::new();
        let err = c.collect(&mut out).unwrap_err().to_string();
        assert!(
            err.contains("Packages.xz") && err.contains("plain, .lz4 and .gz are read"),
            "{err}"
        );
        assert!(render(&out).contains("dcmon_apt_upgrades_pending 4\n"));
    }

    #[test]
    fn without_dpkg_status_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let c = AptCollector::new(AptConfig {
            root: dir.path().to_path_buf(),
            ..AptConfig::default()
        });
        assert!(!c.is_available());
    }

    #[test]
    fn config_defaults_round_trip_and_validate() {
        let c = AptConfig::default();
        let yaml = serde_norway::to_string(&c).unwrap();
        assert_eq!(serde_norway::from_str::<AptConfig>(&yaml).unwrap(), c);
        assert_eq!(c.validate(), Ok(()));
        assert!(serde_norway::from_str::<AptConfig>("rot: /x\n").is_err());
        let bad = AptConfig {
            root: PathBuf::from("host"),
            recompute_interval: Duration::ZERO,
        };
        assert_eq!(
            bad.validate().unwrap_err(),
            [
                "collectors.apt.root: host must be an absolute path",
                "collectors.apt.recompute_interval: must be at least 1s",
            ]
        );
    }

    /// This machine's real dpkg status and apt lists, timed.
    /// `cargo test --release -p dcmon-agent --lib -- --ignored --nocapture apt_real_lists_timing`
    #[test]
    #[ignore = "timing; run by hand in release mode"]
    fn apt_real_lists_timing() {
        let mut bytes = 0;
        if let Ok(entries) = std::fs::read_dir("/var/lib/apt/lists") {
            for e in entries.flatten() {
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        let started = std::time::Instant::now();
        let mut problems = Vec::new();
        let result = lists::compute(
            Path::new("/var/lib/dpkg/status"),
            Path::new("/var/lib/apt/lists"),
            &mut problems,
        );
        println!(
            "{bytes} bytes of lists on disk, {:?}: {result:?} {problems:?}",
            started.elapsed()
        );
    }
}
