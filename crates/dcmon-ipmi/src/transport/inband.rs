//! In-band IPMI through the Linux IPMI driver's character device (`/dev/ipmi0`,
//! `ipmi_devintf`): IPMICTL_SEND_COMMAND, then poll(2) and IPMICTL_RECEIVE_MSG_TRUNC
//! (linux/ipmi.h). The ioctls block, so each request runs on tokio's blocking pool.
//!
//! Only the structure layouts and ioctl numbers are tested here: the test machines
//! have no IPMI device.

use super::Transport;
use crate::IpmiError;
use crate::msg::{CompletionCode, Request, Response};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `IPMI_SYSTEM_INTERFACE_ADDR_TYPE`: talk to the local BMC.
const SYSTEM_INTERFACE_ADDR_TYPE: libc::c_int = 0x0C;
/// `IPMI_BMC_CHANNEL`.
const BMC_CHANNEL: libc::c_short = 0x0F;
/// `IPMI_RESPONSE_RECV_TYPE`: the answer to one of our commands (not an event).
const RESPONSE_RECV_TYPE: libc::c_int = 1;
/// `IPMI_MAX_MSG_LENGTH`.
const MAX_MSG_LENGTH: usize = 272;

/// `struct ipmi_system_interface_addr`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct SystemInterfaceAddr {
    addr_type: libc::c_int,
    channel: libc::c_short,
    lun: libc::c_uchar,
}

/// `struct ipmi_addr` (large enough for any address the driver returns).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct AnyAddr {
    addr_type: libc::c_int,
    channel: libc::c_short,
    data: [libc::c_char; 32],
}

/// `struct ipmi_msg`.
#[repr(C)]
#[derive(Debug)]
struct IpmiMsg {
    netfn: libc::c_uchar,
    cmd: libc::c_uchar,
    data_len: libc::c_ushort,
    data: *mut libc::c_uchar,
}

/// `struct ipmi_req`.
#[repr(C)]
#[derive(Debug)]
struct IpmiReq {
    addr: *mut libc::c_uchar,
    addr_len: libc::c_uint,
    msgid: libc::c_long,
    msg: IpmiMsg,
}

/// `struct ipmi_recv`.
#[repr(C)]
#[derive(Debug)]
struct IpmiRecv {
    recv_type: libc::c_int,
    addr: *mut libc::c_uchar,
    addr_len: libc::c_uint,
    msgid: libc::c_long,
    msg: IpmiMsg,
}

/// `_IOC(dir, 'i', nr, size)` of asm-generic/ioctl.h.
const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((b'i' as u64) << 8) | nr
}
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
/// `_IOR('i', 13, struct ipmi_req)`.
const IPMICTL_SEND_COMMAND: u64 = ioc(IOC_READ, 13, size_of::<IpmiReq>());
/// `_IOWR('i', 11, struct ipmi_recv)`.
const IPMICTL_RECEIVE_MSG_TRUNC: u64 = ioc(IOC_READ | IOC_WRITE, 11, size_of::<IpmiRecv>());

/// The local BMC through `/dev/ipmi0` (or another device path).
pub struct InbandDevice {
    path: String,
    file: Arc<Mutex<(File, libc::c_long)>>,
    timeout: Duration,
}

impl InbandDevice {
    pub fn open(path: &str, timeout: Duration) -> Result<Self, IpmiError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| IpmiError::Io {
                host: path.to_string(),
                context: "opening the IPMI device",
                source,
            })?;
        Ok(InbandDevice {
            path: path.to_string(),
            file: Arc::new(Mutex::new((file, 0))),
            timeout,
        })
    }
}

fn exchange(
    file: &File,
    msgid: libc::c_long,
    req: &Request,
    timeout: Duration,
) -> std::io::Result<Response> {
    let fd = file.as_raw_fd();
    let mut addr = SystemInterfaceAddr {
        addr_type: SYSTEM_INTERFACE_ADDR_TYPE,
        channel: BMC_CHANNEL,
        lun: 0,
    };
    let mut data = req.data.clone();
    let mut ipmi_req = IpmiReq {
        addr: (&raw mut addr).cast(),
        addr_len: size_of::<SystemInterfaceAddr>() as libc::c_uint,
        msgid,
        msg: IpmiMsg {
            netfn: req.netfn,
            cmd: req.cmd,
            data_len: data.len() as libc::c_ushort,
            data: data.as_mut_ptr(),
        },
    };
    // SAFETY: `ipmi_req` and everything it points to live until the call returns and
    // match the kernel's struct layouts (checked in tests).
    if unsafe { libc::ioctl(fd, IPMICTL_SEND_COMMAND as _, &raw mut ipmi_req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            continue;
        }
        let mut raddr = AnyAddr {
            addr_type: 0,
            channel: 0,
            data: [0; 32],
        };
        let mut buf = [0u8; MAX_MSG_LENGTH];
        let mut recv = IpmiRecv {
            recv_type: 0,
            addr: (&raw mut raddr).cast(),
            addr_len: size_of::<AnyAddr>() as libc::c_uint,
            msgid: 0,
            msg: IpmiMsg {
                netfn: 0,
                cmd: 0,
                data_len: buf.len() as libc::c_ushort,
                data: buf.as_mut_ptr(),
            },
        };
        // SAFETY: as above; the driver writes at most `data_len` bytes into `buf`.
        if unsafe { libc::ioctl(fd, IPMICTL_RECEIVE_MSG_TRUNC as _, &raw mut recv) } < 0 {
            let e = std::io::Error::last_os_error();
            // EMSGSIZE means "truncated", which still delivers the message.
            if e.raw_os_error() != Some(libc::EMSGSIZE) {
                return Err(e);
            }
        }
        if recv.recv_type != RESPONSE_RECV_TYPE || recv.msgid != msgid {
            continue;
        }
        let len = usize::from(recv.msg.data_len).min(buf.len());
        let Some((&code, rest)) = buf[..len].split_first() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "response without completion code",
            ));
        };
        return Ok(Response {
            netfn: recv.msg.netfn,
            cmd: recv.msg.cmd,
            completion: CompletionCode(code),
            data: rest.to_vec(),
        });
    }
}

impl Transport for InbandDevice {
    async fn send(&self, req: &Request) -> Result<Response, IpmiError> {
        let file = Arc::clone(&self.file);
        let req = req.clone();
        let timeout = self.timeout;
        let result = tokio::task::spawn_blocking(move || {
            let mut guard = file
                .lock()
                .map_err(|_| std::io::Error::other("IPMI device lock poisoned"))?;
            guard.1 = guard.1.wrapping_add(1);
            let msgid = guard.1;
            exchange(&guard.0, msgid, &req, timeout)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
        result.map_err(|source| {
            if source.kind() == std::io::ErrorKind::TimedOut {
                IpmiError::Timeout {
                    host: self.path.clone(),
                    budget: self.timeout,
                    attempts: 1,
                }
            } else {
                IpmiError::Io {
                    host: self.path.clone(),
                    context: "IPMI device request",
                    source,
                }
            }
        })
    }

    fn host(&self) -> &str {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    fn layouts_and_ioctl_numbers_match_linux_ipmi_h_on_64_bit() {
        assert_eq!(size_of::<IpmiMsg>(), 16);
        assert_eq!(size_of::<IpmiReq>(), 40);
        assert_eq!(size_of::<IpmiRecv>(), 48);
        assert_eq!(size_of::<SystemInterfaceAddr>(), 8);
        assert_eq!(IPMICTL_SEND_COMMAND, 0x8028_690D);
        assert_eq!(IPMICTL_RECEIVE_MSG_TRUNC, 0xC030_690B);
    }

    #[test]
    fn missing_device_is_a_clear_error() {
        let Err(e) = InbandDevice::open("/nonexistent/ipmi0", Duration::from_secs(1)) else {
            panic!("opened a device that does not exist");
        };
        assert!(
            e.to_string()
                .contains("/nonexistent/ipmi0: opening the IPMI device")
        );
    }
}
