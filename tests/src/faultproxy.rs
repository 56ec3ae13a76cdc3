//! A TCP proxy on loopback between QEMU's guests and the channel's nginx that can drop a
//! connection in the middle of a body: what a flaky link or a restarting load balancer does.
//! It sees only TLS records, so it cuts by byte count: the first connection whose answer
//! passes the armed threshold (only a bundle is that large) is closed there.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A running proxy; it stops accepting when dropped (open connections finish on their own).
pub struct FaultProxy {
    /// Server→client bytes after which the next connection is cut (0: none armed).
    cut_after: Arc<AtomicU64>,
    /// Connections cut so far.
    cuts: Arc<AtomicU64>,
    listener: Option<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    port: u16,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:`port` and forwards to 127.0.0.1:`upstream`.
    pub fn start(port: u16, upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("binding the fault proxy");
        let cut_after = Arc::new(AtomicU64::new(0));
        let cuts = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, n, s) = (cut_after.clone(), cuts.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (c, n) = (c.clone(), n.clone());
                std::thread::spawn(move || relay(client, server, &c, &n));
            }
        });
        FaultProxy {
            cut_after,
            cuts,
            listener: Some(handle),
            stop,
            port,
        }
    }

    /// Cuts the next connection whose answer passes `bytes` (once).
    pub fn cut_once_after(&self, bytes: u64) {
        self.cut_after.store(bytes, Ordering::SeqCst);
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the stop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.listener.take() {
            let _ = h.join();
        }
    }
}

/// Copies both ways; the server→client side counts and, when armed, cuts both sockets.
fn relay(client: TcpStream, server: TcpStream, cut_after: &AtomicU64, cuts: &AtomicU64) {
    let (Ok(mut c_read), Ok(mut s_write)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let upstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (server, client);
    let mut sent = 0u64;
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match s_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let limit = cut_after.load(Ordering::SeqCst);
        if limit > 0 && sent + n as u64 > limit {
            // Claim the one cut; a racing connection that loses just goes on.
            if cut_after
                .compare_exchange(limit, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                cuts.fetch_add(1, Ordering::SeqCst);
                let _ = c_write.shutdown(Shutdown::Both);
                let _ = s_read.shutdown(Shutdown::Both);
                break;
            }
        }
        if c_write.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
    }
    let _ = c_write.shutdown(Shutdown::Write);
    let _ = upstream.join();
}
