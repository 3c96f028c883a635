//! dcmon agent library. The `dcmon-agent` binary is a thin CLI over it, and
//! `dcmon quickstart` runs it in-process.
//!
//! - [`collectors`][]: what is measured (`os`, ...), each behind the `Collector` trait.
//! - [`exposition`][]: Prometheus text and JSON renderings of a scrape.
//! - [`config`][]: `agent.yaml`.
//! - [`identity`][]: the agent key, machine id, host name.
//! - [`client`][]: pinned HTTPS and signed requests.
//! - [`enroll`][]: registration.
//! - [`runner`][]: the collection loop and how the tasks fit together.
//! - [`pusher`][]: batches to the server, spooling what it cannot take.
//! - [`commands`][]: the command long-poll and what each command does.
//! - [`exporter`][]: the optional local `/metrics`.
//! - [`spool`][]: scrapes waiting on disk while the server is unreachable.

pub mod client;
pub mod collectors;
pub mod commands;
pub mod config;
pub mod enroll;
pub mod exporter;
pub mod exposition;
pub mod identity;
pub mod pusher;
pub mod runner;
pub mod spool;
