//! A disk with a volatile write cache, served to QEMU over NBD on a unix socket.
//!
//! Killing QEMU keeps the host's page cache, so a plain disk file never loses a write the
//! guest did not flush. This server does: every write stays in memory until the guest sends
//! FLUSH (or the write carries FUA); at a power cut the unflushed writes are dropped, all of
//! them or a seeded random subset (the rest reach the disk, as a drive that wrote back part of
//! its cache would). That is where missing fsyncs show.
//!
//! ```text
//! handshake (fixed newstyle): "NBDMAGIC" "IHAVEOPT" flags(FIXED_NEWSTYLE|NO_ZEROES)
//!   options: GO/INFO → INFO(EXPORT: size, flags) + ACK; EXPORT_NAME → size, flags;
//!            ABORT; anything else → ERR_UNSUP (so QEMU uses simple replies)
//! transmission: request  magic 0x25609513, flags u16, type u16, handle u64, offset u64, len u32
//!               reply    magic 0x67446698, error u32, handle u64 [, data]
//!               READ 0, WRITE 1 (FUA flag = write through), DISC 2, FLUSH 3
//! ```

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const SECTOR: u64 = 512;
const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = (1 << 31) | 1;
const FLAG_HAS_FLAGS: u16 = 1;
const FLAG_SEND_FLUSH: u16 = 1 << 2;
const FLAG_SEND_FUA: u16 = 1 << 3;
const CMD_FLAG_FUA: u16 = 1;

/// How a power cut treats the writes the guest has not flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// All of them are lost.
    All,
    /// Each sector is lost or kept by a seeded coin (printed so a failure can be replayed).
    Random(u64),
}

#[derive(Default)]
struct Cache {
    /// Unflushed sectors, newest data per sector.
    pending: BTreeMap<u64, Vec<u8>>,
    flushes: u64,
    writes: u64,
}

/// The serving side of one disk file.
pub struct NbdDisk {
    file: Arc<File>,
    cache: Arc<Mutex<Cache>>,
    socket: PathBuf,
    size: u64,
}

impl NbdDisk {
    /// Serves `disk` on a unix socket at `socket` (one client at a time, on a thread).
    pub fn serve(disk: &Path, socket: &Path) -> Result<NbdDisk> {
        let file = File::options()
            .read(true)
            .write(true)
            .open(disk)
            .with_context(|| format!("opening {}", disk.display()))?;
        let size = file.metadata()?.len();
        let _ = std::fs::remove_file(socket);
        let listener =
            UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
        let d = NbdDisk {
            file: Arc::new(file),
            cache: Arc::new(Mutex::new(Cache::default())),
            socket: socket.to_path_buf(),
            size,
        };
        let (file, cache) = (d.file.clone(), d.cache.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                if serve_client(conn, &file, &cache, size).is_err() {
                    // The client went away (QEMU killed): wait for the next one.
                }
            }
        });
        Ok(d)
    }

    /// The socket path QEMU connects to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Writes and flushes seen so far.
    pub fn counts(&self) -> (u64, u64) {
        let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        (c.writes, c.flushes)
    }

    /// The power cut: drops unflushed writes as `loss` says; returns (lost, kept) sectors.
    pub fn cut(&self, loss: Loss) -> (usize, usize) {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let pending = std::mem::take(&mut c.pending);
        let mut x = match loss {
            Loss::All => 0,
            Loss::Random(seed) => seed | 1,
        };
        let (mut lost, mut kept) = (0, 0);
        for (sector, data) in pending {
            let keep = match loss {
                Loss::All => false,
                Loss::Random(_) => {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x & 1 == 1
                }
            };
            if keep {
                let _ = self.file.write_all_at(&data, sector * SECTOR);
                kept += 1;
            } else {
                lost += 1;
            }
        }
        let _ = self.file.sync_all();
        (lost, kept)
    }

    /// Disk size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

fn read_exact(s: &mut UnixStream, n: usize) -> std::io::Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v)?;
    Ok(v)
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn option_reply(s: &mut UnixStream, option: u32, kind: u32, data: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(20 + data.len());
    out.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    s.write_all(&out)
}

fn serve_client(
    mut s: UnixStream,
    file: &File,
    cache: &Mutex<Cache>,
    size: u64,
) -> std::io::Result<()> {
    let flags = FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA;
    let mut hello = Vec::new();
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&3u16.to_be_bytes()); // FIXED_NEWSTYLE | NO_ZEROES
    s.write_all(&hello)?;
    let client_flags = be_u32(&read_exact(&mut s, 4)?);
    let no_zeroes = client_flags & 2 != 0;
    // Option haggling.
    loop {
        let head = read_exact(&mut s, 16)?;
        if be_u64(&head) != IHAVEOPT {
            return Err(std::io::Error::other("bad option magic"));
        }
        let (option, len) = (be_u32(&head[8..]), be_u32(&head[12..]) as usize);
        let data = read_exact(&mut s, len)?;
        match option {
            OPT_EXPORT_NAME => {
                let mut out = Vec::new();
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(&flags.to_be_bytes());
                if !no_zeroes {
                    out.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&out)?;
                break;
            }
            OPT_GO | OPT_INFO => {
                let mut info = Vec::new();
                info.extend_from_slice(&0u16.to_be_bytes()); // NBD_INFO_EXPORT
                info.extend_from_slice(&size.to_be_bytes());
                info.extend_from_slice(&flags.to_be_bytes());
                option_reply(&mut s, option, REP_INFO, &info)?;
                option_reply(&mut s, option, REP_ACK, &[])?;
                if option == OPT_GO {
                    break;
                }
            }
            OPT_ABORT => {
                option_reply(&mut s, option, REP_ACK, &[])?;
                return Ok(());
            }
            _ => {
                let _ = data;
                option_reply(&mut s, option, REP_ERR_UNSUP, &[])?;
            }
        }
    }
    // Transmission.
    loop {
        let req = read_exact(&mut s, 28)?;
        if be_u32(&req) != REQUEST_MAGIC {
            return Err(std::io::Error::other("bad request magic"));
        }
        let cmd_flags = u16::from_be_bytes([req[4], req[5]]);
        let kind = u16::from_be_bytes([req[6], req[7]]);
        let handle = &req[8..16];
        let offset = be_u64(&req[16..]);
        let len = be_u32(&req[24..]) as u64;
        let reply = |s: &mut UnixStream, error: u32, data: &[u8]| -> std::io::Result<()> {
            let mut out = Vec::with_capacity(16 + data.len());
            out.extend_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
            out.extend_from_slice(&error.to_be_bytes());
            out.extend_from_slice(handle);
            out.extend_from_slice(data);
            s.write_all(&out)
        };
        let in_range = offset.checked_add(len).is_some_and(|end| end <= size)
            && offset.is_multiple_of(SECTOR)
            && len.is_multiple_of(SECTOR);
        match kind {
            0 => {
                if !in_range {
                    reply(&mut s, 22, &[])?;
                    continue;
                }
                let mut data = vec![0u8; len as usize];
                file.read_exact_at(&mut data, offset)?;
                let c = cache.lock().unwrap_or_else(|p| p.into_inner());
                for (sector, bytes) in c.pending.range(offset / SECTOR..(offset + len) / SECTOR) {
                    let at = (sector * SECTOR - offset) as usize;
                    data[at..at + SECTOR as usize].copy_from_slice(bytes);
                }
                drop(c);
                reply(&mut s, 0, &data)?;
            }
            1 => {
                let data = read_exact(&mut s, len as usize)?;
                if !in_range {
                    reply(&mut s, 22, &[])?;
                    continue;
                }
                let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
                c.writes += 1;
                if cmd_flags & CMD_FLAG_FUA != 0 {
                    for i in 0..len / SECTOR {
                        c.pending.remove(&(offset / SECTOR + i));
                    }
                    file.write_all_at(&data, offset)?;
                    file.sync_data()?;
                } else {
                    for (i, chunk) in data.chunks(SECTOR as usize).enumerate() {
                        c.pending.insert(offset / SECTOR + i as u64, chunk.to_vec());
                    }
                }
                drop(c);
                reply(&mut s, 0, &[])?;
            }
            2 => return Ok(()),
            3 => {
                let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
                for (sector, bytes) in std::mem::take(&mut c.pending) {
                    file.write_all_at(&bytes, sector * SECTOR)?;
                }
                file.sync_data()?;
                c.flushes += 1;
                drop(c);
                reply(&mut s, 0, &[])?;
            }
            _ => reply(&mut s, 95, &[])?, // EOPNOTSUPP
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs qemu-io against the socket. Its `abort` command ends it by SIGABRT on purpose (a
    /// crash without a flush), so the exit status says nothing; a missing qemu-io fails here.
    fn qemu_io(sock: &Path, cmds: &[&str]) {
        let mut c = Command::new("qemu-io");
        c.args(["-f", "raw", "-t", "writeback"])
            .arg(format!("nbd:unix:{}", sock.display()));
        for x in cmds {
            c.args(["-c", x]);
        }
        c.output()
            .expect("qemu-io (Debian package qemu-utils; `cargo xtask deps` installs it)");
    }

    #[test]
    fn unflushed_writes_are_lost_at_a_cut_and_flushed_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("d.img");
        std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
        let nbd = NbdDisk::serve(&disk, &dir.path().join("s")).unwrap();
        // Written and read back through the cache, then a crash without a flush.
        qemu_io(
            nbd.socket(),
            &["write -P 0xab 0 4k", "read -P 0xab 0 4k", "abort"],
        );
        assert_eq!(nbd.cut(Loss::All).1, 0);
        assert!(
            std::fs::read(&disk).unwrap()[..4096]
                .iter()
                .all(|&b| b == 0),
            "an unflushed write reached the disk"
        );
        // Flushed: kept.
        qemu_io(nbd.socket(), &["write -P 0xcd 4096 4k", "flush", "abort"]);
        nbd.cut(Loss::All);
        assert!(
            std::fs::read(&disk).unwrap()[4096..8192]
                .iter()
                .all(|&b| b == 0xcd),
            "a flushed write was lost"
        );
        // FUA: kept without a flush.
        qemu_io(nbd.socket(), &["write -f -P 0xef 8192 4k", "abort"]);
        nbd.cut(Loss::All);
        assert!(
            std::fs::read(&disk).unwrap()[8192..12288]
                .iter()
                .all(|&b| b == 0xef),
            "a FUA write was lost"
        );
        let (writes, flushes) = nbd.counts();
        assert!(
            writes >= 3 && flushes >= 1,
            "{writes} writes, {flushes} flushes"
        );
    }
}
