//! `GET /v1/metrics`: the agent's counters in Prometheus's text format (version 0.0.4).
//!
//! The names, labels and help texts are what dashboards and alerts are written against, so
//! they are rendered here, in one place, and pinned by a golden test.

use super::{ChannelStatus, Outcome, SlotState};
use crate::layout::Slot;
use std::fmt::{self, Write};

/// What the agent reports at `/v1/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Update attempts by outcome, in [`Outcome::ALL`]'s order.
    pub attempts: Vec<(Outcome, u64)>,
    /// Bytes written by updates.
    pub bytes_written: u64,
    /// Seconds the last install took.
    pub last_install_seconds: f64,
    /// Installs asked for with `force`.
    pub forced: u64,
    /// Boots seen by the agent.
    pub boots: u64,
    /// This boot passed its health checks.
    pub healthy: bool,
    /// The other slot holds a good image to fall back to: an alert on 0 catches a device with
    /// nothing to fall back to.
    pub fallback_available: bool,
    /// The channel's counters, for an image that pulls.
    pub channel: Option<ChannelStatus>,
    /// The fleet client's counters, for an image that reports to a fleet server.
    pub fleet: Option<super::FleetStatus>,
    /// The state of each slot's boot entry.
    pub slots: Vec<(Slot, SlotState)>,
    /// For an image with maintenance windows: whether one is open now, and the pushes
    /// applied outside them with `--now`.
    pub window: Option<(bool, u64)>,
    /// The phase of the update being worked on (none: idle).
    pub phase: Option<super::Phase>,
    /// The agent's peak resident memory since it started, in bytes (`VmHWM`): what an
    /// install, by whichever tier, cost the device at most (none: not known).
    pub peak_resident_bytes: Option<u64>,
}

/// One metric's `# HELP` and `# TYPE` lines.
fn head(out: &mut String, name: &str, help: &str, kind: &str) -> fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

/// A metric without labels: its head and its value.
fn single(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    value: impl fmt::Display,
) -> fmt::Result {
    head(out, name, help, kind)?;
    writeln!(out, "{name} {value}")
}

impl Metrics {
    /// The text Prometheus scrapes.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) -> fmt::Result {
        head(
            out,
            "slate_update_attempts_total",
            "Update attempts by outcome.",
            "counter",
        )?;
        for (o, n) in &self.attempts {
            writeln!(out, "slate_update_attempts_total{{outcome=\"{o}\"}} {n}")?;
        }
        single(
            out,
            "slate_update_bytes_written_total",
            "Bytes written by updates.",
            "counter",
            self.bytes_written,
        )?;
        single(
            out,
            "slate_update_install_seconds",
            "Duration of the last install.",
            "gauge",
            self.last_install_seconds,
        )?;
        single(
            out,
            "slate_forced_installs_total",
            "Installs asked for with force.",
            "counter",
            self.forced,
        )?;
        single(
            out,
            "slate_boots_total",
            "Boots seen by the agent.",
            "counter",
            self.boots,
        )?;
        single(
            out,
            "slate_healthy",
            "1 when this boot passed its health checks.",
            "gauge",
            u8::from(self.healthy),
        )?;
        single(
            out,
            "slate_fallback_available",
            "1 when the other slot holds a good image to fall back to.",
            "gauge",
            u8::from(self.fallback_available),
        )?;
        if let Some(peak) = self.peak_resident_bytes {
            single(
                out,
                "slate_agent_peak_resident_bytes",
                "The agent's peak resident memory since it started (VmHWM).",
                "gauge",
                peak,
            )?;
        }
        if let Some(f) = &self.fleet {
            single(
                out,
                "slate_fleet_polls_total",
                "Polls of the fleet server.",
                "counter",
                f.polls,
            )?;
            single(
                out,
                "slate_fleet_errors_total",
                "Failed polls of the fleet server and answers of it the device refused.",
                "counter",
                f.errors,
            )?;
            single(
                out,
                "slate_fleet_feedback_queued",
                "Feedback kept on /data until the fleet server takes it.",
                "gauge",
                f.feedback_queued,
            )?;
            single(
                out,
                "slate_fleet_feedback_sent_total",
                "Feedback the fleet server took.",
                "counter",
                f.feedback_sent,
            )?;
        }
        if let Some(c) = &self.channel {
            single(
                out,
                "slate_channel_checks_total",
                "Checks of the update channel.",
                "counter",
                c.checks,
            )?;
            head(
                out,
                "slate_channel_failures_total",
                "Failed checks of the update channel, by kind.",
                "counter",
            )?;
            for (kind, n) in &c.failures {
                writeln!(out, "slate_channel_failures_total{{kind=\"{kind}\"}} {n}")?;
            }
            single(
                out,
                "slate_channel_bytes_fetched_total",
                "Bundle bytes fetched from the channel.",
                "counter",
                c.downloads.bytes_fetched,
            )?;
            single(
                out,
                "slate_channel_resumes_total",
                "Downloads continued after a drop or a power cut.",
                "counter",
                c.downloads.resumes,
            )?;
            single(
                out,
                "slate_channel_bytes_from_slot_total",
                "Bundle bytes a resumed download took from the idle slot instead of the network.",
                "counter",
                c.downloads.bytes_from_slot,
            )?;
            single(
                out,
                "slate_channel_bytes_copied_total",
                "Bundle bytes delta downloads copied from the running slot instead of the network.",
                "counter",
                c.downloads.bytes_copied,
            )?;
            single(
                out,
                "slate_channel_requests_total",
                "Requests made for bundles (a delta makes one per missing run).",
                "counter",
                c.downloads.requests,
            )?;
            single(
                out,
                "slate_channel_metadata_expires_seconds",
                "When the channel's timestamp expires (unix seconds).",
                "gauge",
                c.metadata_expires.unwrap_or(0),
            )?;
        }
        if let Some((open, overrides)) = self.window {
            single(
                out,
                "slate_update_window_open",
                "1 while a maintenance window is open (updates may be applied).",
                "gauge",
                u8::from(open),
            )?;
            single(
                out,
                "slate_update_window_overrides_total",
                "Updates applied outside the maintenance windows by an operator (slate apply, slate push --now).",
                "counter",
                overrides,
            )?;
        }
        head(
            out,
            "slate_update_phase",
            "1 for the phase of the update being worked on (idle: none is).",
            "gauge",
        )?;
        for p in [None].into_iter().chain(super::Phase::ALL.map(Some)) {
            let word = p.map_or("idle", super::Phase::as_str);
            writeln!(
                out,
                "slate_update_phase{{phase=\"{word}\"}} {}",
                u8::from(p == self.phase)
            )?;
        }
        head(
            out,
            "slate_slot_state",
            "The state of each slot's boot entry (1 for the current one).",
            "gauge",
        )?;
        for (slot, state) in &self.slots {
            writeln!(
                out,
                "slate_slot_state{{slot=\"{slot}\",state=\"{}\"}} 1",
                state.as_str()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_pinned() {
        let mut channel = ChannelStatus {
            checks: 7,
            downloads: crate::api::Downloads {
                bytes_fetched: 4096,
                resumes: 1,
                bytes_from_slot: 1024,
                ..Default::default()
            },
            metadata_expires: Some(1_900_000_000),
            ..ChannelStatus::default()
        };
        channel.failures.insert(crate::api::ChannelFailure::Tuf, 2);
        let m = Metrics {
            attempts: Outcome::ALL.iter().map(|&o| (o, 1)).collect(),
            bytes_written: 123,
            last_install_seconds: 4.5,
            forced: 0,
            boots: 3,
            healthy: true,
            fallback_available: false,
            channel: Some(channel),
            fleet: None,
            slots: vec![(Slot::A, SlotState::Good), (Slot::B, SlotState::Bad)],
            window: Some((false, 2)),
            phase: Some(crate::api::Phase::Verifying),
            peak_resident_bytes: Some(9_437_184),
        };
        let golden = "\
# HELP slate_update_attempts_total Update attempts by outcome.
# TYPE slate_update_attempts_total counter
slate_update_attempts_total{outcome=\"installed\"} 1
slate_update_attempts_total{outcome=\"committed\"} 1
slate_update_attempts_total{outcome=\"rolled-back\"} 1
slate_update_attempts_total{outcome=\"refused\"} 1
# HELP slate_update_bytes_written_total Bytes written by updates.
# TYPE slate_update_bytes_written_total counter
slate_update_bytes_written_total 123
# HELP slate_update_install_seconds Duration of the last install.
# TYPE slate_update_install_seconds gauge
slate_update_install_seconds 4.5
# HELP slate_forced_installs_total Installs asked for with force.
# TYPE slate_forced_installs_total counter
slate_forced_installs_total 0
# HELP slate_boots_total Boots seen by the agent.
# TYPE slate_boots_total counter
slate_boots_total 3
# HELP slate_healthy 1 when this boot passed its health checks.
# TYPE slate_healthy gauge
slate_healthy 1
# HELP slate_fallback_available 1 when the other slot holds a good image to fall back to.
# TYPE slate_fallback_available gauge
slate_fallback_available 0
# HELP slate_agent_peak_resident_bytes The agent's peak resident memory since it started (VmHWM).
# TYPE slate_agent_peak_resident_bytes gauge
slate_agent_peak_resident_bytes 9437184
# HELP slate_channel_checks_total Checks of the update channel.
# TYPE slate_channel_checks_total counter
slate_channel_checks_total 7
# HELP slate_channel_failures_total Failed checks of the update channel, by kind.
# TYPE slate_channel_failures_total counter
slate_channel_failures_total{kind=\"tuf\"} 2
# HELP slate_channel_bytes_fetched_total Bundle bytes fetched from the channel.
# TYPE slate_channel_bytes_fetched_total counter
slate_channel_bytes_fetched_total 4096
# HELP slate_channel_resumes_total Downloads continued after a drop or a power cut.
# TYPE slate_channel_resumes_total counter
slate_channel_resumes_total 1
# HELP slate_channel_bytes_from_slot_total Bundle bytes a resumed download took from the idle slot instead of the network.
# TYPE slate_channel_bytes_from_slot_total counter
slate_channel_bytes_from_slot_total 1024
# HELP slate_channel_bytes_copied_total Bundle bytes delta downloads copied from the running slot instead of the network.
# TYPE slate_channel_bytes_copied_total counter
slate_channel_bytes_copied_total 0
# HELP slate_channel_requests_total Requests made for bundles (a delta makes one per missing run).
# TYPE slate_channel_requests_total counter
slate_channel_requests_total 0
# HELP slate_channel_metadata_expires_seconds When the channel's timestamp expires (unix seconds).
# TYPE slate_channel_metadata_expires_seconds gauge
slate_channel_metadata_expires_seconds 1900000000
# HELP slate_update_window_open 1 while a maintenance window is open (updates may be applied).
# TYPE slate_update_window_open gauge
slate_update_window_open 0
# HELP slate_update_window_overrides_total Updates applied outside the maintenance windows by an operator (slate apply, slate push --now).
# TYPE slate_update_window_overrides_total counter
slate_update_window_overrides_total 2
# HELP slate_update_phase 1 for the phase of the update being worked on (idle: none is).
# TYPE slate_update_phase gauge
slate_update_phase{phase=\"idle\"} 0
slate_update_phase{phase=\"downloading\"} 0
slate_update_phase{phase=\"writing\"} 0
slate_update_phase{phase=\"verifying\"} 1
slate_update_phase{phase=\"staged\"} 0
slate_update_phase{phase=\"applying\"} 0
# HELP slate_slot_state The state of each slot's boot entry (1 for the current one).
# TYPE slate_slot_state gauge
slate_slot_state{slot=\"a\",state=\"good\"} 1
slate_slot_state{slot=\"b\",state=\"bad\"} 1
";
        assert_eq!(m.render(), golden);
    }
}
