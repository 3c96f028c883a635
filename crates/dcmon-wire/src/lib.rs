//! The agent ⇄ server protocol of dcmon.
//!
//! - [`Labels`], [`MetricSample`], [`Scrape`]: the data model every crate shares.
//! - [`batch`]: the compact batch codec (interned series, delta-encoded, zstd).
//! - [`sign`]: Ed25519 request signing and its canonical form.
//! - [`api`]: JSON bodies of the agent endpoints.
//! - `remote_write` (feature `remote-write`): Prometheus remote_write 1.0 messages.
//!
//! Byte layouts and versioning are in `PROTOCOL.md` next to this crate.

pub mod api;
pub mod batch;
pub mod command;
mod labels;
#[cfg(feature = "tls")]
pub mod pin;
#[cfg(feature = "remote-write")]
pub mod remote_write;
pub mod sign;

pub use labels::{LabelError, Labels, METRIC_NAME_LABEL, MetricSample, Scrape};
