//! IPMI 2.0 in pure Rust: codecs with no IO, commands as request builders and response
//! parsers, vendor fan profiles, transports, and a BMC simulator.
//!
//! Layers, bottom up:
//! - [`packet`]: RMCP datagrams (ASF ping/pong, IPMI 1.5 and RMCP+ session headers).
//! - [`rakp`]: Open Session and RAKP 1–4 message bodies.
//! - [`crypto`]: cipher suites 3 and 17 (RAKP HMACs, SIK, K1/K2, AuthCode, AES-CBC-128).
//! - [`session`]: sealing and opening session packets, sequence numbers, replay window.
//! - [`msg`]: IPMI messages (addresses, netFn/LUN, checksums, completion codes).
//! - [`cmd`]: commands as request builders and response parsers (device ID, chassis,
//!   SDR, sensors, SEL, DCMI).
//! - [`client`]: multi-step operations over a transport (SDR and SEL reads, sensor
//!   values, SEL clear).
//! - [`exporter`]: sensor values as ipmi_exporter series, with a cached SDR reader
//!   (shared by the agent's collector and the server's BMC poller).
//! - [`vendor`]: Supermicro, Dell and HPE fan profiles.
//! - [`curve`]: the fan-curve engine: temperatures and fan state in, fan writes with
//!   their reasons out (curves, Zephyr preset, hysteresis, fail-safe); no IO.
//! - [`fans`]: fan status, mode and zone duty as one operation over a transport, shared
//!   by the CLIs and the agent.
//! - [`transport`]: the [`Transport`](transport::Transport) trait, RMCP+ over UDP and
//!   the Linux IPMI device.

pub mod client;
pub mod cmd;
pub mod crypto;
pub mod curve;
mod error;
pub mod exporter;
pub mod fans;
pub mod msg;
pub mod packet;
pub mod rakp;
pub mod session;
pub mod sim;
pub mod transport;
pub mod vendor;

pub use error::{CodecError, IpmiError};
