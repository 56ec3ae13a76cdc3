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

/// The TPM, if the machine has one: waits up to `wait` for its device node when the kernel
/// has a TPM (`/sys/class/tpm/tpm0`) whose node is not there yet. Without one there is
/// nothing to wait for: Debian's TPM drivers are built in and probe before PID 1 runs.
pub fn open(wait: Duration) -> std::io::Result<Option<Tpm<DevTpm>>> {
    let wait = if std::path::Path::new("/sys/class/tpm/tpm0").exists() {
        wait
    } else {
        Duration::ZERO
    };
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

/// Where the TPM client runs for the agent (`slate-init tpm …`).
const HELPER: &str = "/usr/lib/slate/slate-init";

/// Runs `slate-init tpm <args>` and returns what it printed: how slated reaches the TPM
/// without linking a second copy of the client.
fn ask_helper(args: &[&str]) -> anyhow::Result<String> {
    use anyhow::Context;
    let out = std::process::Command::new(HELPER)
        .arg("tpm")
        .args(args)
        .output()
        .with_context(|| format!("running {HELPER} tpm"))?;
    if !out.status.success() {
        anyhow::bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    String::from_utf8(out.stdout).with_context(|| format!("{HELPER} tpm printed no text"))
}

/// The TPM's part of `/v1/status`, for the agent (through `slate-init tpm status`, whose
/// answer is [`status_lines`]: read by hand, which keeps a JSON reader out of slated).
pub fn status_for_agent() -> slate_core::api::TpmStatus {
    ask_helper(&["status"])
        .map(|text| read_status_lines(&text))
        .unwrap_or_else(|e| slate_core::api::TpmStatus {
            warning: Some(format!("reading the TPM: {e:#}")),
            ..Default::default()
        })
}

/// `s` as `key=value` lines, what `slate-init tpm status` prints.
pub fn status_lines(s: &slate_core::api::TpmStatus) -> String {
    let mut out = format!("present={}\nsealed_data={}\n", s.present, s.sealed_data);
    if let Some(p) = &s.pcr11 {
        out += &format!("pcr11={p}\n");
    }
    if let Some(e) = s.nv_epoch {
        out += &format!("nv_epoch={e}\n");
    }
    if let Some(w) = &s.warning {
        out += &format!("warning={}\n", w.replace('\n', " "));
    }
    out
}

/// Reads [`status_lines`] back; unknown or malformed lines are ignored.
pub fn read_status_lines(text: &str) -> slate_core::api::TpmStatus {
    let mut s = slate_core::api::TpmStatus::default();
    for (k, v) in text.lines().filter_map(|l| l.split_once('=')) {
        match k {
            "present" => s.present = v == "true",
            "sealed_data" => s.sealed_data = v == "true",
            "pcr11" => s.pcr11 = Some(v.to_string()),
            "nv_epoch" => s.nv_epoch = v.parse().ok(),
            "warning" => s.warning = Some(v.to_string()),
            _ => {}
        }
    }
    s
}

/// A quote over `nonce`, for the agent (through `slate-init tpm quote`): its JSON, passed on
/// as printed (the verifier checks every field; slated need not read it).
pub fn quote_for_agent(nonce: &[u8]) -> anyhow::Result<String> {
    let text = ask_helper(&["quote", &hex::encode(nonce)])?;
    if !text.trim_start().starts_with('{') {
        anyhow::bail!("slate-init tpm quote printed no JSON object");
    }
    Ok(text.trim_end().to_string())
}

/// A quote over `nonce` by this machine's TPM.
pub fn quote(nonce: &[u8]) -> anyhow::Result<slate_core::tpm::quote::Quote> {
    let mut tpm = open(Duration::ZERO)?
        .ok_or_else(|| anyhow::anyhow!("this device has no TPM ({DEVICE} is missing)"))?;
    Ok(tpm.quote(nonce)?)
}

/// The TPM's part of `/v1/status`, read once when the agent starts (PCR 11 and the epoch
/// index change only in stage 1).
pub fn status() -> slate_core::api::TpmStatus {
    use slate_core::tpm::header::{Header, State, COPY_BYTES};
    let header = crate::partitions::find(slate_core::layout::DATA_LABEL)
        .ok()
        .and_then(|part| {
            let mut area = vec![0u8; 2 * COPY_BYTES];
            let f = File::open(part).ok()?;
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut area, 0).ok()?;
            Header::pick(&area).ok()
        });
    let mut s = slate_core::api::TpmStatus {
        sealed_data: header.as_ref().is_some_and(|h| h.state != State::Plain),
        ..Default::default()
    };
    if header.as_ref().is_some_and(|h| h.state == State::Plain) {
        s.warning = Some(
            "this image seals /data with a TPM, and /data was made without one: it is not encrypted"
                .into(),
        );
    }
    if let Ok(Some(mut t)) = open(Duration::ZERO) {
        s.present = true;
        s.pcr11 = t
            .read_pcr(slate_core::tpm::PCR_KERNEL_BOOT)
            .ok()
            .map(hex::encode);
        s.nv_epoch = t.nv_read_u64(slate_core::tpm::policy::EPOCH_INDEX).ok();
    }
    s
}

/// The salted session's elliptic curve and block cipher, from aws-lc-rs (which the agent
/// links for TLS already). The ephemeral key is made from `seed`: stage 1 runs before the
/// kernel's generator may be ready (under emulation without RDRAND, a blocking read waits
/// over a second), so the seed mixes the TPM's random bytes with the kernel's pool as it is
/// ([`session_seed`]).
#[derive(Debug)]
pub struct LocalCrypto {
    /// The ephemeral scalar's seed.
    pub seed: [u8; 32],
}

/// A seed for [`LocalCrypto`]: SHA-256 of `tpm_random` and 32 bytes of the kernel's pool read
/// without waiting for it to be fully seeded. Someone on the TPM's bus sees `tpm_random`, not
/// the kernel's part.
pub fn session_seed(tpm_random: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut kernel = [0u8; 32];
    let _ = rustix::rand::getrandom(&mut kernel, rustix::rand::GetRandomFlags::INSECURE);
    let mut h = sha2::Sha256::new();
    h.update(tpm_random);
    h.update(kernel);
    h.finalize().into()
}

impl slate_core::tpm::session::SaltCrypto for LocalCrypto {
    fn ecdh_p256(
        &mut self,
        x: &[u8],
        y: &[u8],
    ) -> Result<slate_core::tpm::session::EcdhResult, String> {
        use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
        use sha2::Digest;
        // A scalar from the seed (re-hashed in the rare case it is not below the order).
        let mut scalar = self.seed;
        let mine = loop {
            match PrivateKey::from_private_key(&ECDH_P256, &scalar) {
                Ok(k) => break k,
                Err(_) => scalar = sha2::Sha256::digest(scalar).into(),
            }
        };
        let public = mine
            .compute_public_key()
            .map_err(|_| "its public point".to_string())?;
        let point = public.as_ref();
        if point.len() != 65 {
            return Err("an unexpected P-256 point encoding".into());
        }
        let mut peer = vec![0x04];
        for c in [x, y] {
            if c.len() > 32 {
                return Err("the storage key's point is not P-256".into());
            }
            peer.extend(std::iter::repeat_n(0u8, 32 - c.len()));
            peer.extend_from_slice(c);
        }
        let z = agreement::agree(
            &mine,
            UnparsedPublicKey::new(&ECDH_P256, &peer),
            "the storage key's point is not on P-256".to_string(),
            |z| Ok(z.to_vec()),
        )?;
        Ok(slate_core::tpm::session::EcdhResult {
            x: point[1..33].to_vec(),
            y: point[33..65].to_vec(),
            z,
        })
    }

    fn aes128_cfb_decrypt(&self, key: &[u8], iv: &[u8], data: &mut [u8]) -> Result<(), String> {
        use aws_lc_rs::cipher::{DecryptingKey, DecryptionContext, UnboundCipherKey, AES_128};
        use aws_lc_rs::iv::FixedLength;
        let iv: [u8; 16] = iv
            .try_into()
            .map_err(|_| "a CFB IV of 16 bytes".to_string())?;
        let key = UnboundCipherKey::new(&AES_128, key).map_err(|_| "an AES-128 key".to_string())?;
        DecryptingKey::cfb128(key)
            .and_then(|k| k.decrypt(data, DecryptionContext::Iv128(FixedLength::from(iv))))
            .map(|_| ())
            .map_err(|_| "AES-128-CFB decryption".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_lines_read_back() {
        let s = slate_core::api::TpmStatus {
            present: true,
            sealed_data: true,
            pcr11: Some("ab".repeat(32)),
            nv_epoch: Some(2),
            warning: Some("two\nlines".into()),
        };
        let back = read_status_lines(&status_lines(&s));
        assert_eq!(back.warning.as_deref(), Some("two lines"));
        assert_eq!(
            back,
            slate_core::api::TpmStatus {
                warning: Some("two lines".into()),
                ..s
            }
        );
        assert_eq!(read_status_lines("garbage\nnv_epoch=x"), Default::default());
    }
}
