//! Webhooks (`georep webhook add|list|del|test`): URLs every event is POSTed to as GlusterFS's
//! events API does (a JSON body `{nodeid, ts, event, message}`, an optional bearer token).
//! Each webhook has its own thread and bounded queue: a slow or dead one delays only itself,
//! never replication nor another webhook. A failed POST (no connection, timeout, a status other
//! than 2xx) is retried after 1, 2, 4, 8 and 16 seconds, then given up with a log line.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::Daemon;
use super::control::Response;
use super::events::Event;
use super::store::StoreExt;

/// Events waiting for one webhook at most; later ones are dropped (and counted).
const QUEUE: usize = 1024;
const TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF: [u64; 5] = [1, 2, 4, 8, 16];

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Webhook {
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` (shown as `********` when listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookCmd {
    Add {
        url: String,
        bearer: Option<String>,
    },
    List,
    Del {
        url: String,
    },
    /// Sends an empty POST (as GlusterFS's `webhook-test`) and says what came back.
    Test {
        url: String,
        bearer: Option<String>,
    },
}

#[derive(Default)]
pub struct Webhooks {
    queues: Mutex<HashMap<Webhook, SyncSender<Event>>>,
    dropped: AtomicU64,
}

impl Webhooks {
    /// Runs exactly the webhooks given: new ones get a thread, removed ones' threads end
    /// when their queue is empty.
    pub fn load(&self, hooks: Vec<Webhook>) {
        let mut q = self.queues.lock();
        q.retain(|h, _| hooks.contains(h));
        for h in hooks {
            if q.contains_key(&h) {
                continue;
            }
            let (tx, rx) = sync_channel(QUEUE);
            let hook = h.clone();
            let spawned = std::thread::Builder::new().name("webhook".into()).spawn(move || run(hook, rx));
            match spawned {
                Ok(_) => {
                    q.insert(h, tx);
                }
                Err(e) => log::error!("webhook {}: no thread: {e}", h.url),
            }
        }
    }

    /// Queues `e` for every webhook; never waits.
    pub fn deliver(&self, e: &Event) {
        for (h, tx) in self.queues.lock().iter() {
            if let Err(TrySendError::Full(_)) = tx.try_send(e.clone()) {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                log::warn!("webhook {}: {QUEUE} events waiting; {} dropped ({n} in all)", h.url, e.event);
            }
        }
    }
}

fn run(hook: Webhook, rx: Receiver<Event>) {
    for e in rx {
        let body = match serde_json::to_vec(&e) {
            Ok(b) => b,
            Err(_) => continue,
        };
        let mut tries = BACKOFF.iter();
        loop {
            match post(&hook, Some(&body)) {
                Ok(code) if (200..300).contains(&code) => break,
                Ok(code) => log::warn!("webhook {}: {} answered HTTP {code}", hook.url, e.event),
                Err(why) => log::warn!("webhook {}: {}: {why}", hook.url, e.event),
            }
            match tries.next() {
                Some(s) => std::thread::sleep(Duration::from_secs(*s)),
                None => {
                    log::error!("webhook {}: {} given up after {} tries", hook.url, e.event, BACKOFF.len() + 1);
                    break;
                }
            }
        }
    }
}

/// One POST: the HTTP status, or why there was none.
fn post(hook: &Webhook, body: Option<&[u8]>) -> Result<u16, String> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(TIMEOUT)).http_status_as_error(false).build().into();
    let mut req = agent.post(&hook.url).header("Content-Type", "application/json");
    if let Some(b) = &hook.bearer {
        req = req.header("Authorization", format!("Bearer {b}"));
    }
    let resp = match body {
        Some(b) => req.send(b),
        None => req.send_empty(),
    };
    resp.map(|r| r.status().as_u16()).map_err(|e| e.to_string())
}

fn key(url: &str) -> String {
    format!("webhooks/{:016x}", xxhash_rust::xxh3::xxh3_64(url.as_bytes()))
}

/// An http(s) URL with a host, as given.
fn check_url(url: &str) -> anyhow::Result<()> {
    let ok = url
        .parse::<ureq::http::Uri>()
        .ok()
        .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty()));
    if ok.is_none() {
        crate::refuse!(BadInput, "url: {url:?} is not an http:// or https:// URL with a host");
    }
    Ok(())
}

/// The webhooks in the store.
pub fn all(d: &Daemon) -> anyhow::Result<Vec<Webhook>> {
    d.store.list_json("webhooks/")
}

pub fn handle(d: &Daemon, cmd: WebhookCmd) -> anyhow::Result<Response> {
    match cmd {
        WebhookCmd::Add { url, bearer } => {
            check_url(&url)?;
            let _g = d.big_lock.lock();
            if d.store.get_json::<Webhook>(&key(&url))?.is_some() {
                crate::refuse!(Refused, "Webhook {url} already exists");
            }
            d.store.put_json(&key(&url), &Webhook { url: url.clone(), bearer })?;
            d.events.webhooks.load(all(d)?);
            Ok(Response::Ok("Webhook added successfully".into()))
        }
        WebhookCmd::Del { url } => {
            let _g = d.big_lock.lock();
            if d.store.get_json::<Webhook>(&key(&url))?.is_none() {
                crate::refuse!(NotFound, "Webhook {url} does not exist");
            }
            d.store.delete(&key(&url))?;
            d.events.webhooks.load(all(d)?);
            Ok(Response::Ok("Webhook deleted successfully".into()))
        }
        WebhookCmd::List => {
            let mut hooks = all(d)?;
            for h in &mut hooks {
                if h.bearer.is_some() {
                    h.bearer = Some("********".into());
                }
            }
            Ok(Response::Webhooks(hooks))
        }
        WebhookCmd::Test { url, bearer } => {
            check_url(&url)?;
            match post(&Webhook { url: url.clone(), bearer }, None) {
                Ok(code) if (200..300).contains(&code) => Ok(Response::Ok(format!("{url}: OK (HTTP {code})"))),
                Ok(code) => crate::refuse!(Refused, "{url}: NOT OK (HTTP {code})"),
                Err(why) => crate::refuse!(Refused, "{url}: NOT OK ({why})"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_with_a_host() {
        for good in ["http://127.0.0.1:9000/listen", "https://hooks.example/x?y=1"] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        for bad in ["", "ftp://h/x", "http://", "/listen", "127.0.0.1:9000", "http:// /x"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
