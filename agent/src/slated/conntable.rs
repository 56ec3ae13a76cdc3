//! Which connections the agent's API keeps: a cap on all connections and on each address,
//! where a new connection beyond a cap pushes out the oldest one that has not authenticated.
//!
//! A flood of idle or half-open connections (from anyone who can reach the port) must neither
//! exhaust the agent's descriptors nor lock out an operator: a connection that presented a
//! valid operator certificate is never pushed out, and every other one is only kept until a
//! newer connection needs its place (or its handshake or header timeout ends it). Pure, so the
//! policy is unit-tested; the server holds it behind a mutex.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// The caps.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Connections in all.
    pub total: usize,
    /// Connections from one address.
    pub per_address: usize,
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
    pub fn admit(&mut self, addr: IpAddr, caps: Caps) -> (Admission, Option<u64>) {
        let from_addr = self.conns.values().filter(|c| c.addr == addr).count();
        let evictable = |only: Option<IpAddr>| {
            self.conns
                .iter()
                .find(|(_, c)| !c.authenticated && only.is_none_or(|a| c.addr == a))
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
    };

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn a_flood_pushes_out_its_own_oldest_and_never_an_operator() {
        let mut t = Table::default();
        let (_, op) = t.admit(ip(1), CAPS);
        t.authenticated(op.unwrap());
        let (_, a) = t.admit(ip(1), CAPS);
        let (_, b) = t.admit(ip(1), CAPS);
        // The address is full: the oldest unauthenticated one (a) goes, not the operator.
        let (d, c) = t.admit(ip(1), CAPS);
        assert_eq!(d, Admission::AcceptEvicting(a.unwrap()));
        assert_eq!(t.len(), 3);
        // Another address fills the last place, then pushes out the oldest flood connection.
        assert_eq!(t.admit(ip(2), CAPS).0, Admission::Accept);
        assert_eq!(
            t.admit(ip(2), CAPS).0,
            Admission::AcceptEvicting(b.unwrap())
        );
        // Once every connection in the way has authenticated, new ones are refused.
        for id in [c.unwrap(), 4, 5] {
            t.authenticated(id);
        }
        assert_eq!(t.admit(ip(3), CAPS), (Admission::Refuse, None));
        t.remove(op.unwrap());
        assert_eq!(t.admit(ip(3), CAPS).0, Admission::Accept);
    }
}
