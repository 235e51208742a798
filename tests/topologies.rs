//! Topologies between sites (SPEC 11), each site a georepd node with its own sshd in a network
//! namespace: cascading A → B → C with GlusterFS's data sets and tricky sequences, where C must
//! equal A whatever kind of change it was.

mod common;

use std::time::Duration;

use common::datasets::{create_data, tricky_sequences};
use common::sites::Sites;

const SYNC: Duration = Duration::from_secs(60);

#[test]
fn cascade_carries_every_kind_of_change_to_the_third_site() {
    let s = Sites::new("cas", 71, &["a", "b", "c"]);
    // Data before the sessions (Hybrid crawls on both hops).
    create_data(&s[0].mnt, "hybrid");
    s.session(0, 1);
    s.session(1, 2);
    s.assert_converged(0, 1, SYNC);
    s.assert_converged(0, 2, SYNC);
    // Live changes (Changelog crawls): what B's receiver applies is recorded on B and goes on.
    create_data(&s[0].mnt, "live");
    tricky_sequences(&s[0].mnt, "live");
    s.assert_converged(0, 1, SYNC);
    s.assert_converged(0, 2, SYNC);
    let c = &s[2];
    assert_eq!(std::fs::read_to_string(c.b("live_logrotate/lg_test_file")).unwrap(), "4\n");
    assert_eq!(std::fs::read_to_string(c.b("live_logrotate/lg_test_file.1")).unwrap(), "3\n");
    assert_eq!(std::fs::read_to_string(c.b("live_rename_with_existing_destination/data_set")).unwrap(), "Data_set5\n");
    assert_eq!(std::fs::read_to_string(c.b("live_same_size")).unwrap(), "BBBB");
    assert!(xattr::get(c.b("live_acl"), "system.posix_acl_access").unwrap().is_some());
    for (from, to) in [(0, 1), (1, 2)] {
        let row = &s.rows(from, to)[0];
        assert_eq!(row[12], "0", "no failures {from}->{to}: {row:?}\n{}", s.worker_log(from, to));
    }
}
