//! `slate lock` and `slate fetch` against the real Debian archive (apt with a private
//! configuration): the lock is what apt's own resolver installs, locking twice gives the same
//! lock, and a file whose sha256 differs from the lock is refused.

use slate_imager::image::debian::apt::{Apt, DebianSource};
use slate_imager::image::debian::lock::{self, Lock, LOCK_FILE};

#[test]
fn the_lock_is_what_apt_installs_and_locking_twice_gives_the_same_lock() {
    let cache = tempfile::tempdir().unwrap();
    let spec = tempfile::tempdir().unwrap();
    let source = DebianSource::default();
    let apt = Apt::new(cache.path(), &source, "amd64").unwrap();
    let requested: Vec<String> = ["nginx-light", "python3-minimal", "busybox-static"]
        .map(String::from)
        .to_vec();
    let out = spec.path().join(LOCK_FILE);
    let first = lock::lock(&apt, Lock::wanted(&source, "amd64", &requested), &out).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let second = lock::lock(&apt, Lock::wanted(&source, "amd64", &requested), &out).unwrap();
    assert_eq!(first, second);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text);

    // The oracle: apt-get install --simulate on an empty system, same private lists.
    let apt_says = apt.simulate(&requested).unwrap();
    let ours: std::collections::BTreeMap<String, String> = first
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    assert_eq!(ours, apt_says, "the lock differs from apt's resolver");
    assert!(
        ours.contains_key("libc6") && ours.contains_key("libpcre2-8-0"),
        "{ours:?}"
    );
    // Essential packages come only when something depends on them.
    assert!(
        !ours.contains_key("bash") && !ours.contains_key("coreutils"),
        "{ours:?}"
    );

    // Fetch one small package; then one whose lock entry has another sha256 is refused.
    let mut small = Lock {
        packages: first
            .packages
            .iter()
            .filter(|p| p.name == "busybox-static")
            .cloned()
            .collect(),
        ..first.clone()
    };
    let debs = cache.path().join("debs");
    let files = lock::fetch(&apt, &small, &debs).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().len(),
        small.packages[0].size
    );
    // A lock made elsewhere fetches into a cache with no lists yet (a fresh checkout).
    let fresh = tempfile::tempdir().unwrap();
    let fresh_apt = Apt::new(fresh.path(), &source, "amd64").unwrap();
    let files = lock::fetch(&fresh_apt, &small, &fresh.path().join("debs")).unwrap();
    assert_eq!(files.len(), 1);
    small.packages[0].sha256 = slate_core::Digest32([0; 32]);
    let e = lock::fetch(&apt, &small, &debs).unwrap_err();
    assert!(format!("{e:#}").contains("but the lock says"), "{e:#}");
}
