//! What a refused command says, and which kind of refusal it is: bad input, something that
//! does not exist, a lifecycle rule, or a caller not allowed. The daemon core decides the kind
//! where it refuses; the CLI prints the message (and exits 1), the API answers with the HTTP
//! status of the kind (`api::routes`). One message, two faces.

use serde::{Deserialize, Serialize};

use crate::session::config::ConfigError;
use crate::session::grammar::GrammarError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The request itself is wrong: a word, a name, a value (HTTP 400).
    BadInput,
    /// What it names does not exist (404).
    NotFound,
    /// A rule says no in the current state: a lifecycle rule, a check of the secondary, a
    /// failure on the way (409).
    Refused,
    /// The caller may not ask this (403).
    Forbidden,
}

/// A refusal: one line for the user, and its kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: Kind,
    pub message: String,
}

impl Refusal {
    pub fn new(kind: Kind, message: impl Into<String>) -> Refusal {
        Refusal { kind, message: message.into() }
    }

    /// What an error of the core becomes: the kind of the first refusal (or grammar or config
    /// error, which are bad input) in its chain, else `Refused`; the message is the whole
    /// chain (`context: cause`).
    pub fn from_error(e: &anyhow::Error) -> Refusal {
        let kind = e
            .chain()
            .find_map(|c| {
                if let Some(r) = c.downcast_ref::<Refusal>() {
                    Some(r.kind)
                } else if c.is::<GrammarError>() || c.is::<ConfigError>() {
                    Some(Kind::BadInput)
                } else {
                    None
                }
            })
            .unwrap_or(Kind::Refused);
        Refusal { kind, message: format!("{e:#}") }
    }
}

/// `return Err(refusal)` with a kind and a formatted message:
/// `refuse!(NotFound, "Volume {name} does not exist")`.
#[macro_export]
macro_rules! refuse {
    ($kind:ident, $($arg:tt)+) => {
        return Err($crate::daemon::refusal::Refusal::new(
            $crate::daemon::refusal::Kind::$kind,
            format!($($arg)+),
        ).into())
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_kind_survives_context() {
        let inner: anyhow::Result<()> = Err(Refusal::new(Kind::NotFound, "Volume v does not exist").into());
        let e = inner.context("volume start: v: failed").unwrap_err();
        let r = Refusal::from_error(&e);
        assert_eq!(r, Refusal::new(Kind::NotFound, "volume start: v: failed: Volume v does not exist"));
        let plain = anyhow::anyhow!("already started");
        assert_eq!(Refusal::from_error(&plain).kind, Kind::Refused);
        let cfg: anyhow::Error = ConfigError::UnknownKey("x".into()).into();
        assert_eq!(Refusal::from_error(&cfg.context("config")).kind, Kind::BadInput);
    }
}
