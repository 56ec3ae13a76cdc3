//! The device's TPM: the kernel's resource manager (`/dev/tpmrm0`) as a
//! [`Transport`](slate_core::tpm::client::Transport) for the client in `slate_core::tpm`.
//! The resource manager flushes whatever a closed handle left loaded, so a crash mid-sequence
//! leaks nothing into the TPM.

use slate_core::tpm::client::{Tpm, Transport};
use std::fs::File;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// The resource-managed TPM device.
pub const DEVICE: &str = "/dev/tpmrm0";

/// `/dev/tpmrm0`, opened.
#[derive(Debug)]
pub struct DevTpm(File);

impl Transport for DevTpm {
    fn transact(&mut self, command: &[u8]) -> std::io::Result<Vec<u8>> {
        // One write is one command; one read is its whole response (the driver's contract).
        self.0.write_all(command)?;
        let mut response = vec![0u8; 4096];
        let n = self.0.read(&mut response)?;
        response.truncate(n);
        Ok(response)
    }
}

/// The TPM, if the machine has one: waits up to `wait` for the driver to create the device
/// (the TIS driver is built into the kernel, but probes asynchronously).
pub fn open(wait: Duration) -> std::io::Result<Option<Tpm<DevTpm>>> {
    let started = Instant::now();
    loop {
        match File::options().read(true).write(true).open(DEVICE) {
            Ok(f) => return Ok(Some(Tpm::new(DevTpm(f)))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if started.elapsed() >= wait {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Stage 1 of a measured-boot image without a sealed `/data`: extends both phases at once,
/// so that the running system's PCR 11 matches no policy the vendor signed. No TPM: nothing
/// to do; a TPM that fails is a warning (nothing depends on it in such an image).
pub fn pass_initrd_phases() {
    use slate_core::tpm::{ENTER_INITRD, LEAVE_INITRD, PCR_KERNEL_BOOT};
    match open(Duration::from_secs(1)) {
        Ok(Some(mut t)) => {
            for phase in [ENTER_INITRD, LEAVE_INITRD] {
                if let Err(e) = t.extend(PCR_KERNEL_BOOT, phase.as_bytes()) {
                    crate::marker::warn(format!("extending PCR 11 with {phase}: {e}"));
                    return;
                }
            }
        }
        Ok(None) => {}
        Err(e) => crate::marker::warn(format!("opening {DEVICE}: {e}")),
    }
}
