//! Serial console capture: lines with host timestamps, kept in memory and written to a log.

use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One console line.
#[derive(Debug, Clone)]
pub struct Line {
    /// Time since QEMU started.
    pub at: Duration,
    /// Text, ANSI escape sequences removed.
    pub text: String,
}

#[derive(Default)]
struct Buffer {
    lines: Vec<Line>,
    partial: String,
    closed: bool,
}

/// Shared capture of one VM's console.
#[derive(Clone)]
pub struct Serial {
    inner: Arc<(Mutex<Buffer>, Condvar)>,
    started: Instant,
}

/// Removes ANSI escape sequences (OVMF and the shell print them) and carriage returns.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    while let Some(&n) = chars.peek() {
                        chars.next();
                        if n.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

impl Serial {
    /// Starts reading `from` on a thread, appending lines to `log` (and echoing them to the
    /// terminal when `echo`).
    pub fn capture(
        mut from: impl Read + Send + 'static,
        mut log: std::fs::File,
        echo: bool,
        started: Instant,
    ) -> Serial {
        let serial = Serial {
            inner: Arc::new((Mutex::new(Buffer::default()), Condvar::new())),
            started,
        };
        let s = serial.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if echo {
                    let _ = std::io::stdout().write_all(&buf[..n]);
                    let _ = std::io::stdout().flush();
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let (lock, cv) = &*s.inner;
                let Ok(mut b) = lock.lock() else { break };
                b.partial.push_str(&text);
                while let Some(i) = b.partial.find('\n') {
                    let raw: String = b.partial.drain(..=i).collect();
                    let line = Line {
                        at: s.started.elapsed(),
                        text: strip_ansi(raw.trim_end_matches('\n')),
                    };
                    let _ = writeln!(log, "[{:>9.3}] {}", line.at.as_secs_f64(), line.text);
                    b.lines.push(line);
                }
                cv.notify_all();
            }
            let (lock, cv) = &*s.inner;
            if let Ok(mut b) = lock.lock() {
                b.closed = true;
            }
            cv.notify_all();
        });
        serial
    }

    /// All complete lines so far.
    pub fn lines(&self) -> Vec<Line> {
        self.inner
            .0
            .lock()
            .map(|b| b.lines.clone())
            .unwrap_or_default()
    }

    /// Waits until a line after line `from` contains one of `needles`; returns the index of
    /// the needle and the line. With `partial`, the unfinished last line counts too (a prompt).
    pub fn wait_any(
        &self,
        needles: &[&str],
        from: usize,
        partial: bool,
        timeout: Duration,
    ) -> Option<(usize, Line)> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.inner;
        let mut b = lock.lock().ok()?;
        loop {
            for line in b.lines.iter().skip(from) {
                if let Some(i) = needles.iter().position(|n| line.text.contains(n)) {
                    return Some((i, line.clone()));
                }
            }
            if partial {
                let text = strip_ansi(&b.partial);
                if let Some(i) = needles.iter().position(|n| text.contains(n)) {
                    return Some((
                        i,
                        Line {
                            at: self.started.elapsed(),
                            text,
                        },
                    ));
                }
            }
            let now = Instant::now();
            if now >= deadline || b.closed {
                return None;
            }
            b = cv.wait_timeout(b, deadline - now).ok()?.0;
        }
    }

    /// Number of complete lines so far (a position for later waits).
    pub fn mark(&self) -> usize {
        self.inner.0.lock().map(|b| b.lines.len()).unwrap_or(0)
    }

    /// True once any byte arrived.
    pub fn has_output(&self) -> bool {
        self.inner
            .0
            .lock()
            .map(|b| !b.lines.is_empty() || !b.partial.is_empty())
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_sequences_and_carriage_returns_are_removed() {
        assert_eq!(strip_ansi("\x1b[2J\x1b[01;01Hslate: up\r"), "slate: up");
        assert_eq!(strip_ansi("\x1b[6nslate: healthy"), "slate: healthy");
    }
}
