//! The update channel's repository: TUF metadata and targets as plain files that any static
//! HTTPS server can serve (`slate repo init|refresh|status`, `slate publish`).
//!
//! ```text
//! DIR/slate-repo.toml          settings (expiries; no secrets), read by every command
//! DIR/metadata/N.root.json     root (offline keys, threshold); root.json = the newest
//! DIR/metadata/N.targets.json  targets (release key): bundles and release.json
//! DIR/metadata/N.snapshot.json snapshot (online key)
//! DIR/metadata/timestamp.json  timestamp (online key, short expiry)
//! DIR/targets/<sha256>.<name>  targets, named by hash (consistent snapshots)
//! ```
//!
//! Metadata is built from tough's TUF schema and signed here with Slate's ed25519 keys;
//! every command then reads the result back through tough's client, so a repository this
//! CLI cannot load is never left behind silently. Files are written in the order a client
//! reads them backwards (targets, targets.json, snapshot, timestamp last), so a server that
//! serves the folder while it changes shows the old or the new state, never a mixture.

pub mod chunks;
mod init;
mod layout;
pub mod patches;
mod publish;
mod refresh;
mod rotate;
mod signing;
mod status;
mod write;

/// The TUF specification version the metadata follows.
pub const SPEC_VERSION: &str = "1.0.0";

pub use init::{init, InitOptions};
pub use layout::{Layout, Settings};
pub use publish::{publish, PatchMade, PublishOptions, PATCH_FROM_VERSION};
pub use refresh::{refresh, Refreshed};
pub use rotate::{rotate_key, rotate_root, KeyRole, RotateKey};
pub use status::{status, RepoStatus};
