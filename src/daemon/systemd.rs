//! systemd's side of georepd (`packaging/systemd/georepd.service`, `Type=notify`): readiness
//! (`READY=1` once the store, the control socket, the brick servers and the API are up),
//! `STOPPING=1` on the way out, and the watchdog (`WATCHDOG=1`, sent only while the daemon
//! answers its own control socket). Outside systemd (`NOTIFY_SOCKET` unset) all of it is
//! silent.
//!
//! The protocol is sd_notify(3)'s: one datagram of `KEY=VALUE` lines to the Unix socket named
//! by `NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`).

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends `state` (for example "READY=1") to the service manager; false if there is none or it
/// could not be told.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return false };
    let addr = {
        use std::os::unix::ffi::OsStrExt;
        let b = path.as_bytes();
        match b.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)
            }
            None => SocketAddr::from_pathname(&path),
        }
    };
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &a));
    if let Err(e) = &sent {
        log::warn!("systemd: cannot send {state:?} to NOTIFY_SOCKET: {e}");
    }
    sent.is_ok()
}

/// How often the watchdog wants to hear from this process (`WATCHDOG_USEC`, if it is meant
/// for this process: `WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var("WATCHDOG_PID").ok().filter(|p| !p.is_empty())
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Tells the watchdog, twice per its interval, that the daemon is alive, as long as `healthy`
/// says so; a daemon that stops answering is then restarted by systemd.
pub fn keep_watchdog(healthy: impl Fn() -> bool + Send + 'static) {
    let Some(interval) = watchdog_interval() else { return };
    let spawned = std::thread::Builder::new().name("watchdog".into()).spawn(move || {
        loop {
            std::thread::sleep(interval / 2);
            if healthy() {
                notify("WATCHDOG=1");
            } else {
                log::warn!("systemd watchdog: the daemon does not answer its control socket; not telling the watchdog");
            }
        }
    });
    if let Err(e) = spawned {
        log::warn!("systemd watchdog: no thread: {e}");
    }
}
