//! newc cpio archives, the format the kernel unpacks an initramfs from.
//!
//! ```text
//! header: "070701" + 13 fields of 8 hex digits: ino mode uid gid nlink mtime filesize
//!         devmajor devminor rdevmajor rdevminor namesize(+NUL) check(0)
//! then the name + NUL, padded to 4 bytes; then the data, padded to 4 bytes.
//! The archive ends with an entry named "TRAILER!!!".
//! ```
//! Inode numbers are sequential and the time is the build's, so the bytes depend only on the
//! tree.

use crate::image::write::tree::{Kind, Tree};
use std::io::{self, Write};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Writes `tree` as a newc archive with every timestamp set to `mtime`.
pub fn write<W: Write>(tree: &Tree, mtime: u32, mut w: W) -> io::Result<W> {
    let mut written = 0u64;
    for (ino, (path, node)) in (1u32..).zip(tree.iter()) {
        let name = if path.is_empty() { "." } else { path.as_str() };
        let (ftype, data, rdev): (u32, std::sync::Arc<Vec<u8>>, (u32, u32)) = match &node.kind {
            Kind::Dir => (S_IFDIR, Default::default(), (0, 0)),
            Kind::File(c) => (S_IFREG, c.read()?, (0, 0)),
            Kind::Symlink(t) => (S_IFLNK, std::sync::Arc::new(t.clone().into_bytes()), (0, 0)),
            Kind::CharDev { major, minor } => (S_IFCHR, Default::default(), (*major, *minor)),
        };
        let nlink = if matches!(node.kind, Kind::Dir) { 2 } else { 1 };
        entry(
            &mut w,
            &mut written,
            Header {
                ino,
                mode: ftype | u32::from(node.mode),
                uid: node.uid,
                gid: node.gid,
                nlink,
                mtime,
                rdev,
            },
            name,
            &data,
        )?;
    }
    entry(
        &mut w,
        &mut written,
        Header {
            ino: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            rdev: (0, 0),
        },
        "TRAILER!!!",
        &[],
    )?;
    Ok(w)
}

struct Header {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    rdev: (u32, u32),
}

fn entry<W: Write>(
    w: &mut W,
    written: &mut u64,
    h: Header,
    name: &str,
    data: &[u8],
) -> io::Result<()> {
    let namesize = name.len() + 1;
    let header = format!(
        "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
        h.ino,
        h.mode,
        h.uid,
        h.gid,
        h.nlink,
        h.mtime,
        data.len(),
        0,
        0,
        h.rdev.0,
        h.rdev.1,
        namesize,
        0
    );
    w.write_all(header.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    *written += (header.len() + namesize) as u64;
    pad(w, written)?;
    w.write_all(data)?;
    *written += data.len() as u64;
    pad(w, written)
}

fn pad<W: Write>(w: &mut W, written: &mut u64) -> io::Result<()> {
    let n = (4 - (*written % 4) as usize) % 4;
    w.write_all(&[0u8; 3][..n])?;
    *written += n as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::spec::ImagePath;
    use crate::image::write::tree::Node;

    #[test]
    fn entries_are_aligned_and_end_with_trailer() {
        let mut t = Tree::default();
        t.insert(
            &ImagePath::new("/init").unwrap(),
            Node::bytes("abcde", 0o755),
        )
        .unwrap();
        let out = write(&t, 0, Vec::new()).unwrap();
        assert_eq!(out.len() % 4, 0);
        assert!(out.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("init\0"));
        assert!(text.contains("abcde"));
        assert!(text.contains("TRAILER!!!"));
    }
}
