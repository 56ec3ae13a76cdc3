//! A budget of TLS handshakes, taken before each one: per address and in all.
//!
//! A handshake costs the device an ECDHE and a signature on the agent's one thread; a peer on
//! the network that opens connections as fast as it can would otherwise spend that thread on
//! handshakes. Connections beyond the budget are closed before the handshake. Each address
//! has a bucket of `per_address` tokens refilled at `per_address_rate` a second, and all
//! addresses share one of `total` refilled at `total_rate`, so one address cannot spend the
//! whole budget. Pure (the caller passes the time), so the policy is unit-tested.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// The budget's sizes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Handshakes one address may start at once.
    pub per_address: f64,
    /// Handshakes one address may start per second, on average.
    pub per_address_rate: f64,
    /// Handshakes all addresses may start at once.
    pub total: f64,
    /// Handshakes all addresses may start per second, on average.
    pub total_rate: f64,
}

impl Limits {
    /// What the agent uses: a LAN's operators and monitoring never come near it (a NAT or a
    /// QEMU host shows many of them as one address), and a handshake costs a few milliseconds,
    /// so one address can spend at most a few percent of the agent's thread.
    pub const AGENT: Limits = Limits {
        per_address: 50.0,
        per_address_rate: 25.0,
        total: 200.0,
        total_rate: 100.0,
    };
}

/// Addresses remembered at most: the oldest full buckets are forgotten first.
const MAX_ADDRESSES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(size: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: size,
            at: now,
        }
    }

    fn refill(&mut self, size: f64, rate: f64, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + secs * rate).min(size);
        self.at = now;
    }
}

/// The budget.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    total: Bucket,
    addresses: HashMap<IpAddr, Bucket>,
}

impl Budget {
    /// A full budget.
    pub fn new(limits: Limits, now: Instant) -> Budget {
        Budget {
            limits,
            total: Bucket::full(limits.total, now),
            addresses: HashMap::new(),
        }
    }

    /// Whether a handshake from `addr` may start now (and spends a token if so).
    pub fn allow(&mut self, addr: IpAddr, now: Instant) -> bool {
        let l = self.limits;
        self.total.refill(l.total, l.total_rate, now);
        if self.addresses.len() >= MAX_ADDRESSES && !self.addresses.contains_key(&addr) {
            // Forget the addresses whose buckets have refilled: they owe nothing.
            self.addresses.retain(|_, b| {
                b.refill(l.per_address, l.per_address_rate, now);
                b.tokens < l.per_address
            });
            if self.addresses.len() >= MAX_ADDRESSES {
                return false;
            }
        }
        let bucket = self
            .addresses
            .entry(addr)
            .or_insert_with(|| Bucket::full(l.per_address, now));
        bucket.refill(l.per_address, l.per_address_rate, now);
        if bucket.tokens < 1.0 || self.total.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        self.total.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LIMITS: Limits = Limits {
        per_address: 3.0,
        per_address_rate: 1.0,
        total: 5.0,
        total_rate: 2.0,
    };

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn one_address_spends_its_own_share_and_the_others_theirs() {
        let t0 = Instant::now();
        let mut b = Budget::new(LIMITS, t0);
        let flood: Vec<bool> = (0..10).map(|_| b.allow(ip(1), t0)).collect();
        assert_eq!(flood.iter().filter(|a| **a).count(), 3, "{flood:?}");
        // Another address still gets through, until the total is spent.
        assert!(b.allow(ip(2), t0));
        assert!(b.allow(ip(2), t0));
        assert!(!b.allow(ip(3), t0), "the total is spent");
        // Time refills both: after a second, the flooder has one more, the total two.
        let t1 = t0 + Duration::from_secs(1);
        assert!(b.allow(ip(1), t1));
        assert!(!b.allow(ip(1), t1));
        assert!(b.allow(ip(3), t1));
        assert!(!b.allow(ip(4), t1));
    }

    #[test]
    fn addresses_are_forgotten_once_they_owe_nothing() {
        let t0 = Instant::now();
        let limits = Limits {
            total: 1e9,
            total_rate: 1e9,
            ..LIMITS
        };
        let mut b = Budget::new(limits, t0);
        for i in 0..MAX_ADDRESSES as u32 {
            assert!(b.allow(IpAddr::from(i.to_be_bytes()), t0));
        }
        // Full of addresses that each owe a token: a new one is refused...
        assert!(!b.allow(ip(250), t0));
        // ...until their buckets have refilled.
        assert!(b.allow(ip(250), t0 + Duration::from_secs(2)));
        assert!(b.addresses.len() < 10, "{}", b.addresses.len());
    }
}
