//! The mountbroker's configuration (SPEC section 7, the reference's 5.1-5.3): the mount root,
//! the group of the unprivileged receivers, and which volumes each user may have mounted. Kept
//! in `<config>/mountbroker.conf`, written atomically; `georepd` reads it on every request, so a
//! change needs no restart. Also the mount root's safety rules, and the tables
//! `gluster-mountbroker` prints.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The hive of mount cookies inside the mount root.
pub const HIVE: &str = "mb_hive";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub root: Option<PathBuf>,
    pub group: Option<String>,
    /// user -> the volumes it may have mounted.
    pub users: BTreeMap<String, BTreeSet<String>>,
}

/// What `gluster-mountbroker status` shows, and the API's `/api/v1/mountbroker`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Status {
    /// A mount root and group are set up.
    pub configured: bool,
    pub mount_root: Option<String>,
    /// The mount root is as the mountbroker needs it (root's, 0711, its parents not writable
    /// by others).
    pub mount_root_ok: bool,
    /// Why not, when it is not.
    #[serde(default)]
    pub mount_root_problem: String,
    pub group: Option<String>,
    pub group_ok: bool,
    /// user -> the volumes it may have mounted.
    pub users: BTreeMap<String, Vec<String>>,
}

impl Config {
    pub fn status(&self) -> Status {
        let root_check = self.root.as_deref().map(check_root);
        Status {
            configured: self.root.is_some() && self.group.is_some(),
            mount_root: self.root.as_ref().map(|r| r.display().to_string()),
            mount_root_ok: matches!(root_check, Some(Ok(()))),
            mount_root_problem: match root_check {
                Some(Err(e)) => e,
                _ => String::new(),
            },
            group: self.group.clone(),
            group_ok: self.group.as_deref().is_some_and(|g| nix::unistd::Group::from_name(g).ok().flatten().is_some()),
            users: self.users.iter().map(|(u, v)| (u.clone(), v.iter().cloned().collect())).collect(),
        }
    }
}

fn valid_word(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl Config {
    pub fn path(config_dir: &Path) -> PathBuf {
        config_dir.join("mountbroker.conf")
    }

    /// Reads the file (a missing file is an empty config). Lines are `key value`; `#` starts a
    /// comment.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        Config::parse(&text).with_context(|| format!("{}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let mut c = Config::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once(char::is_whitespace).with_context(|| format!("line {}: no value", n + 1))?;
            let v = v.trim();
            match k {
                "mountbroker-root" => c.root = Some(PathBuf::from(v)),
                "geo-replication-log-group" => c.group = Some(v.to_string()),
                _ => {
                    let Some(user) = k.strip_prefix("mountbroker-geo-replication.") else {
                        bail!("line {}: unknown option {k:?}", n + 1);
                    };
                    if !valid_word(user) {
                        bail!("line {}: invalid user {user:?}", n + 1);
                    }
                    let vols: BTreeSet<String> =
                        v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
                    if vols.iter().any(|v| !valid_word(v)) {
                        bail!("line {}: invalid volume list {v:?}", n + 1);
                    }
                    c.users.insert(user.to_string(), vols);
                }
            }
        }
        Ok(c)
    }

    pub fn render(&self) -> String {
        let mut s = String::from("# georep mountbroker configuration (written by gluster-mountbroker)\n");
        if let Some(r) = &self.root {
            s.push_str(&format!("mountbroker-root {}\n", r.display()));
        }
        if let Some(g) = &self.group {
            s.push_str(&format!("geo-replication-log-group {g}\n"));
        }
        for (u, vols) in &self.users {
            if !vols.is_empty() {
                s.push_str(&format!(
                    "mountbroker-geo-replication.{u} {}\n",
                    vols.iter().cloned().collect::<Vec<_>>().join(",")
                ));
            }
        }
        s
    }

    /// Writes the file atomically: a temporary file, fsync, rename, fsync of the directory.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let dir = path.parent().context("config path")?;
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("conf.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("write {}", tmp.display()))?;
            f.write_all(self.render().as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    pub fn add(&mut self, volume: &str, user: &str) -> anyhow::Result<()> {
        if self.group.is_none() {
            bail!("Group is not available: run 'gluster-mountbroker setup <MOUNT_ROOT> <GROUP>' first");
        }
        if !valid_word(volume) {
            bail!("invalid volume name {volume:?}");
        }
        if !valid_word(user) {
            bail!("invalid user name {user:?}");
        }
        self.users.entry(user.to_string()).or_default().insert(volume.to_string());
        Ok(())
    }

    /// GlusterFS's rules: a user alone clears that user, a volume alone leaves every user,
    /// both remove the pair; users left with nothing are dropped.
    pub fn remove(&mut self, volume: Option<&str>, user: Option<&str>) -> anyhow::Result<()> {
        match (volume, user) {
            (None, None) => bail!("remove needs --volume, --user or both"),
            (None, Some(u)) => {
                self.users.remove(u);
            }
            (Some(v), None) => self.users.values_mut().for_each(|vols| {
                vols.remove(v);
            }),
            (Some(v), Some(u)) => {
                if let Some(vols) = self.users.get_mut(u) {
                    vols.remove(v);
                }
            }
        }
        self.users.retain(|_, vols| !vols.is_empty());
        Ok(())
    }

    /// May `user` have `volume` mounted?
    pub fn allows(&self, user: &str, volume: &str) -> bool {
        self.users.get(user).is_some_and(|v| v.contains(volume))
    }
}

/// The volume a mount request may have, after GlusterFS's rules (the reference's 5.3) for
/// label `label` (the user the mount is for): `aux-gfid-mount` and `user-map-root=<label>`
/// must be asked for, and `volfile-id=<VOL>` name a volume added for that user; besides them
/// only `acl`, `volfile-server=localhost`, `client-pid=-1` (GlusterFS's, meaning nothing here)
/// and `log-level=<LEVEL>` may be; anything else is refused by name.
pub fn check_mount_args(conf: &Config, label: &str, args: &[String]) -> Result<String, String> {
    if conf.root.is_none() {
        return Err("mount refused: the mountbroker is not set up on this node (gluster-mountbroker setup)".into());
    }
    let Some(allowed) = conf.users.get(label) else {
        return Err(format!("mount refused: no volume is added for user {label} (gluster-mountbroker add)"));
    };
    let (mut aux, mut map, mut volume) = (false, false, None);
    for a in args {
        match a.split_once('=') {
            None if a == "aux-gfid-mount" => aux = true,
            None if a == "acl" => {}
            Some(("user-map-root", u)) if u == label => map = true,
            Some(("user-map-root", u)) => return Err(format!("mount refused: user-map-root={u} is not {label}")),
            Some(("volfile-id", v)) if volume.is_none() => volume = Some(v.to_string()),
            Some(("volfile-server", "localhost")) | Some(("client-pid", "-1")) => {}
            Some(("log-level", l)) if valid_word(l) => {}
            _ => return Err(format!("mount refused: option {a:?} is not allowed")),
        }
    }
    if !(aux && map) {
        return Err(format!("mount refused: aux-gfid-mount and user-map-root={label} are required"));
    }
    let volume = volume.ok_or("mount refused: volfile-id=<VOLUME> is required")?;
    if !allowed.contains(&volume) {
        return Err(format!("mount refused: volume {volume} is not added for user {label}"));
    }
    Ok(volume)
}

/// The mount root must be a directory owned by root and not writable by group or others, and
/// so must every ancestor (one with the sticky bit excepted, as /tmp).
pub fn check_root(root: &Path) -> Result<(), String> {
    let md = std::fs::symlink_metadata(root).map_err(|e| format!("{}: {e}", root.display()))?;
    if !md.is_dir() {
        return Err(format!("{} is not a directory", root.display()));
    }
    if md.uid() != 0 || md.mode() & 0o022 != 0 {
        return Err(format!("{}: too liberal: it must be owned by root and not group/world-writable", root.display()));
    }
    let mut p = root.parent();
    while let Some(a) = p {
        let md = std::fs::metadata(a).map_err(|e| format!("{}: {e}", a.display()))?;
        let sticky = md.mode() & 0o1000 != 0;
        if md.uid() != 0 || (md.mode() & 0o022 != 0 && !sticky) {
            return Err(format!(
                "{}: an ancestor of the mount root must be owned by root and not group/world-writable",
                a.display()
            ));
        }
        p = a.parent();
    }
    Ok(())
}

/// `setup`: the root (0711) and its hive (0711), both root's.
pub fn make_root(root: &Path) -> anyhow::Result<()> {
    if !root.is_absolute() {
        bail!("the mount root must be an absolute path: {}", root.display());
    }
    std::fs::create_dir_all(root).with_context(|| format!("create {}", root.display()))?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))?;
    check_root(root).map_err(|e| anyhow::anyhow!(e))?;
    let hive = root.join(HIVE);
    std::fs::create_dir_all(&hive)?;
    std::fs::set_permissions(&hive, std::fs::Permissions::from_mode(0o711))?;
    Ok(())
}

/// Centers `s` in `w` columns as Python's PrettyTable does.
fn center(s: &str, w: usize) -> String {
    let len = s.chars().count();
    let excess = w.saturating_sub(len);
    let (l, r) = if excess % 2 == 1 {
        if len % 2 == 1 { (excess / 2, excess / 2 + 1) } else { (excess / 2 + 1, excess / 2) }
    } else {
        (excess / 2, excess / 2)
    };
    format!("{}{s}{}", " ".repeat(l), " ".repeat(r))
}

/// A table in PrettyTable's default style, as `gluster-mountbroker` prints: cells centered,
/// but the `NODE STATUS` column, which is right-aligned.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| rows.iter().map(|r| r[i].chars().count()).chain([h.chars().count()]).max().unwrap_or(0))
        .collect();
    let rule = format!("+{}+\n", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
    let line = |cells: Vec<String>| -> String { format!("| {} |\n", cells.join(" | ")) };
    let mut out = rule.clone();
    out.push_str(&line(headers.iter().zip(&widths).map(|(h, w)| center(h, *w)).collect()));
    out.push_str(&rule);
    for r in rows {
        out.push_str(&line(
            r.iter()
                .zip(&widths)
                .zip(headers)
                .map(|((c, w), h)| if *h == "NODE STATUS" { format!("{c:>w$}", w = *w) } else { center(c, *w) })
                .collect(),
        ));
    }
    out.push_str(&rule);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trip_and_rules() {
        let mut c = Config::default();
        assert!(c.add("svol", "geoaccount").unwrap_err().to_string().starts_with("Group is not available"));
        c.root = Some("/var/mountbroker-root".into());
        c.group = Some("geogroup".into());
        c.add("svol", "geoaccount").unwrap();
        c.add("svol2", "geoaccount").unwrap();
        c.add("svol", "other").unwrap();
        assert!(c.add("s/vol", "x").is_err() && c.add("svol", "a b").is_err());
        assert_eq!(Config::parse(&c.render()).unwrap(), c);
        assert!(c.allows("geoaccount", "svol2") && !c.allows("other", "svol2") && !c.allows("nobody", "svol"));
        c.remove(Some("svol"), None).unwrap();
        assert_eq!(c.users.len(), 1, "other had only svol: dropped");
        c.remove(None, Some("geoaccount")).unwrap();
        assert!(c.users.is_empty());
        assert!(c.remove(None, None).is_err());
        assert!(Config::parse("bogus x").is_err());
        assert!(Config::parse("mountbroker-geo-replication.u a/b").is_err());
    }

    #[test]
    fn prettytable_layout() {
        let t = table(
            &["NODE", "NODE STATUS", "MOUNT ROOT", "GROUP", "USERS"],
            &[vec![
                "localhost".into(),
                "UP".into(),
                "/var/mountbroker-root(OK)".into(),
                "geogroup(OK)".into(),
                "geoaccount(gvol-sec)".into(),
            ]],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "+-----------+-------------+---------------------------+--------------+----------------------+"
        );
        assert_eq!(
            lines[1],
            "|    NODE   | NODE STATUS |         MOUNT ROOT        |    GROUP     |        USERS         |"
        );
        assert_eq!(
            lines[3],
            "| localhost |          UP | /var/mountbroker-root(OK) | geogroup(OK) | geoaccount(gvol-sec) |"
        );
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn mount_requests() {
        let mut c = Config { root: Some("/m".into()), group: Some("g".into()), ..Default::default() };
        c.add("svol", "geoaccount").unwrap();
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let ok = "aux-gfid-mount acl user-map-root=geoaccount volfile-server=localhost client-pid=-1 log-level=INFO volfile-id=svol";
        assert_eq!(check_mount_args(&c, "geoaccount", &args(ok)), Ok("svol".into()));
        let base = "aux-gfid-mount user-map-root=geoaccount";
        assert_eq!(check_mount_args(&c, "geoaccount", &args(&format!("{base} volfile-id=svol"))), Ok("svol".into()));
        for (bad, why) in [
            (format!("{base} volfile-id=other"), "not added"),
            (format!("{base} volfile-id=svol allow_other"), "\"allow_other\" is not allowed"),
            (format!("{base} volfile-id=svol suid"), "not allowed"),
            (format!("{base} volfile-id=svol volfile-id=other"), "not allowed"),
            (format!("{base} volfile-id=svol volfile-server=evil"), "not allowed"),
            ("aux-gfid-mount user-map-root=root volfile-id=svol".into(), "is not geoaccount"),
            ("user-map-root=geoaccount volfile-id=svol".into(), "required"),
            (base.to_string(), "volfile-id"),
        ] {
            let e = check_mount_args(&c, "geoaccount", &args(&bad)).unwrap_err();
            assert!(e.starts_with("mount refused: ") && e.contains(why), "{bad}: {e}");
        }
        assert!(check_mount_args(&c, "other", &args(ok)).unwrap_err().contains("no volume is added for user other"));
        c.root = None;
        assert!(check_mount_args(&c, "geoaccount", &args(ok)).unwrap_err().contains("not set up"));
    }

    #[test]
    fn root_rules() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("mbr");
        std::fs::create_dir(&r).unwrap();
        std::fs::set_permissions(&r, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_root(&r).unwrap_err().contains("too liberal"));
        std::fs::set_permissions(&r, std::fs::Permissions::from_mode(0o711)).unwrap();
        // The temp dir's ancestors: /tmp is sticky, so this holds as root.
        if nix::unistd::geteuid().is_root() {
            assert_eq!(check_root(&r), Ok(()));
            let inner = r.join("a");
            std::fs::create_dir(&inner).unwrap();
            std::fs::set_permissions(&r, std::fs::Permissions::from_mode(0o777)).unwrap();
            assert!(check_root(&inner).unwrap_err().contains("ancestor"));
        }
    }
}
