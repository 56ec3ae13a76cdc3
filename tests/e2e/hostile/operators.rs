//! Who may talk to the device: strangers, other CAs' and expired operators are refused, a
//! status-only operator reads and nothing more, a revoked one is refused once the CRL is
//! there, and `slate push` says what is wrong when it has no identity or a wrong pin.

use super::*;

/// Every route without an operator certificate of the image's CA: refused, nothing changes.
pub(super) fn strangers_are_refused(
    vm: &mut slate_qemu::Vm,
    good: &std::path::Path,
    work: &std::path::Path,
) {
    let port = vm.host_port().unwrap();
    let bundle = std::fs::read(good).unwrap();
    let ops = operators();
    let routes: [(&str, &str, &[u8]); 5] = [
        ("GET", slate_core::api::STATUS_ROUTE, b""),
        ("GET", slate_core::api::METRICS_ROUTE, b""),
        ("POST", slate_core::api::UPDATE_ROUTE, &bundle[..64 << 10]),
        ("POST", "/v1/reboot?force=true", b""),
        ("POST", slate_core::api::POWEROFF_ROUTE, b""),
    ];
    for (method, path, body) in routes {
        let (code, why) = raw_request(port, None, method, path, body);
        assert_eq!(code, 401, "{method} {path} without a certificate: {why}");
        assert!(why.contains("client certificate"), "{why}");
        // Another CA's operator, and the right CA's expired one: the handshake itself fails.
        for who in [&ops.stranger, &ops.expired] {
            let (code, why) = raw_request(port, Some(who), method, path, body);
            assert_eq!(
                code,
                0,
                "{method} {path} as {}: HTTP {code} {why}",
                who.display()
            );
        }
    }
    // An operator with the role `status` only reads, and is refused (403, naming the role)
    // everything else; nothing is installed or rebooted.
    let (code, why) = raw_request(
        port,
        Some(&ops.watcher),
        "GET",
        slate_core::api::STATUS_ROUTE,
        b"",
    );
    assert_eq!(code, 200, "{why}");
    for (path, role) in [
        (slate_core::api::UPDATE_ROUTE, "push"),
        ("/v1/reboot?force=true", "reboot and force"),
        (slate_core::api::POWEROFF_ROUTE, "reboot"),
    ] {
        let body: &[u8] = if path == slate_core::api::UPDATE_ROUTE {
            &bundle[..64 << 10]
        } else {
            b""
        };
        let (code, why) = raw_request(port, Some(&ops.watcher), "POST", path, body);
        assert_eq!(code, 403, "POST {path} as a watcher: {why}");
        assert!(why.contains(&format!("lacks the role {role}")), "{why}");
    }
    // A lost laptop's certificate works until the operator CA's CRL reaches the device
    // (`slate push --crl`); from then on its handshake fails, and the CRL survives a restart
    // of the agent (kept in /data/slate/operators.crl).
    let (code, why) = raw_request(
        port,
        Some(&ops.lost),
        "GET",
        slate_core::api::STATUS_ROUTE,
        b"",
    );
    assert_eq!(code, 200, "{why}");
    let url = vm.agent_url().unwrap();
    let mark = vm.mark();
    push::push_crl(&url, &ops.crl, &access(work)).unwrap();
    assert!(
        vm.saw_after(&Kind::OperatorsCrl.prefix(), mark),
        "{}",
        vm.tail(10)
    );
    let (code, why) = raw_request(
        port,
        Some(&ops.lost),
        "GET",
        slate_core::api::STATUS_ROUTE,
        b"",
    );
    assert_eq!(
        code, 0,
        "a revoked operator was answered: HTTP {code} {why}"
    );
    let (code, why) = raw_request(
        port,
        Some(&ops.identity),
        "GET",
        slate_core::api::STATUS_ROUTE,
        b"",
    );
    assert_eq!(code, 200, "{why}");
    // Garbage is not a CRL: refused with the reason, and the kept CRL stays.
    let (code, why) = raw_request(
        port,
        Some(&ops.identity),
        "POST",
        slate_core::api::OPERATORS_CRL_ROUTE,
        b"not a crl",
    );
    assert_eq!(code, 422, "{why}");
    assert!(why.contains("not a CRL"), "{why}");
    let kept = vm
        .shell("ls -l /data/slate/operators.crl", Duration::from_secs(60))
        .unwrap();
    let crl_len = std::fs::read(&ops.crl).map(|b| b.len()).unwrap_or(0);
    assert!(
        kept.contains(" root ") && kept.contains("/data/slate/operators.crl") && crl_len > 0,
        "{kept}"
    );
    // `slate push` without an identity is refused with what to do.
    let anonymous = push::Access {
        identity: None,
        ..access(work)
    };
    let e = push::push(&url, good, &anonymous, false, None, Progress::new(true)).unwrap_err();
    assert!(format!("{e:#}").contains("--identity"), "{e:#}");
    // A device whose certificate is not the pinned one is refused loudly.
    let known = work.join("wrong_pin");
    std::fs::write(
        &known,
        format!(
            "127.0.0.1:{port} {}\n",
            slate_core::Fingerprint::of_der(b"someone else")
        ),
    )
    .unwrap();
    let pinned_elsewhere = push::Access {
        known_devices: Some(known),
        ..access(work)
    };
    let e = push::push(
        &url,
        good,
        &pinned_elsewhere,
        false,
        None,
        Progress::new(true),
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("PRESENTS A DIFFERENT CERTIFICATE"),
        "{e:#}"
    );
    // Nothing changed: no install, no refusal recorded, no reboot.
    let s = status(vm);
    assert!(
        !s.installing && s.last_refusal.is_none() && s.last_attempt.is_none(),
        "{s:?}"
    );
    assert!(!vm.saw(&Kind::Shutdown.prefix()), "{}", vm.tail(10));
    // The console's fingerprint is the one `slate status` pinned on first contact.
    let id = s.identity.expect("a TLS device shows its fingerprint");
    assert!(vm.saw(&format!("{} fingerprint={id}", Kind::Identity.prefix())));
    let pins = std::fs::read_to_string(work.join("known_devices")).unwrap();
    assert!(pins.contains(&format!("127.0.0.1:{port} {id}")), "{pins}");
}
