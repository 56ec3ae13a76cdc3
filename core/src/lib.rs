//! `slate-core`: the on-disk formats the Slate imager (host) and agent (device) share.
//!
//! Everything here is pure: no global state, no async, I/O only through `Read`/`Write`/`Seek`
//! or byte slices, so that each format can be unit- and property-tested without a device.
//! The imager writes these formats and the agent reads them; keeping both sides on one
//! implementation is what guarantees they agree.
//!
//! ```text
//! disk          layout (partitions, type GUIDs, sizes), gpt, fat (the ESP), verity, guid
//! boot          bootentry (entry names, boot counting), cmdline, uki, pe, authenticode, tpm
//!               (PCR 11 of a UKI, signed PCR policies)
//! updates       manifest (signatures, trust, rules), bundle, install (the install plan),
//!               slots (commit and rollback), retry (when a failed version is tried again),
//!               channel (release, waves, schedule), policy (maintenance windows, staged
//!               updates), delta (chunking, chunk index, delta plan), fleet (the DDI fleet
//!               server's documents and feedback), version
//! device files  config (the agent's TOML), osrelease, dhcp
//! wire          api (status, outcomes, the `slate:` console markers), operator (roles)
//! primitives    digest, fingerprint, der, x509 (validity, subject, CRLs), le, num, sparse
//! ```

// Casts that could truncate or wrap a size read from outside are errors here (CI denies
// warnings); conversions go through `num` instead. Test data generators may cast freely.
#![warn(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]
#![cfg_attr(
    test,
    allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_possible_wrap
    )
)]

pub mod api;
pub mod authenticode;
pub mod bootentry;
pub mod bundle;
pub mod channel;
pub mod cmdline;
pub mod config;
pub mod delta;
pub mod der;
pub mod dhcp;
pub mod digest;
pub mod fat;
pub mod fingerprint;
pub mod fleet;
pub mod gpt;
pub mod guid;
pub mod install;
pub mod layout;
pub mod le;
pub mod manifest;
pub mod num;
pub mod operator;
pub mod osrelease;
pub mod pe;
pub mod policy;
pub mod retry;
pub mod slots;
pub mod sparse;
pub mod tpm;
pub mod uki;
pub mod verity;
pub mod version;
pub mod x509;

pub use digest::Digest32;
pub use fingerprint::Fingerprint;
pub use guid::Guid;
pub use version::Version;
