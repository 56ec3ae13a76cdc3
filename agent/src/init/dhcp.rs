//! The DHCP client of stage 2 (`[network] dhcp = true`): get a lease on the configured
//! interface, apply it (address, default route, `/run/resolv.conf`), and keep renewing it.
//!
//! The messages are [`slate_core::dhcp`]'s. A UDP socket bound to the interface
//! (SO_BINDTODEVICE) with the broadcast flag set in every message is enough before the
//! interface has an address: servers broadcast their answers to such clients.

use crate::{marker, sys};
use anyhow::{bail, Context, Result};
use slate_core::dhcp::{ClientMessage, MessageType, ServerMessage, CLIENT_PORT, SERVER_PORT};
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

/// Where the lease's DNS servers go (`/etc/resolv.conf` links here in images that use DHCP).
pub const RESOLV_CONF: &str = "/run/resolv.conf";

fn socket(iface: &str) -> Result<UdpSocket> {
    let sock = UdpSocket::bind(("0.0.0.0", CLIENT_PORT))
        .with_context(|| format!("binding UDP port {CLIENT_PORT} for DHCP"))?;
    sock.set_broadcast(true)?;
    sys::bind_to_device(&sock, iface)?;
    Ok(sock)
}

/// Sends `msg` and waits up to `wait` for an answer of `want` (or a Nak) with its xid.
fn exchange(
    sock: &UdpSocket,
    msg: &ClientMessage,
    want: MessageType,
    wait: Duration,
) -> Result<Option<ServerMessage>> {
    sock.send_to(&msg.encode(), (Ipv4Addr::BROADCAST, SERVER_PORT))
        .context("sending a DHCP message")?;
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 1500];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        let n = match sock.recv(&mut buf) {
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
        match ServerMessage::parse(&buf[..n]) {
            Ok(m) if m.xid == msg.xid && (m.kind == want || m.kind == MessageType::Nak) => {
                return Ok(Some(m))
            }
            _ => continue,
        }
    }
    Ok(None)
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

/// One Discover → Offer → Request → Ack round, retried with a growing wait (4, 8, 16, 32 s).
pub fn acquire(iface: &str, hostname: &str) -> Result<ServerMessage> {
    let sock = socket(iface)?;
    let mac = sys::mac_address(iface)?;
    let mut wait = Duration::from_secs(4);
    for _ in 0..4 {
        let mut msg = ClientMessage {
            kind: MessageType::Discover,
            xid: xid(),
            mac,
            requested: None,
            server: None,
            hostname: Some(hostname.to_string()),
        };
        let Some(offer) = exchange(&sock, &msg, MessageType::Offer, wait)? else {
            wait *= 2;
            continue;
        };
        msg.kind = MessageType::Request;
        msg.requested = Some(offer.address);
        msg.server = offer.server;
        match exchange(&sock, &msg, MessageType::Ack, wait)? {
            Some(ack) if ack.kind == MessageType::Ack => return Ok(ack),
            _ => wait *= 2,
        }
    }
    bail!("no DHCP server answered on {iface}")
}

/// Applies a lease: the address (unless `previous` had the same, so a renewal does not drop
/// the interface's routes), the default route, and the DNS servers in [`RESOLV_CONF`].
pub fn apply(iface: &str, lease: &ServerMessage, previous: Option<&ServerMessage>) -> Result<()> {
    let same = previous.is_some_and(|p| (p.address, p.prefix) == (lease.address, lease.prefix));
    if !same {
        sys::set_ipv4(iface, lease.address, lease.prefix)?;
    }
    if let Some(gw) = lease.router {
        sys::add_default_route(iface, gw)?;
    }
    std::fs::write(RESOLV_CONF, slate_core::dhcp::resolv_conf(&lease.dns))
        .with_context(|| format!("writing {RESOLV_CONF}"))?;
    // Every service resolves names (PID 1's umask is 077).
    std::fs::set_permissions(
        RESOLV_CONF,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .with_context(|| format!("making {RESOLV_CONF} readable"))?;
    Ok(())
}

/// Gets and applies a lease, then renews it on its own thread for as long as PID 1 runs: at
/// half the lease, and after a failure every minute (a lost lease is acquired afresh).
pub fn start(iface: &str, hostname: &str) {
    let (iface, hostname) = (iface.to_string(), hostname.to_string());
    let spawned = std::thread::Builder::new()
        .name("dhcp".into())
        .spawn(move || {
            let mut current: Option<ServerMessage> = None;
            loop {
                let got = acquire(&iface, &hostname)
                    .and_then(|l| apply(&iface, &l, current.as_ref()).map(|()| l));
                let next = match got {
                    Ok(lease) => {
                        let changed = current.as_ref().is_none_or(|c| {
                            (c.address, c.prefix, c.router)
                                != (lease.address, lease.prefix, lease.router)
                        });
                        if changed {
                            marker::emit(&slate_core::api::Marker::NetworkLease {
                                iface: iface.clone(),
                                address: format!("{}/{}", lease.address, lease.prefix),
                                router: lease.router,
                            });
                        }
                        tracing::info!(
                            interface = %iface,
                            address = %format!("{}/{}", lease.address, lease.prefix),
                            router = ?lease.router,
                            lease_s = ?lease.lease_s,
                            "DHCP lease"
                        );
                        let after = lease.renew_after_s();
                        current = Some(lease);
                        after
                    }
                    Err(e) => {
                        marker::warn(format!("network {iface}: {e:#}; trying again in 60 s"));
                        60
                    }
                };
                std::thread::sleep(Duration::from_secs(next));
            }
        });
    if let Err(e) = spawned {
        marker::warn(format!("network: starting the DHCP client: {e}"));
    }
}
