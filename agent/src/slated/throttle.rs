//! At most one line a second for an event that a client can repeat at will (refused bundles,
//! failed accepts), counting what was held back, so neither the console nor /data fills.

use std::time::{Duration, Instant};

/// When the event was last let through, and how many were held back since.
#[derive(Debug, Default)]
pub struct Throttle {
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    /// Whether to print this occurrence: Some(how many were held back before it), or None
    /// (held back and counted).
    pub fn admit(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_a_second_and_the_rest_counted() {
        let mut t = Throttle::default();
        assert_eq!(t.admit(), Some(0));
        assert_eq!(t.admit(), None);
        assert_eq!(t.admit(), None);
        t.last = t.last.map(|l| l - Duration::from_secs(2));
        assert_eq!(t.admit(), Some(2));
    }
}
