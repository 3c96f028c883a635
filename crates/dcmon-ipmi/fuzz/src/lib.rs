//! What the fuzz targets share: a BMC whose answers are fuzz input, `[completion code,
//! length, data…]` per answer, so that the multi-step readers of `dcmon_ipmi::client`
//! (partial SDR reads, reservation retries, Next Record ID chains) run on arbitrary
//! responses. When the script runs out the BMC stops answering, as a timeout.

use dcmon_ipmi::IpmiError;
use dcmon_ipmi::msg::{CompletionCode, Request, Response};
use dcmon_ipmi::transport::Transport;
use std::future::Future;
use std::pin::pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

pub struct Scripted<'a> {
    script: Mutex<&'a [u8]>,
}

impl<'a> Scripted<'a> {
    pub fn new(script: &'a [u8]) -> Self {
        Self {
            script: Mutex::new(script),
        }
    }
}

impl Transport for Scripted<'_> {
    async fn send(&self, req: &Request) -> Result<Response, IpmiError> {
        let mut script = self.script.lock().expect("no other thread");
        let &[code, len, ref rest @ ..] = *script else {
            return Err(IpmiError::Timeout {
                host: "scripted".into(),
                budget: Duration::ZERO,
                attempts: 1,
            });
        };
        let (data, rest) = rest.split_at(usize::from(len).min(rest.len()));
        *script = rest;
        Ok(Response::to(req, CompletionCode(code), data))
    }

    fn host(&self) -> &str {
        "scripted"
    }
}

/// Runs a future whose awaits all complete at once (the scripted transport never waits).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a scripted exchange never waits"),
    }
}
