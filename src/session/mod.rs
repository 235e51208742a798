//! Sessions: the command grammar, the config schema and its validation, and the status rows
//! and their renderings. Pure logic: `daemon` stores and applies it.

pub mod config;
pub mod grammar;
pub mod status;

pub use config::{Change, ConfigError, SessionConfig};
