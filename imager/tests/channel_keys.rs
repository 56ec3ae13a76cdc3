//! The channel repository's keys (`slate repo rotate-root`, `rotate-key`, thresholds,
//! expiry warnings), and the attack they answer: a forged successor of a retired root, judged
//! by python-tuf.

use crate::channel::{python_tuf, Repo, Server};
use crate::util::{bundle_cmd, fails, ok, shared_build, slate, stdout, tempdir};
use std::path::Path;

#[test]
fn a_rotated_root_is_followed_from_the_first_root() {
    let repo = Repo::init(&[]);
    let k = |n: &str| repo.work.path().join(n);
    ok(slate().arg("keygen").arg("--out").arg(k("root3")));
    // One old key is not enough for a threshold of two.
    let (_, err) = fails(
        slate()
            .args(["repo", "rotate-root", "--repo"])
            .arg(&repo.dir)
            .arg("--old-key")
            .arg(k("root1.pem"))
            .arg("--root-key")
            .arg(k("root3.pem")),
    );
    assert!(err.contains("needs 2 of its keys"), "{err}");
    let out = stdout(&ok(slate()
        .args(["repo", "rotate-root", "--repo"])
        .arg(&repo.dir)
        .arg("--old-key")
        .arg(k("root1.pem"))
        .arg("--old-key")
        .arg(k("root2.pem"))
        .arg("--root-key")
        .arg(k("root3.pem"))));
    assert!(out.contains("root version 2"), "{out}");
    assert!(repo.status().contains("root       version 2"));
    // A client that trusts only root 1 walks to root 2, and the repository still loads.
    let server = Server::serve(&repo.dir);
    let work = tempdir();
    let got = python_tuf(&repo.root(), &server, work.path(), &[]);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let trusted = std::fs::read_to_string(work.path().join("metadata/root.json")).unwrap();
    assert!(trusted.contains("\"version\": 2"), "{trusted}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The attack of a retired root key, judged by python-tuf: after `rotate-root`, a client that
/// starts from the newest root it has verified refuses a forged successor that the retired
/// keys signed; one that starts again from the first root (what Slate devices did) takes it.
#[test]
fn python_tuf_refuses_a_forged_successor_of_a_retired_root_from_its_newest_root() {
    let repo = Repo::init(&[]);
    let k = |n: &str| repo.work.path().join(n);
    for name in ["root3", "attacker"] {
        ok(slate().arg("keygen").arg("--out").arg(k(name)));
    }
    let forged = repo.work.path().join("forged");
    copy_dir(&repo.dir, &forged);
    ok(slate()
        .args(["repo", "rotate-root", "--repo"])
        .arg(&repo.dir)
        .arg("--old-key")
        .arg(k("root1.pem"))
        .arg("--old-key")
        .arg(k("root2.pem"))
        .arg("--root-key")
        .arg(k("root3.pem")));
    let honest = Server::serve(&repo.dir);
    let client = tempdir();
    let got = python_tuf(&repo.root(), &honest, client.path(), &[]);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let newest = client.path().join("metadata/root.json");
    assert!(std::fs::read_to_string(&newest)
        .unwrap()
        .contains("\"version\": 2"));

    // The attacker holds the retired root keys: its own root 2, then its own timestamp key.
    ok(slate()
        .args(["repo", "rotate-root", "--repo"])
        .arg(&forged)
        .arg("--old-key")
        .arg(k("root1.pem"))
        .arg("--old-key")
        .arg(k("root2.pem"))
        .arg("--root-key")
        .arg(k("attacker.pem")));
    ok(slate()
        .args(["repo", "rotate-key", "--repo"])
        .arg(&forged)
        .args(["--role", "timestamp", "--root-key"])
        .arg(k("attacker.pem"))
        .arg("--new-key")
        .arg(k("attacker.pem"))
        .arg("--online-key")
        .arg(k("online.pem")));
    drop(honest);
    let evil = Server::serve(&forged);
    let kept = repo.work.path().join("kept-root.json");
    std::fs::copy(&newest, &kept).unwrap();
    let refused = python_tuf(&kept, &evil, client.path(), &[]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "python-tuf took the forged root: {err}"
    );
    assert!(err.contains("root"), "{err}");
    let fresh = tempdir();
    let taken = python_tuf(&repo.root(), &evil, fresh.path(), &[]);
    assert!(
        taken.status.success(),
        "from root 1 the forged chain is valid: {}",
        String::from_utf8_lossy(&taken.stderr)
    );
}

/// `rotate-key` gives a role new keys in a new root version, and targets with a threshold
/// of two need two release keys at every publish.
#[test]
fn rotate_key_replaces_a_role_key_and_targets_can_need_two_keys() {
    let work = tempdir();
    let k = |n: &str| work.path().join(n);
    for name in ["root", "t1", "t2", "t3", "online", "online2", "release"] {
        ok(slate().arg("keygen").arg("--out").arg(k(name)));
    }
    let dir = work.path().join("repo");
    ok(slate()
        .args(["repo", "init", "--out"])
        .arg(&dir)
        .arg("--root-key")
        .arg(k("root.pem"))
        .arg("--targets-key")
        .arg(k("t1.pem"))
        .arg("--targets-key")
        .arg(k("t2.pem"))
        .args(["--targets-threshold", "2", "--online-key"])
        .arg(k("online.pem")));
    let b = work.path().join("u.slate");
    ok(&mut bundle_cmd(shared_build(), &k("release.pem"), &b));
    let publish = |keys: &[&str], online: &str| {
        let mut c = slate();
        c.args(["publish", "--repo"])
            .arg(&dir)
            .arg("--bundle")
            .arg(&b);
        for key in keys {
            c.arg("--targets-key").arg(k(key));
        }
        c.arg("--online-key").arg(k(online));
        c
    };
    let (_, err) = fails(&mut publish(&["t1.pem"], "online.pem"));
    assert!(
        err.contains("Targets role") && err.contains("needs 2"),
        "{err}"
    );
    ok(&mut publish(&["t1.pem", "t2.pem"], "online.pem"));

    // The online key is lost: timestamp and snapshot get a new one in root version 2.
    let out = stdout(&ok(slate()
        .args(["repo", "rotate-key", "--repo"])
        .arg(&dir)
        .args(["--role", "snapshot", "--root-key"])
        .arg(k("root.pem"))
        .arg("--new-key")
        .arg(k("online2.pem"))
        .arg("--online-key")
        .arg(k("online.pem"))));
    assert!(out.contains("root version 2"), "{out}");
    // Snapshot now needs the new key, timestamp still the old one: refresh takes both.
    let (_, err) = fails(
        slate()
            .args(["repo", "refresh", "--repo"])
            .arg(&dir)
            .arg("--online-key")
            .arg(k("online.pem")),
    );
    assert!(err.contains("Snapshot role"), "{err}");
    ok(slate()
        .args(["repo", "refresh", "--repo"])
        .arg(&dir)
        .arg("--online-key")
        .arg(k("online.pem"))
        .arg("--online-key")
        .arg(k("online2.pem")));
    // A release key is compromised: targets get t2 and t3 (threshold 2), root version 3.
    ok(slate()
        .args(["repo", "rotate-key", "--repo"])
        .arg(&dir)
        .args(["--role", "targets", "--threshold", "2", "--root-key"])
        .arg(k("root.pem"))
        .arg("--new-key")
        .arg(k("t2.pem"))
        .arg("--new-key")
        .arg(k("t3.pem"))
        .arg("--online-key")
        .arg(k("online.pem"))
        .arg("--online-key")
        .arg(k("online2.pem")));
    let (_, err) = fails(&mut publish(&["t1.pem", "t2.pem"], "online2.pem"));
    assert!(
        err.contains("Targets role of root version 3 needs 2"),
        "{err}"
    );
    // An independent client walks 1 → 3 and reads the targets the new keys signed.
    let server = Server::serve(&dir);
    let client = tempdir();
    let got = python_tuf(
        &dir.join("metadata/1.root.json"),
        &server,
        client.path(),
        &["release.json"],
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let trusted = std::fs::read_to_string(client.path().join("metadata/root.json")).unwrap();
    assert!(trusted.contains("\"version\": 3"), "{trusted}");
}

/// `slate repo refresh` warns while there is time when targets are close to expiring.
#[test]
fn refresh_warns_before_targets_expire() {
    let repo = Repo::init(&["--targets-expiry", "10d"]);
    let out = ok(slate()
        .args(["repo", "refresh", "--repo"])
        .arg(&repo.dir)
        .arg("--online-key")
        .arg(repo.work.path().join("online.pem")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: the targets metadata expires") && err.contains("slate publish"),
        "{err}"
    );
    assert!(!err.contains("root metadata"), "{err}");
}
