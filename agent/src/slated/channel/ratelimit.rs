//! The bandwidth cap on the socket (`[update] max_kib_s`): a stream whose reads take only what
//! the shared [`TokenBucket`] allows, and wait (without reading, so the TCP window closes and
//! the server slows) when it allows nothing. Every connection of a download shares the one
//! bucket, and downloads are one at a time (the install lock), so the cap is the device's.

use slate_core::policy::TokenBucket;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A cap shared by the connections of a device's downloads.
pub type Cap = Arc<Mutex<TokenBucket>>;

/// A new cap of `kib_s` KiB/s.
pub fn cap(kib_s: u32) -> Cap {
    Arc::new(Mutex::new(TokenBucket::new(
        u64::from(kib_s) * 1024,
        now_ns(),
    )))
}

/// The receive buffer of a capped connection, in bytes: a quarter second at the cap (at least
/// 16 KiB, at most 1 MiB). The kernel would otherwise grow the window to megabytes, and the
/// server would send that far ahead of what the bucket lets the device read: the wire would
/// run above the cap for as long as the buffer takes to fill (measured at nginx: +33% on a
/// minute's download at 200 KiB/s).
pub fn recv_buffer(kib_s: u32) -> u32 {
    (kib_s.saturating_mul(1024) / 4).clamp(16 << 10, 1 << 20)
}

/// Connects to `host:port` (each address it resolves to, in turn), with the socket's receive
/// buffer set first when given (before the connection, so the window never grows past it).
pub async fn connect(
    host: &str,
    port: u16,
    recv_buffer: Option<u32>,
) -> std::io::Result<tokio::net::TcpStream> {
    let Some(size) = recv_buffer else {
        return tokio::net::TcpStream::connect((host, port)).await;
    };
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_recv_buffer_size(size)?;
        match socket.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} resolves to no address"),
        )
    }))
}

/// Nanoseconds on a monotonic clock shared by every bucket.
fn now_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// `inner` whose reads keep to `cap`, when there is one.
pub struct MaybeCapped<S> {
    inner: S,
    cap: Option<Cap>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> MaybeCapped<S> {
    /// Wraps a connection (`None`: reads as they come).
    pub fn new(inner: S, cap: Option<Cap>) -> MaybeCapped<S> {
        MaybeCapped {
            inner,
            cap,
            wait: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for MaybeCapped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let Some(cap) = self.cap.clone() else {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        };
        loop {
            if let Some(w) = self.wait.as_mut() {
                if w.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.wait = None;
            }
            let (allowed, wait_ns) = {
                let mut bucket = crate::lock(&cap);
                let allowed = bucket.allowance(buf.remaining(), now_ns());
                (allowed, bucket.wait_ns())
            };
            if allowed == 0 {
                let d = std::time::Duration::from_nanos(wait_ns.max(1_000_000));
                self.wait = Some(Box::pin(tokio::time::sleep(d)));
                continue;
            }
            // Read into a buffer of the allowed size and copy (the copy costs nothing at the
            // rates a cap is for, and needs no `unsafe`).
            let mut scratch = vec![0u8; allowed.min(64 << 10)];
            let mut limited = ReadBuf::new(&mut scratch);
            let polled = Pin::new(&mut self.inner).poll_read(cx, &mut limited);
            if let Poll::Ready(Ok(())) = &polled {
                let n = limited.filled().len();
                buf.put_slice(limited.filled());
                crate::lock(&cap).take(n);
            }
            return polled;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MaybeCapped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
