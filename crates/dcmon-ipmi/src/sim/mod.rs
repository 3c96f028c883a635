//! `dcmon bmc-sim`: simulated BMCs for development and tests (DESIGN §8). A pure model
//! of each BMC and the server it manages (`bmc`, with `sdr`, `sel`, `thermal`) sits
//! behind a pure RMCP+ endpoint (`lan`); `server` runs one or many of them in one
//! process, one UDP socket each, and `control` parses the runtime control lines.

mod bmc;
mod control;
mod lan;
mod sdr;
mod sel;
mod server;
mod thermal;

pub use bmc::{Bmc, BmcConfig, Request, Response, Vendor};
pub use control::{Change, Command, ControlError, Faults, Targets, parse as parse_control};
pub use lan::{Dropped, Endpoint, User};
pub use server::{Fleet, ServerError, SimConfig};
