//! What PID 1 tells the health checks about each supervised service: one small JSON file per
//! service in `/run/slate/services/`, written by stage 2 (`init/`) whenever a service starts or
//! stops, and read by slated's `service` probe. One type for both sides, so neither reads the
//! other's JSON by string keys.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Folder of the per-service state files (`<name>.json`).
pub const STATE_DIR: &str = "/run/slate/services";

/// One service as PID 1 supervises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceState {
    /// The service's name (its file in `/etc/slate/services/`).
    pub name: String,
    /// Its process, while it runs.
    pub pid: Option<u32>,
    /// It runs now.
    pub running: bool,
    /// When it started, in milliseconds since the kernel started (`/proc/uptime`'s clock).
    pub started_uptime_ms: u64,
    /// How often PID 1 restarted it.
    pub restarts: u32,
}

impl ServiceState {
    /// The state file of service `name`.
    pub fn path(name: &str) -> PathBuf {
        PathBuf::from(format!("{STATE_DIR}/{name}.json"))
    }

    /// Writes the file (temporary name, rename: a reader never sees half of it). `/run` is a
    /// tmpfs, so nothing needs to be durable.
    pub fn write(&self) -> std::io::Result<()> {
        let path = ServiceState::path(&self.name);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, &path)
    }

    /// Reads service `name`'s file: None when PID 1 does not know it, an error naming the file
    /// when it does not parse.
    pub fn read(name: &str) -> Result<Option<ServiceState>, String> {
        let path = ServiceState::path(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_reads_back_as_written_and_keeps_its_keys() {
        let s = ServiceState {
            name: "httpd".into(),
            pid: Some(312),
            running: true,
            started_uptime_ms: 4100,
            restarts: 1,
        };
        let text = serde_json::to_string(&s).unwrap();
        // The keys tests and operators read (`grep -o '"pid":[0-9]*'`).
        assert_eq!(
            text,
            r#"{"name":"httpd","pid":312,"running":true,"started_uptime_ms":4100,"restarts":1}"#
        );
        assert_eq!(serde_json::from_str::<ServiceState>(&text).unwrap(), s);
    }
}
