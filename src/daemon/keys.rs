//! The session keys: each primary node's key pair (`gsec_create`), the cluster's public keys
//! gathered in the store (`pubkeys/<node uuid>`), and `push-pem`, which installs them for the
//! secondary's user on every node of the secondary's cluster, each restricted to the receiver.
//!
//! GlusterFS's `gsec_create` collects every primary node's key into one file, and its
//! `push-pem` hook hands that file to one secondary node, which copies it to its peers
//! (`add_secret_pub`). Here the store plays the collecting part: every node of the cluster
//! publishes its public key, and a node that finds keys published but has none makes its
//! own (`gsec_create` run once on any node covers them all). `push-pem` reaches each
//! secondary node itself, with the operator's SSH access.

use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::Daemon;
use super::control::Response;
use super::store::StoreExt;
use crate::sync::ssh::SshTarget;

/// One node's published public key.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PubKey {
    node: String,
    key: String,
}

fn store_key(uuid: &str) -> String {
    format!("pubkeys/{uuid}")
}

/// `gsec_create` / `sshkey generate`: this node's session key pair (made if absent), published
/// for the cluster, and the common public-key file: every node's key, once the connected
/// nodes have published theirs (each does at its next pass; waited for up to 5 s).
pub fn gsec_create(d: &Daemon) -> anyhow::Result<Response> {
    let public = own_key(d)?;
    publish(d, &public)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let published: Vec<String> = d.store.list("pubkeys/")?.into_iter().map(|(k, _)| k).collect();
        let missing: Vec<String> = super::nodes::list(d)?
            .into_iter()
            .filter(|n| n.connected && !published.iter().any(|k| k.ends_with(&n.record.uuid)))
            .map(|n| n.record.name)
            .collect();
        if missing.is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            log::warn!("gsec_create: no session key published yet by {}", missing.join(", "));
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let common = d.dirs.common_secret_pub();
    let tmp = common.with_extension("tmp");
    std::fs::write(&tmp, cluster_keys(d)?.join("\n") + "\n")?;
    std::fs::rename(&tmp, &common)?;
    Ok(Response::Ok(format!("Common secret pub file present at {}", common.display())))
}

/// This node's session public key, the pair made if absent.
fn own_key(d: &Daemon) -> anyhow::Result<String> {
    let key = d.dirs.session_key();
    std::fs::create_dir_all(key.parent().unwrap())?;
    Ok(crate::sync::ssh::ensure_key(&key, &format!("georep@{}", d.node.name))?.trim().to_string())
}

fn publish(d: &Daemon, public: &str) -> anyhow::Result<()> {
    let k = store_key(&d.node.id);
    let current: Option<PubKey> = d.store.get_json(&k)?;
    if current.is_none_or(|c| c.key != public || c.node != d.node.name) {
        d.store.put_json(&k, &PubKey { node: d.node.name.clone(), key: public.to_string() })?;
    }
    Ok(())
}

/// At each pass on a shared store: once any node has run `gsec_create`, this node has a key
/// pair too, and its public key is in the store.
pub fn pass(d: &Daemon) -> anyhow::Result<()> {
    let have = d.dirs.session_key().exists();
    if !have && d.store.list("pubkeys/")?.is_empty() {
        return Ok(());
    }
    let public = own_key(d)?;
    publish(d, &public)
}

/// The public keys `push-pem` installs: every node's of the cluster, and this node's common
/// file's (one node: that file alone), without repeats.
pub fn cluster_keys(d: &Daemon) -> anyhow::Result<Vec<String>> {
    let mut keys: Vec<String> = d.store.list_json::<PubKey>("pubkeys/")?.into_iter().map(|p| p.key).collect();
    if let Ok(text) = std::fs::read_to_string(d.dirs.common_secret_pub()) {
        keys.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from));
    }
    let mut seen = std::collections::HashSet::new();
    keys.retain(|k| seen.insert(k.clone()));
    Ok(keys)
}

/// Installs the cluster's session keys for the secondary user on `target`, restricted to the
/// receiver (`command="<receiver>",restrict <key>`), through the operator's own SSH access
/// (its host key learned if new). Never adds a line twice.
pub fn push_pem(d: &Daemon, target: &SshTarget) -> anyhow::Result<()> {
    use crate::sync::ssh::{run, shell_quote};
    let Some(op_key) = d.opts.operator_key() else {
        bail!(
            "push-pem needs the operator's SSH access to {}: no key in ~/.ssh (id_ed25519, id_ecdsa, id_rsa) and no georepd --operator-key",
            target.host
        );
    };
    let mut script = String::from("umask 077 && mkdir -p ~/.ssh && f=~/.ssh/authorized_keys && touch \"$f\"");
    for k in cluster_keys(d)? {
        let line = format!("command=\"{}\",restrict {k}", d.opts.remote_receiver);
        let q = shell_quote(&line);
        script.push_str(&format!(" && {{ grep -qxF {q} \"$f\" || printf '%s\\n' {q} >> \"$f\"; }}"));
    }
    let op = SshTarget { key: op_key, ..target.clone() };
    let (code, out) = run(&op, &script, true).map_err(|e| anyhow::anyhow!("push-pem: {e}"))?;
    if code != 0 {
        bail!("push-pem on {}@{}: the key installation failed ({code}): {}", target.user, target.host, out.trim());
    }
    Ok(())
}
