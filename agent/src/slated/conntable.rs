//! Which connections the agent's API keeps: a cap on all connections and on each address,
//! where a new connection beyond a cap pushes out the oldest one that has not authenticated.
//!
//! A flood of idle or half-open connections (from anyone who can reach the port) must neither
//! exhaust the agent's descriptors nor lock out an operator: a connection that presented a
//! valid operator certificate is never pushed out, and every other one is only kept until a
//! newer connection needs its place (or its handshake or header timeout ends it). A newer
//! connection from the same address pushes one out only after its handshake has had `grace`
//! to finish: otherwise churn from the address an operator shares (a NAT, a site's uplink)
//! pushes out the operator's own handshake before it can authenticate. Pure (the caller passes the time), so the policy is unit-tested; the
//! server holds it behind a mutex.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The caps.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Connections in all.
    pub total: usize,
    /// Connections from one address.
    pub per_address: usize,
    /// How long a new connection is safe from eviction: time for its TLS handshake.
    pub grace: Duration,
}

/// What to do with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Keep it.
    Accept,
    /// Keep it, closing the older connection with this id first.
    AcceptEvicting(u64),
    /// Close it: every connection in the way has authenticated.
    Refuse,
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    addr: IpAddr,
    authenticated: bool,
    since: Instant,
}

/// Open connections by id (ids grow, so the smallest is the oldest).
#[derive(Debug, Default)]
pub struct Table {
    next: u64,
    conns: BTreeMap<u64, Conn>,
}

impl Table {
    /// Connections open.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Decides on a connection from `addr` and, unless refused, records it; returns the
    /// decision and the new connection's id. The caller closes an evicted connection.
    pub fn admit(&mut self, addr: IpAddr, caps: Caps, now: Instant) -> (Admission, Option<u64>) {
        let from_addr = self.conns.values().filter(|c| c.addr == addr).count();
        let evictable = |only: Option<IpAddr>| {
            self.conns
                .iter()
                .find(|(_, c)| match only {
                    // Churn from one address never cuts short a handshake from that address
                    // (an operator behind the same NAT).
                    Some(a) => {
                        !c.authenticated
                            && c.addr == a
                            && now.saturating_duration_since(c.since) >= caps.grace
                    }
                    // The total cap makes room from the oldest, so that a flood from many
                    // addresses never keeps a new operator out.
                    None => !c.authenticated,
                })
                .map(|(id, _)| *id)
        };
        let decision = if from_addr >= caps.per_address {
            evictable(Some(addr)).map_or(Admission::Refuse, Admission::AcceptEvicting)
        } else if self.conns.len() >= caps.total {
            evictable(None).map_or(Admission::Refuse, Admission::AcceptEvicting)
        } else {
            Admission::Accept
        };
        if let Admission::AcceptEvicting(old) = decision {
            self.conns.remove(&old);
        }
        if decision == Admission::Refuse {
            return (decision, None);
        }
        let id = self.next;
        self.next += 1;
        self.conns.insert(
            id,
            Conn {
                addr,
                authenticated: false,
                since: now,
            },
        );
        (decision, Some(id))
    }

    /// The connection presented a valid operator certificate: it is never evicted.
    pub fn authenticated(&mut self, id: u64) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.authenticated = true;
        }
    }

    /// The connection closed.
    pub fn remove(&mut self, id: u64) {
        self.conns.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        total: 4,
        per_address: 3,
        grace: Duration::from_secs(2),
    };

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn a_flood_pushes_out_its_own_oldest_and_never_an_operator() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(10);
        let mut t = Table::default();
        let (_, op) = t.admit(ip(1), CAPS, t0);
        t.authenticated(op.unwrap());
        let (_, a) = t.admit(ip(1), CAPS, t0);
        let (_, b) = t.admit(ip(1), CAPS, t0);
        // The address is full: the oldest unauthenticated one (a) goes, not the operator.
        let (d, c) = t.admit(ip(1), CAPS, later);
        assert_eq!(d, Admission::AcceptEvicting(a.unwrap()));
        assert_eq!(t.len(), 3);
        // Another address fills the last place, then pushes out the oldest flood connection.
        assert_eq!(t.admit(ip(2), CAPS, later).0, Admission::Accept);
        assert_eq!(
            t.admit(ip(2), CAPS, later).0,
            Admission::AcceptEvicting(b.unwrap())
        );
        // Once every connection in the way has authenticated, new ones are refused.
        for id in [c.unwrap(), 4, 5] {
            t.authenticated(id);
        }
        assert_eq!(t.admit(ip(3), CAPS, later), (Admission::Refuse, None));
        t.remove(op.unwrap());
        assert_eq!(t.admit(ip(3), CAPS, later).0, Admission::Accept);
    }

    #[test]
    fn churn_from_a_shared_address_does_not_push_out_a_handshake_in_its_grace() {
        let t0 = Instant::now();
        let mut t = Table::default();
        // Churn fills the address, long ago.
        for _ in 0..2 {
            t.admit(ip(1), CAPS, t0);
        }
        // The operator, behind the same NAT, connects now and starts its handshake.
        let now = t0 + Duration::from_secs(60);
        let (d, op) = t.admit(ip(1), CAPS, now);
        assert_eq!(d, Admission::Accept);
        // Churn keeps coming within the operator's grace: it pushes out the old churn, then
        // is refused rather than push out the operator's handshake.
        let ms = |n| now + Duration::from_millis(n);
        assert!(matches!(
            t.admit(ip(1), CAPS, ms(10)).0,
            Admission::AcceptEvicting(id) if Some(id) != op
        ));
        assert!(matches!(
            t.admit(ip(1), CAPS, ms(20)).0,
            Admission::AcceptEvicting(id) if Some(id) != op
        ));
        for n in 30..40 {
            assert_eq!(t.admit(ip(1), CAPS, ms(n)), (Admission::Refuse, None));
        }
        // The handshake completes within its grace: it stays for good.
        t.authenticated(op.unwrap());
        let (d, _) = t.admit(ip(1), CAPS, now + Duration::from_secs(5));
        assert!(
            matches!(d, Admission::AcceptEvicting(id) if Some(id) != op),
            "{d:?}"
        );
    }
}
