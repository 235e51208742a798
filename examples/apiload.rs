//! The load of `scripts/bench/api`: GETs at a steady rate on a georepd API, the given paths
//! in turn, over one kept-alive connection each, until its standard input closes (it says
//! READY when it begins); then it prints every request's latency (seconds) per path as one
//! JSON object, and the errors (`scripts/bench/lib/loaded_sync.py` reads both).
//!
//!     apiload ADDR TOKEN RATE PATH...
//!
//! Compiled (not Python) so that the load's client takes little of the CPU the measured sync
//! needs on the same machine.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, token, rate, paths @ ..] = args.as_slice() else {
        eprintln!("usage: apiload ADDR TOKEN RATE PATH...");
        std::process::exit(2);
    };
    let rate: f64 = rate.parse().unwrap_or_else(|_| {
        eprintln!("apiload: RATE: not a number: {rate}");
        std::process::exit(2)
    });
    if paths.is_empty() || rate <= 0.0 {
        eprintln!("apiload: a positive RATE and at least one PATH are needed");
        std::process::exit(2);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = stop.clone();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        while std::io::stdin().read(&mut sink).is_ok_and(|n| n > 0) {}
        stopper.store(true, Ordering::Relaxed);
    });
    // One agent per path: each keeps its own connection, as separate clients would.
    let agents: Vec<ureq::Agent> = paths
        .iter()
        .map(|_| ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build().into())
        .collect();
    let bearer = format!("Bearer {token}");
    println!("READY");
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut errors: Vec<String> = Vec::new();
    let period = Duration::from_secs_f64(1.0 / rate);
    let (mut t0, mut i, mut n) = (Instant::now(), 0u32, 0usize);
    while !stop.load(Ordering::Relaxed) {
        let k = n % paths.len();
        n += 1;
        let t = Instant::now();
        let answer = agents[k]
            .get(format!("http://{addr}{}", paths[k]))
            .header("Authorization", &bearer)
            .call()
            .and_then(|mut r| r.body_mut().read_to_vec());
        if let Err(e) = answer {
            errors.push(format!("{}: {e}", paths[k]));
        }
        latencies[k].push(t.elapsed().as_secs_f64());
        i += 1;
        // Request i goes at t0 + i * period; after a stall the pace starts again (no burst).
        match (t0 + period * i).checked_duration_since(Instant::now()) {
            Some(wait) => std::thread::sleep(wait),
            None => (t0, i) = (Instant::now(), 0),
        }
    }
    let by_path: serde_json::Map<String, serde_json::Value> =
        paths.iter().cloned().zip(latencies.into_iter().map(serde_json::Value::from)).collect();
    println!("{}", serde_json::json!({ "latencies": by_path, "errors": errors }));
}
