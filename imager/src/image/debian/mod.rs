//! Debian packages as an image's inputs: the archive's indexes (apt), the lock and the resolver
//! that writes it, version relations, and reading `.deb` files into a root tree.

pub mod apt;
pub mod deb;
pub mod debroot;
pub mod debver;
pub mod lock;
pub mod resolve;
