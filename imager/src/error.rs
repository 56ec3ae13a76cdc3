//! Errors about the user's input, each naming the file, field or size at fault and what to do.
//!
//! Plumbing failures (a write that fails half-way, a tool that crashes) travel as `anyhow`
//! errors with context; the variants here are the mistakes a user can fix.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// A problem with the inputs of a build, found before or while building.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax or type error.
    #[error("{path}:{line}:{column}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said (names the field).
        message: String,
    },
    /// A value is well-formed TOML but not allowed.
    #[error("{path}: field {field}: {why}")]
    Spec {
        /// The file.
        path: PathBuf,
        /// Dotted field name.
        field: String,
        /// Why it is refused.
        why: String,
    },
    /// The spec's `image.lock` is missing, unreadable or made for something else, or the cache
    /// lacks a locked file: the message says which of `slate lock`/`slate fetch` to run.
    #[error("{path}: {why}")]
    Lock {
        /// The lock (or the cached file).
        path: PathBuf,
        /// What is wrong and what to run.
        why: String,
    },
    /// A source file or folder named by the spec does not exist.
    #[error(
        "{field} names {path}, which does not exist (paths are relative to the spec's folder)"
    )]
    MissingSource {
        /// The missing path.
        path: PathBuf,
        /// Which spec field named it.
        field: String,
    },
    /// No board file of that name.
    #[error("unknown board {name:?}: no {dir}/{name}.toml (available: {available})")]
    UnknownBoard {
        /// Board asked for.
        name: String,
        /// Folder searched.
        dir: String,
        /// Boards found there.
        available: String,
    },
    /// A package is not in the deb cache.
    #[error(
        "package {name:?} is not in the deb cache {cache}; run `cargo xtask deps` to fetch it"
    )]
    MissingPackage {
        /// Package name.
        name: String,
        /// Cache folder.
        cache: PathBuf,
    },
    /// The root image does not fit its slot.
    #[error("root image is {image_bytes} bytes ({image_mib:.1} MiB: squashfs + verity tree) but a slot is {slot_bytes} bytes ({slot_mib} MiB, board {board} disk.slot_mib); shrink the tree or raise slot_mib")]
    RootTooLarge {
        /// Bytes of squashfs + verity.
        image_bytes: u64,
        /// The same in MiB.
        image_mib: f64,
        /// Bytes of a slot.
        slot_bytes: u64,
        /// The same in MiB.
        slot_mib: u64,
        /// Board name.
        board: String,
    },
    /// The output folder holds something that is not a Slate build.
    #[error("output folder {path} exists and is not a previous Slate build (no build.toml); choose another --out or pass --force to replace it")]
    OutputExists {
        /// The folder.
        path: PathBuf,
    },
    /// Two spec entries put different things at one path.
    #[error("{path}: {why}")]
    TreeConflict {
        /// Path in the image.
        path: String,
        /// What clashed.
        why: String,
    },
}

/// Parses TOML into `T`, turning a parser error into a `BuildError::Toml` with line and column.
pub fn parse_toml<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, BuildError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_col(bytes, e.valid_up_to());
        BuildError::Toml {
            path: path.to_path_buf(),
            line,
            column,
            message: "file is not valid UTF-8".into(),
        }
    })?;
    toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(bytes, s.start)).unwrap_or((1, 1));
        BuildError::Toml {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })
}

fn line_col(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u32,
    }

    #[test]
    fn toml_errors_carry_line_and_column() {
        let e = parse_toml::<T>(Path::new("x.toml"), b"a = 1\nb = 2\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("x.toml:2:1: "), "{s}");
        assert!(s.contains("unknown field `b`"), "{s}");
        let e = parse_toml::<T>(Path::new("x.toml"), b"a = \"one\"\n").unwrap_err();
        assert!(e.to_string().starts_with("x.toml:1:5: "), "{e}");
    }
}
