//! SIGTERM and SIGINT for georepd (systemd's stop, Ctrl-C): a handler writes the signal's
//! number into a pipe, and one thread waits on the pipe's other end (`StopSignals::wait`).
//! A handler, not a blocked mask: children (workers, brick servers) inherit a mask, but exec
//! resets handlers, so they still end on SIGTERM.

use std::os::fd::{IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// The write end of the pipe the signals are turned into.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    let b = [sig as u8];
    // SAFETY: write(2) is async-signal-safe; the buffer outlives the call.
    unsafe { libc::write(fd, b.as_ptr().cast(), 1) };
}

/// The read end: what stopped the daemon, once something did.
pub struct StopSignals(OwnedFd);

/// Installs the handlers (once per process).
pub fn install() -> anyhow::Result<StopSignals> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    SIGNAL_PIPE.store(w.into_raw_fd(), Ordering::Relaxed);
    let action = SigAction::new(SigHandler::Handler(on_stop_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only calls write(2), which is async-signal-safe.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(StopSignals(r))
}

impl StopSignals {
    /// Blocks until SIGTERM or SIGINT comes; says which (`None` if the pipe failed).
    pub fn wait(&self) -> Option<&'static str> {
        let mut b = [0u8; 1];
        match nix::unistd::read(&self.0, &mut b) {
            Ok(1) if b[0] == libc::SIGINT as u8 => Some("SIGINT"),
            Ok(1) => Some("SIGTERM"),
            _ => None,
        }
    }
}
