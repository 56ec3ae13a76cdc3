//! Helpers: temp folders, running `slate`, a shared build of the test spec.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Test data folder.
pub fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// A fresh temp folder that lives as long as the returned guard.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("slate-test-")
        .tempdir()
        .unwrap()
}

/// Fake device binaries: the imager only copies them (the QEMU tests use the real ones).
pub fn agent_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempdir();
        std::fs::write(d.path().join("slate-init"), b"#!/bin/sh\necho init\n").unwrap();
        std::fs::write(d.path().join("slated"), b"#!/bin/sh\necho slated\n").unwrap();
        d
    })
    .path()
}

/// `slate` with the test inputs wired in; add the subcommand's own arguments.
pub fn slate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slate"));
    c.env_remove("SOURCE_DATE_EPOCH");
    c
}

/// `slate bundle --build BUILD --key KEY --out OUT`: the build at `build` signed into a bundle.
pub fn bundle_cmd(build: &Path, key: &Path, out: &Path) -> Command {
    let mut c = slate();
    c.args(["bundle", "--build"])
        .arg(build)
        .arg("--key")
        .arg(key)
        .arg("--out")
        .arg(out);
    c
}

/// `slate build` of `spec` into `out` with the test board folder, deb cache and fake agent.
pub fn build_cmd(spec: &Path, out: &Path) -> Command {
    build_cmd_with_cache(spec, out, &workspace().join(".cache/slate"))
}

/// [`build_cmd`] with another cache of locked packages (`slate build --cache`).
pub fn build_cmd_with_cache(spec: &Path, out: &Path, cache: &Path) -> Command {
    let debs = workspace().join(".cache/debs");
    assert!(
        debs.join("index.toml").is_file(),
        "the deb cache {} is empty: run `cargo xtask deps` first",
        debs.display()
    );
    let mut c = slate();
    c.arg("build")
        .arg("--quiet")
        .arg("--spec")
        .arg(spec)
        .arg("--out")
        .arg(out)
        .arg("--boards")
        .arg(data().join("boards"))
        .arg("--debs")
        .arg(&debs)
        .arg("--cache")
        .arg(cache)
        .arg("--agent-dir")
        .arg(agent_dir());
    c
}

/// Runs a command and returns its output, panicking with stderr if it failed.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must fail; returns (exit code, stderr).
pub fn fails(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{cmd:?} unexpectedly succeeded");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sgdisk -v`, judged by what it prints: it exits 0 whenever the table loads, problems or not.
pub fn sgdisk_verify(disk: &Path) {
    if let Err(e) = slate_oracles::sgdisk_verify(disk) {
        panic!("{e}");
    }
}

/// `fsck.fat -n` finds the FAT image clean (its output judged, not only its status).
pub fn fsck_fat(image: &Path) {
    if let Err(e) = slate_oracles::fsck_fat(image) {
        panic!("{e}");
    }
}

/// One shared build of the test spec, for tests that only read the outputs.
pub fn shared_build() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempdir();
        ok(&mut build_cmd(
            &data().join("spec/image.toml"),
            &d.path().join("out"),
        ));
        d
    })
    .path()
    .join("out")
    .leak()
}

/// sha256 of a file, by the standard tool.
pub fn sha256sum(p: &Path) -> String {
    let out = ok(Command::new("sha256sum").arg(p));
    stdout(&out).split_whitespace().next().unwrap().to_string()
}

/// A value of build.toml (by the `toml` crate, not Slate's reader).
pub fn report_value(out: &Path, table: &str, key: &str) -> toml::Value {
    let text = std::fs::read_to_string(out.join("build.toml")).unwrap();
    let v: toml::Table = toml::from_str(&text).unwrap();
    v[table][key].clone()
}

/// First sector and sector count of partition `n` as `sgdisk -i` reports them.
pub fn partition_extent(disk: &Path, n: u32) -> (u64, u64) {
    let text = stdout(&ok(Command::new("sgdisk")
        .arg("-i")
        .arg(n.to_string())
        .arg(disk)));
    let num = |label: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(label)).unwrap();
        line.split(':')
            .nth(1)
            .unwrap()
            .trim()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let first = num("First sector");
    (first, num("Last sector") - first + 1)
}

/// Copies partition `n` out of `disk` into `dest` with dd.
pub fn extract_partition(disk: &Path, n: u32, dest: &Path) {
    let (first, count) = partition_extent(disk, n);
    ok(Command::new("dd")
        .arg(format!("if={}", disk.display()))
        .arg(format!("of={}", dest.display()))
        .arg("bs=512")
        .arg(format!("skip={first}"))
        .arg(format!("count={count}"))
        .arg("status=none"));
}

/// An mtools command (`mdir`, `mcopy`) that reads a bare FAT image without its geometry
/// checks.
pub fn mtools(tool: &str) -> Command {
    let mut c = Command::new(tool);
    c.env("MTOOLS_SKIP_CHECK", "1");
    c
}
