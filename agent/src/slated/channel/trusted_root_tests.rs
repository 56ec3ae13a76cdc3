//! The root-key compromise attack against the channel's TUF loading, over real HTTPS on
//! loopback with repositories `slate repo` wrote: the operator retires a root key, an attacker
//! who holds it serves a forged successor, and a device that has seen the new root must
//! refuse it. Also: a root chain walk that meets anything but "not found" fails the check.

use super::download::faults::tls_pair;
use super::*;
use slate_imager::operator::keys::keygen;
use slate_imager::operator::repo::{self, InitOptions, KeyRole, RotateKey, Settings};
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A static HTTPS server for a folder; answers 503 for `N.root.json` when told to.
struct Files {
    url: slate_core::channel::ChannelUrl,
    https: Https,
    _ca: tempfile::NamedTempFile,
}

fn serve(dir: PathBuf, broken_root_step: Option<u64>) -> Files {
    let (ca, tls) = tls_pair();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("port").port();
    tokio::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let dir = dir.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .split('?')
                    .next()
                    .unwrap_or("/")
                    .trim_start_matches('/')
                    .to_string();
                let broken =
                    broken_root_step.is_some_and(|n| path == format!("metadata/{n}.root.json"));
                let answer = match std::fs::read(dir.join(&path)) {
                    _ if broken => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    Ok(body) => {
                        let mut a = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        a.extend_from_slice(&body);
                        a
                    }
                    Err(_) => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                };
                let _ = s.write_all(&answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    let https = Https::new(ca.path().to_str()).expect("client");
    Files {
        url: slate_core::channel::ChannelUrl::parse(&format!("https://127.0.0.1:{port}/"))
            .expect("url"),
        https,
        _ca: ca,
    }
}

fn key(dir: &Path, name: &str) -> PathBuf {
    keygen(&dir.join(name)).expect("keygen").0
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// A repository with root 1 (key `root1`), and its keys.
fn honest_repo(work: &Path) -> PathBuf {
    let dir = work.join("repo");
    repo::init(&InitOptions {
        out: dir.clone(),
        root_keys: vec![key(work, "root1")],
        threshold: 1,
        targets_keys: vec![key(work, "targets")],
        targets_threshold: 1,
        online_key: key(work, "online"),
        settings: Settings::default(),
        now: now(),
    })
    .expect("slate repo init");
    dir
}

/// A runtime for the servers and the device's loads; `slate repo` runs outside it (it
/// drives tough on a runtime of its own).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn load_from(
    rt: &tokio::runtime::Runtime,
    files: &Files,
    baked: &[u8],
    kept: &Path,
) -> Result<tough::Repository, Failure> {
    rt.block_on(load(
        &files.https,
        &files.url,
        "seed=1&version=1.0.0".into(),
        baked,
        kept,
    ))
}

#[test]
fn a_forged_successor_of_a_retired_root_is_refused_once_the_new_root_is_kept() {
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let honest = honest_repo(w);
    let baked = std::fs::read(honest.join("metadata/1.root.json")).expect("root 1");
    // What the attacker holds: the repository as it was, and the root key the operator is
    // about to retire.
    let forged = w.join("forged");
    copy_dir(&honest, &forged);
    let root3 = key(w, "root3");
    repo::rotate_root(&honest, &[w.join("root1.pem")], &[root3], 1, now())
        .expect("slate repo rotate-root");

    // The device checks once after the rotation: it walks from its baked root 1 to root 2
    // and keeps it.
    let device = w.join("device/tuf");
    let kept = device.join("trusted-root.json");
    let rt = runtime();
    let server = rt.block_on(async { serve(honest.clone(), None) });
    let r = load_from(&rt, &server, &baked, &kept).expect("the honest repository");
    assert_eq!(r.root().signed.version.get(), 2);
    assert_eq!(
        trusted_root::start(&baked, std::fs::read(&kept).ok().as_deref())
            .expect("start")
            .version,
        2
    );

    // The attacker signs its own root 2 with the retired key, then gives itself the timestamp
    // role (root 3) and serves that.
    let attacker = key(w, "attacker");
    repo::rotate_root(
        &forged,
        &[w.join("root1.pem")],
        std::slice::from_ref(&attacker),
        1,
        now(),
    )
    .expect("forged root 2");
    repo::rotate_key(
        &forged,
        &RotateKey {
            role: KeyRole::Timestamp,
            root_keys: vec![attacker.clone()],
            new_keys: vec![attacker],
            threshold: 1,
            online_keys: vec![w.join("online.pem")],
        },
        now(),
    )
    .expect("forged root 3");
    let evil = rt.block_on(async { serve(forged, None) });
    let Err(refused) = load_from(&rt, &evil, &baked, &kept) else {
        panic!("a forged successor of a retired root was accepted");
    };
    assert_eq!(refused.kind, ChannelFailure::Tuf, "{:#}", refused.error);
    // The kept root is still the operator's.
    assert_eq!(
        trusted_root::start(&baked, std::fs::read(&kept).ok().as_deref())
            .expect("start")
            .version,
        2
    );
    // A device that had not checked since the rotation has only its baked root, and the
    // forged chain is valid from there: what rotation cannot help (the image's root is
    // trusted until a check sees the new one).
    let fresh = w.join("fresh/tuf/trusted-root.json");
    let taken = load_from(&rt, &evil, &baked, &fresh).expect("from root 1");
    assert_eq!(taken.root().signed.version.get(), 3);
}

#[test]
fn a_root_step_answered_otherwise_than_not_found_fails_the_check() {
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let dir = honest_repo(w);
    let baked = std::fs::read(dir.join("metadata/1.root.json")).expect("root 1");
    repo::rotate_root(&dir, &[w.join("root1.pem")], &[key(w, "root2")], 1, now())
        .expect("rotate-root");
    let kept = w.join("device/tuf/trusted-root.json");
    let rt = runtime();
    let withheld = rt.block_on(async { serve(dir.clone(), Some(2)) });
    let Err(failed) = load_from(&rt, &withheld, &baked, &kept) else {
        panic!("a check that could not read 2.root.json went on with root 1");
    };
    assert_eq!(failed.kind, ChannelFailure::Network);
    let message = format!("{:#}", failed.error);
    assert!(
        message.contains("2.root.json") && message.contains("503"),
        "{message}"
    );
    assert!(!kept.exists(), "root 1 was kept from an incomplete walk");
    // The next step is "not found" once root 2 is read: a complete walk.
    let server = rt.block_on(async { serve(dir, None) });
    let r = load_from(&rt, &server, &baked, &kept).expect("complete walk");
    assert_eq!(r.root().signed.version.get(), 2);
}

#[test]
fn the_start_is_the_kept_root_of_this_anchor_and_never_an_older_or_damaged_one() {
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let dir = honest_repo(w);
    let root1 = std::fs::read(dir.join("metadata/1.root.json")).expect("root 1");
    repo::rotate_root(&dir, &[w.join("root1.pem")], &[key(w, "root2")], 1, now())
        .expect("rotate-root");
    let root2 = std::fs::read(dir.join("metadata/2.root.json")).expect("root 2");
    let parsed2: tough::schema::Signed<tough::schema::Root> =
        serde_json::from_slice(&root2).expect("root 2 parses");
    let kept = w.join("kept.json");

    // Nothing kept: the baked root.
    let s = trusted_root::start(&root1, None).expect("start");
    assert!(!s.kept && s.version == 1 && s.warning.is_none());
    // Root 2 kept from a chain that began at this baked root: root 2.
    trusted_root::keep(&kept, &root1, &parsed2).expect("keep");
    let s = trusted_root::start(&root1, std::fs::read(&kept).ok().as_deref()).expect("start");
    assert!(s.kept && s.version == 2, "{s:?}");
    // An image that bakes another root (here root 2 itself) starts its own chain.
    let s = trusted_root::start(&root2, std::fs::read(&kept).ok().as_deref()).expect("start");
    assert!(!s.kept && s.version == 2, "{s:?}");
    // A damaged kept file: the baked root, and a warning that names the file.
    let s = trusted_root::start(&root1, Some(b"{\"anchor\":")).expect("start");
    assert!(!s.kept && s.version == 1, "{s:?}");
    assert!(
        s.warning
            .as_deref()
            .is_some_and(|w| w.contains(trusted_root::FILE)),
        "{s:?}"
    );
    // A kept root whose signatures do not hold (its version raised by hand): the baked one.
    let text = std::fs::read_to_string(&kept).expect("kept");
    let tampered = text.replacen("\"version\": 2", "\"version\": 7", 1);
    assert_ne!(tampered, text);
    let s = trusted_root::start(&root1, Some(tampered.as_bytes())).expect("start");
    assert!(!s.kept && s.warning.is_some(), "{s:?}");
    // A baked root that is not a root at all is the image's fault: an error.
    assert!(trusted_root::start(b"not json", None).is_err());
}

#[test]
fn root_chain_steps_are_recognised_by_their_file_name() {
    let step = |u: &str| trusted_root::chain_step(&url::Url::parse(u).expect("url"));
    assert_eq!(step("https://cdn/metadata/7.root.json"), Some(7));
    assert_eq!(step("https://cdn/metadata/7.root.json?seed=1"), Some(7));
    assert_eq!(step("https://cdn/metadata/root.json"), None);
    assert_eq!(step("https://cdn/metadata/7.targets.json"), None);
    assert_eq!(step("https://cdn/metadata/x7.root.json"), None);
}
