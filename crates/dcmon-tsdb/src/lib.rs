//! dcmon's time-series store.
//!
//! - [`Tsdb`]: open a data directory, resolve series, append samples durably, select
//!   samples by label matchers and time range.
//! - [`Matcher`]: Prometheus label matching (`=`, `!=`, `=~`, `!~`).
//!
//! This first engine keeps one row per sample in SQLite (WAL, `synchronous=FULL`): an
//! append returns only after its transaction is on disk. The compressed-chunk engine
//! replaces the storage behind this same API; see `FORMAT.md`.

mod matcher;
mod sqlite;

pub use matcher::{MatchOp, Matcher, MatcherError};
pub use sqlite::{SeriesData, SeriesId, Tsdb, TsdbError, TsdbStats};
