//! A log file on `/data` that can never fill it: once the current file reaches half of its
//! cap it becomes `<name>.1` (replacing the older one) and a new file starts, so a log takes at
//! most its cap (plus one line) whatever a service prints.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// An append-only, size-capped, rotated log file.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    /// Bytes the current file may reach before it rotates (half the cap).
    rotate_at: u64,
    file: File,
    written: u64,
}

impl RotatingLog {
    /// Opens (appending to) `path`, with `cap` bytes for it and its one rotated generation.
    ///
    /// Logs are root's alone (0600): services' output may hold what only they should see.
    pub fn open(path: &Path, cap: u64) -> io::Result<RotatingLog> {
        let file = private_append(path)?;
        let written = file.metadata()?.len();
        let mut log = RotatingLog {
            path: path.to_path_buf(),
            rotate_at: (cap / 2).max(1),
            file,
            written,
        };
        if log.written >= log.rotate_at {
            log.rotate()?;
        }
        Ok(log)
    }

    /// The rotated generation's path: `<name>.1`.
    pub fn older(path: &Path) -> PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".1");
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        std::fs::rename(&self.path, Self::older(&self.path))?;
        self.file = private_append(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

/// Opens `path` for appending, 0600 whatever mode an older file had.
fn private_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

impl Write for RotatingLog {
    /// Writes whole buffers (callers write one line at a time), rotating first when this one
    /// would take the file past its half of the cap.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written > 0 && self.written + buf.len() as u64 > self.rotate_at {
            self.rotate()?;
        }
        self.file.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(p: &Path) -> u64 {
        std::fs::metadata(p).map_or(0, |m| m.len())
    }

    #[test]
    fn a_log_never_takes_more_than_its_cap() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("web.log");
        let cap = 4096;
        let mut log = RotatingLog::open(&path, cap).unwrap();
        let line = b"0123456789012345678901234567890123456789012345678901234567890123\n";
        for _ in 0..1000 {
            log.write_all(line).unwrap();
            let total = size(&path) + size(&RotatingLog::older(&path));
            assert!(total <= cap + line.len() as u64, "{total} bytes");
        }
        // The newest lines are kept, the oldest dropped.
        assert!(size(&RotatingLog::older(&path)) > 0);
        assert!(size(&path) > 0);
    }

    #[test]
    fn reopening_a_full_log_rotates_it_and_appends_otherwise() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("init.log");
        std::fs::write(&path, vec![b'x'; 3000]).unwrap();
        let mut log = RotatingLog::open(&path, 4096).unwrap();
        log.write_all(b"new\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new\n");
        assert_eq!(size(&RotatingLog::older(&path)), 3000);
        drop(log);
        let mut log = RotatingLog::open(&path, 4096).unwrap();
        log.write_all(b"more\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new\nmore\n");
    }
}
