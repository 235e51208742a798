//! The nodes of the cluster (SPEC section 10). Each georepd registers itself in the store:
//! once for good (`peers/<uuid>`: the cluster knows the node) and under a lease
//! (`nodes/<uuid>`: the node is alive and connected to the store). `pool list` and `peer
//! status` show every peer, Connected while its lease lives, Disconnected once it lapsed: a node
//! killed, halted or cut off from etcd turns Disconnected within the lease's TTL.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Daemon;
use super::store::{Lease, StoreExt};

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
