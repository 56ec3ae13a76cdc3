//! The fleet simulation: N devices running the agent's own channel decisions
//! (`slate_core::channel`: seed, `decide`, `Scheduler`) against a simulated clock and a static
//! server that only counts requests. Nothing here decides anything the agent does not.

use slate_core::channel::{
    decide, Decision, DeviceView, Outcome, Poll, ReleaseManifest, Scheduler, Seed, Update, WaveFile,
};
use slate_core::Version;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Devices in the fleet.
    pub devices: u32,
    /// The release's waves.
    pub waves: WaveFile,
    /// The agent's polling settings.
    pub poll: Poll,
    /// Share of requests the server fails (0.0..1.0): each failure sends the device into
    /// backoff.
    pub error_rate: f64,
    /// Seconds from starting an install to running the new version (download, write, reboot,
    /// health checks).
    pub install_secs: u64,
    /// Seconds simulated.
    pub horizon: u64,
    /// Seed of the simulation's random numbers (device seeds, jitter, failures).
    pub seed: u64,
}

/// What happened.
#[derive(Debug)]
pub struct Outcomes {
    /// Per simulated second: requests the server received.
    pub requests: Vec<u32>,
    /// Per device: its seed, its wave (None: after the last), and when it ran the new version.
    pub devices: Vec<(Seed, Option<usize>, Option<u64>)>,
}

/// splitmix64: a small, good, seedable generator, so a run is repeatable from its seed.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The requests one check of the agent makes (`slated/channel`): tough's loader asks for the
/// next root (`N+1.root.json`, not found while the root is not rotated), then
/// `timestamp.json`, `snapshot.json` and `targets.json`; then the release file. An install
/// adds the bundle's download (one request when nothing fails).
const REQUESTS_PER_CHECK: u32 = 5;

/// Runs the simulation: the release is published at time 0; devices, booted at random
/// moments before it, poll on their own schedules.
pub fn run(setup: &Setup) -> Outcomes {
    let mut rng = Rng::new(setup.seed);
    let old = Version::new(1, 0, 0);
    let mut release = ReleaseManifest::default();
    release.publish(Update {
        product: "fleet".into(),
        board: "sim".into(),
        version: Version::new(2, 0, 0),
        target: "fleet-sim-2.0.0.slate".into(),
        published: 0,
        waves: setup.waves.resolve(0),
    });
    let n = setup.devices as usize;
    let mut seeds = Vec::with_capacity(n);
    let mut schedulers = vec![Scheduler::default(); n];
    let mut updated: Vec<Option<u64>> = vec![None; n];
    let mut queue = BinaryHeap::with_capacity(n);
    for i in 0..n {
        seeds.push(Seed::from_random(rng.next()));
        // Each device last checked at some moment of its interval before publishing.
        let first = rng.next() % setup.poll.interval.max(1);
        queue.push(Reverse((first, i)));
    }
    let horizon = setup.horizon;
    let mut requests = vec![0u32; usize::try_from(horizon).unwrap_or(usize::MAX)];
    while let Some(Reverse((now, i))) = queue.pop() {
        if now >= horizon {
            break;
        }
        let mut count = |n: u32| {
            if let Some(slot) = usize::try_from(now).ok().and_then(|t| requests.get_mut(t)) {
                *slot += n;
            }
        };
        let version = if updated[i].is_some_and(|t| t <= now) {
            Version::new(2, 0, 0)
        } else {
            old.clone()
        };
        let me = DeviceView {
            product: "fleet",
            board: "sim",
            version: &version,
            seed: seeds[i],
            failed: &[],
            version_lock: None,
            ignore_waves: false,
        };
        let outcome = if rng.unit() < setup.error_rate {
            // The first request failed, and the check ended there.
            count(1);
            Outcome::Failed
        } else {
            count(REQUESTS_PER_CHECK);
            match decide(&release, &me, now) {
                Decision::Install { .. } => {
                    count(1);
                    let done = now + setup.install_secs;
                    updated[i].get_or_insert(done);
                    Outcome::Checked { ready_at: None }
                }
                Decision::Wait { ready_at, .. } => Outcome::Checked {
                    ready_at: Some(ready_at),
                },
                Decision::UpToDate => Outcome::Checked { ready_at: None },
            }
        };
        let draw = rng.next();
        let mut next = schedulers[i].next_check(&setup.poll, now, outcome, draw);
        if updated[i].is_some_and(|t| t > now) {
            // Installing: the next check comes from the new version after its reboot.
            next = next.max(updated[i].unwrap_or(now));
        }
        queue.push(Reverse((next, i)));
    }
    let waves = setup.waves.resolve(0);
    Outcomes {
        requests,
        devices: seeds
            .iter()
            .zip(updated)
            .map(|(s, u)| (*s, waves.wave_of(*s), u))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(error_rate: f64) -> Setup {
        let waves = WaveFile::default_fleet();
        let end = waves.resolve(0).0.last().map_or(0, |w| w.end);
        Setup {
            devices: 5000,
            waves,
            poll: Poll::with_interval(3600),
            error_rate,
            install_secs: 600,
            horizon: end + 2 * 3600,
            seed: 7,
        }
    }

    #[test]
    fn no_device_updates_before_its_wave_and_every_device_updates() {
        for error_rate in [0.0, 0.2] {
            let s = setup(error_rate);
            let out = run(&s);
            let waves = s.waves.resolve(0);
            for (seed, wave, updated) in &out.devices {
                let t =
                    updated.expect("every device updates within two intervals of the last wave");
                let ready = waves.ready_at(*seed, 0);
                assert!(
                    t >= ready + s.install_secs,
                    "seed {seed:?} in wave {wave:?} updated at {t}, ready at {ready}"
                );
            }
            // Same seed, same run: the simulation is repeatable.
            assert_eq!(run(&s).requests, out.requests);
        }
    }
}
