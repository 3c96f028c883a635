//! dcmon's time-series store.
//!
//! - [`Tsdb`]: open a data directory, resolve series, append samples durably (group
//!   commit through one writer thread), select by label matchers and time range, roll
//!   up and expire old data ([`Tsdb::housekeeping`]).
//! - [`Matcher`]: Prometheus label matching (`=`, `!=`, `=~`, `!~`).
//! - [`check`]: verify a data directory offline.
//!
//! Inside: `index` (labels ↔ ids, postings), `head` (unsealed samples per series and the
//! out-of-order rules), `log` (the ingest-log row codec), `rollup` (bucket aggregates),
//! `db` (schema, migration, chunk rows), `writer` (the writer thread), `store` (the
//! public API), `check`. `FORMAT.md` documents the bytes and the durability argument.

mod check;
mod db;
mod head;
mod headbuf;
mod index;
mod log;
mod matcher;
mod rollup;
mod store;
mod writer;

pub use check::{CheckReport, check};
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use rollup::{Bucket, Resolution};
pub use store::{
    AppendReport, HousekeepingReport, RollupData, SeriesData, Tsdb, TsdbOptions, TsdbStats,
};

pub(crate) use store::{Shared, lock, read_lock, write_lock};

use std::path::PathBuf;

/// Stable id of a series within one data directory.
pub type SeriesId = i64;

#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    #[error("tsdb {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "tsdb {path}: schema version {found} is newer than this dcmon understands ({}); upgrade dcmon",
        db::SCHEMA_VERSION
    )]
    SchemaTooNew { path: PathBuf, found: i64 },
    #[error("tsdb {path}: series {id} has unreadable labels: {message}")]
    CorruptSeries {
        path: PathBuf,
        id: SeriesId,
        message: String,
    },
    #[error("creating {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The cardinality guard: a host may not have more series than the limit.
    #[error(
        "host {host:?} already has {existing} series; the limit is {limit} per host (limits.max_series_per_host): new series refused"
    )]
    TooManySeries {
        host: String,
        limit: usize,
        existing: usize,
    },
    #[error("series id {0} is not known to this tsdb (resolve the labels first)")]
    UnknownSeries(SeriesId),
    #[error(
        "tsdb refuses writes after an earlier failure ({0}); restart dcmon (acknowledged samples are replayed from the ingest log)"
    )]
    Failed(String),
    #[error("tsdb is shut down")]
    Closed,
}

impl TsdbError {
    /// True for errors caused by the request (a client can fix it), not by the store.
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::TooManySeries { .. } | Self::UnknownSeries(_))
    }
}
