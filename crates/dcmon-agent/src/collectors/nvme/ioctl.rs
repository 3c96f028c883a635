//! NVMe admin commands through the Linux passthrough ioctl on the controller's character
//! device (`/dev/nvme0`), the way nvme-cli and smartctl talk to a drive: no subprocess.
//!
//! The kernel checks CAP_SYS_ADMIN for admin passthrough (and the device node is root's
//! 0600), so opening read-only is enough for a root agent and fails with EACCES otherwise.

use super::{AdminCommands, AdminError};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// `struct nvme_admin_cmd` (alias of `struct nvme_passthru_cmd`) from
/// `include/uapi/linux/nvme_ioctl.h`; 72 bytes, no padding.
#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct NvmeAdminCmd {
    pub opcode: u8,
    pub flags: u8,
    pub rsvd1: u16,
    pub nsid: u32,
    pub cdw2: u32,
    pub cdw3: u32,
    pub metadata: u64,
    pub addr: u64,
    pub metadata_len: u32,
    pub data_len: u32,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
    pub timeout_ms: u32,
    pub result: u32,
}

/// `_IOC_READ | _IOC_WRITE` placed where the architecture's `_IOC` puts direction bits:
/// bits 29-31 with READ=2, WRITE=4 on powerpc, mips and sparc; bits 30-31 with READ=2,
/// WRITE=1 everywhere else (asm-generic/ioctl.h).
#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
const IOC_READ_WRITE: u32 = (2 | 4) << 29;
#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
)))]
const IOC_READ_WRITE: u32 = (2 | 1) << 30;

/// `NVME_IOCTL_ADMIN_CMD = _IOWR('N', 0x41, struct nvme_admin_cmd)`.
pub(super) const NVME_IOCTL_ADMIN_CMD: u32 = IOC_READ_WRITE
    | ((std::mem::size_of::<NvmeAdminCmd>() as u32) << 16)
    | ((b'N' as u32) << 8)
    | 0x41;

/// Get Log Page (NVMe Base Spec 2.0 §5.16).
const OPCODE_GET_LOG_PAGE: u8 = 0x02;
/// Identify (§5.17).
const OPCODE_IDENTIFY: u8 = 0x06;
/// SMART / Health Information log identifier.
const LID_SMART_HEALTH: u32 = 0x02;
/// Identify CNS value for the Identify Controller data structure.
const CNS_CONTROLLER: u32 = 0x01;
/// The broadcast namespace: the SMART log of the whole controller.
const NSID_ALL: u32 = 0xFFFF_FFFF;

/// Get Log Page for the SMART / Health page into `len` bytes: NUMDL in cdw10 bits 31:16
/// holds the number of dwords minus one, LID in bits 7:0.
pub(super) fn smart_log_command(len: u32) -> NvmeAdminCmd {
    NvmeAdminCmd {
        opcode: OPCODE_GET_LOG_PAGE,
        nsid: NSID_ALL,
        data_len: len,
        cdw10: ((len / 4 - 1) << 16) | LID_SMART_HEALTH,
        ..NvmeAdminCmd::default()
    }
}

pub(super) fn identify_controller_command(len: u32) -> NvmeAdminCmd {
    NvmeAdminCmd {
        opcode: OPCODE_IDENTIFY,
        data_len: len,
        cdw10: CNS_CONTROLLER,
        ..NvmeAdminCmd::default()
    }
}

/// Controllers reached through `<dev_root>/<name>` character devices.
pub(super) struct DevNodes {
    pub dev_root: PathBuf,
}

impl DevNodes {
    fn submit(
        &self,
        device: &str,
        what: &'static str,
        mut cmd: NvmeAdminCmd,
        buf: &mut [u8],
    ) -> Result<(), AdminError> {
        let path = self.dev_root.join(device);
        let file = std::fs::File::open(&path).map_err(|source| AdminError::Open {
            path: path.display().to_string(),
            source,
        })?;
        cmd.addr = buf.as_mut_ptr() as u64;
        // `data_len` was set by the caller from the same buffer's length; the kernel
        // writes at most that many bytes at `addr`.
        debug_assert_eq!(cmd.data_len as usize, buf.len());
        // SAFETY: `cmd` is a valid `struct nvme_admin_cmd` that lives across the call, and
        // `addr`/`data_len` describe `buf`, which is borrowed mutably for the whole call.
        // A timeout_ms of 0 keeps the kernel's admin timeout (60 s): a shorter one makes
        // the driver reset a slow but healthy controller.
        let rc = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                NVME_IOCTL_ADMIN_CMD as _,
                &mut cmd as *mut NvmeAdminCmd,
            )
        };
        match rc {
            0 => Ok(()),
            // A positive return is the NVMe completion status (Status Code Type and Status
            // Code), not an errno.
            status if status > 0 => Err(AdminError::Status {
                path: path.display().to_string(),
                what,
                status,
            }),
            _ => Err(AdminError::Ioctl {
                path: path.display().to_string(),
                what,
                source: std::io::Error::last_os_error(),
            }),
        }
    }
}

impl AdminCommands for DevNodes {
    fn identify_controller(&mut self, device: &str, buf: &mut [u8]) -> Result<(), AdminError> {
        let cmd = identify_controller_command(buf.len() as u32);
        self.submit(device, "Identify Controller", cmd, buf)
    }

    fn smart_log(&mut self, device: &str, buf: &mut [u8]) -> Result<(), AdminError> {
        let cmd = smart_log_command(buf.len() as u32);
        self.submit(device, "Get Log Page (SMART / Health)", cmd, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn admin_cmd_matches_the_kernel_layout() {
        assert_eq!(size_of::<NvmeAdminCmd>(), 72);
        for (field, at) in [
            (offset_of!(NvmeAdminCmd, nsid), 4),
            (offset_of!(NvmeAdminCmd, metadata), 16),
            (offset_of!(NvmeAdminCmd, addr), 24),
            (offset_of!(NvmeAdminCmd, metadata_len), 32),
            (offset_of!(NvmeAdminCmd, data_len), 36),
            (offset_of!(NvmeAdminCmd, cdw10), 40),
            (offset_of!(NvmeAdminCmd, cdw15), 60),
            (offset_of!(NvmeAdminCmd, timeout_ms), 64),
            (offset_of!(NvmeAdminCmd, result), 68),
        ] {
            assert_eq!(field, at);
        }
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        assert_eq!(NVME_IOCTL_ADMIN_CMD, 0xC048_4E41);
    }

    #[test]
    fn commands_encode_dword_count_and_identifiers() {
        let log = smart_log_command(512);
        assert_eq!(
            (log.opcode, log.nsid, log.data_len, log.cdw10),
            (0x02, 0xFFFF_FFFF, 512, (127 << 16) | 0x02)
        );
        let id = identify_controller_command(4096);
        assert_eq!(
            (id.opcode, id.nsid, id.data_len, id.cdw10),
            (0x06, 0, 4096, 1)
        );
    }

    #[test]
    fn missing_device_node_is_an_open_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = DevNodes {
            dev_root: dir.path().to_path_buf(),
        };
        let mut buf = [0u8; 512];
        let err = nodes.smart_log("nvme7", &mut buf).unwrap_err().to_string();
        assert!(
            err.starts_with("opening ") && err.contains("nvme7"),
            "{err}"
        );
    }

    /// The real ioctl path, on a device that is not an NVMe controller: the kernel
    /// answers ENOTTY, reported with the command and the path.
    #[test]
    fn ioctl_on_a_non_nvme_device_is_an_ioctl_error() {
        let mut nodes = DevNodes {
            dev_root: PathBuf::from("/dev"),
        };
        let mut buf = [0u8; 512];
        let err = nodes.smart_log("null", &mut buf).unwrap_err();
        assert!(matches!(err, AdminError::Ioctl { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("/dev/null") && text.contains("SMART"),
            "{text}"
        );
    }
}
