//! One pull of the update a check chose: where its bytes come from (a resumed prefix, a
//! static patch, a delta, or the whole bundle — [`super::tier`]), the download streamed into
//! the install, and what the outcome means for the next check (the back-off, a tier that did
//! not match, the resume record).

use super::{delta, download, draw, fail, patch, resume, tier, Checked, Failure, Https};
use crate::marker;
use crate::slated::daemon::Agent;
use crate::slated::install::InstallError;
use slate_core::api::{ChannelFailure, Marker};
use slate_core::channel::{Reason, TargetBackoff, Update, UpdateConfig};
use slate_core::install::Refusal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The update a check chose to pull, and what it must be.
pub(super) struct Chosen<'a> {
    /// The release manifest's entry.
    pub update: &'a Update,
    /// Why it is installed (an upgrade, or a downgrade the manifest asks for).
    pub reason: Reason,
    /// Where its bundle is fetched from.
    pub url: url::Url,
    /// Its signed length and sha256.
    pub expected: download::Expected,
    /// The check's time (seconds since the epoch), for the back-off.
    pub now_u: u64,
}

/// Pulls `chosen` into the idle slot and installs it: the outcome is the check's.
pub(super) async fn pull(
    agent: &Arc<Agent>,
    cfg: &UpdateConfig,
    https: &Https,
    repo: &tough::Repository,
    chosen: Chosen<'_>,
    backoff: &mut TargetBackoff,
    mismatched: &mut tier::Mismatched,
) -> Result<Checked, Failure> {
    let Chosen {
        update,
        reason,
        url,
        expected,
        now_u,
    } = chosen;
    marker::emit(&Marker::ChannelUpdate {
        version: update.version.to_string(),
        reason: serde_json::to_value(reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
    });
    // What an earlier pull of this very target left durable in the idle slot.
    let idle = agent.slot.other();
    let record_path = Path::new(resume::RECORD);
    let prefix = download::SlotPrefix::left_for(&expected, idle);
    if let Some(p) = &prefix {
        marker::emit(&Marker::ChannelResumed {
            version: update.version.to_string(),
            from_slot: p.at.len,
        });
    }
    // By delta when the release has a chunk index and it is worth it: the stretches of the
    // root image the running slot holds are copied from it, the rest fetched by Range.
    // A patch made for the running release comes first (one file, only the new bytes) unless
    // the chunk index's delta costs less ([`tier`]).
    let running = delta::Running::of_this_boot(agent.slot);
    let setup = match &running {
        Ok(running) => {
            tier::prepare(
                repo,
                https,
                &url,
                &update.target,
                &expected,
                running,
                mismatched,
            )
            .await
        }
        Err(e) => {
            tracing::info!(error = %format!("{e:#}"), "no delta: the running slot is not known");
            None
        }
    };
    let (mode, cost, mut pieces, tree, setup_bytes, setup_requests) = match setup {
        Some(s) => (s.mode, s.cost, s.pieces, s.tree, s.fetched, s.requests),
        None => (
            slate_core::delta::Mode::Full,
            expected.length,
            Vec::new(),
            None,
            0,
            0,
        ),
    };
    marker::emit(&Marker::ChannelFetching {
        version: update.version.to_string(),
        mode: mode.as_str(),
        bytes: cost,
        of: expected.length,
    });
    // A resumed prefix comes first; copies it covers are dropped (its bytes are the same).
    pieces.splice(0..0, prefix.into_iter().map(download::Piece::from));
    let (tx, reader) = download::StreamReader::new();
    let feed = crate::slated::daemon::Feed {
        phase: slate_core::api::Phase::Downloading,
        total: expected.length,
        done: reader.counter(),
    };
    let worker_agent = agent.clone();
    let offered = update.version.clone();
    // Going back (max_version) or to a locked version is a downgrade the signed release
    // manifest asks for: the install allows it within the security epoch, as with --force.
    let force = !matches!(reason, slate_core::channel::Reason::Upgrade);
    let record = resume::Record::start(expected.sha256, expected.length, idle);
    let worker = tokio::task::spawn_blocking(move || {
        let note =
            |bundle_offset: u64, durable: u64| record.checkpoint(bundle_offset, durable, "channel");
        // Applied at once or staged (windows, reboot policy, the application's consent),
        // decided once the manifest is verified.
        let gate = |v: &slate_core::Version| {
            Ok(worker_agent.install_gate(v, slate_core::policy::Trigger::Device))
        };
        worker_agent.install_with(
            reader,
            force,
            Some(&offered),
            Some(&note),
            Some(feed),
            Some(&gate),
        )
    });
    let mut stats = download::Fetched::default();
    let fetched = download::fetch(
        https,
        &url,
        &expected,
        download::Pieces { list: pieces, tree },
        tx,
        &mut stats,
        &download::Patience::device(agent.config.min_upload_kib_s),
    )
    .await;
    if fetched.is_ok() {
        marker::emit(&Marker::ChannelFetched {
            version: update.version.to_string(),
            bytes: stats.bytes,
            resumes: stats.resumes,
            from_slot: stats.from_slot,
            copied: stats.copied,
            requests: stats.requests,
            patch: if mode == slate_core::delta::Mode::Static {
                setup_bytes
            } else {
                0
            },
        });
    }
    agent.count_download(&slate_core::api::Downloads {
        bytes_fetched: stats.bytes + setup_bytes,
        resumes: stats.resumes + u64::from(stats.from_slot > 0),
        bytes_from_slot: stats.from_slot,
        bytes_copied: stats.copied,
        requests: stats.requests + setup_requests,
        last_mode: Some(mode.as_str().to_string()),
    });
    let installed = worker
        .await
        .map_err(|e| fail(ChannelFailure::Install)(anyhow::anyhow!("install task: {e}")))?;
    // A download the network stopped keeps its record (the next check resumes); anything
    // else is over for this target: installed, refused, or bytes that were not the signed
    // ones (a prefix that did not survive included).
    if !fetched.as_ref().is_err_and(download::gave_up) {
        if let Err(e) = resume::forget(record_path) {
            marker::warn(format!("channel: {e:#}"));
        }
        patch::clean(Path::new(patch::DIR), None);
    }
    match (installed, fetched) {
        (Ok(i), Ok(())) if i.staged => Ok(Checked::Idle { ready_at: None }),
        (Ok(_), Ok(())) => {
            agent.progress_phase(slate_core::api::Phase::Applying, 0, None);
            marker::emit(&Marker::RebootingIntoNewSlot);
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = rustix::process::kill_process(
                rustix::process::Pid::INIT,
                rustix::process::Signal::TERM,
            );
            Ok(Checked::Installed)
        }
        (_, Err(e)) => {
            if download::mismatched(&e) && mode != slate_core::delta::Mode::Full {
                // The plan may be what was wrong: this tier is not taken again for this
                // target, and the running slot's cached index is made again next time.
                mismatched.record(expected.sha256, mode);
                if let Ok(r) = &running {
                    delta::forget_running_index(r);
                }
            }
            backoff.failed(expected.sha256, false, &cfg.poll(), now_u, draw());
            Err(fail(ChannelFailure::Download)(e))
        }
        (Err(e), Ok(())) => {
            // A bundle that is refused for what it is (signatures, compatibility, version,
            // contents) is not fetched again; a refusal for the moment (busy, on trial) is.
            let lasting = matches!(
                &e,
                InstallError::Refused(r) if !matches!(
                    r,
                    Refusal::OnTrial { .. }
                        | Refusal::Busy { .. }
                        | Refusal::NoEsp
                        | Refusal::Stalled { .. }
                        | Refusal::NothingStaged
                        | Refusal::ConsentHeld { .. }
                )
            );
            backoff.failed(expected.sha256, lasting, &cfg.poll(), now_u, draw());
            Err(fail(ChannelFailure::Install)(
                anyhow::Error::new(e)
                    .context(format!("{} {} is refused", update.target, update.version)),
            ))
        }
    }
}
