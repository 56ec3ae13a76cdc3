//! What a hostile case is, and where the device finds it: before its first write or only while
//! streaming, and with which refusal kind.

/// When the device must find what is wrong with a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before its first write: the manifest, its signatures, the facts, the sizes and the
    /// root image's archive header. The fallback slot, its entry and the ESP stay as they were.
    BeforeWrite,
    /// Only while streaming the artifacts, after the idle slot's entry is gone: the fallback
    /// is lost, and nothing half-written may boot.
    WhileStreaming,
}

/// One hostile bundle.
pub struct Case {
    /// What is wrong with it.
    pub name: String,
    /// The bytes to upload.
    pub bytes: Vec<u8>,
    /// A phrase the refusal must contain, on the device and in `slate verify`.
    pub expect: &'static str,
    /// The refusal's wire `kind` on the device (`manifest`, `bundle`, `digest-mismatch`,
    /// `too-large`).
    pub kind: &'static str,
    /// When the device finds it.
    pub stage: Stage,
}

/// The cases that only streaming can find: the artifacts' bytes, lengths and order after the
/// root image's header, and truncation past that header. Everything else is decided first.
pub(super) const STREAMING: &[&str] = &[
    "initrd before the kernel",
    "an extra entry at the end",
    "bytes after the end-of-archive marker",
    "a missing initrd entry",
    "kernel shorter than the manifest says",
    "initrd longer than the manifest says",
    "root image longer than the manifest says",
    "a flipped first root image byte",
    "a flipped 4097th root image byte",
    "a flipped middle root image byte",
    "a flipped last (hash tree) root image byte",
    "a flipped first kernel byte",
    "a flipped last kernel byte",
    "a flipped first initrd byte",
    "a flipped last initrd byte",
    "truncated: inside the rootfs.img data",
    "truncated: right before the vmlinuz header",
    "truncated: inside the vmlinuz data",
    "truncated: right before the initrd.img header",
    "truncated: inside the initrd.img data",
    "truncated: before the end-of-archive marker",
];

/// The refusal kind of a case: the archive's structure is `bundle`, an artifact's bytes
/// `digest-mismatch`, the slot's size `too-large`, and the manifest with its signatures and
/// rules `manifest`.
pub(super) fn kind_of(name: &str) -> &'static str {
    const ARCHIVE: &[&str] = &[
        "a manifest over 64 KiB",
        "kernel before the root image",
        "initrd before the kernel",
        "an extra entry at the end",
        "bytes after the end-of-archive marker",
        "a missing initrd entry",
        "a duplicated manifest entry",
        "a parent-directory path",
        "an absolute path",
        "a dot-slash path",
        "the root image as a symlink",
        "the root image as a hard link",
        "the root image as a folder",
        "a corrupted header checksum",
        "a v7 tar header",
        "a name split into the prefix field",
        "kernel shorter than the manifest says",
        "initrd longer than the manifest says",
        "root image longer than the manifest says",
    ];
    if name == "a root image larger than the slot" {
        "too-large"
    } else if name.starts_with("a flipped")
        && ["root image", "kernel", "initrd"]
            .iter()
            .any(|a| name.contains(a))
    {
        "digest-mismatch"
    } else if ARCHIVE.contains(&name) || name.starts_with("truncated:") {
        "bundle"
    } else {
        "manifest"
    }
}

pub(super) fn stage_of(name: &str) -> Stage {
    if STREAMING.contains(&name) {
        Stage::WhileStreaming
    } else {
        Stage::BeforeWrite
    }
}
