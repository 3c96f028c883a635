//! Pending upgrades from dpkg's and apt's state files: the installed packages from
//! `/var/lib/dpkg/status`, the versions apt knows from `/var/lib/apt/lists/*_Packages`,
//! and each list's origin from the `InRelease`/`Release` file of the same repository.
//!
//! An installed package has an upgrade pending when a list that apt would upgrade from
//! has the same package, for its architecture or `all`, at a higher version (dpkg's
//! comparison, [`super::version`]). It is a security upgrade when such a list's Release
//! has "security" in its Label, Suite or Codename (`Debian-Security`,
//! `bookworm-security`, `jammy-security`). Lists whose Release says `NotAutomatic: yes`
//! (experimental, backports) are skipped: apt never upgrades from them on its own. Pin
//! priorities in `/etc/apt/preferences` are not read.

use super::stanza::{StanzaError, StanzaReader};
use super::version;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A file that could not be used; the others still were.
#[derive(Debug)]
pub(super) struct FileProblem {
    pub path: PathBuf,
    pub message: String,
    /// Whether it came from the file system rather than the file's content.
    pub io: Option<std::io::ErrorKind>,
}

/// What one pass over the state files found.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Upgrades {
    pub pending: u64,
    pub security: u64,
    /// Newest modification time of a `Packages` or `Release` file. apt sets it to the
    /// mirror's Last-Modified, so it is how new the newest index apt fetched is: it grows
    /// without bound when `apt update` stops running.
    pub newest_list: Option<SystemTime>,
}

/// One installed architecture of a package.
struct Installed {
    arch: String,
    version: String,
    upgrade: bool,
    security: bool,
}

/// Origin of a list, from its Release file.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Release {
    pub security: bool,
    pub not_automatic: bool,
}

/// How a `Packages` file is stored; apt keeps them plain, or compressed when
/// `Acquire::GzipIndexes` is set (lz4 by default, gz on older releases).
enum Compression {
    None,
    Lz4,
    Gzip,
}

fn packages_compression(name: &str) -> Option<Option<Compression>> {
    if name.ends_with("_Packages") {
        Some(Some(Compression::None))
    } else if name.ends_with("_Packages.lz4") {
        Some(Some(Compression::Lz4))
    } else if name.ends_with("_Packages.gz") {
        Some(Some(Compression::Gzip))
    } else if name.contains("_Packages.") {
        // .xz, .zst, .bz2: not read; reported so the gap is visible.
        Some(None)
    } else {
        None
    }
}

/// Reads the installed packages and every list; problems are appended to `problems`.
/// `None` when dpkg's status itself could not be read: then nothing is known.
pub(super) fn compute(
    dpkg_status: &Path,
    lists_dir: &Path,
    problems: &mut Vec<FileProblem>,
) -> Option<Upgrades> {
    let mut installed = match read_installed(dpkg_status) {
        Ok(i) => i,
        Err(p) => {
            problems.push(p);
            return None;
        }
    };
    let mut result = Upgrades::default();
    let mut packages = Vec::new();
    let mut releases = Vec::new();
    match std::fs::read_dir(lists_dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let is_release = name.ends_with("_InRelease") || name.ends_with("_Release");
                let compression = packages_compression(&name);
                if !is_release && compression.is_none() {
                    continue;
                }
                if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                    result.newest_list = result.newest_list.max(Some(modified));
                }
                if is_release {
                    releases.push(name);
                } else if let Some(c) = compression {
                    packages.push((name, c));
                }
            }
        }
        // No lists at all (apt update never ran): every count is 0, and the missing
        // `dcmon_apt_lists_age_seconds` shows why.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => problems.push(FileProblem {
            path: lists_dir.to_path_buf(),
            message: e.to_string(),
            io: Some(e.kind()),
        }),
    }
    packages.sort_by(|a, b| a.0.cmp(&b.0));
    let mut stanza = StanzaScratch::default();
    let mut release_cache: HashMap<&str, Release> = HashMap::new();
    for (name, compression) in packages {
        let path = lists_dir.join(&name);
        let Some(compression) = compression else {
            problems.push(FileProblem {
                path,
                message: "compressed with a format the agent does not read (plain, .lz4 and \
                          .gz are read); set Acquire::GzipIndexes false or lz4"
                    .to_owned(),
                io: None,
            });
            continue;
        };
        let release = match release_for(&name, &releases) {
            // One Release serves every component and architecture of its suite.
            Some(r) => release_cache.entry(r).or_insert_with(|| {
                read_release(&lists_dir.join(r)).unwrap_or_else(|p| {
                    problems.push(p);
                    Release::default()
                })
            }),
            None => &Release::default(),
        };
        if release.not_automatic {
            continue;
        }
        if let Err(p) = scan_packages(&path, compression, release, &mut installed, &mut stanza) {
            problems.push(p);
        }
    }
    for i in installed.values().flatten() {
        result.pending += u64::from(i.upgrade);
        result.security += u64::from(i.security);
    }
    Some(result)
}

/// The Release file of the repository a `Packages` file belongs to: the one whose name,
/// less `InRelease`/`Release`, is the longest prefix of the list's name
/// (`host_debian_dists_bookworm_` for `host_debian_dists_bookworm_main_binary-amd64_Packages`).
/// `InRelease` wins over `Release` for the same prefix, as apt prefers it.
fn release_for<'r>(packages: &str, releases: &'r [String]) -> Option<&'r str> {
    releases
        .iter()
        .filter_map(|r| {
            let prefix = r
                .strip_suffix("InRelease")
                .or_else(|| r.strip_suffix("Release"))?;
            packages.starts_with(prefix).then_some((
                prefix.len(),
                r.ends_with("InRelease"),
                r.as_str(),
            ))
        })
        .max()
        .map(|(_, _, r)| r)
}

#[derive(Default)]
struct StanzaScratch {
    values: [String; 3],
}

fn problem_at(path: &Path, e: StanzaError) -> FileProblem {
    FileProblem {
        path: path.to_path_buf(),
        message: e.to_string(),
        io: None,
    }
}

fn io_problem(path: &Path, e: &std::io::Error) -> FileProblem {
    FileProblem {
        path: path.to_path_buf(),
        message: e.to_string(),
        io: Some(e.kind()),
    }
}

/// Packages dpkg reports as `install ok installed`, by name. Held packages
/// (`hold ok installed`) are left out: apt does not upgrade them.
fn read_installed(path: &Path) -> Result<HashMap<String, Vec<Installed>>, FileProblem> {
    let file = std::fs::File::open(path).map_err(|e| io_problem(path, &e))?;
    let mut reader = StanzaReader::new(BufReader::with_capacity(64 * 1024, file));
    let wanted = ["Package", "Status", "Version", "Architecture"];
    let mut v: [String; 4] = Default::default();
    let mut installed: HashMap<String, Vec<Installed>> = HashMap::new();
    while let Some(line) = reader
        .next_stanza(&wanted, &mut v)
        .map_err(|e| problem_at(path, e))?
    {
        let [package, status, version, arch] = &v;
        if status != "install ok installed" {
            continue;
        }
        if package.is_empty() || version.is_empty() || arch.is_empty() {
            return Err(problem_at(
                path,
                StanzaError {
                    line,
                    message: "installed package without Package, Version or Architecture"
                        .to_owned(),
                },
            ));
        }
        installed
            .entry(package.clone())
            .or_default()
            .push(Installed {
                arch: arch.clone(),
                version: version.clone(),
                upgrade: false,
                security: false,
            });
    }
    Ok(installed)
}

/// The first stanza of a Release file; an `InRelease` file is the same stanza inside an
/// OpenPGP clear-signed message (RFC 4880 §7), whose armor headers end at a blank line.
pub(super) fn read_release(path: &Path) -> Result<Release, FileProblem> {
    let text = std::fs::read(path).map_err(|e| io_problem(path, &e))?;
    let mut body: &[u8] = &text;
    let mut skipped_lines = 0;
    if body.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----") {
        let mut rest = body;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let line = &rest[..nl];
            rest = &rest[nl + 1..];
            skipped_lines += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        let end = find(rest, b"\n-----BEGIN PGP SIGNATURE-----").map_or(rest.len(), |p| p + 1);
        body = &rest[..end];
    }
    let wanted = ["Label", "Suite", "Codename", "NotAutomatic"];
    let mut v: [String; 4] = Default::default();
    StanzaReader::new(body)
        .next_stanza(&wanted, &mut v)
        .map_err(|mut e| {
            e.line += skipped_lines;
            problem_at(path, e)
        })?;
    let [label, suite, codename, not_automatic] = &v;
    let security = [label, suite, codename]
        .iter()
        .any(|f| f.to_ascii_lowercase().contains("security"));
    Ok(Release {
        security,
        not_automatic: not_automatic.eq_ignore_ascii_case("yes"),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Marks installed packages that `path` offers a higher version of.
fn scan_packages(
    path: &Path,
    compression: Compression,
    release: &Release,
    installed: &mut HashMap<String, Vec<Installed>>,
    scratch: &mut StanzaScratch,
) -> Result<(), FileProblem> {
    let file = std::fs::File::open(path).map_err(|e| io_problem(path, &e))?;
    let input: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(file)),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
    };
    scan_stanzas(
        BufReader::with_capacity(64 * 1024, input),
        release,
        installed,
        scratch,
    )
    .map_err(|e| problem_at(path, e))
}

fn scan_stanzas(
    input: impl BufRead,
    release: &Release,
    installed: &mut HashMap<String, Vec<Installed>>,
    scratch: &mut StanzaScratch,
) -> Result<(), StanzaError> {
    let mut reader = StanzaReader::new(input);
    let wanted = ["Package", "Version", "Architecture"];
    let values = &mut scratch.values;
    while reader.next_stanza(&wanted, values)?.is_some() {
        let Some(versions) = installed.get_mut(values[0].as_str()) else {
            continue;
        };
        let (version, arch) = (&values[1], &values[2]);
        for i in versions.iter_mut() {
            let same_arch = i.arch == *arch || arch == "all" || i.arch == "all";
            if same_arch && version::compare(version, &i.version) == Ordering::Greater {
                i.upgrade = true;
                i.security |= release.security;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_is_matched_by_longest_prefix() {
        let releases = [
            "deb.debian.org_debian_dists_bookworm_InRelease".to_owned(),
            "deb.debian.org_debian_dists_bookworm-updates_InRelease".to_owned(),
            "deb.debian.org_debian_dists_bookworm-updates_Release".to_owned(),
            "repo.example_._Release".to_owned(),
        ];
        let check = |packages: &str, expect: Option<&str>| {
            assert_eq!(release_for(packages, &releases), expect, "{packages}");
        };
        check(
            "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages",
            Some("deb.debian.org_debian_dists_bookworm_InRelease"),
        );
        check(
            "deb.debian.org_debian_dists_bookworm-updates_main_binary-amd64_Packages.lz4",
            Some("deb.debian.org_debian_dists_bookworm-updates_InRelease"),
        );
        check("repo.example_._Packages", Some("repo.example_._Release"));
        check("other_dists_x_main_binary-amd64_Packages", None);
    }
}
