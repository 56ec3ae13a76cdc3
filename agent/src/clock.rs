//! The clock floor: the device's clock is never earlier than a time it has proof of.
//!
//! Certificates, TUF metadata and bundles expire, and all of it is judged by the system clock,
//! which on an edge device is an RTC that nothing corrects (a dead coin cell says 2000 or
//! 2020). Behind, it would accept expired metadata (a freeze attack) and refuse operators whose
//! certificates are newer than it thinks the world is. So the clock is raised, never lowered,
//! to the newest of: the image's build time (`SOURCE_DATE_EPOCH`), the time last kept on
//! `/data` while it ran, and times signed by someone the device trusts that it has verified
//! since (a release's `published`, an operator certificate's start). Stage 2 raises it before
//! any service starts; the agent raises it again as it verifies signed times.

use std::path::Path;

/// The newest time this device has kept or verified (decimal Unix seconds).
pub const FILE: &str = "/data/slate/clock";

/// Present while the clock cannot be trusted: stage 2 had to raise it to its floor at this
/// boot (a flat RTC battery), and no signed time newer than that floor was seen since. Holds
/// the floor it was raised to. The maintenance windows are not judged on such a clock.
pub const RAISED: &str = "/run/slate/clock-raised";

/// Whether the clock can be trusted (see [`RAISED`]).
pub fn trusted() -> bool {
    !Path::new(RAISED).exists()
}

/// The floor from its sources: the newest of them (none known: no floor).
pub fn floor(sources: &[Option<i64>]) -> Option<i64> {
    sources.iter().flatten().copied().max()
}

/// The kept time, if a readable one is there.
pub fn kept(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The system clock, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Sets the system clock to `floor` when it is behind it, and says so loudly (naming `why`).
/// Returns whether it was raised.
pub fn raise_to(floor: i64, why: &str) -> bool {
    let was = now();
    if was >= floor {
        return false;
    }
    let t = rustix::time::Timespec {
        tv_sec: floor,
        tv_nsec: 0,
    };
    match rustix::time::clock_settime(rustix::time::ClockId::Realtime, t) {
        Ok(()) => {
            crate::marker::warn(format!(
                "clock: it said {was}, before the clock floor {floor} ({why}); the clock is set to the floor"
            ));
            true
        }
        Err(e) => {
            crate::marker::warn(format!(
                "clock: it says {was}, before the clock floor {floor} ({why}), and cannot be set: {e}"
            ));
            false
        }
    }
}

/// Keeps `time` as the floor in `path` if it is newer than what is kept there (atomically: a
/// power cut leaves the old or the new time).
pub fn keep(path: &Path, time: i64) -> anyhow::Result<()> {
    if kept(path).is_some_and(|k| k >= time) {
        return Ok(());
    }
    crate::durable::replace(path, format!("{time}\n").as_bytes())
}

/// A time signed by someone the device trusts was verified: raise the clock to it and keep it.
pub fn observe(signed: i64, why: &str) {
    raise_to(signed, why);
    // A signed time newer than the floor the boot raised the clock to: the clock is at least
    // that, and no longer only a floor.
    let raised = std::fs::read_to_string(RAISED)
        .ok()
        .and_then(|t| t.trim().parse::<i64>().ok());
    if raised.is_some_and(|floor| signed > floor) && std::fs::remove_file(RAISED).is_ok() {
        crate::marker::warn(format!(
            "clock: {why} ({signed}) is newer than the floor it was set to at boot; maintenance windows are judged on it again"
        ));
    }
    if let Err(e) = keep(Path::new(FILE), signed) {
        crate::marker::warn(format!("clock: keeping the floor: {e:#}"));
    }
}

/// Stage 2, before services start: the clock goes up to the image's build time and the time
/// kept on `/data`.
pub fn raise_at_boot(built: Option<i64>) {
    let kept = kept(Path::new(FILE));
    let Some(floor) = floor(&[built, kept]) else {
        return;
    };
    let why = if kept.is_some_and(|k| Some(k) == Some(floor)) {
        "the time kept on /data"
    } else {
        "the image's build time"
    };
    if raise_to(floor, why) {
        let kept = Path::new(RAISED)
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(RAISED, format!("{floor}\n")));
        if let Err(e) = kept {
            crate::marker::warn(format!("clock: noting {RAISED}: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_the_newest_source() {
        assert_eq!(floor(&[None, None]), None);
        assert_eq!(floor(&[Some(5), None, Some(9), Some(7)]), Some(9));
    }

    #[test]
    fn the_kept_time_only_goes_up_and_garbage_is_no_floor() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("clock");
        assert_eq!(kept(&f), None);
        keep(&f, 100).unwrap();
        keep(&f, 50).unwrap();
        assert_eq!(kept(&f), Some(100));
        keep(&f, 200).unwrap();
        assert_eq!(kept(&f), Some(200));
        std::fs::write(&f, "18446744073709551616x").unwrap();
        assert_eq!(kept(&f), None);
    }

    #[test]
    fn a_clock_ahead_of_the_floor_is_left_alone() {
        assert!(!raise_to(0, "test"));
    }
}
