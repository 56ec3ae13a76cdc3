//! An in-memory file tree: the root filesystem (or initramfs) before it is written.
//!
//! Layers are applied in order and later ones win: packages, overlays, spec files, spec
//! folders and links, then the files Slate generates. Parents are created as `0755 0:0`.
//! Every node gets the build's timestamp when written, so the tree alone decides the bytes.

use crate::error::BuildError;
use crate::image::spec::ImagePath;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum Content {
    /// Bytes held in memory (generated files, package contents).
    Bytes(Arc<Vec<u8>>),
    /// A file on the build host, read when the image is written.
    Host(PathBuf),
}

impl Content {
    /// Reads the whole content.
    pub fn read(&self) -> std::io::Result<Arc<Vec<u8>>> {
        match self {
            Content::Bytes(b) => Ok(b.clone()),
            Content::Host(p) => std::fs::read(p).map(Arc::new),
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> std::io::Result<u64> {
        match self {
            Content::Bytes(b) => Ok(b.len() as u64),
            Content::Host(p) => Ok(std::fs::metadata(p)?.len()),
        }
    }
}

/// What a node is.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Folder.
    Dir,
    /// Regular file.
    File(Content),
    /// Symbolic link with its target.
    Symlink(String),
    /// Character device (only the initramfs needs one: /dev/console).
    CharDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

/// One node of the tree.
#[derive(Debug, Clone)]
pub struct Node {
    /// Kind and content.
    pub kind: Kind,
    /// Permission bits (07777).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl Node {
    /// A folder.
    pub fn dir(mode: u16) -> Node {
        Node {
            kind: Kind::Dir,
            mode,
            uid: 0,
            gid: 0,
        }
    }

    /// A file owned by root.
    pub fn file(content: Content, mode: u16) -> Node {
        Node {
            kind: Kind::File(content),
            mode,
            uid: 0,
            gid: 0,
        }
    }

    /// A generated file from bytes, owned by root.
    pub fn bytes(bytes: impl Into<Vec<u8>>, mode: u16) -> Node {
        Node::file(Content::Bytes(Arc::new(bytes.into())), mode)
    }

    /// A symbolic link owned by root.
    pub fn symlink(target: &str) -> Node {
        Node {
            kind: Kind::Symlink(target.to_string()),
            mode: 0o777,
            uid: 0,
            gid: 0,
        }
    }
}

/// The top-level folders Debian 12 keeps under `/usr` (merged-/usr): `/bin` is a link to
/// `usr/bin`, and a package's `/bin/sh` lands in `/usr/bin/sh`.
pub const MERGED_USR: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// A whole tree keyed by path (without the leading `/`; "" is the root).
#[derive(Debug, Clone)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
    merged_usr: bool,
}

impl Default for Tree {
    fn default() -> Tree {
        let mut nodes = BTreeMap::new();
        nodes.insert(String::new(), Node::dir(0o755));
        Tree {
            nodes,
            merged_usr: false,
        }
    }
}

impl Tree {
    /// A root laid out as Debian 12 expects (merged-/usr): every path under one of
    /// [`MERGED_USR`] is stored under `/usr`, and those folders are links into it. Packages
    /// built for a merged system and specs written with `/bin/…` paths then agree on one file.
    pub fn merged_usr() -> Tree {
        let mut t = Tree {
            merged_usr: true,
            ..Tree::default()
        };
        t.nodes.insert("usr".into(), Node::dir(0o755));
        for top in ["bin", "sbin", "lib"] {
            t.link_to_usr(top);
        }
        t
    }

    /// Adds the link `/<top>` → `usr/<top>` (the others of [`MERGED_USR`] appear only when
    /// something is stored there, so no link dangles).
    fn link_to_usr(&mut self, top: &str) {
        self.nodes
            .entry(top.to_string())
            .or_insert_with(|| Node::symlink(&format!("usr/{top}")));
    }

    /// Where `rel` is stored: under `/usr` for a merged-/usr folder of a merged tree.
    fn place(&self, rel: &str) -> String {
        if self.merged_usr {
            let top = rel.split('/').next().unwrap_or("");
            if MERGED_USR.contains(&top) {
                return format!("usr/{rel}");
            }
        }
        rel.to_string()
    }

    /// Puts `node` at `path`, creating missing parents. A folder over a folder keeps the
    /// children and takes the new mode; anything over a folder, or a folder over a non-folder,
    /// is a conflict.
    pub fn insert(&mut self, path: &ImagePath, node: Node) -> Result<(), BuildError> {
        let placed;
        let path = if self.merged_usr {
            let top = path.rel().split('/').next().unwrap_or("");
            if MERGED_USR.contains(&top) {
                self.link_to_usr(top);
            }
            placed = ImagePath::new(&self.place(path.rel())).map_err(|why| {
                BuildError::TreeConflict {
                    path: path.to_string(),
                    why,
                }
            })?;
            &placed
        } else {
            path
        };
        self.ensure_parents(path)?;
        let key = path.rel().to_string();
        match (self.nodes.get(&key).map(|n| &n.kind), &node.kind) {
            (Some(Kind::Dir), Kind::Dir) | (None, _) => {}
            (Some(Kind::Dir), _) if self.has_children(&key) => {
                return Err(BuildError::TreeConflict {
                    path: path.to_string(),
                    why: "a file or link would replace a folder that has contents".into(),
                })
            }
            (Some(_), Kind::Dir) => {
                return Err(BuildError::TreeConflict {
                    path: path.to_string(),
                    why: "a folder would replace a file or link".into(),
                })
            }
            _ => {}
        }
        self.nodes.insert(key, node);
        Ok(())
    }

    fn has_children(&self, key: &str) -> bool {
        let prefix = format!("{key}/");
        self.nodes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    fn ensure_parents(&mut self, path: &ImagePath) -> Result<(), BuildError> {
        let mut missing = Vec::new();
        let mut p = path.parent();
        while let Some(parent) = p {
            match self.nodes.get(parent.rel()) {
                Some(Node {
                    kind: Kind::Dir, ..
                }) => break,
                Some(_) => {
                    return Err(BuildError::TreeConflict {
                        path: path.to_string(),
                        why: format!("its parent {parent} is not a folder"),
                    })
                }
                None => missing.push(parent.clone()),
            }
            p = parent.parent();
        }
        for m in missing.into_iter().rev() {
            self.nodes.insert(m.rel().to_string(), Node::dir(0o755));
        }
        Ok(())
    }

    /// Looks a node up (`path` without the leading `/`; `bin/sh` finds `usr/bin/sh` in a
    /// merged tree).
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(&self.place(path))
    }

    /// All nodes, parents before children.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    /// Number of nodes (the root included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when only the root exists.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1
    }

    /// Sum of file sizes.
    pub fn file_bytes(&self) -> std::io::Result<u64> {
        let mut total = 0;
        for n in self.nodes.values() {
            if let Kind::File(c) = &n.kind {
                total += c.size()?;
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ImagePath {
        ImagePath::new(s).unwrap()
    }

    #[test]
    fn parents_are_created_and_later_layers_win() {
        let mut t = Tree::default();
        t.insert(&p("/a/b/c"), Node::bytes("1", 0o644)).unwrap();
        assert!(matches!(t.get("a/b").unwrap().kind, Kind::Dir));
        t.insert(&p("/a/b/c"), Node::bytes("22", 0o600)).unwrap();
        assert_eq!(t.get("a/b/c").unwrap().mode, 0o600);
        t.insert(&p("/a"), Node::dir(0o700)).unwrap();
        assert_eq!(t.get("a").unwrap().mode, 0o700);
        assert!(t.get("a/b/c").is_some());
    }

    #[test]
    fn a_merged_tree_keeps_bin_and_lib_under_usr() {
        let mut t = Tree::merged_usr();
        t.insert(&p("/bin/busybox"), Node::bytes("bb", 0o755))
            .unwrap();
        t.insert(&p("/bin"), Node::dir(0o755)).unwrap();
        t.insert(&p("/lib64/ld.so"), Node::symlink("/lib/x/ld.so"))
            .unwrap();
        t.insert(&p("/usr/bin/sh"), Node::symlink("busybox"))
            .unwrap();
        t.insert(&p("/binaries/x"), Node::bytes("x", 0o644))
            .unwrap();
        assert!(matches!(
            t.get("usr/bin/busybox").unwrap().kind,
            Kind::File(_)
        ));
        assert!(matches!(t.get("bin/busybox").unwrap().kind, Kind::File(_)));
        assert!(t.get("usr/lib64/ld.so").is_some());
        assert!(
            t.get("binaries/x").is_some(),
            "only whole components are merged"
        );
        let links: Vec<_> = t
            .iter()
            .filter_map(|(k, n)| match &n.kind {
                Kind::Symlink(target) if !k.contains('/') => Some((k.clone(), target.clone())),
                _ => None,
            })
            .collect();
        assert!(
            links.contains(&("bin".into(), "usr/bin".into())),
            "{links:?}"
        );
        assert!(links.contains(&("lib64".into(), "usr/lib64".into())));
        assert!(matches!(t.get("usr/bin").unwrap().kind, Kind::Dir));
    }

    #[test]
    fn conflicts_are_refused() {
        let mut t = Tree::default();
        t.insert(&p("/a/b"), Node::bytes("1", 0o644)).unwrap();
        assert!(t.insert(&p("/a/b/c"), Node::bytes("1", 0o644)).is_err());
        assert!(t.insert(&p("/a"), Node::symlink("x")).is_err());
        assert!(t.insert(&p("/a/b"), Node::dir(0o755)).is_err());
    }
}
