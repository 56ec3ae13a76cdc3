//! Integration tests of `slate`, each checked by a standard tool (the oracle) rather than by
//! Slate's own readers. One binary (`autotests = false`), one module per concern.
//!
//! They need the deb cache (`cargo xtask deps`) and the host tools it installs.

#![allow(clippy::unwrap_used)]

mod util;

mod bad_input;
mod channel;
mod channel_keys;
mod flash;
mod keys;
mod lock;
mod oracles;
mod reproducible;
mod secure_boot;
mod tpm;
mod tpm_build;
