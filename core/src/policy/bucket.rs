//! A token bucket: the bandwidth cap of channel downloads (`[update] max_kib_s`). The agent
//! asks it before each read of the socket how many bytes it may take now, and how long to
//! wait when none; the TCP window does the rest (a reader that does not read slows the
//! sender), so the server sends at the cap instead of in bursts the device then sleeps off.
//! Time comes in as an argument (nanoseconds on any monotonic clock).

/// Bytes per second, and how many may come at once. Kept in integers: tokens are counted in
/// billionths of a byte, so a nanosecond of refill at any rate is exact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    rate: u64,
    /// Most tokens held, in billionths of a byte.
    burst: u128,
    /// Tokens held, in billionths of a byte.
    tokens: u128,
    last_ns: u64,
}

const NANO: u128 = 1_000_000_000;

impl TokenBucket {
    /// A bucket for `rate` bytes a second, full at `now_ns`, holding at most a tenth of a
    /// second's worth (at least 16 KiB, one TLS record): enough to read whole records,
    /// little enough that the average over seconds is the rate.
    pub fn new(rate: u64, now_ns: u64) -> TokenBucket {
        let rate = rate.max(1);
        let burst = u128::from((rate / 10).max(16 << 10)) * NANO;
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last_ns: now_ns,
        }
    }

    fn refill(&mut self, now_ns: u64) {
        let elapsed = u128::from(now_ns.saturating_sub(self.last_ns));
        self.tokens = self
            .tokens
            .saturating_add(elapsed.saturating_mul(u128::from(self.rate)))
            .min(self.burst);
        self.last_ns = self.last_ns.max(now_ns);
    }

    /// How many bytes may be read now (at most `want`): 0 means wait [`Self::wait_ns`].
    pub fn allowance(&mut self, want: usize, now_ns: u64) -> usize {
        self.refill(now_ns);
        usize::try_from(self.tokens / NANO)
            .unwrap_or(usize::MAX)
            .min(want)
    }

    /// Takes `n` bytes that were read.
    pub fn take(&mut self, n: usize) {
        let n = u128::try_from(n).unwrap_or(u128::MAX);
        self.tokens = self.tokens.saturating_sub(n.saturating_mul(NANO));
    }

    /// Nanoseconds until a millisecond's worth of bytes may be read (so waits are not shorter
    /// than a timer is fine).
    pub fn wait_ns(&self) -> u64 {
        let need = u128::from((self.rate / 1000).max(1)) * NANO;
        let missing = need.saturating_sub(self.tokens);
        u64::try_from(missing.div_ceil(u128::from(self.rate))).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that always wants 64 KiB, run for `secs` of simulated time: the bytes it got.
    fn simulate(rate: u64, secs: u64) -> u64 {
        let mut b = TokenBucket::new(rate, 0);
        let (mut now, mut got) = (0u64, 0u64);
        while now < secs * 1_000_000_000 {
            let n = b.allowance(64 << 10, now);
            if n == 0 {
                now += b.wait_ns().max(1);
                continue;
            }
            b.take(n);
            got += n as u64;
            // Reading takes a little time too.
            now += 50_000;
        }
        got
    }

    #[test]
    fn the_average_is_the_rate_within_a_burst() {
        for rate in [16 << 10, 100_000, 1 << 20, 10 << 20] {
            let got = simulate(rate, 60);
            let want = rate * 60;
            let burst = (rate / 10).max(16 << 10);
            assert!(
                got <= want + burst && got + 2 * burst >= want,
                "rate {rate}: {got} of {want}"
            );
        }
    }

    #[test]
    fn an_idle_bucket_holds_only_its_burst() {
        let mut b = TokenBucket::new(1 << 20, 0);
        assert_eq!(b.allowance(usize::MAX, 3_600_000_000_000), (1 << 20) / 10);
        b.take((1 << 20) / 10);
        assert_eq!(b.allowance(100, 3_600_000_000_000), 0);
        assert!(b.wait_ns() > 0 && b.wait_ns() <= 1_000_000);
    }
}
