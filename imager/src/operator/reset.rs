//! `slate reset`: a device's factory reset, asked for twice (a token, then the token back),
//! so a mistyped command or a replayed request wipes nothing.

use crate::operator::push::{Access, Device};
use anyhow::{bail, Context, Result};
use slate_core::api::{self, ResetConfirm};

/// Asks `device` for a factory reset: gets the confirmation token, lets `confirm` decide on
/// what the device says it wipes, then sends the token back. The device reboots and stage 1
/// wipes `/data`.
pub fn reset(
    device: &str,
    access: &Access,
    new_identity: bool,
    confirm: impl FnOnce(&ResetConfirm) -> Result<bool>,
) -> Result<()> {
    let dev = Device::open(device, access)?;
    let (code, body) = dev.post(api::FACTORY_RESET_ROUTE)?;
    if code != 200 {
        bail!(
            "the device refused a factory reset (HTTP {code}): {}",
            error_text(&body)
        );
    }
    let token: ResetConfirm = serde_json::from_str(&body)
        .with_context(|| format!("the device's answer is not a confirmation token: {body}"))?;
    if !confirm(&token)? {
        bail!("not confirmed; nothing was done");
    }
    let mut path = format!("{}?confirm={}", api::FACTORY_RESET_ROUTE, token.confirm);
    if new_identity {
        path.push_str("&new_identity=true");
    }
    let (code, body) = dev.post(&path)?;
    if code != 202 {
        bail!(
            "the device refused the factory reset (HTTP {code}): {}",
            error_text(&body)
        );
    }
    Ok(())
}

fn error_text(body: &str) -> String {
    serde_json::from_str::<api::ErrorAnswer>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| body.trim().to_string())
}
