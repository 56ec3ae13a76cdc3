//! The update channel's pure logic: what a device decides from a release manifest, its own
//! seed and a clock, and how often it asks.
//!
//! The device agent runs this code against the real clock and a TUF repository; `cargo xtask
//! fleet-sim` runs the very same code against a simulated clock for 100,000 devices. Nothing
//! here does I/O, so both can trust that they see the same behaviour.
//!
//! - [`span`]: durations as people write them in TOML (`"90s"`, `"4h"`, `"2d"`).
//! - [`waves`]: a wave file, resolved into seed ranges and opening times at publish time.
//! - [`release`]: the signed release manifest (`release.json`) and the decision it drives.
//! - [`config`]: the device's `/etc/slate/update.toml`.
//! - [`schedule`]: poll intervals with jitter and exponential backoff after errors.
//! - [`multipart`]: a `multipart/byteranges` answer, read as it arrives (a delta's stretches).

pub mod config;
pub mod multipart;
pub mod release;
pub mod schedule;
pub mod span;
pub mod url;
pub mod waves;

pub use config::UpdateConfig;
pub use release::{
    decide, Decision, DeviceView, Limit, Reason, ReleaseManifest, Update, OPERATORS_CRL_TARGET,
    RELEASE_TARGET,
};
pub use schedule::{backoff_delay, next_poll, Outcome, Poll, Scheduler, TargetBackoff};
pub use span::Span;
pub use url::ChannelUrl;
pub use waves::{Seed, WaveError, WaveFile, Waves, SEEDS};

#[cfg(test)]
mod tests;
