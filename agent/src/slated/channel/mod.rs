//! Pulling updates from a static TUF repository (`[update] channel`): check on a jittered
//! schedule, verify the TUF chain (tough), decide with the code the fleet simulator runs
//! (`slate_core::channel::decide`), and install through the very path `slate push` uses, so
//! every check and marker the gauntlet proved holds for pulls too.

mod crl;
mod delta;
pub(crate) mod download;
pub(crate) mod https;
mod patch;
mod pieces;
mod pull;
pub mod ratelimit;
#[cfg(test)]
mod ratelimit_tests;
pub(crate) mod seed;
mod seen;
mod tier;
mod transport;
pub mod trusted_root;
#[cfg(test)]
mod trusted_root_tests;

use crate::slated::daemon::{now, Agent};
use crate::slated::resume;
use crate::{lock, marker};
use anyhow::{Context, Result};
use slate_core::api::{BootState, ChannelError, ChannelFailure, ChannelStatus, Marker};
use slate_core::channel::{
    decide, Decision, DeviceView, Outcome, ReleaseManifest, Scheduler, TargetBackoff, UpdateConfig,
    RELEASE_TARGET,
};
use slate_core::Digest32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tough::{ExpirationEnforcement, RepositoryLoader, TargetName};

pub use download::StreamReader;
pub use https::Https;

/// Where the seed lives.
pub const SEED: &str = "/data/slate/seed";
/// tough's datastore: the newest metadata this device trusted, so a server that goes back to
/// older metadata (a replay, a frozen mirror) is refused across checks and reboots.
pub const DATASTORE: &str = "/data/slate/tuf";
/// Largest release manifest read.
const MAX_RELEASE: usize = 1 << 20;

/// Why a check failed, as the metrics count it.
#[derive(Debug)]
struct Failure {
    kind: ChannelFailure,
    error: anyhow::Error,
}

fn fail(kind: ChannelFailure) -> impl FnOnce(anyhow::Error) -> Failure {
    move |error| Failure { kind, error }
}

/// What a successful check found.
enum Checked {
    /// Nothing to do before `ready_at` (if any).
    Idle { ready_at: Option<u64> },
    /// The offered target failed before and its back-off runs until `until` (the last
    /// failure stays the status's `last_error`).
    Deferred { until: u64 },
    /// Installed: the machine reboots into it.
    Installed,
}

/// The channel's loop: never returns; every failure is reported and retried with backoff.
pub async fn run(agent: Arc<Agent>, cfg: UpdateConfig) {
    // Checks start once this boot's health checks have concluded and it is not on trial
    // (the install would refuse then). A good slot whose checks fail still pulls: the fix
    // for what fails may be the next release.
    // The in-memory status only: `Agent::status` would read the ESP's entries each time.
    let concluded = || {
        let s = lock(&agent.status);
        !matches!(s.boot, BootState::Trial { .. })
            && s.health.state != slate_core::api::HealthState::Pending
    };
    while !concluded() {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let seed = match seed::load_or_draw(Path::new(SEED)) {
        Ok(s) => s,
        Err(e) => {
            marker::warn(format!("channel: {e:#}; using a seed for this boot only"));
            slate_core::channel::Seed::from_random(seed::random().unwrap_or(0))
        }
    };
    let https = match Https::new(cfg.ca.as_deref()) {
        Ok(h) => match agent.policy.as_ref().and_then(|p| p.max_kib_s) {
            Some(kib_s) => h.capped(kib_s),
            None => h,
        },
        Err(e) => {
            marker::warn(format!("channel: {e:#}; pulling is off"));
            return;
        }
    };
    let downloads = lock(&agent.state).channel_downloads.clone();
    *lock(&agent.channel) = Some(ChannelStatus {
        url: cfg.channel.to_string(),
        seed: seed.get(),
        downloads,
        ..ChannelStatus::default()
    });
    let poll = cfg.poll();
    let mut scheduler = Scheduler::default();
    let mut memory = Memory::default();
    loop {
        let started = now();
        let result = check(&agent, &cfg, &https, seed, &mut memory).await;
        let outcome = {
            let mut guard = lock(&agent.channel);
            let st = guard.get_or_insert_with(ChannelStatus::default);
            st.checks += 1;
            st.last_check = Some(started);
            match &result {
                Ok(Checked::Idle { ready_at }) => {
                    st.last_success = Some(started);
                    st.last_error = None;
                    Outcome::Checked {
                        ready_at: *ready_at,
                    }
                }
                Ok(Checked::Deferred { until }) => {
                    st.last_success = Some(started);
                    Outcome::Checked {
                        ready_at: Some(*until),
                    }
                }
                Ok(Checked::Installed) => return,
                Err(f) => {
                    *st.failures.entry(f.kind).or_default() += 1;
                    let message = format!("{:#}", f.error);
                    st.last_error = Some(ChannelError {
                        kind: f.kind,
                        message: message.clone(),
                        at: started,
                    });
                    marker::emit(&Marker::ChannelError {
                        kind: f.kind,
                        message,
                    });
                    Outcome::Failed
                }
            }
        };
        let now_u = u64::try_from(now()).unwrap_or(0);
        let next = scheduler.next_check(&poll, now_u, outcome, seed::random().unwrap_or(0));
        if let Some(st) = lock(&agent.channel).as_mut() {
            st.next_check = i64::try_from(next).ok();
        }
        tokio::time::sleep(Duration::from_secs(next.saturating_sub(now_u).max(1))).await;
    }
}

/// What the channel's loop remembers between checks (not across reboots).
#[derive(Default)]
struct Memory {
    /// Each release target's failures.
    backoff: TargetBackoff,
    /// The sha256 of the operators' CRL target last handed to the operator CA.
    crl_seen: Option<Vec<u8>>,
    /// Delta tiers whose bundle did not match, by target: not taken again for it.
    mismatched: tier::Mismatched,
}

/// One check: TUF metadata, the release manifest, the decision, and the install it asks for.
async fn check(
    agent: &Arc<Agent>,
    cfg: &UpdateConfig,
    https: &Https,
    seed: slate_core::channel::Seed,
    memory: &mut Memory,
) -> Result<Checked, Failure> {
    let baked = std::fs::read(&cfg.root)
        .with_context(|| format!("reading {}", cfg.root))
        .map_err(fail(ChannelFailure::Config))?;
    let version = agent.image.version.clone();
    let query = format!("seed={}&version={version}", seed.get());
    let repo = load(
        https,
        &cfg.channel,
        query,
        &baked,
        Path::new(trusted_root::FILE),
    )
    .await?;
    if let Some(st) = lock(&agent.channel).as_mut() {
        st.metadata_expires = Some(repo.timestamp().signed.expires.as_second());
    }
    crl::take_operators_crl(agent, &repo, &mut memory.crl_seen).await;
    let Memory {
        backoff,
        mismatched,
        ..
    } = memory;
    let name = TargetName::new(RELEASE_TARGET).map_err(|e| fail(ChannelFailure::Tuf)(e.into()))?;
    let release: ReleaseManifest = match repo.read_target(&name).await {
        Ok(Some(stream)) => {
            use tough::IntoVec;
            let bytes = stream.into_vec().await.map_err(|e| {
                fail(ChannelFailure::Tuf)(anyhow::Error::new(e).context("reading release.json"))
            })?;
            if bytes.len() > MAX_RELEASE {
                return Err(fail(ChannelFailure::Tuf)(anyhow::anyhow!(
                    "release.json is larger than 1 MiB"
                )));
            }
            serde_json::from_slice(&bytes)
                .context("release.json")
                .map_err(fail(ChannelFailure::Tuf))?
        }
        Ok(None) => ReleaseManifest::default(),
        Err(e) => {
            return Err(fail(ChannelFailure::Tuf)(
                anyhow::Error::new(e).context("reading release.json"),
            ))
        }
    };
    // A version that failed here is offered again only once its back-off has run, and
    // never after its final failure.
    // The targets role signed when each release was published: the clock is at least that.
    if let Some(newest) = release.updates.iter().map(|u| u.published).max() {
        let newest = i64::try_from(newest).unwrap_or(i64::MAX);
        if newest > now() {
            crate::clock::observe(newest, "a release published in the channel");
        }
    }
    let failed = slate_core::retry::blocked(&lock(&agent.state).failed, now());
    let me = DeviceView {
        product: &agent.image.name,
        board: &agent.image.board,
        version: &version,
        seed,
        failed: &failed,
        version_lock: cfg.version_lock.as_ref(),
        ignore_waves: cfg.ignore_waves,
    };
    let now_u = u64::try_from(now()).unwrap_or(0);
    let decision = decide(&release, &me, now_u);
    let (update, reason) = match decision {
        Decision::UpToDate => {
            set_offer(agent, None, None, None);
            marker::emit(&Marker::ChannelUpToDate {
                version: version.to_string(),
            });
            return Ok(Checked::Idle { ready_at: None });
        }
        Decision::Wait { update, ready_at } => {
            let wave = update.waves.wave_of(seed).map(|w| w + 1);
            set_offer(
                agent,
                Some(update.version.to_string()),
                wave,
                Some(ready_at),
            );
            marker::emit(&Marker::ChannelWaiting {
                version: update.version.to_string(),
                wave: wave.unwrap_or(0),
                ready_at,
            });
            return Ok(Checked::Idle {
                ready_at: Some(ready_at),
            });
        }
        Decision::Install { update, reason } => (update, reason),
    };
    let wave = update.waves.wave_of(seed).map(|w| w + 1);
    set_offer(agent, Some(update.version.to_string()), wave, None);
    let target_name =
        TargetName::new(&update.target).map_err(|e| fail(ChannelFailure::Tuf)(e.into()))?;
    let target = repo
        .targets()
        .signed
        .targets
        .get(&target_name)
        .with_context(|| {
            format!(
                "release.json names {}, which the signed targets do not list",
                update.target
            )
        })
        .map_err(fail(ChannelFailure::Tuf))?;
    let sha256 = <[u8; 32]>::try_from(target.hashes.sha256.as_ref())
        .map(Digest32)
        .map_err(|_| {
            fail(ChannelFailure::Tuf)(anyhow::anyhow!(
                "the signed target {} has a sha256 of {} bytes, not 32",
                update.target,
                target.hashes.sha256.len()
            ))
        })?;
    let expected = download::Expected {
        length: target.length,
        sha256,
    };
    match backoff.may_fetch(&expected.sha256, now_u) {
        Ok(()) => {}
        Err((None, _)) => {
            return Err(fail(ChannelFailure::Install)(anyhow::anyhow!(
                "{} {} was refused before; waiting for another release",
                update.target,
                update.version
            )))
        }
        Err((Some(until), failures)) => {
            marker::warn(format!(
                "channel: {} {} failed {failures} time(s); the next try is at {until}",
                update.target, update.version
            ));
            return Ok(Checked::Deferred { until });
        }
    }
    let file = if repo.root().signed.consistent_snapshot {
        format!("{}.{}", expected.sha256, update.target)
    } else {
        update.target.clone()
    };
    let url = cfg
        .channel
        .target(&file, &format!("seed={}&version={version}", seed.get()))
        .ok_or_else(|| {
            fail(ChannelFailure::Tuf)(anyhow::anyhow!(
                "release.json names the target {file:?}, which is not a file name"
            ))
        })?;
    // Staged already: nothing is fetched again; the loop over staged updates applies it
    // when the policy lets it (download now, install later).
    if agent.staged_version().as_ref() == Some(&update.version) {
        let ready_at = agent
            .staged_status()
            .and_then(|s| s.apply_at)
            .and_then(|t| u64::try_from(t).ok());
        set_offer(agent, Some(update.version.to_string()), wave, ready_at);
        return Ok(Checked::Idle { ready_at: None });
    }
    // A device that is installing already (a push) is not sent the bundle only to refuse it
    // at the end: the check says who holds the lock and the next check tries again.
    match crate::slated::install::lock::try_take(Path::new(crate::slated::install::lock::PATH)) {
        Ok(free) => drop(free),
        Err(crate::slated::install::lock::NotTaken::Busy(r)) => {
            return Err(fail(ChannelFailure::Install)(
                anyhow::Error::new(r).context(format!(
                    "{} {} is not fetched now",
                    update.target, update.version
                )),
            ))
        }
        Err(crate::slated::install::lock::NotTaken::Failed(e)) => {
            return Err(fail(ChannelFailure::Install)(e))
        }
    }
    let chosen = pull::Chosen {
        update,
        reason,
        url,
        expected,
        now_u,
    };
    pull::pull(agent, cfg, https, &repo, chosen, backoff, mismatched).await
}

/// Loads the channel's TUF metadata from the newest root this device trusts, requires the
/// root chain's walk to end at "not found", and keeps the root it reached for the next check.
async fn load(
    https: &Https,
    channel: &slate_core::channel::ChannelUrl,
    query: String,
    baked: &[u8],
    kept_path: &Path,
) -> Result<tough::Repository, Failure> {
    let start = trusted_root::start(baked, std::fs::read(kept_path).ok().as_deref())
        .map_err(fail(ChannelFailure::Config))?;
    if let Some(w) = &start.warning {
        marker::warn(format!("channel: {w}"));
    }
    let transport = transport::HttpsTransport::new(https.clone(), query);
    let datastore = kept_path.parent().unwrap_or(Path::new(DATASTORE));
    std::fs::create_dir_all(datastore).ok();
    let loaded = RepositoryLoader::new(&start.root, channel.metadata(), channel.targets())
        .transport(transport.clone())
        .datastore(datastore)
        .expiration_enforcement(ExpirationEnforcement::Safe)
        .load()
        .await;
    let walk = transport.take_failed_root_step();
    let repo = loaded.map_err(|e| {
        let kind = classify(&e);
        Failure {
            kind,
            error: anyhow::Error::new(e).context("the channel's TUF metadata is refused"),
        }
    })?;
    trusted_root::walk_was_complete(walk).map_err(fail(ChannelFailure::Network))?;
    if let Err(e) = trusted_root::keep(kept_path, baked, repo.root()) {
        marker::warn(format!("channel: keeping the verified root: {e:#}"));
    }
    Ok(repo)
}

/// A random number for the back-off's jitter (0 when the kernel has none to give).
fn draw() -> u64 {
    seed::random().unwrap_or(0)
}

fn set_offer(agent: &Agent, version: Option<String>, wave: Option<usize>, ready_at: Option<u64>) {
    if let Some(st) = lock(&agent.channel).as_mut() {
        st.offered = version;
        st.wave = wave;
        st.ready_at = ready_at;
    }
}

/// The metrics' kind of a TUF load failure.
fn classify(e: &tough::error::Error) -> ChannelFailure {
    use tough::error::Error as E;
    match e {
        E::ExpiredMetadata { .. } => ChannelFailure::Expired,
        // A server going back to older metadata than this device already trusted: a replay,
        // a frozen mirror, a repository restored from an old backup.
        E::OlderMetadata { .. } => ChannelFailure::Replayed,
        E::Transport { .. } => ChannelFailure::Network,
        _ => ChannelFailure::Tuf,
    }
}
