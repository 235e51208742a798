//! georep: continuous, asynchronous, incremental geo-replication of a directory tree.
//!
//! The modules follow the data's path: `types` (ids and names, no I/O) -> `changelog` (what
//! changed, on disk) -> `fs` (the FUSE overlay that records changes) -> `cli` (the `georep`
//! command). See ARCHITECTURE.md for the map and the invariants of each module.

pub mod api;
pub mod changelog;
pub mod cli;
pub mod daemon;
pub mod durable;
pub mod fence;
pub mod fs;
pub mod logging;
pub mod mapped;
pub mod mountbroker;
pub mod proto;
pub mod receiver;
pub mod session;
pub mod sync;
pub mod types;
pub mod ui;
pub mod unixmsg;

pub mod version;

/// The release, as every program's `--version` prints it (with more: `version::long`).
pub const VERSION: &str = version::VERSION;
