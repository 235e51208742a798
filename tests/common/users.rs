//! Unprivileged local users for the tests, made with useradd and removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LocalUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl LocalUser {
    /// A user with its home (made, 0700, its own) in `dir`, and `group` as a supplementary
    /// group if given. sshd would refuse a locked account: the password is `*`.
    pub fn new(dir: &Path, name: &str, group: Option<&str>) -> LocalUser {
        let _ = Command::new("userdel").args(["-f", name]).output();
        let home = dir.join(format!("home-{name}"));
        let mut c = Command::new("useradd");
        c.args(["-M", "-U", "-s", "/bin/sh", "-p", "*", "-d"]).arg(&home);
        if let Some(g) = group {
            c.args(["-G", g]);
        }
        let o = c.arg(name).output().unwrap();
        assert!(o.status.success(), "useradd {name}: {}", String::from_utf8_lossy(&o.stderr));
        let user = nix::unistd::User::from_name(name).unwrap().unwrap();
        let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        for p in [home.clone(), home.join(".ssh")] {
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        }
        LocalUser { name: name.into(), uid, gid, home }
    }

    /// A command run as this user, with its groups.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid)).arg(format!("--regid={}", self.gid)).arg("--init-groups").arg(program);
        c
    }

    /// Gives `key` (a public key file) login as this user.
    pub fn authorize(&self, key: &Path) {
        let ak = self.home.join(".ssh/authorized_keys");
        std::fs::write(&ak, std::fs::read(key).unwrap()).unwrap();
        std::os::unix::fs::chown(&ak, Some(self.uid), Some(self.gid)).unwrap();
        std::fs::set_permissions(&ak, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
}

impl Drop for LocalUser {
    fn drop(&mut self) {
        let _ = Command::new("pkill").args(["-KILL", "-u", &self.name]).output();
        let _ = Command::new("userdel").args(["-f", &self.name]).output();
    }
}

/// A group, removed on drop.
pub struct LocalGroup(pub String);

impl LocalGroup {
    pub fn new(name: &str) -> LocalGroup {
        let _ = Command::new("groupdel").arg(name).output();
        let o = Command::new("groupadd").arg(name).output().unwrap();
        assert!(o.status.success(), "groupadd {name}: {}", String::from_utf8_lossy(&o.stderr));
        LocalGroup(name.into())
    }
}

impl Drop for LocalGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.0).output();
    }
}

/// A uid-0 alias account with its home in the test's directory, removed on drop.
pub struct RootAlias {
    pub name: String,
    pub home: PathBuf,
}

impl RootAlias {
    pub fn new(dir: &Path, name: &str) -> RootAlias {
        let home = dir.join(format!("home-{name}"));
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        let _ = Command::new("userdel").args(["-f", name]).output();
        let o = Command::new("useradd")
            .args(["-o", "-u", "0", "-g", "0", "-M", "-s", "/bin/sh", "-d"])
            .arg(&home)
            .arg(name)
            .output()
            .unwrap();
        assert!(o.status.success(), "useradd: {}", String::from_utf8_lossy(&o.stderr));
        // sshd without PAM refuses locked accounts.
        Command::new("usermod").args(["-p", "*", name]).output().unwrap();
        RootAlias { name: name.into(), home }
    }

    pub fn authorized_keys(&self) -> PathBuf {
        self.home.join(".ssh/authorized_keys")
    }
}

impl Drop for RootAlias {
    fn drop(&mut self) {
        // -f: the uid (0) always has processes.
        let _ = Command::new("userdel").args(["-f", &self.name]).output();
    }
}
