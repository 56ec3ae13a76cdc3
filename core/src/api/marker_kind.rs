//! The kinds of console marker, by the words their lines start with: what waiters build their
//! needles from ([`super::marker`] renders the lines).

use super::marker::PREFIX;
use crate::layout::Slot;

/// The kinds of marker a waiter can look for, by their first word(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `slate: stage1 done slot=… root=… in … ms`
    Stage1Done,
    /// `slate: stage2 up in … ms since boot (… services)`
    Stage2Up,
    /// `slate: healthy slot=… version=… in … ms since boot`
    Healthy,
    /// `slate: unhealthy slot=… version=… failed=…`
    Unhealthy,
    /// `slate: committed slot=… version=…`
    Committed,
    /// `slate: rollback slot=… version=… reason=…`
    Rollback,
    /// `slate: fallback from=… to=… reason="…" marked=…`
    Fallback,
    /// `slate: installing <product> <version> into slot … (<device>)`
    Installing,
    /// `slate: installed slot=… version=… in … s; reboot to try it`
    Installed,
    /// `slate: rebooting into the new slot`
    RebootingIntoNewSlot,
    /// `slate: stage1 failed: …`
    Stage1Failed,
    /// `slate: stage2 failed: …`
    Stage2Failed,
    /// `slate: service <name> failed to start: …` or `slate: service <name> exited (…); …`
    Service,
    /// `slate: warning: …`
    Warning,
    /// `slate: boot retry: …`, printed by the boot-retry loader of Secure Boot images (its
    /// own UEFI program, which cannot link this crate) when systemd-boot returned.
    BootRetry,
    /// `slate: update refused: …`
    UpdateRefused,
    /// `slate: esp repaired: …`
    EspRepaired,
    /// `slate: cut-point <step>`
    CutPoint,
    /// `slate: shutdown reboot|poweroff`
    Shutdown,
    /// `slate: identity fingerprint=sha256:…`
    Identity,
    /// `slate: below floor slot=… epoch=… floor=…; not started`
    BelowFloor,
    /// `slate: api https port=… operators=…` or `slate: api http port=… (insecure)`
    Api,
    /// `slate: boot disk /dev/… esp=<partuuid>`
    BootDisk,
    /// `slate: data grown …`
    DataGrown,
    /// `slate: network lease iface=… address=…/… router=…`
    NetworkLease,
    /// `slate: secure boot on|off lockdown=… built_for=…`
    SecureBoot,
    /// `slate: data sealed enrolled|unlocked ms=…`
    DataSealed,
    /// `slate: data plain: …`
    DataPlain,
    /// `slate: channel up-to-date version=…`
    ChannelUpToDate,
    /// `slate: channel waiting version=… wave=… ready_at=…`
    ChannelWaiting,
    /// `slate: channel update version=… reason=…`
    ChannelUpdate,
    /// `slate: channel error kind=…: …`
    ChannelError,
    /// `slate: channel resumed version=… from_slot=…`
    ChannelResumed,
    /// `slate: channel fetched version=… bytes=… resumes=… from_slot=… copied=… requests=… patch=…`
    ChannelFetched,
    /// `slate: operators crl this_update=…`
    OperatorsCrl,
    /// `slate: channel fetching version=… mode=full|delta bytes=… of …`
    ChannelFetching,
    /// `slate: staged slot=… version=… apply_at=<unix seconds>|manual`
    Staged,
    /// `slate: applying slot=… version=…`
    Applying,
    /// `slate: factory reset identity=kept|new`
    FactoryReset,
    /// `slate: consent not-now|no version=… ask_again_at=…: reason`
    Consent,
    /// `slate: fleet polling server=… controller=…`
    FleetPolling,
    /// `slate: fleet action id=… version=… step=…`
    FleetAction,
    /// `slate: fleet feedback id=… execution=… finished=… sent|queued`
    FleetFeedback,
    /// `slate: fleet error: …`
    FleetError,
}

impl Kind {
    /// The words after `slate: ` that start this kind of line.
    pub fn words(self) -> &'static str {
        match self {
            Kind::Stage1Done => "stage1 done",
            Kind::Stage2Up => "stage2 up",
            Kind::Healthy => "healthy",
            Kind::Unhealthy => "unhealthy",
            Kind::Committed => "committed",
            Kind::Rollback => "rollback",
            Kind::Fallback => "fallback",
            Kind::Installing => "installing",
            Kind::Installed => "installed",
            Kind::RebootingIntoNewSlot => "rebooting into the new slot",
            Kind::Stage1Failed => "stage1 failed:",
            Kind::Stage2Failed => "stage2 failed:",
            Kind::Service => "service",
            Kind::Warning => "warning:",
            Kind::BootRetry => "boot retry:",
            Kind::UpdateRefused => "update refused:",
            Kind::EspRepaired => "esp repaired:",
            Kind::CutPoint => "cut-point",
            Kind::Shutdown => "shutdown",
            Kind::Identity => "identity",
            Kind::BelowFloor => "below floor",
            Kind::Api => "api",
            Kind::BootDisk => "boot disk",
            Kind::DataGrown => "data grown",
            Kind::NetworkLease => "network lease",
            Kind::SecureBoot => "secure boot",
            Kind::DataSealed => "data sealed",
            Kind::DataPlain => "data plain:",
            Kind::ChannelUpToDate => "channel up-to-date",
            Kind::ChannelWaiting => "channel waiting",
            Kind::ChannelUpdate => "channel update",
            Kind::ChannelError => "channel error",
            Kind::ChannelResumed => "channel resumed",
            Kind::ChannelFetched => "channel fetched",
            Kind::OperatorsCrl => "operators crl",
            Kind::ChannelFetching => "channel fetching",
            Kind::Staged => "staged",
            Kind::Applying => "applying",
            Kind::FactoryReset => "factory reset",
            Kind::Consent => "consent",
            Kind::FleetPolling => "fleet polling",
            Kind::FleetAction => "fleet action",
            Kind::FleetFeedback => "fleet feedback",
            Kind::FleetError => "fleet error:",
        }
    }

    /// `slate: <words>`: matches every line of this kind.
    pub fn prefix(self) -> String {
        format!("{PREFIX}{}", self.words())
    }

    /// `slate: <words> slot=<slot>`: this kind of line about one slot.
    pub fn on(self, slot: Slot) -> String {
        format!("{} slot={slot}", self.prefix())
    }

    /// `slate: <words> slot=<slot> version=<version>`.
    pub fn on_version(self, slot: Slot, version: &str) -> String {
        format!("{} version={version}", self.on(slot))
    }
}
