//! `slate apply`: an update staged on a device (`slate push --stage`, or one waiting for its
//! maintenance window or the application's consent) applied now. The device needs no network
//! for it: the bytes are in its idle slot already, verified.

use crate::operator::push::{Access, Device};
use crate::progress::Progress;
use anyhow::{bail, Result};
use slate_core::api::{self, Status};
use std::time::Duration;

/// What an apply did: the version it applied and, when followed, the device's final status.
#[derive(Debug)]
pub struct Applied {
    /// The version applied.
    pub version: String,
    /// With `wait`: the status once the trial committed or rolled back.
    pub outcome: Option<Status>,
}

/// Asks `device` to apply its staged update (`now`: without asking the application); with
/// `wait`, follows it through the reboot to the outcome.
pub fn apply(
    device: &str,
    access: &Access,
    now: bool,
    wait: Option<Duration>,
    progress: Progress,
) -> Result<Applied> {
    let dev = Device::open(device, access)?;
    let Some(staged) = dev.status()?.staged else {
        bail!("{device} has no staged update (its status shows none); push one with `slate push --stage`");
    };
    let path = if now {
        format!("{}?now=true", api::APPLY_ROUTE)
    } else {
        api::APPLY_ROUTE.to_string()
    };
    let (code, body) = dev.post(&path)?;
    if code != 202 {
        let why = serde_json::from_str::<api::UploadAnswer>(&body)
            .ok()
            .and_then(|a| match a {
                api::UploadAnswer::Refused { error, .. } | api::UploadAnswer::Failed { error } => {
                    Some(error)
                }
                _ => None,
            })
            .or_else(|| {
                serde_json::from_str::<api::ErrorAnswer>(&body)
                    .ok()
                    .map(|e| e.error)
            })
            .unwrap_or_else(|| body.trim().to_string());
        bail!(
            "the device did not apply {} (HTTP {code}): {why}",
            staged.version
        );
    }
    let Some(limit) = wait else {
        return Ok(Applied {
            version: staged.version,
            outcome: None,
        });
    };
    progress.step(format!(
        "applying {} in slot {}; waiting for the device to reboot and decide",
        staged.version, staged.slot
    ));
    let spinner = progress.spinner("waiting for the trial boot");
    let decided = dev.wait_decided(&staged.version, limit);
    spinner.finish_and_clear();
    match decided? {
        Some(s) => Ok(Applied {
            version: staged.version,
            outcome: Some(s),
        }),
        None => bail!(
            "no outcome from the device within {} s (it may still be booting)",
            limit.as_secs()
        ),
    }
}
