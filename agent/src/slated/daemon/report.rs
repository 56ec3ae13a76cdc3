//! What the agent reports: the status document and the metrics, from its state in memory, on
//! `/data` and on the ESP.

use super::{lock, slots, uptime_ms, Agent};
use slate_core::api::{HealthState, Outcome, Status};
use slate_core::layout::Slot;
use std::sync::atomic::Ordering;

impl Agent {
    /// The status with slots and state filled in.
    pub fn status(&self) -> Status {
        let mut s = lock(&self.status).clone();
        s.uptime_s = uptime_ms() as f64 / 1000.0;
        if let Some(es) = self.esp.as_ref().and_then(|e| e.entries().ok()) {
            s.slots = [Slot::A, Slot::B]
                .iter()
                .map(|&sl| slots::view(sl, &es))
                .collect();
        }
        let st = lock(&self.state);
        s.last_attempt = st.last_attempt.clone();
        s.last_refusal = st.last_refusal.clone();
        s.failed = st.failed.clone();
        s.boots = st.boots;
        s.security_epoch = st.security_epoch;
        drop(st);
        s.channel = lock(&self.channel).clone();
        s.fleet = lock(&self.fleet).clone();
        s.window = self.window_status();
        s.consent = lock(&self.consent).clone();
        s.staged = self.staged_status();
        s.progress = lock(&self.progress).as_mut().map(|a| {
            if let Some(done) = &a.done {
                a.tracker.update(done.load(Ordering::Relaxed), uptime_ms());
            }
            a.tracker.progress()
        });
        s
    }

    /// Prometheus text.
    pub fn metrics(&self) -> String {
        // The slots as the ESP shows them now (taken before the state lock, which status takes).
        let slots = self.status().slots;
        let st = lock(&self.state);
        let s = lock(&self.status);
        // An alert on 0 catches a device with nothing to fall back to (after an install that
        // failed while streaming, until the next one succeeds).
        let fallback_available = slots
            .iter()
            .any(|v| v.slot == s.slot.other() && v.state == slate_core::api::SlotState::Good);
        slate_core::api::metrics::Metrics {
            attempts: Outcome::ALL.iter().map(|&o| (o, st.counted(o))).collect(),
            bytes_written: st.bytes_written,
            last_install_seconds: st.last_install_seconds,
            forced: st.forced,
            boots: st.boots,
            healthy: s.health.state == HealthState::Passed,
            fallback_available,
            channel: lock(&self.channel).clone(),
            fleet: lock(&self.fleet).clone(),
            slots: slots.iter().map(|v| (v.slot, v.state)).collect(),
            window: self.window_status().map(|w| (w.open, st.window_overrides)),
            phase: lock(&self.progress).as_ref().map(|a| a.tracker.phase()),
            peak_resident_bytes: peak_resident_bytes(),
        }
        .render()
    }
}

/// This process's peak resident memory (`VmHWM` in `/proc/self/status`, in kB), in bytes.
fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_peak_resident_memory_is_read_from_proc() {
        let peak = super::peak_resident_bytes().expect("VmHWM in /proc/self/status");
        assert!(peak >= 1 << 20 && peak.is_multiple_of(1024), "{peak}");
    }
}
