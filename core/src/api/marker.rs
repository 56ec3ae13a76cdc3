//! Console markers: the `slate: …` lines the QEMU harness, the tests and operators wait for.
//!
//! Every marker is rendered here and nowhere else (DESIGN §8). Their wording is a contract:
//! add new variants, never reword old ones (the golden test pins each one). Waiters build
//! their needles from [`Kind`] so a test cannot wait for a line the device never prints.

use crate::digest::Digest32;
use crate::layout::Slot;

/// What every marker line starts with.
pub const PREFIX: &str = "slate: ";

pub use super::marker_kind::Kind;

/// A console marker with its values.
#[derive(Debug, Clone, PartialEq)]
pub enum Marker {
    /// Stage 1 mounted the verified root and hands over.
    Stage1Done {
        /// Slot booted.
        slot: Slot,
        /// Its verity root hash.
        root: Digest32,
        /// Milliseconds stage 1 took.
        ms: u64,
    },
    /// Stage 2 started its services.
    Stage2Up {
        /// Milliseconds since the kernel started.
        ms: u64,
        /// Services started.
        services: usize,
    },
    /// Every health check passed.
    Healthy {
        /// Running slot.
        slot: Slot,
        /// Running version.
        version: String,
        /// Milliseconds since the kernel started.
        ms: u64,
    },
    /// A health check failed.
    Unhealthy {
        /// Running slot.
        slot: Slot,
        /// Running version.
        version: String,
        /// `name: detail; …`
        failed: String,
    },
    /// A trial boot was blessed.
    Committed {
        /// Slot blessed.
        slot: Slot,
        /// Its version.
        version: String,
    },
    /// A trial version was given up.
    Rollback {
        /// The slot of the failed version.
        slot: Slot,
        /// The failed version.
        version: String,
        /// Why.
        reason: String,
    },
    /// Stage 1 gave up on a good slot that kept failing to become healthy.
    Fallback {
        /// Slot given up.
        from: Slot,
        /// Starts in a row without becoming healthy.
        starts: u32,
        /// The entry name it now has.
        marked: String,
    },
    /// An install started.
    Installing {
        /// Product.
        product: String,
        /// Version.
        version: String,
        /// Idle slot.
        slot: Slot,
        /// Its device node.
        device: String,
    },
    /// An install finished; the new slot waits for its trial boot.
    Installed {
        /// Slot written.
        slot: Slot,
        /// Version.
        version: String,
        /// Seconds it took.
        seconds: f64,
    },
    /// An update was refused.
    UpdateRefused {
        /// Why.
        reason: String,
    },
    /// The ESP was repaired before it was mounted.
    EspRepaired {
        /// What was fixed.
        what: String,
    },
    /// A test hook stopped the agent here (test images only).
    CutPoint {
        /// The step.
        step: super::CutPoint,
    },
    /// PID 1 shuts the machine down.
    Shutdown {
        /// Reboot (true) or power off.
        reboot: bool,
    },
    /// `slated install` reboots into what it installed.
    RebootingIntoNewSlot,
    /// The channel offers nothing newer for this device.
    ChannelUpToDate {
        /// The running version.
        version: String,
    },
    /// A newer version is published, but this device's wave has not reached it.
    ChannelWaiting {
        /// The version offered.
        version: String,
        /// This device's wave (1-based; 0: after the last wave).
        wave: usize,
        /// When it becomes ready (unix seconds).
        ready_at: u64,
    },
    /// The device takes a version from the channel.
    ChannelUpdate {
        /// The version taken.
        version: String,
        /// `upgrade`, `roll_back` or `locked`.
        reason: String,
    },
    /// A download that a power cut or restart stopped goes on from what the idle slot holds.
    ChannelResumed {
        /// The version being downloaded.
        version: String,
        /// Bytes taken from the slot instead of the network.
        from_slot: u64,
    },
    /// A bundle download ended with the signed bytes: what it cost on the wire.
    ChannelFetched {
        /// The version downloaded.
        version: String,
        /// Bundle bytes received from the server (any received twice included).
        bytes: u64,
        /// Continuations after drops.
        resumes: u64,
        /// Bytes taken from the idle slot instead.
        from_slot: u64,
        /// Bytes a delta copied from the running slot instead.
        copied: u64,
        /// Requests made to the server.
        requests: u64,
        /// Bytes of a static patch fetched for it (0 for a full or dynamic fetch, or a patch
        /// kept on /data from an attempt a power cut stopped).
        patch: u64,
    },
    /// A newer CRL of the operator CA was taken: the certificates it lists are refused from
    /// the next handshake on.
    OperatorsCrl {
        /// The CRL's thisUpdate (Unix seconds).
        this_update: i64,
    },
    /// A release's bundle is about to be fetched: whole, or by delta (the chunks the running
    /// slot lacks), and how many bytes that costs of the bundle's.
    ChannelFetching {
        /// The version.
        version: String,
        /// `full` or `delta`.
        mode: &'static str,
        /// Bytes it fetches (with the index and the requests' overhead for a delta).
        bytes: u64,
        /// The bundle's bytes.
        of: u64,
    },
    /// An update is installed into the idle slot and verified, and waits to be applied (its
    /// entry is staged: nothing boots it yet).
    Staged {
        /// The slot it is in.
        slot: Slot,
        /// Its version.
        version: String,
        /// When the device applies it by itself (Unix seconds; none: when an operator says).
        apply_at: Option<i64>,
    },
    /// A staged update is applied: its entry is bootable and the device reboots into it.
    Applying {
        /// The slot it is in.
        slot: Slot,
        /// Its version.
        version: String,
    },
    /// The application (`[update] consent`) held an update back.
    Consent {
        /// `not-now` (exit 75) or `no`.
        answer: &'static str,
        /// The version held back.
        version: String,
        /// When it is asked again (Unix seconds).
        ask_again_at: i64,
        /// What it said.
        reason: String,
    },
    /// The fleet client started: the server and the device's name there.
    FleetPolling {
        /// The server's base URL.
        server: String,
        /// The controller id.
        controller: String,
    },
    /// A step of a fleet server's action on the device.
    FleetAction {
        /// The action id.
        action: u64,
        /// The version it installs.
        version: String,
        /// `downloading`, `staged`, `installed`, `applying`, `canceled`, `refused`.
        step: &'static str,
    },
    /// A feedback to the fleet server: sent, or queued on /data because it could not be.
    FleetFeedback {
        /// The action id.
        action: u64,
        /// `proceeding`, `scheduled`, `downloaded`, `closed`, `rejected`.
        execution: String,
        /// `success`, `failure`, `none`.
        finished: String,
        /// Whether the server took it now.
        sent: bool,
    },
    /// A poll failed or the server's answer was refused; the device keeps running.
    FleetError {
        /// What is wrong.
        message: String,
    },
    /// Stage 1 wiped `/data` as the agent was asked to (floors, TUF root and CRL kept).
    FactoryReset {
        /// A new device identity is made (else the old one is kept).
        new_identity: bool,
    },
    /// A check of the channel failed; the device keeps running what it runs.
    ChannelError {
        /// The failure's kind.
        kind: super::ChannelFailure,
        /// What happened.
        message: String,
    },
    /// Stage 1 refused a slot whose image is below the device's security floor.
    BelowFloor {
        /// The slot refused.
        slot: Slot,
        /// Its image's epoch.
        epoch: u64,
        /// The device's floor.
        floor: u64,
    },
    /// The device's TLS identity, for operators to compare with what their tools pinned.
    Identity {
        /// sha256 of the device's certificate.
        fingerprint: crate::Fingerprint,
    },
    /// The agent's API is listening.
    Api {
        /// TCP port.
        port: u16,
        /// Mutual TLS (false: plain HTTP, development only).
        tls: bool,
        /// Whether an operator CA is configured (no CA: no request is authorised).
        operators: bool,
    },
    /// Stage 1 found the disk the firmware booted from; Slate's partitions are taken from it
    /// alone.
    BootDisk {
        /// Its block device (`/dev/vda`).
        device: String,
        /// The PARTUUID of the ESP systemd-boot was loaded from.
        esp: crate::guid::Guid,
    },
    /// The boot disk is larger than the image: its GPT now spans it and `data` (partition,
    /// then ext4) fills it. Printed for each of the two steps it took on this boot.
    DataGrown {
        /// `partition` (the GPT moved and `data` extended) or `filesystem` (ext4 grown).
        what: &'static str,
        /// New size of that in MiB.
        mib: u64,
    },
    /// The DHCP client applied a new lease (first, or a changed one; renewals of the same are
    /// silent): the device's address on a network nobody configured in the spec.
    NetworkLease {
        /// The interface.
        iface: String,
        /// Address with prefix (`10.0.2.15/24`).
        address: String,
        /// The default route's gateway, if the server gave one.
        router: Option<std::net::Ipv4Addr>,
    },
    /// What stage 1 found of UEFI Secure Boot, printed when it is on or the image was built
    /// for it: with it on, the root hash came from a command line the firmware authenticated.
    /// `built_for=true` with `off` means the root hash is only as good as the ESP.
    SecureBoot {
        /// The firmware's `SecureBoot` variable is 1.
        enabled: bool,
        /// The kernel's lockdown mode (`integrity`, `confidentiality`, `none`, or `unknown`).
        lockdown: String,
        /// The image was built with signed UKIs.
        built_for: bool,
    },
    /// Stage 1 opened a sealed `/data` with the key the TPM unsealed (`enrolled`: this boot
    /// sealed a new key and wrote the file system).
    DataSealed {
        /// `enrolled` or `unlocked`.
        how: &'static str,
        /// Milliseconds from the first TPM command to `/data` mounted.
        ms: u64,
    },
    /// A sealed-data image's `/data` is not encrypted, and why (no TPM at enrolment).
    DataPlain {
        /// Why.
        why: String,
    },
    /// A stage of PID 1 failed; the machine reboots.
    StageFailed {
        /// `stage1` or `stage2`.
        stage: &'static str,
        /// The error.
        error: String,
    },
    /// A supervised service failed to start.
    ServiceFailedToStart {
        /// Service.
        name: String,
        /// Why.
        error: String,
    },
    /// A supervised service exited.
    ServiceExited {
        /// Service.
        name: String,
        /// How it ended (Debug form of the exit status).
        exit: String,
        /// Milliseconds until it restarts; None when it is not restarted.
        restart_ms: Option<u128>,
    },
    /// Something is wrong but the boot goes on.
    Warning(String),
}

impl Marker {
    /// The kind of line this marker prints: its first words come from [`Kind::words`], so each
    /// word exists once, and a waiter's needle ([`Kind::prefix`]) matches what is printed.
    pub fn kind(&self) -> Kind {
        match self {
            Marker::Stage1Done { .. } => Kind::Stage1Done,
            Marker::Stage2Up { .. } => Kind::Stage2Up,
            Marker::Healthy { .. } => Kind::Healthy,
            Marker::Unhealthy { .. } => Kind::Unhealthy,
            Marker::Committed { .. } => Kind::Committed,
            Marker::Rollback { .. } => Kind::Rollback,
            Marker::Fallback { .. } => Kind::Fallback,
            Marker::Installing { .. } => Kind::Installing,
            Marker::Installed { .. } => Kind::Installed,
            Marker::UpdateRefused { .. } => Kind::UpdateRefused,
            Marker::EspRepaired { .. } => Kind::EspRepaired,
            Marker::CutPoint { .. } => Kind::CutPoint,
            Marker::Shutdown { .. } => Kind::Shutdown,
            Marker::RebootingIntoNewSlot => Kind::RebootingIntoNewSlot,
            Marker::ChannelUpToDate { .. } => Kind::ChannelUpToDate,
            Marker::ChannelWaiting { .. } => Kind::ChannelWaiting,
            Marker::ChannelUpdate { .. } => Kind::ChannelUpdate,
            Marker::ChannelResumed { .. } => Kind::ChannelResumed,
            Marker::ChannelFetched { .. } => Kind::ChannelFetched,
            Marker::OperatorsCrl { .. } => Kind::OperatorsCrl,
            Marker::ChannelFetching { .. } => Kind::ChannelFetching,
            Marker::Staged { .. } => Kind::Staged,
            Marker::Applying { .. } => Kind::Applying,
            Marker::FactoryReset { .. } => Kind::FactoryReset,
            Marker::Consent { .. } => Kind::Consent,
            Marker::FleetPolling { .. } => Kind::FleetPolling,
            Marker::FleetAction { .. } => Kind::FleetAction,
            Marker::FleetFeedback { .. } => Kind::FleetFeedback,
            Marker::FleetError { .. } => Kind::FleetError,
            Marker::ChannelError { .. } => Kind::ChannelError,
            Marker::BelowFloor { .. } => Kind::BelowFloor,
            Marker::Identity { .. } => Kind::Identity,
            Marker::Api { .. } => Kind::Api,
            Marker::BootDisk { .. } => Kind::BootDisk,
            Marker::DataGrown { .. } => Kind::DataGrown,
            Marker::NetworkLease { .. } => Kind::NetworkLease,
            Marker::SecureBoot { .. } => Kind::SecureBoot,
            Marker::DataSealed { .. } => Kind::DataSealed,
            Marker::DataPlain { .. } => Kind::DataPlain,
            Marker::StageFailed {
                stage: "stage1", ..
            } => Kind::Stage1Failed,
            Marker::StageFailed { .. } => Kind::Stage2Failed,
            Marker::ServiceFailedToStart { .. } | Marker::ServiceExited { .. } => Kind::Service,
            Marker::Warning(_) => Kind::Warning,
        }
    }
}

// The lines themselves: one place renders every marker.
#[path = "marker_render.rs"]
mod render;

#[cfg(test)]
#[path = "marker_tests.rs"]
mod tests;
