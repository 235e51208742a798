//! The embedded store: one redb file on this node (`<state>/store.redb`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{Lease, Store};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

#[derive(Clone)]
pub struct LocalStore {
    db: Arc<redb::Database>,
}

impl LocalStore {
    pub fn open(path: &Path) -> anyhow::Result<LocalStore> {
        let db = redb::Database::create(path).with_context(|| format!("open the store {}", path.display()))?;
        let txn = db.begin_write()?;
        txn.open_table(KV)?;
        txn.commit()?;
        Ok(LocalStore { db: Arc::new(db) })
    }

    fn write<T>(&self, f: impl FnOnce(&mut redb::Table<&str, &[u8]>) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let txn = self.db.begin_write()?;
        let r = {
            let mut t = txn.open_table(KV)?;
            f(&mut t)?
        };
        txn.commit()?;
        Ok(r)
    }
}

impl Store for LocalStore {
    fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(KV)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    fn put(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        self.write(|t| {
            t.insert(key, value)?;
            Ok(())
        })
    }

    fn create(&self, key: &str, value: &[u8]) -> anyhow::Result<bool> {
        self.write(|t| {
            if t.get(key)?.is_some() {
                return Ok(false);
            }
            t.insert(key, value)?;
            Ok(true)
        })
    }

    fn delete(&self, key: &str) -> anyhow::Result<bool> {
        self.write(|t| Ok(t.remove(key)?.is_some()))
    }

    fn list(&self, prefix: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(KV)?;
        let mut out = Vec::new();
        for item in t.range(prefix..)? {
            let (k, v) = item?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn lease(&self, _ttl: Duration) -> anyhow::Result<Box<dyn Lease>> {
        Ok(Box::new(LocalLease { store: self.clone() }))
    }
}

/// One node: its leased keys are ordinary keys, alive as long as anyone can read them.
pub struct LocalLease {
    store: LocalStore,
}

impl Lease for LocalLease {
    fn put(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        self.store.put(key, value)
    }

    fn valid_for(&self) -> Option<Duration> {
        Some(Duration::MAX)
    }

    /// One node: it always wins, in one term that never ends.
    fn campaign(&self, key: &str, value: &[u8]) -> anyhow::Result<Option<u64>> {
        self.store.create(key, value)?;
        Ok(Some(1))
    }

    fn resign(&self, key: &str, _token: u64) -> anyhow::Result<()> {
        self.store.delete(key).map(drop)
    }

    fn put_if_held(&self, _election: &str, _token: u64, key: &str, value: &[u8]) -> anyhow::Result<bool> {
        self.store.put(key, value).map(|()| true)
    }
}
