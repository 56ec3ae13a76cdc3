//! A misbehaving origin behind the channel's nginx: nginx keeps the TLS (and the access log)
//! and passes every request through to this plain-HTTP file server on loopback, which answers
//! requests for bundles (`*.slate`) by a script of faults: a 5xx, a body dropped in the middle,
//! a Range request answered with the whole file, a file that changed size, a body that stalls.
//! Only an origin that speaks HTTP can do these; the TCP [`crate::faultproxy::FaultProxy`]
//! sees only TLS records and can only cut.
//!
//! One request per connection (nginx speaks HTTP/1.0 to upstreams by default), which keeps the
//! parsing to a request line and a `Range` header.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the next bundle request gets. Fractions are of the bundle file's length.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// This status and no body (a 503 from an overloaded origin, say).
    Status(u16),
    /// The answer it asked for, closed after this fraction of the file.
    DropAt(f64),
    /// `200` and the whole file, whatever Range it asked for.
    IgnoreRange,
    /// The answer as if the file had grown by a byte since the download started.
    ChangedSize,
    /// The answer it asked for, silent after this fraction of the file for this long, then
    /// closed.
    StallAt(f64, Duration),
}

/// One bundle request as the origin saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Served {
    /// The `Range` header's first byte, if it asked for one.
    pub range_from: Option<u64>,
    /// The status answered.
    pub status: u16,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
}

/// A running origin; it stops accepting when dropped.
pub struct FaultServer {
    /// The loopback port nginx passes requests to.
    pub port: u16,
    script: Arc<Mutex<VecDeque<Fault>>>,
    served: Arc<Mutex<Vec<Served>>>,
    stop: Arc<AtomicBool>,
    listener: Option<std::thread::JoinHandle<()>>,
}

impl FaultServer {
    /// Serves the files under `root` on a free loopback port, faulting nothing until
    /// [`FaultServer::script`] says so.
    pub fn start(root: &Path) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fault server");
        let port = listener.local_addr().expect("its address").port();
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let served = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (root, sc, se, st) = (
            root.to_path_buf(),
            script.clone(),
            served.clone(),
            stop.clone(),
        );
        let handle = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (root, sc, se) = (root.clone(), sc.clone(), se.clone());
                std::thread::spawn(move || answer(conn, &root, &sc, &se));
            }
        });
        FaultServer {
            port,
            script,
            served,
            stop,
            listener: Some(handle),
        }
    }

    /// Queues faults for the next bundle requests, one each, in order.
    pub fn script(&self, faults: &[Fault]) {
        self.script
            .lock()
            .expect("script lock")
            .extend(faults.iter().copied());
    }

    /// Faults queued and not yet used.
    pub fn pending(&self) -> usize {
        self.script.lock().expect("script lock").len()
    }

    /// Every bundle request so far, in order.
    pub fn served(&self) -> Vec<Served> {
        self.served.lock().expect("served lock").clone()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.listener.take() {
            let _ = h.join();
        }
    }
}

/// The request line's path (query cut off) and the `Range: bytes=N-` start, if any.
fn read_request(conn: &TcpStream) -> Option<(String, Option<u64>)> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let target = line.split_whitespace().nth(1)?.to_string();
    let path = target.split('?').next()?.to_string();
    let mut range_from = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range_from = value
                    .trim()
                    .strip_prefix("bytes=")
                    .and_then(|r| r.split('-').next())
                    .and_then(|n| n.trim().parse().ok());
            }
        }
    }
    Some((path, range_from))
}

/// `root` joined with a request path, refusing any way out of it.
fn file_for(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|part| part == ".." || part.is_empty()) {
        return None;
    }
    Some(root.join(rel))
}

/// Answers one connection (one request), then closes it.
fn answer(
    mut conn: TcpStream,
    root: &Path,
    script: &Mutex<VecDeque<Fault>>,
    served: &Mutex<Vec<Served>>,
) {
    let Some((path, range_from)) = read_request(&conn) else {
        return;
    };
    let Some(bytes) = file_for(root, &path).and_then(|f| std::fs::read(f).ok()) else {
        let _ = conn.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let fault = if path.ends_with(".slate") {
        script.lock().expect("script lock").pop_front()
    } else {
        None
    };
    let len = bytes.len() as u64;
    let at = |fraction: f64| (len as f64 * fraction) as u64;
    // The range answered: from `from`, of a file `total` bytes long (one more when it "grew").
    let from = match fault {
        Some(Fault::IgnoreRange) => 0,
        _ => range_from.unwrap_or(0).min(len),
    };
    let total = if fault == Some(Fault::ChangedSize) {
        len + 1
    } else {
        len
    };
    let status = match fault {
        Some(Fault::Status(s)) => s,
        _ if range_from.is_some() && fault != Some(Fault::IgnoreRange) => 206,
        _ => 200,
    };
    if path.ends_with(".slate") {
        served.lock().expect("served lock").push(Served {
            range_from,
            status,
            fault,
        });
    }
    if let Some(Fault::Status(s)) = fault {
        let _ = write!(conn, "HTTP/1.0 {s} Fault\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    let mut head = format!(
        "HTTP/1.0 {status} {}\r\nContent-Length: {}\r\n",
        if status == 206 {
            "Partial Content"
        } else {
            "OK"
        },
        total - from
    );
    if status == 206 {
        head += &format!("Content-Range: bytes {from}-{}/{total}\r\n", total - 1);
    }
    head += "\r\n";
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    let mut body = bytes[usize::try_from(from).unwrap_or(0)..].to_vec();
    if total > len {
        body.push(0);
    }
    let (stop_at, stall) = match fault {
        Some(Fault::DropAt(f)) => (at(f).max(from), None),
        Some(Fault::StallAt(f, d)) => (at(f).max(from), Some(d)),
        _ => (total, None),
    };
    let part = usize::try_from(stop_at - from).unwrap_or(0).min(body.len());
    // Slowly enough that a drop or a stall lands in the middle of the device's read.
    for chunk in body[..part].chunks(64 << 10) {
        if conn.write_all(chunk).is_err() {
            return;
        }
    }
    if let Some(d) = stall {
        std::thread::sleep(d);
    }
    let _ = conn.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(port: u16, path: &str, range: Option<u64>) -> String {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let range = range
            .map(|r| format!("Range: bytes={r}-\r\n"))
            .unwrap_or_default();
        write!(c, "GET {path}?seed=1 HTTP/1.0\r\n{range}\r\n").unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn the_script_faults_bundle_requests_in_order_and_then_serves_them_plainly() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.slate"), b"0123456789").unwrap();
        std::fs::write(dir.path().join("m.json"), b"{}").unwrap();
        let s = FaultServer::start(dir.path());
        s.script(&[
            Fault::Status(503),
            Fault::DropAt(0.5),
            Fault::IgnoreRange,
            Fault::ChangedSize,
        ]);
        assert!(get(s.port, "/m.json", None).ends_with("\r\n\r\n{}"));
        assert!(get(s.port, "/x.slate", None).starts_with("HTTP/1.0 503"));
        assert!(get(s.port, "/x.slate", None).ends_with("\r\n\r\n01234"));
        let whole = get(s.port, "/x.slate", Some(5));
        assert!(whole.starts_with("HTTP/1.0 200"), "{whole}");
        assert!(whole.ends_with("\r\n\r\n0123456789"), "{whole}");
        let grown = get(s.port, "/x.slate", Some(5));
        assert!(grown.contains("Content-Range: bytes 5-10/11"), "{grown}");
        let plain = get(s.port, "/x.slate", Some(7));
        assert!(plain.contains("Content-Range: bytes 7-9/10"), "{plain}");
        assert!(plain.ends_with("\r\n\r\n789"), "{plain}");
        assert_eq!(s.pending(), 0);
        assert_eq!(s.served().len(), 5);
        assert_eq!(
            get(s.port, "/../etc/passwd", None).lines().next(),
            Some("HTTP/1.0 404 Not Found")
        );
    }

    /// nginx (with the channel's configuration) passes each fault through as the origin made
    /// it: what the device meets is what the script says.
    #[test]
    fn nginx_passes_the_origins_faults_to_the_client() {
        let ch = crate::channel::channel();
        let probe = ch.repo.join("targets/probe.slate");
        std::fs::write(&probe, vec![7u8; 1 << 20]).unwrap();
        let (_nginx, origin) = ch.serve_with_faults();
        let fetch = |range: Option<u64>| -> (String, usize) {
            let mut tls = crate::tls_stream(ch.port, None).unwrap();
            let range = range
                .map(|r| format!("Range: bytes={r}-\r\n"))
                .unwrap_or_default();
            write!(
                tls,
                "GET /targets/probe.slate?seed=1 HTTP/1.1\r\nHost: t\r\n{range}Connection: close\r\n\r\n"
            )
            .unwrap();
            let mut out = Vec::new();
            // A dropped body ends without TLS's close_notify: an error after the bytes.
            let _ = tls.read_to_end(&mut out);
            let text = String::from_utf8_lossy(&out).into_owned();
            let split = text.find("\r\n\r\n").expect("a head") + 4;
            (text[..split].to_string(), out.len() - split)
        };
        origin.script(&[
            Fault::Status(503),
            Fault::DropAt(0.25),
            Fault::IgnoreRange,
            Fault::ChangedSize,
        ]);
        let (head, _) = fetch(None);
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        let (head, body) = fetch(None);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, 1 << 18);
        let (head, body) = fetch(Some(1000));
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, 1 << 20);
        let (head, _) = fetch(Some(1000));
        assert!(
            head.contains("Content-Range: bytes 1000-1048576/1048577"),
            "{head}"
        );
        let (head, body) = fetch(Some(1000));
        assert!(head.starts_with("HTTP/1.1 206"), "{head}");
        assert_eq!(body, (1 << 20) - 1000);
        std::fs::remove_file(&probe).unwrap();
    }
}
