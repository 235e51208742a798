//! The cluster store: a small key-value space holding volumes, sessions, destinations and
//! the like, as JSON documents. One trait, two backends: the embedded `LocalStore` (redb,
//! crash-safe: every write is a durable transaction) for one node, the default; `EtcdStore`
//! (etcd's v3 API) for several nodes that share one view. `--store` chooses (`Spec`).
//! The key layout is in docs/cluster.md.

mod etcd;
mod local;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::{Serialize, de::DeserializeOwned};

pub use etcd::{EtcdOptions, EtcdStore};
pub use local::{LocalLease, LocalStore};

pub trait Store: Send + Sync {
    fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>>;
    fn put(&self, key: &str, value: &[u8]) -> anyhow::Result<()>;
    /// Stores `value` only if `key` is absent; says whether it did.
    fn create(&self, key: &str, value: &[u8]) -> anyhow::Result<bool>;
    /// Removes `key`; says whether it was there.
    fn delete(&self, key: &str) -> anyhow::Result<bool>;
    /// Every key starting with `prefix`, in order.
    fn list(&self, prefix: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>>;
    /// A lease of `ttl` (whole seconds, at least 2), renewed by the store until dropped.
    fn lease(&self, ttl: Duration) -> anyhow::Result<Box<dyn Lease>>;
}

/// Keys that live only while their node does: its registration (`daemon::nodes`), later its
/// brick rows and elections. On etcd, a lease the store renews every third of its TTL: a node
/// killed, or cut off from etcd, loses its keys a TTL later; one that comes back puts them
/// again under a new lease. On the embedded store, ordinary keys (one node: it is alive
/// whenever anyone reads them). Dropping the lease revokes it: its keys go at once.
pub trait Lease: Send + Sync {
    /// Puts `key` under the lease (and again under each new lease).
    fn put(&self, key: &str, value: &[u8]) -> anyhow::Result<()>;
    /// How long what this lease holds is sure to live on, counted from when its last renewal
    /// was asked for; `None` once it may have lapsed (or was lost).
    fn valid_for(&self) -> Option<Duration>;
    /// An election: takes `key` (with `value`) under this lease if nobody holds it. Gives the
    /// term's fencing token if this lease holds the key (the key's create revision: every
    /// later term's is larger), `None` if another does. Unlike `put`, a key won is not put
    /// again under a new lease: a lost lease is a lost term.
    fn campaign(&self, key: &str, value: &[u8]) -> anyhow::Result<Option<u64>>;
    /// Gives up the term `token` of `key` (nothing if that term is over already).
    fn resign(&self, key: &str, token: u64) -> anyhow::Result<()>;
    /// Puts `key` only while the term `token` of the election `election` lasts (one
    /// transaction); says whether it did.
    fn put_if_held(&self, election: &str, token: u64, key: &str, value: &[u8]) -> anyhow::Result<bool>;
}

/// Which store a node uses (`georepd --store`).
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    /// `local`: the embedded store, `<state>/store.redb`.
    Local,
    /// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`.
    Etcd(EtcdOptions),
}

impl Spec {
    /// Parses `--store`; the etcd connection's other options (TLS, user) are added by the
    /// caller.
    pub fn parse(s: &str) -> anyhow::Result<Spec> {
        if s == "local" {
            return Ok(Spec::Local);
        }
        let Some(rest) = s.strip_prefix("etcd://") else {
            anyhow::bail!("--store {s}: not a store: give `local` or `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`");
        };
        let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() { "georep" } else { prefix };
        if !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b)) || prefix.contains("//") {
            anyhow::bail!(
                "--store {s}: the key prefix {prefix:?} may hold only letters, digits, '.', '_', '-' and single '/'"
            );
        }
        let mut endpoints = Vec::new();
        for h in hosts.split(',') {
            let ok = h.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty()
                    && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-[]:".contains(&b))
                    && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                anyhow::bail!("--store {s}: {h:?} is not HOST:PORT");
            }
            endpoints.push(h.to_string());
        }
        Ok(Spec::Etcd(EtcdOptions { endpoints, prefix: prefix.to_string(), ..Default::default() }))
    }

    /// Opens the store (`local`: the embedded one's file) and checks its schema.
    pub fn open(&self, local: &Path) -> anyhow::Result<Box<dyn Store>> {
        let (store, what): (Box<dyn Store>, String) = match self {
            Spec::Local => (Box::new(LocalStore::open(local)?), local.display().to_string()),
            Spec::Etcd(o) => (Box::new(EtcdStore::open(o)?), o.to_string()),
        };
        check_schema(store.as_ref(), &what)?;
        Ok(store)
    }
}

/// The version of the store's layout (its keys and their JSON documents), kept under
/// `SCHEMA_KEY`. A store without it is of version 1 (written before the key was).
pub const SCHEMA_VERSION: u16 = 1;
pub const SCHEMA_KEY: &str = "meta/schema";

#[derive(Serialize, serde::Deserialize)]
struct Schema {
    version: u16,
}

/// Checks that this georep can read `store` (`what` names it in the refusal) and records the
/// schema version in a store that has none. A newer schema is refused: fields this version
/// does not know could be lost when it writes a record back.
pub fn check_schema(store: &dyn Store, what: &str) -> anyhow::Result<()> {
    match store.get_json::<Schema>(SCHEMA_KEY)? {
        None => {
            store.create_json(SCHEMA_KEY, &Schema { version: SCHEMA_VERSION })?;
        }
        Some(s) if s.version > SCHEMA_VERSION => anyhow::bail!(
            "{what}: store schema version {} is newer than this georep ({}) reads ({SCHEMA_VERSION}): upgrade georep",
            s.version,
            crate::VERSION
        ),
        Some(_) => {}
    }
    Ok(())
}

/// Typed access on top of any store.
pub trait StoreExt {
    fn get_json<T: DeserializeOwned>(&self, key: &str) -> anyhow::Result<Option<T>>;
    fn put_json<T: Serialize>(&self, key: &str, v: &T) -> anyhow::Result<()>;
    fn create_json<T: Serialize>(&self, key: &str, v: &T) -> anyhow::Result<bool>;
    fn list_json<T: DeserializeOwned>(&self, prefix: &str) -> anyhow::Result<Vec<T>>;
}

impl<S: Store + ?Sized> StoreExt for S {
    fn get_json<T: DeserializeOwned>(&self, key: &str) -> anyhow::Result<Option<T>> {
        match self.get(key)? {
            Some(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| format!("store: corrupt value at {key}"))?)),
            None => Ok(None),
        }
    }
    fn put_json<T: Serialize>(&self, key: &str, v: &T) -> anyhow::Result<()> {
        self.put(key, &serde_json::to_vec(v)?)
    }
    fn create_json<T: Serialize>(&self, key: &str, v: &T) -> anyhow::Result<bool> {
        self.create(key, &serde_json::to_vec(v)?)
    }
    fn list_json<T: DeserializeOwned>(&self, prefix: &str) -> anyhow::Result<Vec<T>> {
        self.list(prefix)?
            .into_iter()
            .map(|(k, b)| serde_json::from_slice(&b).with_context(|| format!("store: corrupt value at {k}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_store_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.redb");
        {
            let s = LocalStore::open(&p).unwrap();
            assert!(s.create("volumes/a", b"1").unwrap());
            assert!(!s.create("volumes/a", b"2").unwrap());
            s.put("volumes/b", b"3").unwrap();
            s.put("sessions/x", b"4").unwrap();
        }
        let s = LocalStore::open(&p).unwrap();
        assert_eq!(s.get("volumes/a").unwrap().as_deref(), Some(&b"1"[..]));
        let keys: Vec<String> = s.list("volumes/").unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["volumes/a", "volumes/b"]);
        assert!(s.delete("volumes/a").unwrap());
        assert!(!s.delete("volumes/a").unwrap());
        assert_eq!(s.get("volumes/a").unwrap(), None);
    }

    #[test]
    fn the_schema_is_recorded_once_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(&dir.path().join("s.redb")).unwrap();
        check_schema(&s, "s").unwrap();
        let recorded = s.get(SCHEMA_KEY).unwrap().unwrap();
        assert_eq!(String::from_utf8(recorded).unwrap(), format!("{{\"version\":{SCHEMA_VERSION}}}"));
        check_schema(&s, "s").unwrap();
        s.put(SCHEMA_KEY, format!("{{\"version\":{}}}", SCHEMA_VERSION + 1).as_bytes()).unwrap();
        let e = check_schema(&s, "s").unwrap_err().to_string();
        assert!(e.starts_with(&format!("s: store schema version {} is newer", SCHEMA_VERSION + 1)), "{e}");
    }
}
