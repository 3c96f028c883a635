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
//! - [`events`][]: XID errors and fan-loop writes on their way to the server.
//! - [`fanloop`][]: the fan curve run on this machine, with its fail-safe.
//! - [`spool`][]: scrapes waiting on disk while the server is unreachable.
//! - [`install`][]: `dcmon-agent install`/`uninstall`: the hardened systemd service.

pub mod client;
pub mod collectors;
pub mod commands;
pub mod config;
pub mod enroll;
pub mod events;
pub mod exporter;
pub mod exposition;
pub mod fanloop;
pub mod identity;
pub mod install;
pub mod pusher;
pub mod runner;
pub mod spool;
