//! Logging for georep's programs: env_logger's output (`RUST_LOG` as usual), with what repeats
//! bounded. One place in the code (file and line) writes at most `BURST` lines per `WINDOW`;
//! the rest is counted, and the count is said when the place next writes after its window.
//! A message a client can cause at will (a failing request repeated in a loop) then costs a
//! few lines a minute, not a full disk.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use log::{Log, Metadata, Record};
use parking_lot::Mutex;

/// Lines one place may write per window.
pub const BURST: u32 = 20;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);

struct Site {
    since: Instant,
    written: u32,
    held: u64,
}

/// A level set by the program after start (`set_level`), instead of the filter's; 0: none.
static LEVEL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Logs from `level` up from now on, whatever the default filter said (a worker's
/// `log-level`); `RUST_LOG`, when set, still wins.
pub fn set_level(level: log::LevelFilter) {
    if std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    LEVEL.store(level as usize, std::sync::atomic::Ordering::Relaxed);
    log::set_max_level(level);
}

struct Bounded {
    /// Filtered as `RUST_LOG` or the program's default says.
    inner: env_logger::Logger,
    /// The same output, unfiltered: used once `set_level` has set the level.
    open: Option<env_logger::Logger>,
    sites: Mutex<HashMap<(&'static str, u32), Site>>,
}

impl Bounded {
    /// Where a record that passed `enabled` is written.
    fn out(&self) -> &env_logger::Logger {
        match (&self.open, LEVEL.load(std::sync::atomic::Ordering::Relaxed)) {
            (Some(open), l) if l != 0 => open,
            _ => &self.inner,
        }
    }
}

impl Log for Bounded {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        match LEVEL.load(std::sync::atomic::Ordering::Relaxed) {
            0 => self.inner.enabled(m),
            l => (m.level() as usize) <= l,
        }
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let (Some(file), Some(line)) = (r.file_static(), r.line()) else {
            return self.out().log(r);
        };
        let held = {
            let mut sites = self.sites.lock();
            let now = Instant::now();
            let s = sites.entry((file, line)).or_insert(Site { since: now, written: 0, held: 0 });
            let mut held = 0;
            if now.duration_since(s.since) >= WINDOW {
                held = std::mem::take(&mut s.held);
                *s = Site { since: now, written: 0, held: 0 };
            }
            s.written += 1;
            if s.written > BURST {
                s.held += 1;
                return;
            }
            held
        };
        if held > 0 {
            self.out().log(
                &Record::builder()
                    .level(r.level())
                    .target(r.target())
                    .args(format_args!("{held} more like the next were not logged ({BURST} per {WINDOW:?} at most)"))
                    .build(),
            );
        }
        self.out().log(r);
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Installs the logger: `default_filter` unless `RUST_LOG` says otherwise; millisecond
/// timestamps if `millis`. Writing to the journal (systemd's stderr), lines carry their
/// priority as `<N>` and no timestamp of their own: the journal stamps each line.
pub fn init(default_filter: &str, millis: bool) {
    use std::io::Write;
    let journal = to_journal();
    let styled = |mut b: env_logger::Builder| {
        if journal {
            b.format(|buf, r| writeln!(buf, "<{}>{}: {}", priority(r.level()), r.target(), r.args()));
        } else if millis {
            b.format_timestamp_millis();
        }
        b.build()
    };
    let inner = styled(env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter)));
    let mut all = env_logger::Builder::new();
    all.filter_level(log::LevelFilter::Trace);
    let open = Some(styled(all));
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(Bounded { inner, open, sites: Mutex::new(HashMap::new()) })).is_ok() {
        log::set_max_level(max);
    }
}

/// Whether stderr is the journal: `JOURNAL_STREAM` (device:inode, set by systemd) names the
/// very file stderr is. A child whose stderr was sent elsewhere (a worker's log file) inherits
/// the variable, but not the match.
fn to_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = v.split_once(':') else { return false };
    let Ok(st) = nix::sys::stat::fstat(std::io::stderr()) else { return false };
    dev.parse() == Ok(st.st_dev) && ino.parse() == Ok(st.st_ino)
}

/// syslog's priority for a level, as sd-daemon(3)'s `<N>` prefixes want it.
fn priority(l: log::Level) -> u8 {
    match l {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_place_that_repeats_writes_a_burst_then_says_how_many_it_held() {
        let sink = Sink::default();
        let inner = env_logger::Builder::new()
            .filter_level(log::LevelFilter::Info)
            .target(env_logger::Target::Pipe(Box::new(sink.clone())))
            .build();
        let logger = Bounded { inner, open: None, sites: Mutex::new(HashMap::new()) };
        let at = |line: u32, msg: &str| {
            logger.log(
                &Record::builder()
                    .level(log::Level::Warn)
                    .file_static(Some("x.rs"))
                    .line(Some(line))
                    .args(format_args!("{msg}"))
                    .build(),
            )
        };
        for _ in 0..1000 {
            at(1, "again");
        }
        at(2, "elsewhere");
        let lines = |s: &Sink| String::from_utf8(s.0.lock().unwrap().clone()).unwrap();
        let out = lines(&sink);
        assert_eq!(out.matches("again").count(), BURST as usize, "{out}");
        assert_eq!(out.matches("elsewhere").count(), 1);
        // After the window, the count of what was held comes first.
        logger.sites.lock().get_mut(&("x.rs", 1)).unwrap().since -= WINDOW;
        at(1, "again");
        let out = lines(&sink);
        assert!(out.contains(&format!("{} more like the next were not logged", 1000 - BURST)), "{out}");
        assert_eq!(out.matches("again").count(), BURST as usize + 1);
    }
}
