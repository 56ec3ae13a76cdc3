//! IANA time zones, resolved at build time: the device carries no zone database, so the
//! imager reads the build host's (`/usr/share/zoneinfo`, Debian's `tzdata`, TZif version 2
//! as RFC 8536 describes it) and bakes the zone's offset changes into the image.
//!
//! Debian's files list every change up to 2037; after the last one the device keeps its
//! offset (a window written in such a zone then drifts by the daylight-saving hour).

use anyhow::{bail, Context, Result};
use slate_core::policy::Zone;
use std::path::Path;

/// Where the build host keeps the zones.
pub const ZONEINFO: &str = "/usr/share/zoneinfo";

fn be32(b: &[u8], at: usize) -> Result<i32> {
    let bytes: [u8; 4] = b
        .get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .context("TZif data ends early")?;
    Ok(i32::from_be_bytes(bytes))
}

fn be64(b: &[u8], at: usize) -> Result<i64> {
    let bytes: [u8; 8] = b
        .get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .context("TZif data ends early")?;
    Ok(i64::from_be_bytes(bytes))
}

fn count(b: &[u8], at: usize) -> Result<usize> {
    usize::try_from(be32(b, at)?).context("a negative count in the TZif header")
}

/// The counts of a TZif header at `at`: isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt.
fn header(b: &[u8], at: usize) -> Result<(u8, [usize; 6])> {
    if b.get(at..at + 4) != Some(b"TZif") {
        bail!("not a TZif file");
    }
    let version = *b.get(at + 4).context("TZif data ends early")?;
    let mut c = [0usize; 6];
    for (i, n) in c.iter_mut().enumerate() {
        *n = count(b, at + 20 + 4 * i)?;
    }
    Ok((version, c))
}

/// Reads a TZif file's offset changes (the 64-bit block when there is one) from `since` on.
pub fn parse(name: &str, b: &[u8], since: i64) -> Result<Zone> {
    let (version, c) = header(b, 0)?;
    let [isut, isstd, leap, timecnt, typecnt, charcnt] = c;
    let (at, c, time_size) = if version >= b'2' {
        let v1_len = timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut;
        let at = 44 + v1_len;
        (at, header(b, at)?.1, 8)
    } else {
        (0, c, 4)
    };
    let [_, _, _, timecnt, typecnt, _] = c;
    if typecnt == 0 {
        bail!("a TZif file without local time types");
    }
    let times_at = at + 44;
    let idx_at = times_at + timecnt * time_size;
    let types_at = idx_at + timecnt;
    let offset_of = |t: usize| -> Result<i32> {
        if t >= typecnt {
            bail!("a transition names local time type {t} of {typecnt}");
        }
        be32(b, types_at + 6 * t)
    };
    let mut offset_s = offset_of(0)?;
    let mut changes = Vec::new();
    for i in 0..timecnt {
        let t = if time_size == 8 {
            be64(b, times_at + 8 * i)?
        } else {
            i64::from(be32(b, times_at + 4 * i)?)
        };
        let ty = usize::from(*b.get(idx_at + i).context("TZif data ends early")?);
        let off = offset_of(ty)?;
        if t < since {
            offset_s = off;
        } else {
            changes.push((t, off));
        }
    }
    Ok(Zone {
        name: name.to_string(),
        offset_s,
        changes,
    })
}

/// The zone `name` from `[update] timezone`: a fixed offset (`UTC`, `+02:00`) or an IANA name
/// read from `zoneinfo`, its changes from `since` (the build's time, less a year) on.
pub fn zone(name: &str, zoneinfo: &Path, since: i64) -> Result<Zone> {
    if let Some(z) = Zone::fixed(name) {
        return Ok(z);
    }
    let safe = !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
    if !safe {
        bail!("{name:?} is not a time zone name (an IANA name like \"Europe/Berlin\", or an offset like \"+02:00\")");
    }
    let path = zoneinfo.join(name);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "{name:?} is not a time zone this machine knows ({} is missing; `apt install tzdata`, or write an offset like \"+02:00\")",
            path.display()
        )
    })?;
    parse(name, &bytes, since).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-01 00:00 UTC.
    const Y2026: i64 = 1_767_225_600;

    #[test]
    fn berlin_changes_on_the_last_sundays_of_march_and_october() {
        let z = zone("Europe/Berlin", Path::new(ZONEINFO), Y2026).unwrap();
        assert_eq!(z.offset_s, 3600);
        // 2026-03-29 01:00 UTC to +2, 2026-10-25 01:00 UTC back to +1.
        assert_eq!(z.changes[0], (1_774_746_000, 7200));
        assert_eq!(z.changes[1], (1_792_890_000, 3600));
        assert_eq!(z.offset_at(1_774_745_999), 3600);
        assert_eq!(z.offset_at(1_774_746_000), 7200);
        // The same offsets as the C library says (the build host's `date`).
        let out = std::process::Command::new("date")
            .args(["-d", "@1780000000", "+%z"])
            .env("TZ", "Europe/Berlin")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "+0200");
        assert_eq!(z.offset_at(1_780_000_000), 7200);
    }

    #[test]
    fn unknown_or_unsafe_names_are_refused_with_what_to_write() {
        for bad in [
            "Mars/Olympus",
            "../../etc/passwd",
            "/etc/localtime",
            "Europe/Ber lin",
            "",
        ] {
            let e = zone(bad, Path::new(ZONEINFO), Y2026).unwrap_err();
            assert!(format!("{e:#}").contains("time zone"), "{bad}: {e:#}");
        }
        assert_eq!(
            zone("+05:30", Path::new(ZONEINFO), Y2026).unwrap().offset_s,
            19_800
        );
        assert!(parse("x", b"not tzif at all, not at all, not at all, no", 0).is_err());
    }
}
