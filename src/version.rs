//! What a build is: its release, the commit it was made from, and the version of every format
//! it writes and protocol it speaks, as every program's `--version` prints them. Each format
//! keeps its own number where it is defined; this only gathers them.

/// The release (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit the build was made from (`build.rs`).
pub const COMMIT: &str = env!("GEOREP_COMMIT");

/// Each persisted format and protocol: its name, the version written, the oldest still read.
pub fn formats() -> Vec<(&'static str, u16, u16)> {
    use crate::changelog::{codec, history};
    vec![
        ("changelog", codec::VERSION, codec::MIN_VERSION),
        ("history index", history::VERSION, history::VERSION),
        ("GFID index", crate::fs::gfid_index::VERSION, crate::fs::gfid_index::VERSION),
        ("brick id", crate::fs::brick::ID_VERSION, crate::fs::brick::ID_VERSION),
        ("role file", crate::fs::role::VERSION, crate::fs::role::VERSION),
        ("store schema", crate::daemon::store::SCHEMA_VERSION, 1),
        ("status file", crate::session::status::STATUS_VERSION, 1),
        ("wire protocol", crate::proto::PROTOCOL_VERSION, crate::proto::MIN_PROTOCOL_VERSION),
        ("aux-gfid requests", crate::fs::newentry::VERSION, crate::fs::newentry::MIN_VERSION),
    ]
}

/// `--version`'s text after the program's name: "0.1.0 (commit 1234abcd)", then one line per
/// format ("changelog: 3 (reads 1 to 3)"). `-V` prints the release alone.
pub static LONG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut s = format!("{VERSION} (commit {COMMIT})");
    for (name, v, min) in formats() {
        if v == min {
            s.push_str(&format!("\n{name}: {v}"));
        } else {
            s.push_str(&format!("\n{name}: {v} (reads {min} to {v})"));
        }
    }
    s
});
