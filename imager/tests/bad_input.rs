//! Bad input gets a clear error naming what is wrong, exit code 3, and leaves nothing behind.

use crate::util::*;
use std::path::Path;

/// Writes a spec beside copies of the test data so relative paths resolve.
fn spec_with(dir: &Path, text: &str) -> std::path::PathBuf {
    ok(std::process::Command::new("cp")
        .arg("-a")
        .arg(data().join("spec/overlay"))
        .arg(dir.join("overlay")));
    ok(std::process::Command::new("cp")
        .arg("-a")
        .arg(data().join("spec/files"))
        .arg(dir.join("files")));
    std::fs::copy(data().join("spec/image.lock"), dir.join("image.lock")).unwrap();
    let p = dir.join("image.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_missing_or_stale_lock_says_what_to_run() {
    let tmp = tempdir();
    let spec = spec_with(tmp.path(), &base_spec());
    let out = tmp.path().join("out");
    let lock = tmp.path().join("image.lock");
    let text = std::fs::read_to_string(&lock).unwrap();
    for (what, edited, expected) in [
        (
            "another architecture",
            text.replace(
                "architecture = \"amd64\"\nsources",
                "architecture = \"arm64\"\nsources",
            ),
            "image.amd64.lock: missing: ",
        ),
        (
            "another suite",
            text.replacen("suite = \"bookworm\"", "suite = \"trixie\"", 1),
            "is stale: it is for suite trixie, the spec names bookworm; run `slate lock",
        ),
    ] {
        assert_ne!(edited, text, "{what}: the edit did not apply");
        std::fs::write(&lock, &edited).unwrap();
        let (code, err) = fails(&mut build_cmd(&spec, &out));
        assert_eq!(code, 3, "{what}: {err}");
        assert!(err.contains(expected), "{what}: {err}");
        assert!(err.contains("run `slate lock --spec"), "{what}: {err}");
        assert_nothing_written(&out);
    }
    std::fs::remove_file(&lock).unwrap();
    let (code, err) = fails(&mut build_cmd(&spec, &out));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("image.lock: missing:") && err.contains("run `slate lock --spec"),
        "{err}"
    );
    assert_nothing_written(&out);
}

fn base_spec() -> String {
    std::fs::read_to_string(data().join("spec/image.toml")).unwrap()
}

fn assert_nothing_written(out: &Path) {
    assert!(
        !out.exists(),
        "{} was created by a failed build",
        out.display()
    );
    let partial = out.with_file_name(format!(
        "{}.partial",
        out.file_name().unwrap().to_string_lossy()
    ));
    assert!(!partial.exists(), "{} was left behind", partial.display());
}

#[test]
fn malformed_toml_names_file_line_column_and_field() {
    let tmp = tempdir();
    let text = base_spec().replace(
        "hostname = \"oracle-host\"",
        "hostname = \"oracle-host\"\nhostnmae = \"typo\"",
    );
    let spec = spec_with(tmp.path(), &text);
    let out = tmp.path().join("out");
    let (code, err) = fails(&mut build_cmd(&spec, &out));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&format!("{}:6:1", spec.display())), "{err}");
    assert!(err.contains("unknown field `hostnmae`"), "{err}");
    assert_nothing_written(&out);

    let spec = spec_with(
        &tmp.path().join("b").tap_mkdir(),
        &base_spec().replace("mode = \"4750\"", "mode = 4750.5"),
    );
    let (code, err) = fails(&mut build_cmd(&spec, &out));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("image.toml:"), "{err}");
    assert_nothing_written(&out);
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn missing_source_file_is_named() {
    let tmp = tempdir();
    let spec = spec_with(
        tmp.path(),
        &base_spec().replace("files/tool.sh", "files/nope.sh"),
    );
    let out = tmp.path().join("out");
    let (code, err) = fails(&mut build_cmd(&spec, &out));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("files/nope.sh") && err.contains("does not exist"),
        "{err}"
    );
    assert!(err.contains("file[0].source"), "{err}");
    assert_nothing_written(&out);
}

#[test]
fn unknown_board_lists_the_known_ones() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let (code, err) =
        fails(build_cmd(&data().join("spec/image.toml"), &out).args(["--board", "pi5"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("unknown board \"pi5\""), "{err}");
    assert!(err.contains("tiny"), "{err}");
    assert_nothing_written(&out);
}

#[test]
fn root_larger_than_the_slot_gives_both_sizes() {
    let tmp = tempdir();
    let spec = spec_with(
        tmp.path(),
        &base_spec().replace("board = \"tiny\"", "board = \"tiny-slot\""),
    );
    // 10 MiB that no compressor can shrink, into an 8 MiB slot.
    let mut noise = vec![0u8; 10 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(tmp.path().join("files/tool.sh"), &noise).unwrap();
    let out = tmp.path().join("out");
    let (code, err) = fails(&mut build_cmd(&spec, &out));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("root image is "), "{err}");
    assert!(err.contains("slot is 8388608 bytes (8 MiB"), "{err}");
    assert!(err.contains("slot_mib"), "{err}");
    assert_nothing_written(&out);
}

#[test]
fn existing_folder_that_is_not_a_build_is_refused_unless_forced() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("precious.txt"), "keep me").unwrap();
    let spec = data().join("spec/image.toml");
    let (code, err) = fails(&mut build_cmd(&spec, &out));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("is not a previous Slate build"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("precious.txt")).unwrap(),
        "keep me"
    );

    ok(build_cmd(&spec, &out).arg("--force"));
    assert!(out.join("disk.img").exists());
    assert!(!out.join("precious.txt").exists());
    // A previous build is replaced without --force.
    ok(build_cmd(&spec, &out).args(["--version", "1.2.5"]));
    assert_eq!(
        report_value(&out, "image", "version").as_str(),
        Some("1.2.5")
    );
}

#[test]
fn invalid_version_and_bad_values_are_refused() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let (code, err) =
        fails(build_cmd(&data().join("spec/image.toml"), &out).args(["--version", "1.0.0+7"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("build metadata"), "{err}");
    let spec = spec_with(
        tmp.path(),
        &base_spec().replace("compression_level = 3", "compression_level = 30"),
    );
    let (code, err) = fails(&mut build_cmd(&spec, &out));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("squashfs.compression_level"), "{err}");
    assert_nothing_written(&out);
    // Capabilities on a root service would look like a limit and be none.
    let spec = spec_with(
        tmp.path(),
        &base_spec().replace(
            "restart = \"on-failure\"\n",
            "restart = \"on-failure\"\ncapabilities = [\"net_bind_service\"]\n",
        ),
    );
    let (code, err) = fails(&mut build_cmd(&spec, &out));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("service[0].capabilities") && err.contains("runs as root"),
        "{err}"
    );
    assert_nothing_written(&out);
}

#[test]
fn bad_update_policies_name_their_field() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    for (table, field) in [
        ("windows = [\"Caturday 02:00-04:00\"]\n", "update.windows"),
        (
            "windows = [\"Sat 02:00-04:00\"]\ntimezone = \"Mars/Olympus\"\n",
            "update.timezone",
        ),
        ("consent = [\"/usr/bin/no-such-app\"]\n", "update.consent"),
    ] {
        let spec = spec_with(tmp.path(), &format!("{}\n[update]\n{table}", base_spec()));
        let (code, err) = fails(&mut build_cmd(&spec, &out));
        assert_eq!(code, 3, "{err}");
        assert!(err.contains(field), "{field}: {err}");
        assert_nothing_written(&out);
    }
}

#[test]
fn nothing_but_slate_writes_where_the_device_keeps_its_trust() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let spec = spec_with(tmp.path(), &base_spec());
    let planted = tmp.path().join("overlay/etc/slate");
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::write(planted.join("trust.toml"), "threshold = 1\n").unwrap();
    let (code, err) = fails(&mut build_cmd(&spec, &out));
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("/etc/slate") && err.contains("only Slate writes them"),
        "{err}"
    );
    assert_nothing_written(&out);
}
