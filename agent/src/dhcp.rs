//! The DHCP client (`[network] dhcp = true`): a service of its own that stage 2 supervises
//! (`slate-init dhcp IFACE`), so server messages — from anyone on the link — are never parsed
//! in PID 1, and a crash is a restart, not a reboot.
//!
//! It follows RFC 2131's states: discover and request a lease; renew it by unicast to the
//! server that leased it at T1; rebind by broadcast at T2; give the address up and start again
//! when it expires or a server says no. Which answers it takes and its timers are
//! [`slate_core::dhcp::lease`]'s: only the server asked, only sane leases, renewed within the
//! hour whatever the lease claims. A lease replaces the default route, never adds one.

use crate::{marker, sys};
use anyhow::{bail, Context, Result};
use slate_core::dhcp::lease::{self, answers, Lease, Waiting};
use slate_core::dhcp::{ClientMessage, MessageType, ServerMessage, CLIENT_PORT, SERVER_PORT};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the lease's DNS servers go (`/etc/resolv.conf` links here in images that use DHCP).
pub const RESOLV_CONF: &str = "/run/resolv.conf";
/// Wait after a round of discovery found no lease.
const RETRY_DISCOVER: Duration = Duration::from_secs(60);

/// What the client runs on.
#[derive(Debug, Clone)]
pub struct Options {
    /// The interface.
    pub iface: String,
    /// The hostname announced (option 12).
    pub hostname: String,
    /// Where the DNS servers are written.
    pub resolv_conf: PathBuf,
}

/// The interface's socket and identity.
struct Link {
    sock: UdpSocket,
    mac: [u8; 6],
    /// Refusals already reported (server and reason), so a rogue server repeating itself does
    /// not flood the console.
    reported: BTreeSet<String>,
}

impl Link {
    fn open(iface: &str) -> Result<Link> {
        let sock = UdpSocket::bind(("0.0.0.0", CLIENT_PORT))
            .with_context(|| format!("binding UDP port {CLIENT_PORT} for DHCP"))?;
        sock.set_broadcast(true)?;
        sys::bind_to_device(&sock, iface)?;
        Ok(Link {
            sock,
            mac: sys::mac_address(iface)?,
            reported: BTreeSet::new(),
        })
    }

    fn message(&self, kind: MessageType, hostname: &str) -> ClientMessage {
        ClientMessage {
            kind,
            xid: xid(),
            mac: self.mac,
            requested: None,
            server: None,
            hostname: Some(hostname.to_string()),
            ciaddr: None,
        }
    }

    fn send(&self, msg: &ClientMessage, to: Ipv4Addr) -> Result<()> {
        self.sock
            .send_to(&msg.encode(), SocketAddrV4::new(to, SERVER_PORT))
            .with_context(|| format!("sending a DHCP {:?} to {to}", msg.kind))?;
        Ok(())
    }

    /// Reports once that `server`'s answer is not taken, and why.
    fn refused(&mut self, server: Option<Ipv4Addr>, why: &str) {
        let who = server.map_or("a server without identifier".to_string(), |s| s.to_string());
        if self.reported.insert(format!("{who}: {why}")) {
            marker::warn(format!(
                "network: the DHCP answer of {who} is not taken: {why}"
            ));
        }
    }

    /// The first answer to `waiting` before `until` (for an offer: the first that would be a
    /// sane lease); everything else on the wire is skipped.
    fn wait(&mut self, waiting: &Waiting, until: Instant) -> Result<Option<ServerMessage>> {
        let mut buf = [0u8; 1500];
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            let n = match self.sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e).context("reading DHCP answers"),
            };
            let Ok(m) = ServerMessage::parse(&buf[..n]) else {
                continue;
            };
            if !answers(waiting, &m) {
                continue;
            }
            if m.kind != MessageType::Nak {
                if let Err(why) = lease::lease_from(&m) {
                    self.refused(m.server, &why.to_string());
                    continue;
                }
            }
            return Ok(Some(m));
        }
        Ok(None)
    }
}

fn xid() -> u32 {
    use std::io::Read;
    let mut b = [0u8; 4];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    match random {
        Ok(()) => u32::from_ne_bytes(b),
        Err(_) => std::process::id() ^ 0x5a17_e000,
    }
}

/// Discover → Offer → Request → Ack, retried with a growing wait (4, 8, 16, 32 s). Only a sane
/// offer is requested, and only its server's Ack is taken.
fn discover(link: &mut Link, hostname: &str) -> Result<Lease> {
    let mut wait = Duration::from_secs(4);
    for _ in 0..4 {
        let discover = link.message(MessageType::Discover, hostname);
        link.send(&discover, Ipv4Addr::BROADCAST)?;
        let offered = link.wait(&Waiting::Offer { xid: discover.xid }, Instant::now() + wait)?;
        let Some(offer) = offered else {
            wait *= 2;
            continue;
        };
        let Some(server) = offer.server else {
            continue;
        };
        let mut request = link.message(MessageType::Request, hostname);
        request.requested = Some(offer.address);
        request.server = Some(server);
        link.send(&request, Ipv4Addr::BROADCAST)?;
        let waiting = Waiting::Ack {
            xid: request.xid,
            server,
            address: offer.address,
        };
        match link.wait(&waiting, Instant::now() + wait)? {
            Some(ack) if ack.kind == MessageType::Ack => {
                return lease::lease_from(&ack).map_err(anyhow::Error::new)
            }
            _ => wait *= 2,
        }
    }
    bail!("no DHCP server gave a usable lease")
}

/// How a renewal or rebinding ended.
enum Kept {
    /// A new Ack: the lease from now.
    Extended(Lease),
    /// A Nak, or the lease ran out: the address goes.
    Lost(&'static str),
}

/// Renews by unicast to the leasing server until T2, then rebinds by broadcast until the
/// lease ends; retries at half the time left (at least every 10 s, as RFC 2131 suggests 60).
fn keep(link: &mut Link, hostname: &str, current: &Lease, taken: Instant) -> Result<Kept> {
    let t = current.timers;
    let at = |s: u32| taken + Duration::from_secs(u64::from(s));
    sleep_until(at(t.renew_s));
    for (rebinding, until) in [(false, at(t.rebind_s)), (true, at(t.expire_s))] {
        while Instant::now() < until {
            let mut request = link.message(MessageType::Request, hostname);
            request.ciaddr = Some(current.address);
            let (waiting, to) = if rebinding {
                let w = Waiting::Rebinding {
                    xid: request.xid,
                    address: current.address,
                };
                (w, Ipv4Addr::BROADCAST)
            } else {
                let w = Waiting::Renewal {
                    xid: request.xid,
                    server: current.server,
                    address: current.address,
                };
                (w, current.server)
            };
            if let Err(e) = link.send(&request, to) {
                tracing::warn!("{e:#}");
            }
            let left = until.saturating_duration_since(Instant::now());
            let retry = (left / 2).max(Duration::from_secs(10)).min(left);
            match link.wait(&waiting, Instant::now() + retry)? {
                Some(m) if m.kind == MessageType::Ack => {
                    return Ok(Kept::Extended(lease::lease_from(&m)?));
                }
                Some(_) => return Ok(Kept::Lost("the server said no (DHCPNAK)")),
                None => {}
            }
        }
    }
    Ok(Kept::Lost("the lease ran out"))
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

/// Applies a lease: the address (unless `previous` had the same, so a renewal does not drop
/// the interface's routes), the default route (replacing any other), and the DNS servers.
fn apply(o: &Options, lease: &Lease, previous: Option<&Lease>) -> Result<()> {
    let same = previous.is_some_and(|p| (p.address, p.prefix) == (lease.address, lease.prefix));
    if !same {
        sys::set_ipv4(&o.iface, lease.address, lease.prefix)?;
    }
    if !same || previous.is_some_and(|p| p.router != lease.router) {
        sys::replace_default_route(&o.iface, lease.router)?;
    }
    write_resolv_conf(&o.resolv_conf, &lease.dns)
}

fn write_resolv_conf(path: &Path, dns: &[Ipv4Addr]) -> Result<()> {
    std::fs::write(path, slate_core::dhcp::resolv_conf(dns))
        .with_context(|| format!("writing {}", path.display()))?;
    // Every service resolves names.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .with_context(|| format!("making {} readable", path.display()))
}

/// The client's loop: never returns but with an error that makes it unusable (no socket, no
/// interface); the supervisor restarts it then.
pub fn run(o: &Options) -> Result<std::convert::Infallible> {
    let mut link = Link::open(&o.iface)?;
    let mut current: Option<Lease> = None;
    loop {
        let lease = match discover(&mut link, &o.hostname) {
            Ok(l) => l,
            Err(e) => {
                marker::warn(format!(
                    "network {}: {e:#}; trying again in {} s",
                    o.iface,
                    RETRY_DISCOVER.as_secs()
                ));
                std::thread::sleep(RETRY_DISCOVER);
                continue;
            }
        };
        let mut lease = lease;
        let mut taken = Instant::now();
        loop {
            if let Err(e) = apply(o, &lease, current.as_ref()) {
                marker::warn(format!("network {}: {e:#}", o.iface));
            }
            let changed = current.as_ref().is_none_or(|c| {
                (c.address, c.prefix, c.router) != (lease.address, lease.prefix, lease.router)
            });
            if changed {
                marker::emit(&slate_core::api::Marker::NetworkLease {
                    iface: o.iface.clone(),
                    address: format!("{}/{}", lease.address, lease.prefix),
                    router: Some(lease.router),
                });
            }
            tracing::info!(
                interface = %o.iface,
                address = %format!("{}/{}", lease.address, lease.prefix),
                router = %lease.router,
                server = %lease.server,
                renew_s = lease.timers.renew_s,
                rebind_s = lease.timers.rebind_s,
                expire_s = lease.timers.expire_s,
                "DHCP lease"
            );
            current = Some(lease.clone());
            match keep(&mut link, &o.hostname, &lease, taken) {
                Ok(Kept::Extended(next)) => {
                    lease = next;
                    taken = Instant::now();
                }
                Ok(Kept::Lost(why)) => {
                    marker::warn(format!(
                        "network {}: the lease of {} ended: {why}; looking for a new one",
                        o.iface, lease.address
                    ));
                    if let Err(e) = sys::clear_ipv4(&o.iface) {
                        marker::warn(format!("network {}: {e:#}", o.iface));
                    }
                    current = None;
                    break;
                }
                Err(e) => {
                    marker::warn(format!("network {}: renewing: {e:#}", o.iface));
                    break;
                }
            }
        }
    }
}
