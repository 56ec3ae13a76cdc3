//! The update channel's repository (`slate repo`, `slate publish`), read by an independent
//! TUF client: python-tuf's ngclient (PyPI `tuf`) over HTTP from a static server.

use crate::util::{bundle_cmd, data, fails, ok, sha256sum, shared_build, slate, stdout, tempdir};
use slate_core::channel::ReleaseManifest;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const WAVES: &str = r#"
[[wave]]
start_after = "1h"
fleet_percentage = 1
[[wave]]
start_after = "4h"
fleet_percentage = 10
[[wave]]
start_after = "1d"
fleet_percentage = 100
end_after = "2d"
"#;

/// A folder of keys and a repository made from them.
pub(crate) struct Repo {
    pub(crate) dir: PathBuf,
    pub(crate) work: tempfile::TempDir,
}

impl Repo {
    pub(crate) fn init(extra: &[&str]) -> Repo {
        let work = tempdir();
        for k in ["root1", "root2", "targets", "online", "release"] {
            ok(slate().arg("keygen").arg("--out").arg(work.path().join(k)));
        }
        let dir = work.path().join("repo");
        ok(slate()
            .args(["repo", "init", "--out"])
            .arg(&dir)
            .arg("--root-key")
            .arg(work.path().join("root1.pem"))
            .arg("--root-key")
            .arg(work.path().join("root2.pem"))
            .args(["--threshold", "2"])
            .args(extra)
            .args(Repo::role_keys(work.path())));
        Repo { dir, work }
    }

    fn role_keys(keys: &Path) -> Vec<PathBuf> {
        vec![
            "--targets-key".into(),
            keys.join("targets.pem"),
            "--online-key".into(),
            keys.join("online.pem"),
        ]
    }

    fn keys(&self) -> Vec<PathBuf> {
        Repo::role_keys(self.work.path())
    }

    /// A bundle of the shared build, signed by the release key.
    fn bundle(&self) -> PathBuf {
        let b = self.work.path().join("u.slate");
        if !b.exists() {
            ok(&mut bundle_cmd(
                shared_build(),
                &self.work.path().join("release.pem"),
                &b,
            ));
        }
        b
    }

    fn publish(&self, args: &[&str]) -> Command {
        let mut c = slate();
        c.arg("publish")
            .arg("--repo")
            .arg(&self.dir)
            .args(args)
            .args(self.keys());
        c
    }

    pub(crate) fn status(&self) -> String {
        stdout(&ok(slate().args(["repo", "status"]).arg(&self.dir)))
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir.join("metadata/1.root.json")
    }
}

/// `python3 -m http.server` on a free loopback port, serving a folder.
pub(crate) struct Server {
    child: Child,
    url: String,
}

impl Server {
    pub(crate) fn serve(dir: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "-d",
            ])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 (the CI installs it)");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "http.server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// python-tuf's client: trusts `root`, refreshes from the server, downloads `targets`.
pub(crate) fn python_tuf(root: &Path, server: &Server, work: &Path, targets: &[&str]) -> Output {
    Command::new("python3")
        .arg(data().join("../tuf/fetch.py"))
        .arg(root)
        .arg(&server.url)
        .arg(work)
        .args(targets)
        .output()
        .unwrap()
}

#[test]
fn python_tuf_reads_what_slate_publish_wrote() {
    let repo = Repo::init(&[]);
    let waves = repo.work.path().join("waves.toml");
    std::fs::write(&waves, WAVES).unwrap();
    let bundle = repo.bundle();
    let out = stdout(&ok(&mut repo.publish(&[
        "--waves",
        waves.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
    ])));
    assert!(out.contains("(3 waves)"), "{out}");

    let server = Server::serve(&repo.dir);
    let work = tempdir();
    let name = "oracle-tiny-1.2.3.slate";
    let chunks = "oracle-tiny-1.2.3.slate.chunks";
    let got = python_tuf(
        &repo.root(),
        &server,
        work.path(),
        &["release.json", name, chunks],
    );
    assert!(
        got.status.success(),
        "python-tuf: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    let lines = stdout(&got);
    let size = std::fs::metadata(&bundle).unwrap().len();
    assert!(
        lines.contains(&format!("{name} {size} {}", sha256sum(&bundle))),
        "python-tuf downloaded something else than the bundle:\n{lines}"
    );
    // The release manifest python-tuf checked is the one devices decide from.
    let release: ReleaseManifest =
        serde_json::from_slice(&std::fs::read(work.path().join("targets/release.json")).unwrap())
            .unwrap();
    assert_eq!(release.updates.len(), 1);
    let u = &release.updates[0];
    assert_eq!(u.target, name);
    assert_eq!(u.waves.0.len(), 3);
    assert_eq!((u.waves.0[1].first_seed, u.waves.0[1].end_seed), (21, 205));
    assert_eq!(u.waves.0[0].start, u.published + 3600);

    // The chunk index beside the bundle, signed as a target: the root image's data (without
    // its verity tree) tiled by chunks.
    let index_bytes = std::fs::read(work.path().join("targets").join(chunks)).unwrap();
    let index = slate_core::delta::ChunkIndex::parse(&index_bytes).unwrap();
    let mut r = slate_core::bundle::BundleReader::new(std::fs::File::open(&bundle).unwrap());
    let (m, _) = slate_core::install::read_head(&mut r).unwrap();
    let m = slate_core::manifest::Manifest::parse(&m).unwrap();
    let v = m.rootfs().and_then(|a| a.verity.clone()).unwrap();
    assert_eq!(index.image_len, v.hash_offset);
    assert!(!index.chunks.is_empty());

    let status = stdout(&ok(slate()
        .args(["repo", "status", "--seed", "100"])
        .arg(&repo.dir)));
    assert!(
        status.contains(&format!("chunk index {} bytes", index_bytes.len())),
        "{status}"
    );
    assert!(
        status.contains("wave 2: seeds 21..205 (1.0% → 10.0% of the fleet)"),
        "{status}"
    );
    assert!(status.contains("seed 100: wave 2, ready at"), "{status}");
    assert!(status.contains("root       version 1"), "{status}");
    assert!(!status.contains("EXPIRED"), "{status}");
}

#[test]
fn max_version_is_signed_into_the_release_and_can_be_lifted() {
    let repo = Repo::init(&[]);
    let bundle = repo.bundle();
    ok(&mut repo.publish(&["--bundle", bundle.to_str().unwrap()]));
    ok(&mut repo.publish(&[
        "--max-version",
        "0.9.0",
        "--product",
        "oracle",
        "--board",
        "tiny",
    ]));
    let s = repo.status();
    assert!(s.contains("max_version 0.9.0 for oracle on tiny"), "{s}");
    assert!(s.contains("targets    version 3"), "{s}");
    ok(&mut repo.publish(&["--no-max-version", "--product", "oracle", "--board", "tiny"]));
    assert!(!repo.status().contains("max_version"));
}

#[test]
fn an_expired_timestamp_is_refused_until_refresh_renews_it() {
    let repo = Repo::init(&["--timestamp-expiry", "1s"]);
    std::thread::sleep(Duration::from_secs(2));
    let server = Server::serve(&repo.dir);
    let work = tempdir();
    let got = python_tuf(&repo.root(), &server, work.path(), &[]);
    let err = String::from_utf8_lossy(&got.stderr);
    assert!(
        !got.status.success() && err.contains("ExpiredMetadataError"),
        "{err}"
    );
    assert!(repo.status().contains("EXPIRED"));

    // The repository settings now give the timestamp a day again; refresh needs only the
    // online key and leaves targets alone.
    let settings = repo.dir.join("slate-repo.toml");
    let text = std::fs::read_to_string(&settings)
        .unwrap()
        .replace("timestamp_expiry = \"1s\"", "timestamp_expiry = \"1d\"");
    std::fs::write(&settings, text).unwrap();
    ok(slate()
        .args(["repo", "refresh", "--repo"])
        .arg(&repo.dir)
        .arg("--online-key")
        .arg(repo.work.path().join("online.pem")));
    let s = repo.status();
    assert!(
        s.contains("targets    version 1") && s.contains("timestamp  version 2"),
        "{s}"
    );
    let work = tempdir();
    let got = python_tuf(&repo.root(), &server, work.path(), &[]);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
}

#[test]
fn a_replayed_timestamp_and_a_changed_target_are_refused() {
    let repo = Repo::init(&[]);
    let bundle = repo.bundle();
    let old = std::fs::read(repo.dir.join("metadata/timestamp.json")).unwrap();
    ok(&mut repo.publish(&["--bundle", bundle.to_str().unwrap()]));
    let server = Server::serve(&repo.dir);
    let work = tempdir();
    assert!(python_tuf(&repo.root(), &server, work.path(), &[])
        .status
        .success());
    // A server (or an attacker in front of it) that goes back to an older timestamp: the
    // client that saw the newer one refuses it.
    let new = std::fs::read(repo.dir.join("metadata/timestamp.json")).unwrap();
    std::fs::write(repo.dir.join("metadata/timestamp.json"), &old).unwrap();
    let got = python_tuf(&repo.root(), &server, work.path(), &[]);
    let err = String::from_utf8_lossy(&got.stderr);
    assert!(
        !got.status.success() && err.contains("BadVersionNumberError"),
        "{err}"
    );
    std::fs::write(repo.dir.join("metadata/timestamp.json"), &new).unwrap();

    // One byte of the release manifest changed on the server.
    let release = std::fs::read_dir(repo.dir.join("targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".release.json"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .unwrap();
    let mut bytes = std::fs::read(&release).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&release, &bytes).unwrap();
    let work = tempdir();
    let got = python_tuf(&repo.root(), &server, work.path(), &["release.json"]);
    let err = String::from_utf8_lossy(&got.stderr);
    assert!(
        !got.status.success() && err.contains("LengthOrHashMismatchError"),
        "{err}"
    );
    let (_, err) = fails(slate().args(["repo", "status"]).arg(&repo.dir));
    assert!(
        err.contains("does not match the signed targets metadata"),
        "{err}"
    );
}

#[test]
fn bad_publish_input_names_what_is_wrong() {
    let repo = Repo::init(&[]);
    let bundle = repo.bundle();
    let waves = repo.work.path().join("waves.toml");
    std::fs::write(&waves, "[[wave]]\nstart_after = \"2h\"\nfleet_percentage = 5\n[[wave]]\nstart_after = \"1h\"\nfleet_percentage = 50\n").unwrap();
    let (_, err) = fails(&mut repo.publish(&[
        "--bundle",
        bundle.to_str().unwrap(),
        "--waves",
        waves.to_str().unwrap(),
    ]));
    assert!(
        err.contains("waves.toml") && err.contains("wave 2: start_after must be larger"),
        "{err}"
    );

    let (_, err) = fails(&mut repo.publish(&["--bundle", waves.to_str().unwrap()]));
    assert!(err.contains("waves.toml"), "{err}");

    let (_, err) = fails(&mut repo.publish(&["--max-version", "1.0.0"]));
    assert!(
        err.contains("--max-version needs --bundle, or --product and --board"),
        "{err}"
    );

    let (_, err) = fails(slate().args(["repo", "status"]).arg(repo.work.path()));
    assert!(
        err.contains("is not a Slate repository") || err.contains("1.root.json"),
        "{err}"
    );

    let (_, err) = fails(
        slate()
            .args(["repo", "init", "--out"])
            .arg(&repo.dir)
            .arg("--root-key")
            .arg(repo.work.path().join("root1.pem"))
            .args(Repo::role_keys(repo.work.path())),
    );
    assert!(err.contains("already holds a repository"), "{err}");
    // Nothing was published by the failures: the repository is as init left it.
    assert!(repo.status().contains("no updates published"));
}

/// A published version is immutable: devices that took the first bytes would never see the
/// second. Publishing the same bundle again is allowed (a retried command).
#[test]
fn a_version_published_once_is_never_replaced_by_other_bytes() {
    let repo = Repo::init(&[]);
    let first = repo.bundle();
    ok(&mut repo.publish(&["--bundle", first.to_str().unwrap()]));
    ok(&mut repo.publish(&["--bundle", first.to_str().unwrap()]));
    // The same build signed by another key: the same version, other bytes.
    let other_key = repo.work.path().join("other");
    ok(slate().arg("keygen").arg("--out").arg(&other_key));
    let second = repo.work.path().join("second.slate");
    ok(&mut bundle_cmd(
        shared_build(),
        &repo.work.path().join("other.pem"),
        &second,
    ));
    let before = repo.status();
    let (_, err) = fails(&mut repo.publish(&["--bundle", second.to_str().unwrap()]));
    assert!(
        err.contains("already published with other bytes") && err.contains("second.slate"),
        "{err}"
    );
    assert_eq!(
        repo.status(),
        before,
        "the refused publish changed the repository"
    );
    let stray = std::fs::read_dir(repo.dir.join("targets"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".slate")
        })
        .count();
    assert_eq!(stray, 1, "the refused bundle was left among the targets");
}

/// The number that follows `prefix` in `text` (up to a space).
fn number_after(text: &str, prefix: &str) -> u64 {
    text.split(prefix)
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {prefix:?} in {text}"))
}

/// `slate publish --from`: a static patch for devices running the earlier release, named by
/// its root hash, signed as a target (python-tuf fetches it), shown by `slate repo status`,
/// and — applied to the earlier bundle's artifacts, as a device holds them — the new bundle
/// byte for byte. A patch the wrong way round is refused.
#[test]
fn publish_from_an_earlier_release_adds_a_static_patch() {
    use slate_core::delta::patch;
    let repo = Repo::init(&[]);
    let v1 = repo.bundle();
    // The same spec one version on, with one more file.
    let spec = tempdir();
    ok(Command::new("cp")
        .arg("-a")
        .arg(data().join("spec/."))
        .arg(spec.path()));
    let toml = std::fs::read_to_string(spec.path().join("image.toml"))
        .unwrap()
        .replace("version = \"1.2.3\"", "version = \"1.3.0\"");
    std::fs::write(spec.path().join("image.toml"), toml).unwrap();
    std::fs::write(
        spec.path().join("overlay/new-in-1.3.0"),
        "a file the update adds\n".repeat(100),
    )
    .unwrap();
    let out = repo.work.path().join("out2");
    ok(&mut crate::util::build_cmd(
        &spec.path().join("image.toml"),
        &out,
    ));
    let v2 = repo.work.path().join("v2.slate");
    ok(&mut bundle_cmd(
        &out,
        &repo.work.path().join("release.pem"),
        &v2,
    ));
    ok(&mut repo.publish(&["--bundle", v1.to_str().unwrap()]));
    // The wrong way round: refused, nothing published.
    let (_, err) = fails(&mut repo.publish(&[
        "--bundle",
        v1.to_str().unwrap(),
        "--from",
        v2.to_str().unwrap(),
    ]));
    assert!(
        err.contains("is not earlier than the bundle's 1.2.3"),
        "{err}"
    );
    let said = stdout(&ok(&mut repo.publish(&[
        "--bundle",
        v2.to_str().unwrap(),
        "--from",
        v1.to_str().unwrap(),
    ])));
    let bytes = number_after(&said, "published a static patch from 1.2.3 (");
    let v2_len = std::fs::metadata(&v2).unwrap().len();
    assert!(bytes * 2 < v2_len, "a patch of {bytes} bytes for {v2_len}");
    let status = repo.status();
    assert!(
        status.contains(&format!("static patch from 1.2.3: {bytes} bytes")),
        "{status}"
    );
    // The dynamic delta is priced for the whole bundle, as the device plans it: the indexes
    // and the head are fetched, the unchanged kernel and initramfs are not.
    let delta = number_after(&status, "delta from 1.2.3: ");
    // The publisher's root-image index of each, and v2's boot files.
    let index = |bundle: &Path| {
        let m = slate_imager::operator::repo::patches::manifest(bundle).unwrap();
        let boot: u64 = m
            .artifacts
            .iter()
            .filter(|a| a.name != slate_core::manifest::ROOTFS)
            .map(|a| a.size)
            .sum();
        let indexes = slate_imager::operator::repo::chunks::of_bundle(bundle, &m).unwrap();
        (indexes.root, boot)
    };
    let ((i1, _), (i2, boot)) = (index(&v1), index(&v2));
    let root_only = slate_core::delta::plan::plan(&i2, &i1, slate_core::delta::plan::COALESCE_GAP)
        .cost(i2.to_bytes().len() as u64);
    assert!(
        delta >= root_only + slate_core::delta::HEAD_PROBE && delta + boot < v2_len,
        "delta {delta} of {v2_len} (the root image's alone {root_only}, boot files {boot}): {status}"
    );

    // Named by v1's root hash, and fetched through an independent TUF client.
    let (m1, arts1) = slate_imager::operator::repo::patches::artifacts(&v1).unwrap();
    let root = m1
        .rootfs()
        .and_then(|a| a.verity.clone())
        .unwrap()
        .root_hash;
    let name = format!("oracle-tiny-1.3.0.slate.patch-{}", hex::encode(root.0));
    let server = Server::serve(&repo.dir);
    let work = tempdir();
    let got = python_tuf(&repo.root(), &server, work.path(), &[&name]);
    assert!(
        got.status.success(),
        "python-tuf: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    let p = std::fs::read(work.path().join("targets").join(&name)).unwrap();
    assert_eq!(p.len() as u64, bytes);
    let read = patch::read(&p[..]).unwrap();
    let names: Vec<&str> = read.sources.iter().map(|s| s.name.as_str()).collect();
    let expected: Vec<&str> = m1.artifacts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, expected);
    let sources: Vec<&[u8]> = arts1.iter().map(Vec::as_slice).collect();
    assert_eq!(
        patch::apply(&p, &sources).unwrap(),
        std::fs::read(&v2).unwrap()
    );
}
