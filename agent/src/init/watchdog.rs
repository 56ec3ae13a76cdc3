//! The hardware watchdog: opened early by stage 1, fed by PID 1 while it lives, so a hang in
//! any stage resets the machine and boot counting spends a try.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

/// Seconds between feeds; well under every driver's default timeout (i6300esb: 30 s).
pub const FEED_EVERY: Duration = Duration::from_secs(5);

/// Opens the watchdog device, waiting briefly for devtmpfs to create it after the driver loads.
pub fn open(device: &str) -> Result<File> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match File::options().write(true).open(device) {
            Ok(f) => return Ok(f),
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| {
                    format!("opening watchdog {device} (is its driver in the board's modules?)")
                })
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Feeds the watchdog forever from a background thread. Without a thread the watchdog is not
/// fed and resets the machine: the same outcome as a hang, which is what it is for.
pub fn feed_forever(mut dev: File) -> Result<()> {
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || loop {
            let _ = dev.write_all(b"\0");
            let _ = dev.flush();
            std::thread::sleep(FEED_EVERY);
        })
        .context("starting the watchdog thread")?;
    Ok(())
}
