//! Which DHCP answers a client takes, and when it renews, rebinds and gives up a lease.
//!
//! DHCP has no authentication: anyone on the link can answer. What a client can do is take
//! only answers that make sense and never let one answer hold it for long. So an answer is
//! taken only from the server the client is talking to (the one that made the offer; the one
//! that leased the address while renewing), only with a usable address (unicast, inside a
//! contiguous /8–/30 subnet, not its network or broadcast address) and a router on that subnet;
//! and however long a lease claims to be, the client asks again within an hour
//! ([`MAX_RENEW_S`]) and broadcasts for any server within two ([`Timers`]), so a rogue answer
//! strands a device for at most that long.

use super::{MessageType, ServerMessage};
use std::net::Ipv4Addr;

/// The longest a client waits to renew (T1), whatever the lease says.
pub const MAX_RENEW_S: u32 = 3600;
/// The shortest wait to renew: a server asking for renewals every second is not obeyed.
pub const MIN_RENEW_S: u32 = 10;
/// The longest lease taken (an infinite or 68-year lease reads as a day).
pub const MAX_LEASE_S: u32 = 86_400;
/// The shortest prefix (largest subnet) and the longest (smallest usable subnet) taken.
pub const PREFIXES: std::ops::RangeInclusive<u8> = 8..=30;

/// A lease the client took: what it applies, and when it acts again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub address: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// The default route's gateway.
    pub router: Ipv4Addr,
    /// DNS servers.
    pub dns: Vec<Ipv4Addr>,
    /// The server that leased it (renewals go to it by unicast).
    pub server: Ipv4Addr,
    /// When to renew, rebind and give it up.
    pub timers: Timers,
}

/// Seconds from the moment a lease was taken (RFC 2131 §4.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// T1: ask the leasing server to extend it (unicast).
    pub renew_s: u32,
    /// T2: ask any server (broadcast).
    pub rebind_s: u32,
    /// The end: the address is given up and the client starts again.
    pub expire_s: u32,
}

/// Why an answer is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No server identifier: a renewal could not be addressed to it.
    #[error("it names no server (option 54)")]
    NoServer,
    /// Not a unicast address a host may have.
    #[error("{0} is not an address a device can use")]
    Address(Ipv4Addr),
    /// The mask's ones are not contiguous.
    #[error("the subnet mask {0} is not contiguous")]
    Mask(Ipv4Addr),
    /// A subnet larger than /8 or smaller than /30.
    #[error("a /{0} subnet is not taken (only /8 to /30)")]
    Prefix(u8),
    /// The subnet's own network or broadcast address.
    #[error("{0} is the network or broadcast address of its /{1}")]
    NotAHost(Ipv4Addr, u8),
    /// No router: the device could not be reached from beyond its link.
    #[error("it names no router (option 3)")]
    NoRouter,
    /// A router outside the subnet, or the address itself.
    #[error("the router {0} is not another host of the subnet")]
    RouterOffLink(Ipv4Addr),
}

fn usable_host(a: Ipv4Addr) -> bool {
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || a.is_broadcast()
        || a.is_link_local()
        || a.octets()[0] >= 240)
}

fn mask_of(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// The lease an Ack (or an Offer, to decide whether to request it) would give, or why it is
/// not taken.
pub fn lease_from(m: &ServerMessage) -> Result<Lease, Refused> {
    let server = m.server.ok_or(Refused::NoServer)?;
    if !usable_host(m.address) {
        return Err(Refused::Address(m.address));
    }
    if let Some(mask) = m.mask {
        let bits = u32::from(mask);
        if bits.leading_ones() + bits.trailing_zeros() != 32 {
            return Err(Refused::Mask(mask));
        }
    }
    if !PREFIXES.contains(&m.prefix) {
        return Err(Refused::Prefix(m.prefix));
    }
    let mask = mask_of(m.prefix);
    let addr = u32::from(m.address);
    if addr & !mask == 0 || addr & !mask == !mask {
        return Err(Refused::NotAHost(m.address, m.prefix));
    }
    let router = m.router.ok_or(Refused::NoRouter)?;
    let r = u32::from(router);
    if r & mask != addr & mask || router == m.address || !usable_host(router) {
        return Err(Refused::RouterOffLink(router));
    }
    if r & !mask == 0 || r & !mask == !mask {
        return Err(Refused::RouterOffLink(router));
    }
    Ok(Lease {
        address: m.address,
        prefix: m.prefix,
        router,
        dns: m.dns.iter().copied().filter(|d| usable_host(*d)).collect(),
        server,
        timers: timers(m.lease_s, m.renewal_s, m.rebinding_s),
    })
}

/// The timers of a lease of `lease_s` (None: infinite) with the server's T1 and T2 if it sent
/// them, clamped: the lease to [`MAX_LEASE_S`], T1 to [[`MIN_RENEW_S`], [`MAX_RENEW_S`]], T2 to
/// at most an hour after T1; T1 < T2 < end.
pub fn timers(lease_s: Option<u32>, renewal_s: Option<u32>, rebinding_s: Option<u32>) -> Timers {
    let expire_s = lease_s
        .unwrap_or(MAX_LEASE_S)
        .clamp(3 * MIN_RENEW_S, MAX_LEASE_S);
    let renew_s = renewal_s
        .unwrap_or(expire_s / 2)
        .clamp(MIN_RENEW_S, MAX_RENEW_S)
        .min(expire_s / 2);
    let rebind_s = rebinding_s
        .unwrap_or(expire_s / 8 * 7)
        .min(renew_s.saturating_add(MAX_RENEW_S))
        .clamp(renew_s + 1, expire_s - 1);
    Timers {
        renew_s,
        rebind_s,
        expire_s,
    }
}

/// What the client waits for, so that only the answer it asked for is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Offers to a Discover.
    Offer {
        /// The Discover's transaction id.
        xid: u32,
    },
    /// The Ack (or Nak) of the server whose offer was requested.
    Ack {
        /// The Request's transaction id.
        xid: u32,
        /// The server that made the offer.
        server: Ipv4Addr,
        /// The address it offered.
        address: Ipv4Addr,
    },
    /// A renewal's answer: from the leasing server only.
    Renewal {
        /// The Request's transaction id.
        xid: u32,
        /// The leasing server.
        server: Ipv4Addr,
        /// The leased address.
        address: Ipv4Addr,
    },
    /// A rebinding's answer: any server, for the address held.
    Rebinding {
        /// The Request's transaction id.
        xid: u32,
        /// The leased address.
        address: Ipv4Addr,
    },
}

/// Whether `m` answers what the client waits for. A Nak counts (it ends the wait), but only
/// from the server asked (any server while rebinding, as RFC 2131 has it).
pub fn answers(w: &Waiting, m: &ServerMessage) -> bool {
    match *w {
        Waiting::Offer { xid } => m.xid == xid && m.kind == MessageType::Offer,
        Waiting::Ack {
            xid,
            server,
            address,
        }
        | Waiting::Renewal {
            xid,
            server,
            address,
        } => {
            m.xid == xid
                && m.server == Some(server)
                && match m.kind {
                    MessageType::Ack => m.address == address,
                    MessageType::Nak => true,
                    _ => false,
                }
        }
        Waiting::Rebinding { xid, address } => {
            m.xid == xid
                && match m.kind {
                    MessageType::Ack => m.address == address,
                    MessageType::Nak => true,
                    _ => false,
                }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::tests::reply;

    /// An Ack for 192.168.1.50/24 via .1 from server .1, with `extra` options.
    fn ack(yiaddr: [u8; 4], extra: &[u8]) -> ServerMessage {
        let mut opts = vec![54, 4, 192, 168, 1, 1, 51, 4, 0, 0, 0x0e, 0x10];
        opts.extend_from_slice(extra);
        ServerMessage::parse(&reply(5, 9, yiaddr, &opts)).unwrap()
    }

    const GOOD: &[u8] = &[1, 4, 255, 255, 255, 0, 3, 4, 192, 168, 1, 1];

    #[test]
    fn a_sane_lease_is_taken_with_clamped_timers() {
        let l = lease_from(&ack([192, 168, 1, 50], GOOD)).unwrap();
        assert_eq!(l.address, Ipv4Addr::new(192, 168, 1, 50));
        assert_eq!((l.prefix, l.router), (24, Ipv4Addr::new(192, 168, 1, 1)));
        assert_eq!(
            l.timers,
            Timers {
                renew_s: 1800,
                rebind_s: 3150,
                expire_s: 3600
            }
        );
    }

    #[test]
    fn rogue_answers_are_refused() {
        let bad = |yiaddr: [u8; 4], opts: &[u8]| lease_from(&ack(yiaddr, opts)).unwrap_err();
        // A /32, a /31, a /4, a non-contiguous mask.
        assert_eq!(
            bad(
                [192, 168, 1, 50],
                &[1, 4, 255, 255, 255, 255, 3, 4, 192, 168, 1, 1]
            ),
            Refused::Prefix(32)
        );
        assert_eq!(
            bad(
                [192, 168, 1, 50],
                &[1, 4, 255, 255, 255, 254, 3, 4, 192, 168, 1, 1]
            ),
            Refused::Prefix(31)
        );
        assert_eq!(
            bad(
                [192, 168, 1, 50],
                &[1, 4, 240, 0, 0, 0, 3, 4, 192, 168, 1, 1]
            ),
            Refused::Prefix(4)
        );
        assert_eq!(
            bad(
                [192, 168, 1, 50],
                &[1, 4, 255, 0, 255, 0, 3, 4, 192, 168, 1, 1]
            ),
            Refused::Mask(Ipv4Addr::new(255, 0, 255, 0))
        );
        // No router, a router elsewhere, the address as its own router.
        assert_eq!(
            bad([192, 168, 1, 50], &[1, 4, 255, 255, 255, 0]),
            Refused::NoRouter
        );
        assert_eq!(
            bad(
                [192, 168, 1, 50],
                &[1, 4, 255, 255, 255, 0, 3, 4, 10, 9, 9, 9]
            ),
            Refused::RouterOffLink(Ipv4Addr::new(10, 9, 9, 9))
        );
        assert_eq!(
            bad(
                [192, 168, 1, 50],
                &[1, 4, 255, 255, 255, 0, 3, 4, 192, 168, 1, 50]
            ),
            Refused::RouterOffLink(Ipv4Addr::new(192, 168, 1, 50))
        );
        // Addresses no host has, and the subnet's own.
        for a in [
            [0, 0, 0, 0],
            [127, 0, 0, 5],
            [224, 0, 0, 1],
            [255, 255, 255, 255],
            [169, 254, 1, 1],
            [250, 1, 1, 1],
        ] {
            assert_eq!(bad(a, GOOD), Refused::Address(Ipv4Addr::from(a)));
        }
        assert_eq!(
            bad([192, 168, 1, 255], GOOD),
            Refused::NotAHost(Ipv4Addr::new(192, 168, 1, 255), 24)
        );
        assert_eq!(
            bad([192, 168, 1, 0], GOOD),
            Refused::NotAHost(Ipv4Addr::new(192, 168, 1, 0), 24)
        );
        // No server identifier.
        let mut opts = GOOD.to_vec();
        opts.extend_from_slice(&[51, 4, 0, 0, 0x0e, 0x10]);
        let m = ServerMessage::parse(&reply(5, 9, [192, 168, 1, 50], &opts)).unwrap();
        assert_eq!(lease_from(&m).unwrap_err(), Refused::NoServer);
    }

    #[test]
    fn a_lease_of_68_years_is_renewed_within_the_hour_and_rebound_within_two() {
        let t = timers(Some(u32::MAX - 1), None, None);
        assert_eq!(t.renew_s, MAX_RENEW_S);
        assert_eq!(t.rebind_s, 2 * MAX_RENEW_S);
        assert_eq!(t.expire_s, MAX_LEASE_S);
        let t = timers(None, Some(u32::MAX), Some(u32::MAX));
        assert_eq!((t.renew_s, t.rebind_s), (MAX_RENEW_S, 2 * MAX_RENEW_S));
        // A lease of a second is read as the shortest one taken; T1 < T2 < end always.
        let t = timers(Some(1), Some(0), Some(0));
        assert_eq!(
            t,
            Timers {
                renew_s: 10,
                rebind_s: 11,
                expire_s: 30
            }
        );
        for lease in [30, 31, 100, 7200, 86_400, 1 << 30] {
            for t1 in [None, Some(0), Some(5), Some(lease), Some(u32::MAX)] {
                for t2 in [None, Some(0), Some(lease / 2), Some(u32::MAX)] {
                    let t = timers(Some(lease), t1, t2);
                    assert!(
                        t.renew_s < t.rebind_s && t.rebind_s < t.expire_s,
                        "{lease} {t1:?} {t2:?}: {t:?}"
                    );
                    assert!(t.renew_s <= MAX_RENEW_S && t.rebind_s <= t.renew_s + MAX_RENEW_S);
                }
            }
        }
    }

    #[test]
    fn only_the_server_asked_is_answered() {
        let ours = ack([192, 168, 1, 50], GOOD);
        let wait = Waiting::Ack {
            xid: 9,
            server: Ipv4Addr::new(192, 168, 1, 1),
            address: Ipv4Addr::new(192, 168, 1, 50),
        };
        assert!(answers(&wait, &ours));
        // Another server's Ack (or Nak) with the right xid, another address, another xid.
        let mut theirs = ours.clone();
        theirs.server = Some(Ipv4Addr::new(192, 168, 1, 66));
        assert!(!answers(&wait, &theirs));
        theirs.kind = MessageType::Nak;
        assert!(!answers(&wait, &theirs));
        let mut other = ours.clone();
        other.address = Ipv4Addr::new(192, 168, 1, 51);
        assert!(!answers(&wait, &other));
        let mut late = ours.clone();
        late.xid = 10;
        assert!(!answers(&wait, &late));
        // Rebinding takes any server's answer for the address held.
        let rebind = Waiting::Rebinding {
            xid: 9,
            address: Ipv4Addr::new(192, 168, 1, 50),
        };
        let mut any = ours.clone();
        any.server = Some(Ipv4Addr::new(192, 168, 1, 66));
        assert!(answers(&rebind, &any));
        assert!(!answers(&Waiting::Offer { xid: 9 }, &ours));
    }
}
