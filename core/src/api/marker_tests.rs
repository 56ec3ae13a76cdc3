//! Golden tests of the console markers: the exact text users, scripts and the harness wait for.

use super::*;

/// Each marker's exact text, as the QEMU tests and operators' scripts have always read it.
#[test]
fn golden_marker_texts() {
    let v = || "1.1.0".to_string();
    let cases: Vec<(Marker, String)> = vec![
        (
            Marker::Stage1Done {
                slot: Slot::A,
                root: Digest32([0xab; 32]),
                ms: 2720,
            },
            format!("slate: stage1 done slot=a root={} in 2720 ms", "ab".repeat(32)),
        ),
        (
            Marker::Stage2Up { ms: 2900, services: 3 },
            "slate: stage2 up in 2900 ms since boot (3 services)".into(),
        ),
        (
            Marker::Healthy { slot: Slot::B, version: v(), ms: 5210 },
            "slate: healthy slot=b version=1.1.0 in 5210 ms since boot".into(),
        ),
        (
            Marker::Unhealthy { slot: Slot::B, version: v(), failed: "web: HTTP 500".into() },
            "slate: unhealthy slot=b version=1.1.0 failed=web: HTTP 500".into(),
        ),
        (
            Marker::Committed { slot: Slot::B, version: v() },
            "slate: committed slot=b version=1.1.0".into(),
        ),
        (
            Marker::Rollback { slot: Slot::B, version: v(), reason: "boom".into() },
            "slate: rollback slot=b version=1.1.0 reason=boom".into(),
        ),
        (
            Marker::Fallback { from: Slot::B, starts: 4, marked: "slate-b-1.1.0+0.conf".into() },
            "slate: fallback from=b to=a reason=\"4 starts without becoming healthy\" marked=slate-b-1.1.0+0.conf".into(),
        ),
        (
            Marker::Installing { product: "demo".into(), version: v(), slot: Slot::B, device: "/dev/vda3".into() },
            "slate: installing demo 1.1.0 into slot b (/dev/vda3)".into(),
        ),
        (
            Marker::Installed { slot: Slot::B, version: v(), seconds: 3.25 },
            "slate: installed slot=b version=1.1.0 in 3.2 s; reboot to try it".into(),
        ),
        (
            Marker::UpdateRefused { reason: "no".into() },
            "slate: update refused: no".into(),
        ),
        (
            Marker::EspRepaired { what: "dirty bit".into() },
            "slate: esp repaired: dirty bit".into(),
        ),
        (
            Marker::CutPoint { step: crate::api::CutPoint::SlotWritten },
            "slate: cut-point slot-written".into(),
        ),
        (Marker::Shutdown { reboot: true }, "slate: shutdown reboot".into()),
        (Marker::Shutdown { reboot: false }, "slate: shutdown poweroff".into()),
        (Marker::RebootingIntoNewSlot, "slate: rebooting into the new slot".into()),
        (
            Marker::Identity { fingerprint: crate::Fingerprint(Digest32([0xab; 32])) },
            format!("slate: identity fingerprint=sha256:{}", "ab".repeat(32)),
        ),
        (
            Marker::BelowFloor { slot: Slot::B, epoch: 1, floor: 2 },
            "slate: below floor slot=b epoch=1 floor=2; not started".into(),
        ),
        (
            Marker::Api { port: 8080, tls: true, operators: true },
            "slate: api https port=8080 operators=ca".into(),
        ),
        (
            Marker::Api { port: 8080, tls: false, operators: false },
            "slate: api http port=8080 (insecure, development only)".into(),
        ),
        (
            Marker::BootDisk {
                device: "/dev/vdb".into(),
                esp: "c12a7328-f81f-11d2-ba4b-00a0c93ec93b".parse().unwrap(),
            },
            "slate: boot disk /dev/vdb esp=c12a7328-f81f-11d2-ba4b-00a0c93ec93b".into(),
        ),
        (
            Marker::DataGrown { what: "filesystem", mib: 1024 },
            "slate: data grown filesystem 1024 MiB".into(),
        ),
        (
            Marker::NetworkLease {
                iface: "eth0".into(),
                address: "10.0.2.15/24".into(),
                router: Some(std::net::Ipv4Addr::new(10, 0, 2, 2)),
            },
            "slate: network lease iface=eth0 address=10.0.2.15/24 router=10.0.2.2".into(),
        ),
        (
            Marker::SecureBoot {
                enabled: true,
                lockdown: "integrity".into(),
                built_for: true,
            },
            "slate: secure boot on lockdown=integrity built_for=true".into(),
        ),
        (
            Marker::SecureBoot {
                enabled: false,
                lockdown: "none".into(),
                built_for: true,
            },
            "slate: secure boot off lockdown=none built_for=true; WARNING: this image was built for Secure Boot and the firmware has it off: its root hash is not authenticated".into(),
        ),
        (
            Marker::DataSealed { how: "unlocked", ms: 120 },
            "slate: data sealed unlocked ms=120".into(),
        ),
        (
            Marker::DataPlain { why: "no TPM".into() },
            "slate: data plain: no TPM".into(),
        ),
        (
            Marker::StageFailed { stage: "stage1", error: "x".into() },
            "slate: stage1 failed: x".into(),
        ),
        (
            Marker::ServiceExited { name: "web".into(), exit: "Exited(1)".into(), restart_ms: Some(500) },
            "slate: service web exited (Exited(1)); restart in 500 ms".into(),
        ),
        (Marker::Warning("w".into()), "slate: warning: w".into()),
        (
            Marker::ChannelUpToDate { version: "2.0.0".into() },
            "slate: channel up-to-date version=2.0.0".into(),
        ),
        (
            Marker::ChannelWaiting { version: "2.0.0".into(), wave: 2, ready_at: 1700000000 },
            "slate: channel waiting version=2.0.0 wave=2 ready_at=1700000000".into(),
        ),
        (
            Marker::ChannelUpdate { version: "2.0.0".into(), reason: "upgrade".into() },
            "slate: channel update version=2.0.0 reason=upgrade".into(),
        ),
        (
            Marker::ChannelError { kind: crate::api::ChannelFailure::Expired, message: "x".into() },
            "slate: channel error kind=expired: x".into(),
        ),
        (
            Marker::ChannelResumed { version: "2.0.0".into(), from_slot: 4096 },
            "slate: channel resumed version=2.0.0 from_slot=4096".into(),
        ),
        (
            Marker::ChannelFetched { version: "2.0.0".into(), bytes: 10, resumes: 1, from_slot: 2, copied: 3, requests: 4, patch: 5 },
            "slate: channel fetched version=2.0.0 bytes=10 resumes=1 from_slot=2 copied=3 requests=4 patch=5".into(),
        ),
        (
            Marker::OperatorsCrl { this_update: 1700000000 },
            "slate: operators crl this_update=1700000000".into(),
        ),
        (
            Marker::Staged { slot: Slot::B, version: "2.0.0".into(), apply_at: Some(1700000000) },
            "slate: staged slot=b version=2.0.0 apply_at=1700000000".into(),
        ),
        (
            Marker::Staged { slot: Slot::B, version: "2.0.0".into(), apply_at: None },
            "slate: staged slot=b version=2.0.0 apply_at=manual".into(),
        ),
        (
            Marker::ChannelFetching { version: "2.0.0".into(), mode: "delta", bytes: 1000, of: 9000 },
            "slate: channel fetching version=2.0.0 mode=delta bytes=1000 of 9000".into(),
        ),
        (
            Marker::Applying { slot: Slot::A, version: "2.0.0".into() },
            "slate: applying slot=a version=2.0.0".into(),
        ),
        (
            Marker::FleetPolling { server: "https://f/ddi".into(), controller: "slate-00".into() },
            "slate: fleet polling server=https://f/ddi controller=slate-00".into(),
        ),
        (
            Marker::FleetAction { action: 7, version: "2.0.0".into(), step: "downloading" },
            "slate: fleet action id=7 version=2.0.0 step=downloading".into(),
        ),
        (
            Marker::FleetFeedback { action: 7, execution: "closed".into(), finished: "success".into(), sent: false },
            "slate: fleet feedback id=7 execution=closed finished=success queued".into(),
        ),
        (
            Marker::FleetError { message: "x".into() },
            "slate: fleet error: x".into(),
        ),
        (
            Marker::FactoryReset { new_identity: false },
            "slate: factory reset identity=kept".into(),
        ),
        (
            Marker::Consent { answer: "not-now", version: "2.0.0".into(), ask_again_at: 5, reason: "exit 75".into() },
            "slate: consent not-now version=2.0.0 ask_again_at=5: exit 75".into(),
        ),
    ];
    for (m, want) in cases {
        assert_eq!(m.to_string(), want);
        // The line starts with its kind's words, followed by a space or the end.
        let rest = want
            .strip_prefix(&m.kind().prefix())
            .unwrap_or_else(|| panic!("{want:?} does not start with {:?}", m.kind().prefix()));
        assert!(rest.is_empty() || rest.starts_with(' '), "{want:?}");
    }
}

#[test]
fn waiters_match_what_is_printed() {
    let line = Marker::Healthy {
        slot: Slot::A,
        version: "1.0.0".into(),
        ms: 1,
    }
    .to_string();
    assert!(line.starts_with(&Kind::Healthy.prefix()));
    assert!(line.starts_with(&Kind::Healthy.on(Slot::A)));
    assert!(line.starts_with(&Kind::Healthy.on_version(Slot::A, "1.0.0")));
    let line = Marker::Rollback {
        slot: Slot::B,
        version: "1.2.0".into(),
        reason: "r".into(),
    }
    .to_string();
    assert!(line.starts_with(&Kind::Rollback.on_version(Slot::B, "1.2.0")));
    // "healthy" must not match "unhealthy" lines by prefix.
    let bad = Marker::Unhealthy {
        slot: Slot::A,
        version: "1.0.0".into(),
        failed: String::new(),
    }
    .to_string();
    assert!(!bad.starts_with(&Kind::Healthy.prefix()));
}
