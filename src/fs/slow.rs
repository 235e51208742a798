//! A few threads for requests that may take long: fsync (the disk), copy_file_range (a big
//! range is copied whole).
//!
//! With FUSE over io_uring each CPU's requests are served by one thread, in order: such a
//! request served there would hold up every other request made on that CPU until it is done.
//! Such requests are handed to these threads, which reply themselves (FUSE replies may come
//! from any thread).

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread;

type Job = Box<dyn FnOnce() + Send>;

pub struct SlowPool {
    tx: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
}

/// Threads: as many slow requests as may wait on the disk at once before the next one queues.
const THREADS: usize = 4;

impl SlowPool {
    pub fn new() -> SlowPool {
        let (tx, rx) = channel::<Job>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        let threads = (0..THREADS)
            .filter_map(|i| {
                let rx = rx.clone();
                thread::Builder::new().name(format!("fs-slow-{i}")).spawn(move || work(&rx)).ok()
            })
            .collect();
        SlowPool { tx: Mutex::new(Some(tx)), threads: Mutex::new(threads) }
    }

    /// Runs `job` on a pool thread (or here, if the pool is gone or has no threads).
    pub fn run(&self, job: impl FnOnce() + Send + 'static) {
        let job: Job = Box::new(job);
        let rejected = match &*self.tx.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(tx) if !self.threads.lock().unwrap_or_else(|e| e.into_inner()).is_empty() => {
                tx.send(job).err().map(|e| e.0)
            }
            _ => Some(job),
        };
        if let Some(job) = rejected {
            job();
        }
    }

    /// Lets the queued jobs finish and ends the threads.
    pub fn shutdown(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        for t in self.threads.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = t.join();
        }
    }
}

impl Default for SlowPool {
    fn default() -> Self {
        SlowPool::new()
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_every_job_off_the_caller_and_drains_at_shutdown() {
        let pool = SlowPool::new();
        let done = Arc::new(AtomicUsize::new(0));
        let me = thread::current().id();
        for _ in 0..20 {
            let d = done.clone();
            pool.run(move || {
                assert_ne!(thread::current().id(), me);
                d.fetch_add(1, Ordering::SeqCst);
            });
        }
        pool.shutdown();
        assert_eq!(done.load(Ordering::SeqCst), 20);
        // After shutdown a job still runs, on the caller.
        let d = done.clone();
        pool.run(move || {
            d.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(done.load(Ordering::SeqCst), 21);
    }
}
