//! Saving a running machine to files and resuming it, many times over.
//!
//! The gauntlet's random cuts all start from the same moment: version 1 booted, healthy, with
//! synced data on /data. Booting there costs a firmware, kernel and stage-2 start each time
//! (about 14 s under TCG); resuming a saved machine costs about one. QEMU saves the machine
//! (memory and device state) with a migration into a file; the disk and the UEFI variable
//! store are copied beside it once the machine has stopped, so all three agree.
//!
//! The machine is driven through QEMU's human monitor (HMP) on a unix socket in the VM's work
//! folder: `migrate "exec:cat > <file>"` returns when the migration has ended and the machine
//! has stopped.

use crate::machine::Accel;
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A machine saved to files. Resume it with `VmConfig::resume` on a *copy* of `disk`: the
/// resumed machine writes to the disk it is given.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The disk as the machine left it.
    pub disk: PathBuf,
    /// The UEFI variable store.
    pub(crate) vars: PathBuf,
    /// QEMU's migration stream: memory and device state.
    pub(crate) state: PathBuf,
    /// The accelerator the state was saved under; a resume must use the same.
    pub(crate) accel: Accel,
    /// Guest memory; a resume must use the same.
    pub(crate) memory_mib: u32,
}

impl Snapshot {
    /// `-incoming` argument that reads the saved state.
    pub(crate) fn incoming(&self) -> Result<String> {
        Ok(format!("exec:cat '{}'", quotable(&self.state)?))
    }
}

/// The state file's path as text that can sit inside the quotes of QEMU's `exec:` shell
/// command (and of the HMP command around it).
fn quotable(path: &Path) -> Result<&str> {
    let text = path.to_str().context("snapshot path is not UTF-8")?;
    if text.contains('\'') || text.contains('"') {
        bail!("snapshot path {text:?} contains a quote");
    }
    Ok(text)
}

/// The HMP monitor of one QEMU.
pub(crate) struct Monitor {
    stream: UnixStream,
}

const PROMPT: &str = "(qemu) ";

impl Monitor {
    /// Connects to the monitor socket QEMU created (it may take a moment to appear).
    pub(crate) fn connect(socket: &Path, timeout: Duration) -> Result<Monitor> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    return Err(e).with_context(|| {
                        format!("connecting to QEMU's monitor {}", socket.display())
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(600)))?;
        let mut m = Monitor { stream };
        m.read_to_prompt().context("QEMU's monitor greeting")?;
        Ok(m)
    }

    fn read_to_prompt(&mut self) -> Result<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&out).ends_with(PROMPT) {
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                bail!("QEMU's monitor closed");
            }
            out.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&out);
        Ok(text.trim_end_matches(PROMPT).to_string())
    }

    /// Runs one command and returns what the monitor printed for it.
    pub(crate) fn run(&mut self, command: &str) -> Result<String> {
        self.stream.write_all(format!("{command}\n").as_bytes())?;
        self.read_to_prompt()
            .with_context(|| format!("QEMU monitor command {command:?}"))
    }
}

/// Saves the machine's state into `dir/state` and leaves it stopped; the caller copies disk
/// and variables.
pub(crate) fn save_state(monitor: &mut Monitor, dir: &Path) -> Result<PathBuf> {
    let state = dir.join("state");
    let path = quotable(&state)?;
    // Migrating a running machine (not a stopped one) makes the resumed copy run at once: a
    // destination starts in the run state the source had. QEMU stops the source at the end.
    let said = monitor.run(&format!("migrate \"exec:cat > '{path}'\""))?;
    let info = monitor.run("info migrate")?;
    if !info.contains("Migration status: completed") {
        bail!("QEMU could not save the machine: {said} {info}");
    }
    Ok(state)
}
