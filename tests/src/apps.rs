//! Images of the examples in `examples/`: users' own applications from Debian packages, built
//! the way a user builds them (lock, fetch, build) and trusting the test keys.

use crate::{keys, operators, workspace, Image};
use slate_imager::image::build::{self, BuildOptions};
use slate_imager::image::{debian::apt::Apt, debian::lock, spec::LoadedSpec};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's cache of locked packages (`cargo xtask deps` fills it).
pub fn lock_cache() -> PathBuf {
    workspace().join(".cache/slate")
}

/// A copy of `examples/<example>` in `target/e2e-specs/<example>-<tag>`, changed by `edit`
/// (given the copy's folder). Returns the copy's spec.
pub fn example_copy(example: &str, tag: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = workspace().join(format!("target/e2e-specs/{example}-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("spec dir");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(workspace().join("examples").join(example).join("."))
        .arg(&dir)
        .status()
        .expect("cp");
    assert!(ok.success(), "copying examples/{example}");
    edit(&dir);
    dir.join("image.toml")
}

/// `slate lock` (when the copy's lock is missing or stale) and `slate fetch` for a spec, with
/// the repository's cache: what a user runs before `slate build`.
pub fn lock_and_fetch(spec_path: &Path) -> lock::Lock {
    let spec = LoadedSpec::load(spec_path).expect("spec");
    let (_, board) =
        build::board_for(&spec, None, Some(&workspace().join("boards"))).expect("board");
    let (wanted, path) = lock::wanted_by(&spec, &board.board);
    let apt = Apt::new(&lock_cache(), &spec.spec.debian, &wanted.architecture).expect("apt");
    let current = lock::Lock::read(&path)
        .ok()
        .filter(|l| l.check_fresh(&wanted, &path).is_ok());
    let l = match current {
        Some(l) => l,
        None => lock::lock(&apt, wanted, &path)
            .unwrap_or_else(|e| panic!("slate lock of {}: {e:#}", spec_path.display())),
    };
    lock::fetch(&apt, &l, &lock_cache().join("debs"))
        .unwrap_or_else(|e| panic!("slate fetch of {}: {e:#}", spec_path.display()));
    l
}

/// Builds `spec` at `version` into `target/e2e-images/<name>` as production builds it (no
/// test hooks, no debug shell), trusting the test keys and operator CA.
pub fn build_app(spec: &Path, version: &str, name: &str) -> Image {
    let out = workspace().join("target/e2e-images").join(name);
    let opts = BuildOptions {
        secure_boot: None,
        pcr_key: None,
        timings: false,
        spec: spec.to_path_buf(),
        board: Some("qemu-x86_64".into()),
        version: Some(version.parse().expect("test version")),
        out: out.clone(),
        force: true,
        quiet: true,
        debs: Some(workspace().join(".cache/debs")),
        cache: Some(lock_cache()),
        boards: Some(workspace().join("boards")),
        agent_dir: Some(crate::agent_dir_for(false).to_path_buf()),
        trust: Some(keys().trust_file.clone()),
        operators: Some(operators().ca_crt.clone()),
        allow: build::policy::Allow::default(),
        security_epoch: 0,
    };
    let report =
        build::build(&opts).unwrap_or_else(|e| panic!("building {}: {e:#}", spec.display()));
    Image { dir: out, report }
}

/// `path` inside an extracted root, with every link followed inside `root` (an absolute link
/// target is taken from `root`, as the device's loader sees it). None when it does not exist.
pub fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut parts: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    parts.reverse();
    let mut at: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = parts.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                at.pop();
                continue;
            }
            _ => {}
        }
        let host = root.join(at.join("/")).join(&c);
        let meta = std::fs::symlink_metadata(&host).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = std::fs::read_link(&host)
                .ok()?
                .to_string_lossy()
                .into_owned();
            if target.starts_with('/') {
                at.clear();
            }
            parts.extend(
                target
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .rev()
                    .map(String::from),
            );
        } else {
            at.push(c);
        }
    }
    Some(root.join(at.join("/")))
}

/// What `readelf` says an ELF file needs: its program interpreter and `NEEDED` libraries.
fn elf_needs(file: &Path) -> (Option<String>, Vec<String>) {
    let run = |flag: &str| {
        let out = Command::new("readelf")
            .args(["-W", flag])
            .arg(file)
            .output()
            .expect("running readelf (binutils)");
        assert!(out.status.success(), "readelf {flag} {}", file.display());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let interp = run("-l").lines().find_map(|l| {
        l.split_once("[Requesting program interpreter: ")
            .map(|(_, r)| r.trim_end_matches(']').to_string())
    });
    let needed = run("-d")
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| {
            l.split_once("Shared library: [")
                .map(|(_, r)| r.trim_end_matches(']').to_string())
        })
        .collect();
    (interp, needed)
}

/// The folders Debian's loader searches without a cache, in its order.
pub const LOADER_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
];

/// Every library `binaries` need (recursively, as the loader would load them) that is not in
/// the extracted `root`: `readelf -d` for the `NEEDED` names, searched in [`LOADER_DIRS`] of
/// the root, and each program's interpreter. Empty when everything resolves. Also returns the
/// libraries found, so a caller can check the walk did something.
pub fn missing_libraries(root: &Path, binaries: &[&str]) -> (Vec<String>, Vec<PathBuf>) {
    let mut missing = Vec::new();
    let mut found: Vec<PathBuf> = Vec::new();
    let mut todo: Vec<(String, PathBuf)> = Vec::new();
    for b in binaries {
        match resolve_in_root(root, b) {
            Some(p) if p.is_file() => todo.push((b.to_string(), p)),
            _ => missing.push(format!("{b} (the program itself)")),
        }
    }
    while let Some((who, file)) = todo.pop() {
        let (interp, needed) = elf_needs(&file);
        if let Some(i) = interp {
            if !resolve_in_root(root, &i).is_some_and(|p| p.is_file()) {
                missing.push(format!("{i} (interpreter of {who})"));
            }
        }
        for lib in needed {
            let hit = LOADER_DIRS
                .iter()
                .find_map(|d| resolve_in_root(root, &format!("{d}/{lib}")).filter(|p| p.is_file()));
            match hit {
                Some(p) if !found.contains(&p) => {
                    found.push(p.clone());
                    todo.push((lib, p));
                }
                Some(_) => {}
                None => missing.push(format!("{lib} (needed by {who})")),
            }
        }
    }
    (missing, found)
}

/// Puts `bytes` at `rel` (such as `etc/nginx/nginx.conf`) in the `data` partition of `disk`,
/// creating its folders, as a device's own configuration would be there: the partition is
/// copied out, written with e2fsprogs' `debugfs`, read back with it, and copied in again.
pub fn write_data_file(disk: &Path, rel: &str, bytes: &[u8]) {
    let (offset, len) = crate::partition(disk, "data").expect("data partition");
    assert_eq!((offset | len) % (1 << 20), 0, "data is MiB-aligned");
    let tmp = tempfile::tempdir().expect("temporary folder");
    let part = tmp.path().join("data.ext4");
    let dd = |args: &[String]| {
        let ok = Command::new("dd")
            .args(args)
            .arg("status=none")
            .status()
            .expect("running dd");
        assert!(ok.success(), "dd {args:?}");
    };
    dd(&[
        format!("if={}", disk.display()),
        format!("of={}", part.display()),
        "bs=1M".into(),
        format!("skip={}", offset >> 20),
        format!("count={}", len >> 20),
    ]);
    let host = tmp.path().join("file");
    std::fs::write(&host, bytes).expect("writing the file to put");
    let mut script = String::new();
    let mut dir = String::new();
    for c in rel
        .split('/')
        .collect::<Vec<_>>()
        .split_last()
        .map_or(&[][..], |(_, d)| d)
    {
        dir.push('/');
        dir.push_str(c);
        script.push_str(&format!("mkdir {dir}\n"));
    }
    // (`rm` first: debugfs does not replace a file that exists.)
    script.push_str(&format!(
        "rm /{rel}\nwrite {} /{rel}\nsif /{rel} mode 0100644\n",
        host.display()
    ));
    let cmds = tmp.path().join("cmds");
    std::fs::write(&cmds, script).expect("writing debugfs commands");
    let ok = Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&cmds)
        .arg(&part)
        .output()
        .expect("running debugfs (e2fsprogs)");
    assert!(
        ok.status.success(),
        "debugfs: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let back = Command::new("debugfs")
        .args(["-R", &format!("cat /{rel}")])
        .arg(&part)
        .output()
        .expect("running debugfs (e2fsprogs)");
    assert_eq!(
        back.stdout,
        bytes,
        "debugfs did not write /{rel}: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    dd(&[
        format!("if={}", part.display()),
        format!("of={}", disk.display()),
        "bs=1M".into(),
        format!("seek={}", offset >> 20),
        "conv=notrunc".into(),
    ]);
}
