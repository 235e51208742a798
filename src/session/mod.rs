//! Sessions: the config schema and its validation (and, to come, the lifecycle state machine
//! and status rows). Pure logic: the daemon stores and applies it.

pub mod config;
pub mod grammar;

pub use config::{Change, ConfigError, SessionConfig};
