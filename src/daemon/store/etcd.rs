//! The store on etcd (v3 API, through the `etcd-client` crate): every key under one prefix
//! (`georep/` by default), so that clusters can share an etcd.
//!
//! The `Store` trait is synchronous (the daemon's core runs on plain threads); this store runs
//! the client on a runtime of its own and waits for each answer on a channel, which works from
//! any thread, in or out of another tokio runtime. Every request has a deadline: an etcd that
//! does not answer is an error after `timeout`, never a hang.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};

use super::{Lease, Store};

/// How to reach etcd (`--store etcd://...` and the `--store-*` options).
#[derive(Clone, PartialEq)]
pub struct EtcdOptions {
    /// `HOST:PORT` of each member.
    pub endpoints: Vec<String>,
    /// Every key of this cluster is under `<prefix>/`.
    pub prefix: String,
    /// etcd's authentication: user and password.
    pub user: Option<(String, String)>,
    /// TLS: the CA that signed the members' certificates (turns TLS on), and this client's
    /// own certificate and key if the members ask for one.
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The deadline of each request.
    pub timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> EtcdOptions {
        EtcdOptions {
            endpoints: Vec::new(),
            prefix: "georep".into(),
            user: None,
            ca: None,
            cert: None,
            key: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The password is never printed.
impl fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl fmt::Display for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "etcd://{}/{}", self.endpoints.join(","), self.prefix)
    }
}

/// How many keys one range request reads (a listing reads on, at the first page's revision).
const PAGE: i64 = 1000;

pub struct EtcdStore {
    rt: Option<tokio::runtime::Runtime>,
    conn: Conn,
}

/// What a request needs: the client, the runtime it runs on, the key prefix, the deadline.
/// Cloned into each lease.
#[derive(Clone)]
struct Conn {
    handle: tokio::runtime::Handle,
    client: Client,
    /// `<prefix>/`, the start of every key.
    root: String,
    name: String,
    timeout: Duration,
}

impl EtcdStore {
    /// Connects, and checks that etcd answers (within the timeout).
    pub fn open(o: &EtcdOptions) -> anyhow::Result<EtcdStore> {
        let name = o.to_string();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd")
            .enable_all()
            .build()
            .context("the etcd client's runtime")?;
        let scheme = if o.ca.is_some() { "https" } else { "http" };
        let endpoints: Vec<String> = o.endpoints.iter().map(|e| format!("{scheme}://{e}")).collect();
        let mut opts = ConnectOptions::new()
            .with_timeout(o.timeout)
            .with_connect_timeout(o.timeout)
            .with_keep_alive(Duration::from_secs(10), o.timeout)
            .with_require_leader(true);
        if let Some((u, p)) = &o.user {
            opts = opts.with_user(u.clone(), p.clone()).with_auto_token_refresh(true);
        }
        if let Some(ca) = &o.ca {
            let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("{name}: {}", p.display()));
            let mut tls = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
            match (&o.cert, &o.key) {
                (Some(c), Some(k)) => tls = tls.identity(etcd_client::Identity::from_pem(read(c)?, read(k)?)),
                (None, None) => {}
                _ => anyhow::bail!("{name}: a client certificate needs its key, and a key its certificate"),
            }
            opts = opts.with_tls(tls);
        }
        let timeout = o.timeout;
        let connect =
            rt.block_on(async { tokio::time::timeout(timeout * 2, Client::connect(endpoints, Some(opts))).await });
        let client = match connect {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => anyhow::bail!("{name}: cannot connect: {e}"),
            Err(_) => anyhow::bail!("{name}: cannot connect: no answer within {:?}", timeout * 2),
        };
        let conn = Conn { handle: rt.handle().clone(), client, root: format!("{}/", o.prefix), name, timeout };
        let s = EtcdStore { rt: Some(rt), conn };
        // The connection is made lazily: a first read says whether etcd is there.
        s.get("meta/schema")?;
        Ok(s)
    }
}

impl Conn {
    /// Runs `f` on the client's runtime and waits for its answer, at most the timeout (and a
    /// second more, for the client's own deadline to be the one that speaks).
    fn call<T, F>(&self, what: &str, key: &str, f: impl FnOnce(Client) -> F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(self.client.clone());
        let deadline = self.timeout + Duration::from_secs(1);
        self.handle.spawn(async move {
            let _ = tx.send(tokio::time::timeout(deadline, fut).await);
        });
        match rx.recv() {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(anyhow::anyhow!("{}: {what} {key}: {}", self.name, short(&e))),
            Ok(Err(_)) => Err(anyhow::anyhow!("{}: {what} {key}: no answer within {deadline:?}", self.name)),
            Err(_) => Err(anyhow::anyhow!("{}: {what} {key}: the client stopped", self.name)),
        }
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.root)
    }
}

/// The error's words without tonic's debug dump of metadata.
fn short(e: &etcd_client::Error) -> String {
    let mut out = match e {
        etcd_client::Error::GRpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    };
    // What lies under it (a TLS handshake refused, a connection reset) says more.
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let words = c.to_string();
        if !out.contains(&words) {
            out = format!("{out}: {words}");
        }
        cause = c.source();
    }
    out
}

/// The first key after every key starting with `prefix` (etcd's range end for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // Dropped maybe inside another runtime, where a blocking shutdown would panic.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Store for EtcdStore {
    fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let k = self.conn.full(key);
        let mut r = self.conn.call("get", key, |mut c| async move { c.get(k, None).await })?;
        Ok(r.take_kvs().into_iter().next().map(|kv| kv.into_key_value().1))
    }

    fn put(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let (k, v) = (self.conn.full(key), value.to_vec());
        self.conn.call("put", key, |mut c| async move { c.put(k, v, None).await })?;
        Ok(())
    }

    fn create(&self, key: &str, value: &[u8]) -> anyhow::Result<bool> {
        let (k, v) = (self.conn.full(key), value.to_vec());
        let txn = Txn::new()
            .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(k, v, None)]);
        let r = self.conn.call("create", key, |mut c| async move { c.txn(txn).await })?;
        Ok(r.succeeded())
    }

    fn delete(&self, key: &str) -> anyhow::Result<bool> {
        let k = self.conn.full(key);
        let r = self.conn.call("delete", key, |mut c| async move { c.delete(k, None).await })?;
        Ok(r.deleted() > 0)
    }

    fn list(&self, prefix: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let start = self.conn.full(prefix).into_bytes();
        let end = prefix_end(&start);
        let mut out = Vec::new();
        let (mut from, mut revision) = (start, 0);
        loop {
            let (k, e) = (from.clone(), end.clone());
            let mut opts = GetOptions::new().with_range(e).with_limit(PAGE);
            if revision > 0 {
                // Every page as of the first one's revision: one consistent listing.
                opts = opts.with_revision(revision);
            }
            let mut r = self.conn.call("list", prefix, |mut c| async move { c.get(k, Some(opts)).await })?;
            if revision == 0 {
                revision = r.header().map_or(0, |h| h.revision());
            }
            let more = r.more();
            let kvs = r.take_kvs();
            for kv in kvs {
                let (full, value) = kv.into_key_value();
                let key = String::from_utf8(full[self.conn.root.len()..].to_vec())
                    .with_context(|| format!("{}: a key under {prefix} is not UTF-8", self.conn.name))?;
                out.push((key, value));
                from = full;
            }
            if !more {
                return Ok(out);
            }
            from.push(0); // the next key after the last one read
        }
    }

    fn lease(&self, ttl: Duration) -> anyhow::Result<Box<dyn Lease>> {
        let secs = ttl.as_secs().max(2) as i64;
        let asked = Instant::now();
        let id = self.conn.call("lease", "(grant)", |mut c| async move { c.lease_grant(secs, None).await })?.id();
        let held = Arc::new(parking_lot::Mutex::new(Held {
            id,
            until: Some(asked + Duration::from_secs(secs as u64)),
            keys: BTreeMap::new(),
        }));
        let keeper = self.conn.handle.spawn(keep(self.conn.clone(), secs, held.clone()));
        Ok(Box::new(EtcdLease { conn: self.conn.clone(), held, keeper }))
    }
}

/// A lease on etcd, and the keys it holds.
pub struct EtcdLease {
    conn: Conn,
    held: Arc<parking_lot::Mutex<Held>>,
    keeper: tokio::task::JoinHandle<()>,
}

struct Held {
    /// The lease's id; 0 while it is lost and not yet granted again.
    id: i64,
    /// Until when its keys are sure to live.
    until: Option<Instant>,
    /// What it holds, to put again under a new lease.
    keys: BTreeMap<String, Vec<u8>>,
}

impl Lease for EtcdLease {
    fn put(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let id = {
            let mut h = self.held.lock();
            h.keys.insert(key.to_string(), value.to_vec());
            h.id
        };
        if id == 0 {
            // Lost: the keeper puts it with the others under the next lease.
            anyhow::bail!("{}: put {key}: the lease is lost (etcd unreachable); it will be put again", self.conn.name);
        }
        let (k, v) = (self.conn.full(key), value.to_vec());
        self.conn.call("put", key, |mut c| async move { c.put(k, v, Some(PutOptions::new().with_lease(id))).await })?;
        Ok(())
    }

    fn valid_for(&self) -> Option<Duration> {
        self.held.lock().until.and_then(|u| u.checked_duration_since(Instant::now()))
    }

    fn campaign(&self, key: &str, value: &[u8]) -> anyhow::Result<Option<u64>> {
        let id = self.held.lock().id;
        if id == 0 || self.valid_for().is_none() {
            return Ok(None);
        }
        let k = self.conn.full(key);
        let txn = Txn::new()
            .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(k.clone(), value.to_vec(), Some(PutOptions::new().with_lease(id)))])
            .or_else([TxnOp::get(k, None)]);
        let r = self.conn.call("campaign", key, |mut c| async move { c.txn(txn).await })?;
        if r.succeeded() {
            // The put's revision is the key's create revision.
            return Ok(r.header().map(|h| h.revision() as u64));
        }
        for op in r.op_responses() {
            if let TxnOpResponse::Get(g) = op
                && let Some(kv) = g.kvs().first()
                && kv.lease() == id
            {
                return Ok(Some(kv.create_revision() as u64));
            }
        }
        Ok(None)
    }

    fn resign(&self, key: &str, token: u64) -> anyhow::Result<()> {
        let k = self.conn.full(key);
        let txn = Txn::new()
            .when([Compare::create_revision(k.clone(), CompareOp::Equal, token as i64)])
            .and_then([TxnOp::delete(k, None)]);
        self.conn.call("resign", key, |mut c| async move { c.txn(txn).await })?;
        Ok(())
    }

    fn put_if_held(&self, election: &str, token: u64, key: &str, value: &[u8]) -> anyhow::Result<bool> {
        let (e, k, v) = (self.conn.full(election), self.conn.full(key), value.to_vec());
        let txn = Txn::new()
            .when([Compare::create_revision(e, CompareOp::Equal, token as i64)])
            .and_then([TxnOp::put(k, v, None)]);
        let r = self.conn.call("put", key, |mut c| async move { c.txn(txn).await })?;
        Ok(r.succeeded())
    }
}

impl Drop for EtcdLease {
    /// Revoked: its keys go now, not a TTL later (best effort: etcd may be gone).
    fn drop(&mut self) {
        self.keeper.abort();
        let id = self.held.lock().id;
        if id != 0 {
            // Waited for, briefly: a daemon that stops exits right after.
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let mut c = self.conn.client.clone();
            self.conn.handle.spawn(async move {
                let _ = tx.send(tokio::time::timeout(Duration::from_secs(1), c.lease_revoke(id)).await);
            });
            let _ = rx.recv_timeout(Duration::from_secs(2));
        }
    }
}

/// Renews the lease every third of its TTL; when etcd says it expired (the node was cut off
/// longer than the TTL), grants a new one and puts every key again.
async fn keep(conn: Conn, secs: i64, held: Arc<parking_lot::Mutex<Held>>) {
    let tick = Duration::from_secs(secs as u64) / 3;
    // A renewal that failed (an etcd member gone, its leader changing) is tried again soon,
    // on another connection, not a tick later: the lease must not lapse while etcd as a
    // whole still answers.
    let retry = Duration::from_millis(300);
    let mut failed = false;
    let mut stream: Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)> = None;
    loop {
        tokio::time::sleep(if failed { retry } else { tick }).await;
        failed = true;
        let id = held.lock().id;
        let asked = Instant::now();
        let mut c = conn.client.clone();
        if id == 0 {
            let granted = tokio::time::timeout(conn.timeout, async {
                let id = c.lease_grant(secs, None).await?.id();
                let keys = held.lock().keys.clone();
                for (k, v) in keys {
                    c.put(conn.full(&k), v, Some(PutOptions::new().with_lease(id))).await?;
                }
                Ok::<_, etcd_client::Error>(id)
            })
            .await;
            match granted {
                Ok(Ok(id)) => {
                    failed = false;
                    let mut h = held.lock();
                    h.id = id;
                    h.until = Some(asked + Duration::from_secs(secs as u64));
                    log::info!("{}: a new lease ({id:x}): its keys are back", conn.name);
                }
                Ok(Err(e)) => log::debug!("{}: lease: {}", conn.name, short(&e)),
                Err(_) => log::debug!("{}: lease: no answer", conn.name),
            }
            continue;
        }
        let renewed = tokio::time::timeout(conn.timeout.min(tick), async {
            match stream.as_mut() {
                Some((keeper, answers)) => {
                    keeper.keep_alive().await?;
                    Ok::<_, etcd_client::Error>(answers.message().await?.map_or(0, |r| r.ttl()))
                }
                // Opening the stream renews once (or says the lease is gone).
                None => {
                    stream = Some(c.lease_keep_alive(id).await?);
                    Ok(secs)
                }
            }
        })
        .await;
        // A new stream's "lease not found" is an expiry (TTL 0); a keeper's closed channel,
        // the same error type, is only a broken connection, tried again below.
        let renewed = match renewed {
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(m))) if m.contains("not found") => Ok(Ok(0)),
            other => other,
        };
        match renewed {
            Ok(Ok(ttl)) if ttl > 0 => {
                held.lock().until = Some(asked + Duration::from_secs(ttl as u64));
                failed = false;
            }
            Ok(Ok(_)) => {
                log::warn!("{}: the lease {id:x} expired: its keys are gone until a new one is granted", conn.name);
                stream = None;
                let mut h = held.lock();
                h.id = 0;
                h.until = None;
            }
            Ok(Err(e)) => {
                log::debug!("{}: lease {id:x}: {}", conn.name, short(&e));
                stream = None;
            }
            Err(_) => {
                log::debug!("{}: lease {id:x}: no answer", conn.name);
                stream = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_where_its_keys_do() {
        assert_eq!(prefix_end(b"georep/volumes/"), b"georep/volumes0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
