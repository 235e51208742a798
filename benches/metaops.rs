//! Metadata benchmark: create, stat, readdir and unlink of N empty files in one directory.
//! Run by `scripts/bench/overlay` against the raw brick filesystem and the overlay:
//!
//!     cargo bench --bench metaops -- <DIR> [N]
//!
//! Prints one line per phase: `<phase> <seconds>`.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let dir = PathBuf::from(args.first().expect("usage: metaops <DIR> [N]"));
    let n: usize = args.get(1).map(|s| s.parse().expect("N")).unwrap_or(10_000);
    let d = dir.join("metaops");
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    let names: Vec<PathBuf> = (0..n).map(|i| d.join(format!("f{i:07}"))).collect();

    let t = Instant::now();
    for p in &names {
        fs::File::create(p).unwrap();
    }
    println!("create {:.4}", t.elapsed().as_secs_f64());

    let t = Instant::now();
    for p in &names {
        fs::symlink_metadata(p).unwrap();
    }
    println!("stat {:.4}", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut count = 0;
    for e in fs::read_dir(&d).unwrap() {
        e.unwrap().metadata().unwrap();
        count += 1;
    }
    assert_eq!(count, n);
    println!("readdir {:.4}", t.elapsed().as_secs_f64());

    let t = Instant::now();
    for p in &names {
        fs::remove_file(p).unwrap();
    }
    println!("unlink {:.4}", t.elapsed().as_secs_f64());
    fs::remove_dir(&d).unwrap();
}
