//! GlusterFS's geo-replication data sets and tricky sequences (reference 7.1), as shell run
//! in a directory of a mounted volume.

use std::path::Path;
use std::process::Command;

/// Runs `script` with bash -e in `dir`.
pub fn sh(dir: &Path, script: &str) {
    let out = Command::new("bash").arg("-ec").arg(script).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

/// GlusterFS's `create_data PFX` (reference 7.1), in its order.
pub fn create_data(root: &Path, p: &str) {
    sh(
        root,
        &format!(
            "echo 'HelloWorld!' > {p}_f1; touch {p}_f2 {p}_f3
             echo 'Hello non-ascii' > {p}_f1_ಸಂತಸ; touch {p}_f2_ಸಂತಸ {p}_f3_ಸಂತಸ
             mkdir {p}_d1 {p}_d2 {p}_d3 {p}_d1_ನನ್ನ {p}_d2_ಸಂತಸ {p}_d3_ಸಂತಸ
             echo 'Hello non-ascii' > {p}_d1_ನನ್ನ/ಸಂತಸ
             ln {p}_f1 {p}_hl1; ln {p}_f1 {p}_hl1_ಸಂತಸ
             ln -s {p}_f1 {p}_sl1; ln -s {p}_f1 {p}_sl1_ಸಂತಸ
             rm {p}_f2 {p}_f2_ಸಂತಸ; rmdir {p}_d2 {p}_d2_ಸಂತಸ
             mv {p}_f3 {p}_f4; mv {p}_f3_ಸಂತಸ {p}_f4_ಸಂತಸ; mv {p}_d3 {p}_d4; mv {p}_d3_ಸಂತಸ {p}_d4_ಸಂತಸ
             touch {p}_chown_f1 {p}_chown_f1_ಸಂತಸ; chown 1000:1000 {p}_chown_f1 {p}_chown_f1_ಸಂತಸ
             setfattr -n user.tag -v {p} {p}_f1"
        ),
    );
}

/// GlusterFS's tricky sequences (logrotate, renames over an existing destination, hard-link
/// renames then unlinks, symlinks renamed and replaced), and the changes a cascade lost in
/// GlusterFS (#4200): an in-place edit of the same size, an xattr and an ACL changed, deletes.
pub fn tricky_sequences(root: &Path, p: &str) {
    sh(
        root,
        &format!(
            "mkdir {p}_logrotate
             for n in 1 2 3 4; do
               f={p}_logrotate/lg_test_file
               [ -e $f.2 ] && mv $f.2 $f.3; [ -e $f.1 ] && mv $f.1 $f.2; [ -e $f ] && mv $f $f.1
               echo $n > $f; rm -f $f.3
             done
             mkdir {p}_rename_with_existing_destination && cd {p}_rename_with_existing_destination
             for i in 1 2 3 4 5; do echo Data_set$i > data_set$i; mv -f data_set$i data_set; done
             cd ..
             echo data > {p}_hardlink_rename; ln {p}_hardlink_rename {p}_hardlink_rename.hl
             mv {p}_hardlink_rename.hl {p}_hardlink_rename.hl1; unlink {p}_hardlink_rename
             mkdir {p}_symlinks && ln -s ../{p}_hardlink_rename.hl1 {p}_symlinks/s1 && mv {p}_symlinks/s1 {p}_symlinks/s2
             ln -sfn /elsewhere {p}_symlinks/s2
             printf 'AAAA' > {p}_same_size && printf 'BBBB' | dd of={p}_same_size conv=notrunc status=none
             touch {p}_xattr && setfattr -n user.k -v one {p}_xattr && setfattr -n user.k -v two {p}_xattr
             touch {p}_acl && setfacl -m u:1000:rw {p}_acl && setfacl -m u:1001:r {p}_acl
             mkdir -p {p}_gone/sub && echo x > {p}_gone/sub/f && rm -rf {p}_gone
             echo x > {p}_unlinked && rm {p}_unlinked"
        ),
    );
}
