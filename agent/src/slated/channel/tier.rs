//! Which tier a pull takes when a release offers both: the static patch made for the running
//! release, or the chunk index (DESIGN §17). The patch is usually far smaller, and planning the
//! dynamic tier costs the index and the bundle's head, so the patch is taken without looking
//! further whenever it cannot lose: when it costs no more than the least the dynamic tier
//! could. Otherwise both are planned and the cheaper one is taken — a format-2 bundle's
//! patch carries its UKIs whole (the running UKI is not one of its sources), while the
//! dynamic tier copies them from the running UKI.

use super::delta::{self, Running, Setup};
use super::download::Expected;
use super::https::Https;
use super::patch;
use slate_core::delta::Mode;
use slate_core::Digest32;
use std::collections::HashMap;
use url::Url;

/// The tiers whose assembled bundle did not match a target's signed sha256, by target (kept
/// by the channel's loop until a reboot). Nothing says which was wrong — the index, the
/// patch, the running slot's cached index, or the server's copy — so the next pull of that
/// target takes another way, and the whole bundle once both tiers failed: a wrong index or
/// patch costs one attempt's bytes, never the device's updates.
#[derive(Debug, Default)]
pub struct Mismatched(HashMap<Digest32, (bool, bool)>);

impl Mismatched {
    /// A pull of `target` by `mode` ended with bytes that were not the signed ones.
    pub fn record(&mut self, target: Digest32, mode: Mode) {
        let e = self.0.entry(target).or_default();
        match mode {
            Mode::Delta => e.0 = true,
            Mode::Static => e.1 = true,
            Mode::Full => {}
        }
    }

    /// Whether a pull of `target` may take `mode` again.
    pub fn allows(&self, target: &Digest32, mode: Mode) -> bool {
        match (self.0.get(target), mode) {
            (Some(&(dynamic, _)), Mode::Delta) => !dynamic,
            (Some(&(_, patch)), Mode::Static) => !patch,
            _ => true,
        }
    }
}

/// Whether both tiers must be planned before one is chosen: the patch (`static_fetch`, the
/// bytes it still needs) costs more than the least the dynamic tier can (`dynamic_floor`: its
/// index and the bundle's head). Without one of the two there is nothing to compare.
pub fn plan_both(static_fetch: Option<u64>, dynamic_floor: Option<u64>) -> bool {
    matches!((static_fetch, dynamic_floor), (Some(s), Some(f)) if s > f)
}

/// Whether the planned dynamic tier beats a patch that needs `static_fetch` bytes.
pub fn dynamic_wins(static_fetch: u64, dynamic: &Setup) -> bool {
    dynamic.mode == Mode::Delta && dynamic.cost < static_fetch
}

/// The pull's plan: the static patch, the chunk index's delta, or a full fetch; None when
/// the release offers neither tier.
pub async fn prepare(
    repo: &tough::Repository,
    https: &Https,
    url: &Url,
    target: &str,
    expected: &Expected,
    running: &Running,
    mismatched: &Mismatched,
) -> Option<Setup> {
    let (may_patch, may_delta) = (
        mismatched.allows(&expected.sha256, Mode::Static),
        mismatched.allows(&expected.sha256, Mode::Delta),
    );
    if !may_patch || !may_delta {
        crate::marker::warn(format!(
            "channel: the last {} of {target} did not match its signed sha256; {}",
            if may_patch { "delta" } else { "static patch" },
            match (may_patch, may_delta) {
                (false, false) => "fetching the whole bundle",
                (false, true) => "trying the chunk index",
                _ => "trying the static patch, else the whole bundle",
            }
        ));
    }
    match (may_patch, may_delta) {
        (false, false) => return None,
        (false, true) => return delta::prepare(repo, https, url, target, expected, running).await,
        (true, false) => return patch::prepare(repo, target, expected, running).await,
        (true, true) => {}
    }
    let static_fetch = patch::fetch_cost(repo, target, running);
    let floor = delta::cost_floor(repo, target, expected);
    if !plan_both(static_fetch, floor) {
        return match patch::prepare(repo, target, expected, running).await {
            Some(s) => Some(s),
            None => delta::prepare(repo, https, url, target, expected, running).await,
        };
    }
    let dynamic = delta::prepare(repo, https, url, target, expected, running).await;
    if let (Some(d), Some(s)) = (&dynamic, static_fetch) {
        if dynamic_wins(s, d) {
            tracing::info!(
                patch = s,
                delta = d.cost,
                "the chunk index's delta costs less than the static patch"
            );
            return dynamic;
        }
    }
    match patch::prepare(repo, target, expected, running).await {
        // What planning the dynamic tier fetched counts too.
        Some(mut s) => {
            if let Some(d) = &dynamic {
                s.cost += d.fetched;
                s.fetched += d.fetched;
                s.requests += d.requests;
            }
            Some(s)
        }
        None => dynamic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(mode: Mode, cost: u64) -> Setup {
        Setup {
            mode,
            cost,
            pieces: Vec::new(),
            tree: None,
            fetched: 0,
            requests: 0,
        }
    }

    #[test]
    fn a_patch_that_cannot_lose_is_taken_without_planning_the_delta() {
        // A 5 KB patch against an index of 5 KB and an 8 KiB head: the patch.
        assert!(!plan_both(Some(5_300), Some(13_000)));
        // A patch kept from a cut attempt costs nothing more.
        assert!(!plan_both(Some(0), Some(13_000)));
        // Only one tier offered: nothing to compare.
        assert!(!plan_both(Some(20 << 20), None));
        assert!(!plan_both(None, Some(13_000)));
        // A 20 MB patch (a Secure Boot bundle's UKIs whole): plan both.
        assert!(plan_both(Some(20 << 20), Some(13_000)));
    }

    #[test]
    fn a_tier_that_did_not_match_is_not_tried_again_for_that_target() {
        let (a, b) = (Digest32([1; 32]), Digest32([2; 32]));
        let mut m = Mismatched::default();
        m.record(a, Mode::Full);
        assert!(m.allows(&a, Mode::Delta) && m.allows(&a, Mode::Static));
        m.record(a, Mode::Delta);
        assert!(!m.allows(&a, Mode::Delta) && m.allows(&a, Mode::Static));
        m.record(a, Mode::Static);
        assert!(!m.allows(&a, Mode::Static) && m.allows(&a, Mode::Full));
        // Another target is not concerned.
        assert!(m.allows(&b, Mode::Delta) && m.allows(&b, Mode::Static));
    }

    #[test]
    fn the_delta_is_taken_only_when_it_is_a_delta_and_cheaper() {
        assert!(dynamic_wins(20 << 20, &planned(Mode::Delta, 310_000)));
        assert!(!dynamic_wins(300_000, &planned(Mode::Delta, 310_000)));
        // A delta not worth it plans a full fetch: the patch stays cheaper.
        assert!(!dynamic_wins(20 << 20, &planned(Mode::Full, 1_000)));
    }
}
