//! A software TPM (Debian's swtpm) for one test or one virtual machine: started on a fresh
//! state directory, stopped (killed and reaped) on drop. The same TPM judges the host-side
//! client (over TCP, raw TPM 2.0 commands) and sits behind a QEMU `tpm-tis` device (over a
//! UNIX control socket).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a test reaches the TPM.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// Raw TPM 2.0 commands on `127.0.0.1:port`; the control channel is on `port + 1` (where
    /// the `swtpm:` TCTI of tpm2-tools and systemd expects it).
    Tcp(u16),
    /// QEMU's `-chardev socket,path=…` for `-tpmdev emulator`.
    Socket(PathBuf),
}

/// A running swtpm.
#[derive(Debug)]
pub struct Swtpm {
    child: Child,
    /// Where it listens.
    pub endpoint: Endpoint,
    /// Its state directory: keep it to keep the TPM's seeds (a "fresh TPM" is a new one).
    pub state: PathBuf,
}

fn swtpm(state: &Path) -> Command {
    let mut cmd = Command::new("swtpm");
    cmd.args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", state.display()))
        .stdout(Stdio::null());
    cmd
}

fn spawn(cmd: &mut Command) -> Result<Child, String> {
    cmd.spawn()
        .map_err(|e| format!("running swtpm ({e}): install the Debian package swtpm"))
}

impl Swtpm {
    /// A TPM on two free loopback ports, powered on and started up, its state in `state`
    /// (created; an existing one is the same TPM again).
    pub fn tcp(state: &Path) -> Result<Swtpm, String> {
        std::fs::create_dir_all(state).map_err(|e| format!("{}: {e}", state.display()))?;
        let port = (1..100)
            .find_map(|_| {
                let a = TcpListener::bind("127.0.0.1:0").ok()?;
                let port = a.local_addr().ok()?.port();
                let _b = TcpListener::bind(("127.0.0.1", port.checked_add(1)?)).ok()?;
                Some(port)
            })
            .ok_or("no two free loopback ports in a row")?;
        let child = spawn(
            swtpm(state)
                .arg("--server")
                .arg(format!("type=tcp,port={port}"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={}", port + 1))
                .args(["--flags", "not-need-init,startup-clear"]),
        )?;
        let tpm = Swtpm {
            child,
            endpoint: Endpoint::Tcp(port),
            state: state.to_path_buf(),
        };
        tpm.wait_for(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())?;
        Ok(tpm)
    }

    /// A TPM for QEMU: its control socket at `state/swtpm.sock`. QEMU powers it on and the
    /// firmware starts it up, as on a real machine.
    pub fn for_vm(state: &Path) -> Result<Swtpm, String> {
        std::fs::create_dir_all(state).map_err(|e| format!("{}: {e}", state.display()))?;
        let sock = state.join("swtpm.sock");
        let _ = std::fs::remove_file(&sock);
        let child = spawn(
            swtpm(state)
                .arg("--ctrl")
                .arg(format!("type=unixio,path={}", sock.display()))
                .arg("--log")
                .arg(format!(
                    "file={},level=1",
                    state.join("swtpm.log").display()
                )),
        )?;
        let tpm = Swtpm {
            child,
            endpoint: Endpoint::Socket(sock.clone()),
            state: state.to_path_buf(),
        };
        tpm.wait_for(|| sock.exists())?;
        Ok(tpm)
    }

    fn wait_for(&self, ready: impl Fn() -> bool) -> Result<(), String> {
        let started = Instant::now();
        while !ready() {
            if started.elapsed() > Duration::from_secs(20) {
                return Err(format!(
                    "swtpm on {:?} did not come up within 20 s",
                    self.endpoint
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The TCP port of a [`Swtpm::tcp`] TPM.
    pub fn port(&self) -> Option<u16> {
        match self.endpoint {
            Endpoint::Tcp(p) => Some(p),
            Endpoint::Socket(_) => None,
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
