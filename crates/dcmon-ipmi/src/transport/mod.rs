//! Ways to reach a BMC, behind one trait: RMCP+ over UDP ([`lan`]) for servers polling
//! BMCs, and the Linux IPMI device ([`inband`]) for the agent on the host itself.

pub mod inband;
pub mod lan;

use crate::IpmiError;
use crate::msg::{Request, Response};
use std::future::Future;

/// Sends one request and waits for its response, whatever its completion code.
pub trait Transport: Send + Sync {
    fn send(&self, req: &Request) -> impl Future<Output = Result<Response, IpmiError>> + Send;

    /// The BMC's name in errors and logs.
    fn host(&self) -> &str;
}
