//! `gluster-mountbroker`: prepares a secondary node's mount root for unprivileged receivers.
//! The policy and the privileged mount service come with the SSH/mountbroker work (issue 4);
//! until then every action refuses clearly.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") | Some("-V") => {
            println!("gluster-mountbroker {}", env!("CARGO_PKG_VERSION"))
        }
        Some("--help") | Some("-h") | None => {
            println!(
                "usage: gluster-mountbroker setup <MOUNT_ROOT> <GROUP> | add <VOLUME> <USER> | remove [--volume <VOLUME>] [--user <USER>] | status"
            )
        }
        Some(cmd) => {
            eprintln!("gluster-mountbroker: {cmd}: not available in this build yet");
            std::process::exit(2);
        }
    }
}
