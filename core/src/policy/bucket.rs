//! A token bucket: the bandwidth cap of channel downloads (`[update] max_kib_s`). The agent
//! asks it before each read of the socket how many bytes it may take now, and how long to
//! wait when none; the TCP window does the rest (a reader that does not read slows the
//! sender), so the server sends at the cap instead of in bursts the device then sleeps off.
//! Time comes in as an argument (nanoseconds on any monotonic clock).

/// Bytes per second, and how many may come at once.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    tokens: f64,
    last_ns: u64,
}

impl TokenBucket {
    /// A bucket for `rate` bytes a second, full at `now_ns`, holding at most a tenth of a
    /// second's worth (at least 16 KiB, one TLS record): enough to read whole records,
    /// little enough that the average over seconds is the rate.
    pub fn new(rate: u64, now_ns: u64) -> TokenBucket {
        let rate = rate.max(1);
        let burst = (rate / 10).max(16 << 10);
        TokenBucket {
            rate,
            burst,
            tokens: burst as f64,
            last_ns: now_ns,
        }
    }

    fn refill(&mut self, now_ns: u64) {
        let elapsed = now_ns.saturating_sub(self.last_ns) as f64 / 1e9;
        self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.burst as f64);
        self.last_ns = self.last_ns.max(now_ns);
    }

    /// How many bytes may be read now (at most `want`): 0 means wait [`Self::wait_ns`].
    pub fn allowance(&mut self, want: usize, now_ns: u64) -> usize {
        self.refill(now_ns);
        let whole = self.tokens.floor().max(0.0) as u64;
        usize::try_from(whole).unwrap_or(usize::MAX).min(want)
    }

    /// Takes `n` bytes that were read.
    pub fn take(&mut self, n: usize) {
        self.tokens -= n as f64;
    }

    /// Nanoseconds until at least one byte may be read (a millisecond's worth, so waits are
    /// not shorter than the timer is fine).
    pub fn wait_ns(&self) -> u64 {
        let need = (self.rate as f64 / 1000.0).max(1.0) - self.tokens;
        if need <= 0.0 {
            return 0;
        }
        (need / self.rate as f64 * 1e9).ceil() as u64
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
