//! System identity and clock: `node_uname_info` (from `<proc>/sys/kernel/*`, so a fixture
//! tree can stand in), `node_time_seconds`, `node_processes_pids`.

use super::{io_error, push, read_attribute};
use crate::collectors::CollectError;
use dcmon_wire::MetricSample;
use rustix::fs::{Mode, OFlags, RawDir};
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub(super) struct System {
    kernel_dir: PathBuf,
    /// sysname, release, version, machine: fixed until reboot, so read once.
    fixed: Option<[String; 4]>,
    /// getdents buffer for counting `<proc>/<pid>` entries without an allocation each.
    dirents: Vec<MaybeUninit<u8>>,
}

impl System {
    pub(super) fn new(proc_root: &Path) -> Self {
        Self {
            kernel_dir: proc_root.join("sys/kernel"),
            fixed: None,
            dirents: vec![MaybeUninit::uninit(); 16 * 1024],
        }
    }

    pub(super) fn collect(
        &mut self,
        proc_root: &Path,
        now: SystemTime,
        buf: &mut Vec<u8>,
        out: &mut Vec<MetricSample>,
    ) -> Result<(), CollectError> {
        let mut first_error = None;
        if let Err(e) = self.uname(buf, out) {
            first_error = Some(e);
        }
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        push(out, "node_time_seconds", &[], secs);
        match count_pids(proc_root, &mut self.dirents) {
            Ok(n) => push(out, "node_processes_pids", &[], n as f64),
            Err(e) => {
                first_error.get_or_insert(io_error(proc_root, e));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn uname(
        &mut self,
        buf: &mut Vec<u8>,
        out: &mut Vec<MetricSample>,
    ) -> Result<(), CollectError> {
        let mut read = |name: &str| {
            let path = self.kernel_dir.join(name);
            read_attribute(&path, buf)
                .map(str::to_owned)
                .map_err(|e| io_error(&path, e))
        };
        if self.fixed.is_none() {
            // `arch` appeared in Linux 6.1; uname(2) answers the same for older kernels.
            let machine = read("arch").unwrap_or_else(|_| {
                rustix::system::uname()
                    .machine()
                    .to_string_lossy()
                    .into_owned()
            });
            self.fixed = Some([
                read("ostype")?,
                read("osrelease")?,
                read("version")?,
                machine,
            ]);
        }
        let nodename = read("hostname")?;
        let domainname = read("domainname")?;
        let Some([sysname, release, version, machine]) = &self.fixed else {
            return Ok(());
        };
        push(
            out,
            "node_uname_info",
            &[
                ("sysname", sysname),
                ("release", release),
                ("version", version),
                ("machine", machine),
                ("nodename", &nodename),
                ("domainname", &domainname),
            ],
            1.0,
        );
        Ok(())
    }
}

/// Counts the numeric entries of procfs: one per process (threads are not listed).
fn count_pids(proc_root: &Path, dirents: &mut [MaybeUninit<u8>]) -> std::io::Result<u64> {
    let fd = rustix::fs::open(
        proc_root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut dir = RawDir::new(fd, dirents);
    let mut n = 0;
    while let Some(entry) = dir.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if !name.is_empty() && name.iter().all(u8::is_ascii_digit) {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_numeric_entries_only() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["1", "42", "self", "net", "4x"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("7"), "").unwrap();
        let mut buf = vec![std::mem::MaybeUninit::uninit(); 1024];
        assert_eq!(super::count_pids(dir.path(), &mut buf).unwrap(), 3);
    }
}
