//! `georep volume geo-replication P S failures [retry [<GFID>]]`: the session's failures
//! ledger (`sync::failures`), and the retry of what it lists: the brick's server records each
//! listed change again as the primary has it now (`fs::server::resend`), publishes it, and the
//! session's next batch sends it; the worker takes off the list what then applies.

use super::Daemon;
use super::control::Response;
use super::sessions::Session;
use super::volumes;
use crate::sync::failures::Ledger;

fn ledger(d: &Daemon, s: &Session) -> Ledger {
    Ledger::new(&d.dirs.session(&s.key()).join(crate::sync::worker::FAILURES_FILE))
}

/// How many changes the session lists as failed (the FAILURES column).
pub fn count(d: &Daemon, s: &Session) -> usize {
    ledger(d, s).read().len()
}

pub fn list(d: &Daemon, s: &Session) -> anyhow::Result<Response> {
    Ok(Response::Failures(ledger(d, s).read()))
}

/// Has the listed changes (all, or the one with GFID `one`) recorded again.
pub fn retry(d: &Daemon, s: &Session, one: Option<&str>) -> anyhow::Result<Response> {
    let l = ledger(d, s);
    let listed = l.read();
    let chosen: Vec<_> = listed.iter().filter(|c| one.is_none_or(|g| c.gfid == g)).cloned().collect();
    if let Some(g) = one
        && chosen.is_empty()
    {
        crate::refuse!(
            NotFound,
            "{g} is not among the failed changes of the session between {} and {}",
            s.primary,
            s.secondary
        );
    }
    if chosen.is_empty() {
        return Ok(Response::Ok("No failed changes to retry".into()));
    }
    let v = volumes::get(d, &s.primary)?;
    if !v.started() {
        crate::refuse!(Refused, "Volume {} needs to be started before its failed changes are retried", s.primary);
    }
    let Some(spec) = v.brick_spec(d) else {
        crate::refuse!(NotFound, "Volume {} has no brick on this node", s.primary);
    };
    let socket = spec.socket();
    let (mut resent, mut gone) = (Vec::new(), Vec::new());
    for c in &chosen {
        let Ok(gfid) = c.gfid.parse() else { continue };
        match crate::fs::server::resend(&socket, &gfid)? {
            Some(_) => resent.push(c.gfid.clone()),
            None => gone.push(c.gfid.clone()),
        }
    }
    crate::fs::server::rollover(&socket)?;
    let now = crate::types::EpochMs::now().0;
    l.update(|list| {
        list.retain(|c| !gone.contains(&c.gfid));
        for c in list.iter_mut().filter(|c| resent.contains(&c.gfid)) {
            c.retry_ms = now;
        }
    })?;
    let mut msg = format!(
        "{} failed change(s) recorded again: the session sends them with its next batch{}",
        resent.len(),
        if s.running() { "" } else { " once it is started" }
    );
    if !gone.is_empty() {
        msg.push_str(&format!(" ({} no longer on the primary, taken off the list)", gone.len()));
    }
    Ok(Response::Ok(msg))
}
