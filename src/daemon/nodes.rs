//! The nodes of the cluster (SPEC section 10). Each georepd registers itself in the store:
//! once for good (`peers/<uuid>`: the cluster knows the node) and under a lease
//! (`nodes/<uuid>`: the node is alive and connected to the store). `pool list` and `peer
//! status` show every peer, Connected while its lease lives, Disconnected once it lapsed: a node
//! killed, halted or cut off from etcd turns Disconnected within the lease's TTL.

use std::time::Duration;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Daemon;
use super::sessions::Session;
use super::store::{Lease, Spec, StoreExt};
use crate::session::status::StatusRow;

/// How long a node's registration outlives its last renewal (renewed every third of it).
pub const NODE_TTL: Duration = Duration::from_secs(10);

/// What a node says of itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeRecord {
    pub uuid: String,
    pub name: String,
    /// Its REST API's address, if it serves one.
    #[serde(default)]
    pub api: Option<String>,
    pub version: String,
    /// When this georepd started (Unix ms).
    pub started_ms: u64,
}

/// A node as `pool list`, `peer status` and `GET /api/v1/nodes` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeView {
    #[serde(flatten)]
    pub record: NodeRecord,
    /// Its registration lives (it runs and reaches the store).
    pub connected: bool,
    /// The node that answers.
    pub this_node: bool,
}

fn peer_key(uuid: &str) -> String {
    format!("peers/{uuid}")
}

fn live_key(uuid: &str) -> String {
    format!("nodes/{uuid}")
}

/// This node's registration: alive while it is held.
pub struct Registration {
    lease: Box<dyn Lease>,
}

impl Registration {
    /// How long this node is sure to stay registered (`None`: its lease may have lapsed).
    pub fn valid_for(&self) -> Option<Duration> {
        self.lease.valid_for()
    }

    /// Puts `key` under this node's lease: it lives as long as the node's registration.
    pub fn put(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        self.lease.put(key, value)
    }

    /// An election under this node's lease (`Lease::campaign`).
    pub fn campaign(&self, key: &str, value: &[u8]) -> anyhow::Result<Option<u64>> {
        self.lease.campaign(key, value)
    }

    pub fn resign(&self, key: &str, token: u64) -> anyhow::Result<()> {
        self.lease.resign(key, token)
    }

    pub fn put_if_held(&self, election: &str, token: u64, key: &str, value: &[u8]) -> anyhow::Result<bool> {
        self.lease.put_if_held(election, token, key, value)
    }
}

/// Registers this node (its API at `api`, if any).
pub fn register(d: &Daemon, api: Option<String>) -> anyhow::Result<Registration> {
    let record = NodeRecord {
        uuid: d.node.id.clone(),
        name: d.node.name.clone(),
        api,
        version: crate::VERSION.to_string(),
        started_ms: crate::types::EpochMs::now().0,
    };
    d.store.put_json(&peer_key(&record.uuid), &record)?;
    let lease = d.store.lease(NODE_TTL)?;
    lease.put(&live_key(&record.uuid), &serde_json::to_vec(&record)?)?;
    Ok(Registration { lease })
}

/// Every node the cluster knows, this one first, then by name.
pub fn list(d: &Daemon) -> anyhow::Result<Vec<NodeView>> {
    let live: Vec<NodeRecord> = d.store.list_json("nodes/")?;
    let mut known: Vec<NodeRecord> = d.store.list_json("peers/")?;
    for r in &live {
        if !known.iter().any(|k| k.uuid == r.uuid) {
            known.push(r.clone());
        }
    }
    let mut out: Vec<NodeView> = known
        .into_iter()
        .map(|k| {
            // The live record is the newer (its address, its version after an upgrade).
            let now = live.iter().find(|l| l.uuid == k.uuid);
            NodeView { connected: now.is_some(), this_node: k.uuid == d.node.id, record: now.cloned().unwrap_or(k) }
        })
        .collect();
    out.sort_by(|a, b| b.this_node.cmp(&a.this_node).then_with(|| a.record.name.cmp(&b.record.name)));
    Ok(out)
}

/// `pool list`, as GlusterFS prints it: every node, this one as `localhost`.
pub fn render_pool(nodes: &[NodeView]) -> String {
    let mut out = String::from("UUID\t\t\t\t\tHostname \tState\n");
    // GlusterFS lists the peers first and localhost last.
    for n in nodes.iter().filter(|n| !n.this_node).chain(nodes.iter().filter(|n| n.this_node)) {
        let host = if n.this_node { "localhost" } else { n.record.name.as_str() };
        out.push_str(&format!("{}\t{host:<9}\t{}\n", n.record.uuid, state(n)));
    }
    out
}

/// `peer status`, as GlusterFS prints it: the other nodes.
pub fn render_peers(nodes: &[NodeView]) -> String {
    let peers: Vec<&NodeView> = nodes.iter().filter(|n| !n.this_node).collect();
    let mut out = format!("Number of Peers: {}\n", peers.len());
    for n in peers {
        out.push_str(&format!(
            "\nHostname: {}\nUuid: {}\nState: Peer in Cluster ({})\n",
            n.record.name,
            n.record.uuid,
            state(n)
        ));
    }
    out
}

fn state(n: &NodeView) -> &'static str {
    if n.connected { "Connected" } else { "Disconnected" }
}

/// Where a node publishes its rows of a session: `status/<session>/<node uuid>`.
fn status_key(session: &str, uuid: &str) -> String {
    format!("status/{session}/{uuid}")
}

/// How often a node publishes its brick rows (only what changed is written).
const PUBLISH_EVERY: Duration = Duration::from_secs(2);

/// On a shared store, publishes this node's brick rows of every session every 2 s, under its
/// lease: other nodes' `status` show them, and show the node's rows Faulty when the lease goes.
pub fn start_publishing(d: &Arc<Daemon>) -> std::io::Result<()> {
    if matches!(d.opts.store, Spec::Local) {
        return Ok(());
    }
    let d = d.clone();
    let mut published: HashMap<String, Vec<u8>> = HashMap::new();
    super::every("status-publish", PUBLISH_EVERY, move || publish(&d, &mut published))
}

fn publish(d: &Daemon, published: &mut HashMap<String, Vec<u8>>) -> anyhow::Result<()> {
    let mut now: HashMap<String, Vec<u8>> = HashMap::new();
    for s in d.store.list_json::<Session>("sessions/")? {
        let Ok(v) = super::volumes::get(d, &s.primary) else { continue };
        let rows: Vec<StatusRow> = v
            .bricks
            .iter()
            .filter(|(n, _)| d.node.is_me(n))
            .map(|(n, p)| super::sessions::local_row(d, &s, &v, n, p))
            .collect();
        if !rows.is_empty() {
            now.insert(status_key(&s.key(), &d.node.id), serde_json::to_vec(&rows)?);
        }
    }
    // Sessions gone from this node: an empty list, so that nothing stale is shown.
    for k in published.keys() {
        now.entry(k.clone()).or_default();
    }
    let reg = d.registration.lock();
    let Some(reg) = reg.as_ref() else { return Ok(()) };
    for (k, v) in &now {
        if published.get(k) != Some(v) {
            reg.put(k, v)?;
            published.insert(k.clone(), v.clone());
        }
    }
    // An empty list, once written, needs no more watching.
    published.retain(|_, v| !v.is_empty());
    Ok(())
}

/// What the other nodes published, read at once for a `status`: the cluster's nodes and every
/// row under `status/` (one listing, whatever the number of sessions).
pub struct Published {
    peers: Vec<NodeView>,
    rows: std::collections::HashMap<String, Vec<StatusRow>>,
}

impl Published {
    pub fn load(d: &Daemon) -> anyhow::Result<Published> {
        let peers = list(d)?;
        let rows = d
            .store
            .list("status/")?
            .into_iter()
            .filter_map(|(k, v)| Some((k, serde_json::from_slice(&v).ok()?)))
            .collect();
        Ok(Published { peers, rows })
    }

    /// The row of `node`'s brick `path` of session `s`: the one it published, or, if there is
    /// none, why (starting, not connected, not in the cluster).
    pub fn remote_row(&self, s: &Session, node: &str, path: &str) -> StatusRow {
        let peer = self.peers.iter().find(|p| p.record.name == node);
        if let Some(p) = peer.filter(|p| p.connected)
            && let Some(rows) = self.rows.get(&status_key(&s.key(), &p.record.uuid))
            && let Some(row) = rows.iter().find(|r| r.primary_brick == path)
        {
            return row.clone();
        }
        let mut row = StatusRow {
            primary_node: node.to_string(),
            primary_node_uuid: peer.map(|p| p.record.uuid.clone()).unwrap_or_default(),
            primary_volume: s.primary.clone(),
            primary_brick: path.to_string(),
            secondary_user: s.user().to_string(),
            secondary: s.url(),
            secondary_node: crate::session::status::NA.into(),
            ..Default::default()
        };
        match peer {
            Some(p) if p.connected => {
                // Connected, nothing published yet: it is starting.
                let shown = if s.state == "Started" { "Initializing..." } else { s.state.as_str() };
                row.fill(shown, None);
            }
            _ => {
                row.fill("Faulty", None);
                row.last_error = match peer {
                    Some(_) => format!("node {node} is not connected"),
                    None => format!("node {node} is not in the cluster"),
                };
            }
        }
        row
    }
}
