//! Starting, watching and stopping one QEMU virtual machine.
#![allow(unsafe_code)]

use crate::config::VmConfig;
use crate::limit::SlotGuard;
use crate::machine::GuestArch;
use crate::machine::{
    free_port, kvm_usable, requested_accel, Accel, Firmware, KVM_BROKEN, KVM_PROBE,
};
use crate::serial::{Line, Serial};
use crate::snapshot::{self, Snapshot};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A running virtual machine.
pub struct Vm {
    child: Child,
    stdin: Option<ChildStdin>,
    serial: Serial,
    stderr: std::sync::Arc<Mutex<String>>,
    pub(crate) host_port: Option<u16>,
    pub(crate) extra_ports: Vec<(u16, u16)>,
    pub(crate) tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    accel: Accel,
    log: PathBuf,
    started: Instant,
    nbd: Option<(crate::nbd::NbdDisk, crate::nbd::Loss)>,
    disk: PathBuf,
    vars: PathBuf,
    memory_mib: u32,
    /// QEMU's HMP monitor socket (None in interactive mode, where it is on the terminal).
    monitor: Option<PathBuf>,
    /// Held while QEMU runs: released once it has exited, so a test that keeps a stopped
    /// machine around does not hold up the next one.
    slot: Option<SlotGuard>,
    /// The machine's TPM, stopped after QEMU (fields drop after `Drop::drop` killed it).
    _tpm: Option<slate_oracles::swtpm::Swtpm>,
}

impl Vm {
    /// Boots `cfg.disk`, choosing the accelerator as `SLATE_ACCEL` says.
    pub fn start(cfg: &VmConfig) -> Result<Vm> {
        let slot = SlotGuard::take();
        if let Some(snap) = &cfg.resume {
            // The saved state only runs under the accelerator it was saved with.
            let vm = Vm::spawn(cfg, snap.accel, slot)?;
            vm.wait_resumed(Duration::from_secs(120))?;
            return Ok(vm);
        }
        if cfg.arch == GuestArch::Arm64 {
            // KVM runs only the host's architecture.
            return Vm::spawn(cfg, Accel::Tcg, slot);
        }
        match requested_accel()? {
            Some(a) => Vm::spawn(cfg, a, slot),
            None if kvm_usable() => {
                let vm = Vm::spawn(cfg, Accel::Kvm, slot)?;
                if vm.kvm_works() {
                    return Ok(vm);
                }
                KVM_BROKEN.store(true, Ordering::Relaxed);
                eprintln!(
                    "slate-qemu: KVM cannot run OVMF here ({}); using TCG",
                    vm.stderr_text()
                        .lines()
                        .next()
                        .unwrap_or("no console output")
                );
                drop(vm);
                Vm::spawn(cfg, Accel::Tcg, SlotGuard::take())
            }
            None => Vm::spawn(cfg, Accel::Tcg, slot),
        }
    }

    /// Under KVM, OVMF prints within a second; silence or "KVM internal error" means it died.
    fn kvm_works(&self) -> bool {
        let deadline = Instant::now() + KVM_PROBE;
        while Instant::now() < deadline {
            if self.stderr_text().contains("KVM internal error") {
                return false;
            }
            if self.serial.has_output() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn spawn(cfg: &VmConfig, accel: Accel, slot: SlotGuard) -> Result<Vm> {
        let fw = Firmware::select(cfg.arch, cfg.secure_boot_vars.as_deref())?;
        std::fs::create_dir_all(&cfg.work_dir)?;
        if let Some(snap) = &cfg.resume {
            if snap.memory_mib != cfg.memory_mib {
                bail!(
                    "the snapshot was saved with {} MiB of memory, not {}",
                    snap.memory_mib,
                    cfg.memory_mib
                );
            }
        }
        let vars = cfg.work_dir.join("OVMF_VARS.fd");
        let vars_from = cfg.resume.as_ref().map_or(&fw.vars, |s| &s.vars);
        std::fs::copy(vars_from, &vars)
            .with_context(|| format!("copying {}", vars_from.display()))?;
        let monitor = (!cfg.interactive).then(|| cfg.work_dir.join("monitor.sock"));
        if let Some(m) = &monitor {
            let _ = std::fs::remove_file(m);
        }
        let host_port = cfg.guest_port.map(|_| free_port()).transpose()?;
        let extra_ports = cfg
            .extra_ports
            .iter()
            .map(|&guest| Ok((guest, free_port()?)))
            .collect::<Result<Vec<_>>>()?;
        let nbd = match cfg.volatile_cache {
            Some(loss) => Some((
                crate::nbd::NbdDisk::serve(&cfg.disk, &cfg.work_dir.join("disk.sock"))?,
                loss,
            )),
            None => None,
        };
        let mut cmd = crate::cmdline::command(&crate::cmdline::Launch {
            cfg,
            fw: &fw,
            accel,
            vars: &vars,
            nbd_socket: nbd.as_ref().map(|(d, _)| d.socket()),
            host_port,
            extra_ports: &extra_ports,
        });
        let tpm = match &cfg.tpm {
            Some(state) => Some(crate::tpm::attach(&mut cmd, state, cfg.arch)?),
            None => None,
        };
        if let Some(m) = &monitor {
            cmd.arg("-monitor")
                .arg(format!("unix:{},server=on,wait=off", m.display()));
        }
        if let Some(snap) = &cfg.resume {
            cmd.arg("-incoming").arg(snap.incoming()?);
        }
        for (k, v) in &cfg.fw_cfg {
            cmd.arg("-fw_cfg")
                .arg(format!("name=opt/slate/{k},string={v}"));
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the child between fork and exec and only makes one
        // async-signal-safe system call (prctl); it allocates nothing.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                let _ = rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ));
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "starting {} (install qemu-system-x86 or qemu-system-arm: `cargo xtask deps`)",
                cfg.arch.qemu()
            )
        })?;
        let log = cfg.work_dir.join("serial.log");
        let log_file = std::fs::File::create(&log)?;
        let serial = match child.stdout.take() {
            Some(stdout) => Serial::capture(stdout, log_file, cfg.echo, started),
            None => Serial::capture(std::io::empty(), log_file, false, started),
        };
        let stderr = std::sync::Arc::new(Mutex::new(String::new()));
        if let Some(mut e) = child.stderr.take() {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = e.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = sink.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        Ok(Vm {
            child,
            stdin,
            serial,
            stderr,
            host_port,
            extra_ports,
            tls: cfg.tls.clone(),
            accel,
            log,
            started,
            nbd,
            disk: cfg.disk.clone(),
            vars,
            memory_mib: cfg.memory_mib,
            monitor,
            slot: Some(slot),
            _tpm: tpm,
        })
    }

    fn monitor(&self, timeout: Duration) -> Result<snapshot::Monitor> {
        let socket = self
            .monitor
            .as_deref()
            .context("this VM has no monitor socket")?;
        snapshot::Monitor::connect(socket, timeout)
    }

    /// Waits until QEMU has loaded a saved state and runs the guest. A connection made before
    /// that reaches a guest that is not there yet; its retries then cost seconds.
    fn wait_resumed(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut monitor = self.monitor(timeout)?;
        loop {
            let status = monitor.run("info status")?;
            if status.contains("VM status: running") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the saved machine did not resume within {} s: {status}; QEMU said: {}",
                    timeout.as_secs(),
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves the machine as it is now into `dir` (state, disk copy and UEFI variables) and
    /// stops it; resume copies of it with `VmConfig::resume`. Only a plain disk can be
    /// saved: a volatile cache's unflushed writes would not be in the copy.
    pub fn save(&mut self, dir: &Path) -> Result<Snapshot> {
        if self.nbd.is_some() {
            bail!("a machine on a volatile-cache disk cannot be saved (its unflushed writes live in the harness)");
        }
        std::fs::create_dir_all(dir)?;
        let mut monitor = self.monitor(Duration::from_secs(10))?;
        let state = snapshot::save_state(&mut monitor, dir)?;
        let _ = monitor.run("quit");
        drop(monitor);
        self.wait_exit(Duration::from_secs(30))?;
        let disk = dir.join("disk.img");
        let copied = Command::new("cp")
            .arg("--sparse=always")
            .arg(&self.disk)
            .arg(&disk)
            .status()
            .context("running cp")?;
        if !copied.success() {
            bail!("copying {} to {}", self.disk.display(), disk.display());
        }
        let vars = dir.join("OVMF_VARS.fd");
        std::fs::copy(&self.vars, &vars)
            .with_context(|| format!("copying {}", self.vars.display()))?;
        Ok(Snapshot {
            disk,
            vars,
            state,
            accel: self.accel,
            memory_mib: self.memory_mib,
        })
    }

    /// QEMU's stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The accelerator in use.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// Path of the serial log (timestamped).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// All console lines so far.
    pub fn lines(&self) -> Vec<Line> {
        self.serial.lines()
    }

    /// A position in the console output; waits can start after it.
    pub fn mark(&self) -> usize {
        self.serial.mark()
    }

    /// Waits for a complete console line containing `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<Line> {
        self.wait_for_after(needle, 0, timeout)
    }

    /// Waits for a line containing `needle` after position `mark`.
    pub fn wait_for_after(&self, needle: &str, mark: usize, timeout: Duration) -> Result<Line> {
        self.wait_any_after(&[needle], mark, timeout)
            .map(|(_, l)| l)
    }

    /// Waits for the first line containing any of `needles` after `mark`.
    pub fn wait_any_after(
        &self,
        needles: &[&str],
        mark: usize,
        timeout: Duration,
    ) -> Result<(usize, Line)> {
        self.wait_inner(needles, mark, false, timeout)
    }

    /// Waits for text that may not end its line (a shell prompt) after `mark`.
    pub fn wait_prompt(&self, prompt: &str, mark: usize, timeout: Duration) -> Result<Line> {
        self.wait_inner(&[prompt], mark, true, timeout)
            .map(|(_, l)| l)
    }

    fn wait_inner(
        &self,
        needles: &[&str],
        mark: usize,
        partial: bool,
        timeout: Duration,
    ) -> Result<(usize, Line)> {
        match self.serial.wait_any(needles, mark, partial, timeout) {
            Some(hit) => Ok(hit),
            None => bail!(
                "none of {needles:?} on the console within {} s ({} accel); serial log: {}; last lines:\n{}",
                timeout.as_secs(),
                self.accel.name(),
                self.log.display(),
                self.tail(15)
            ),
        }
    }

    /// The last `n` console lines, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines();
        lines
            .iter()
            .skip(lines.len().saturating_sub(n))
            .map(|l| format!("  [{:>7.3}] {}", l.at.as_secs_f64(), l.text))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// True if any console line so far contains `needle`.
    pub fn saw(&self, needle: &str) -> bool {
        self.lines().iter().any(|l| l.text.contains(needle))
    }

    /// True if a console line after `mark` contains `needle`.
    pub fn saw_after(&self, needle: &str, mark: usize) -> bool {
        self.lines()
            .iter()
            .skip(mark)
            .any(|l| l.text.contains(needle))
    }

    /// Types `text` on the serial console (the debug shell reads it).
    pub fn send(&mut self, text: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("console input is closed")?;
        stdin.write_all(text.as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    /// Runs a shell command on the debug console and returns its output lines, using a
    /// unique end marker so output of other processes can be told apart.
    pub fn shell(&mut self, command: &str, timeout: Duration) -> Result<String> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = N.fetch_add(1, Ordering::Relaxed);
        // The marker is split in the typed command so the console's echo of the command
        // never matches it; only the shell's output does. The echo (which the line editor may
        // wrap) ends with the line holding `ND<id>:$?`; the output starts after it.
        let end = format!("__END{id}:");
        let typed = format!("__E\"\"ND{id}:");
        let mark = self.mark();
        self.send(&format!("{command}; echo \"{typed}$?\"\n"))?;
        let (_, line) = self.wait_inner(&[&end], mark, false, timeout)?;
        let lines = self.lines();
        let start = lines
            .iter()
            .skip(mark)
            .rposition(|l| l.text.contains(&format!("ND{id}:$?")))
            .map_or(mark, |p| mark + p + 1);
        let body: Vec<String> = lines
            .iter()
            .skip(start)
            .take_while(|l| !l.text.contains(&end))
            .map(|l| l.text.clone())
            .collect();
        let code = line
            .text
            .rsplit(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        Ok(format!("{}\nexit={code}", body.join("\n")))
    }

    /// Kills QEMU at once: a power cut. The disk keeps what the guest wrote before it.
    pub fn power_cut(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.slot = None;
        if let Some((d, loss)) = &self.nbd {
            let (lost, kept) = d.cut(*loss);
            eprintln!("slate-qemu: power cut on a volatile cache ({loss:?}): {lost} unflushed sectors lost, {kept} kept");
        }
    }

    /// Writes and flushes the guest sent to a volatile-cache disk.
    pub fn disk_counts(&self) -> Option<(u64, u64)> {
        self.nbd.as_ref().map(|(d, _)| d.counts())
    }

    /// Waits for QEMU to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                self.slot = None;
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!(
                    "QEMU did not exit within {} s; serial log {}:\n{}",
                    timeout.as_secs(),
                    self.log.display(),
                    self.tail(10)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks the agent to power off and waits for QEMU to exit; kills it if that fails.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<()> {
        let asked = self.http("POST", "/v1/poweroff");
        let r = asked.and_then(|_| self.wait_exit(timeout));
        if r.is_err() {
            self.power_cut();
        }
        r.map(|_| ())
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process_alive(pid: u32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.contains(") Z "))
    }

    /// A VM without a bootable disk still starts QEMU: enough to prove cleanup.
    fn empty_vm(dir: &Path) -> Vm {
        let disk = dir.join("empty.img");
        std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
        let mut cfg = VmConfig::new(&disk, dir);
        cfg.guest_port = None;
        cfg.watchdog = false;
        Vm::start(&cfg).unwrap()
    }

    #[test]
    fn dropping_a_vm_kills_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let vm = empty_vm(dir.path());
        let pid = vm.pid();
        assert!(process_alive(pid));
        drop(vm);
        assert!(!process_alive(pid), "QEMU {pid} outlived its Vm");
    }

    #[test]
    fn a_panicking_test_leaves_no_qemu_behind() {
        let dir = tempfile::tempdir().unwrap();
        let pid = std::sync::Arc::new(Mutex::new(0));
        let p = pid.clone();
        let d = dir.path().to_path_buf();
        let r = std::thread::spawn(move || {
            let vm = empty_vm(&d);
            *p.lock().unwrap() = vm.pid();
            panic!("test failure while a VM runs");
        })
        .join();
        assert!(r.is_err());
        let pid = *pid.lock().unwrap();
        assert!(pid > 0);
        std::thread::sleep(Duration::from_millis(200));
        assert!(!process_alive(pid), "QEMU {pid} outlived a panicking test");
    }

    #[test]
    fn firmware_is_found() {
        let fw = Firmware::find(GuestArch::X86_64).unwrap();
        assert!(fw.code.is_file() && fw.vars.is_file());
    }
}
