//! dcmon agent library. The `dcmon-agent` binary is a thin CLI over it, and
//! `dcmon quickstart` runs it in-process.
//!
//! - [`collectors`][]: what is measured (`os`, ...), each behind the `Collector` trait.
//! - [`exposition`][]: Prometheus text and JSON renderings of a scrape.
//! - [`config`][]: `agent.yaml`.
//! - [`identity`][]: the agent key, machine id, host name.
//! - [`client`][]: pinned HTTPS and signed requests.
//! - [`enroll`][]: registration.
//! - [`runner`][]: the collect-and-push loop.

pub mod client;
pub mod collectors;
pub mod config;
pub mod enroll;
pub mod exposition;
pub mod identity;
pub mod runner;
