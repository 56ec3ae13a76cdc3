//! Bad bundles are refused with a clear reason; the running slot stays byte-identical, the agent
//! keeps serving, and the next good update still works. `slate verify` agrees with the device.

use slate_core::api::Kind;
use slate_imager::operator::push;
use slate_imager::progress::Progress;
use slate_tests::*;
use std::io::{Read, Write};
use std::time::Duration;

/// Longest a debug-shell command may take.
const SHELL: Duration = Duration::from_secs(30);

/// Uploads raw bytes as a bundle, as the test operator; returns (status, reason).
fn post_bytes(port: u16, data: &[u8]) -> (u16, String) {
    raw_exchange(
        port,
        Some(&operators().identity),
        "POST",
        "/v1/update?reboot=false",
        data,
    )
}

/// Sends the first half of a bundle with the full Content-Length, then closes: a cut upload.
fn truncated_upload(port: u16, bundle: &std::path::Path) -> String {
    let data = std::fs::read(bundle).unwrap();
    let mut s = tls_stream(port, Some(&operators().identity)).unwrap();
    write!(
        s,
        "POST /v1/update HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    )
    .unwrap();
    s.write_all(&data[..data.len() / 2]).unwrap();
    s.conn.send_close_notify();
    s.flush().unwrap();
    s.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    String::from_utf8_lossy(&resp).into_owned()
}

/// Every route without an operator certificate of the image's CA: refused, nothing changes.
fn strangers_are_refused(vm: &mut slate_qemu::Vm, good: &std::path::Path, work: &std::path::Path) {
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

/// Thousands of idle connections and an operator's upload trickling below the minimum rate:
/// the agent stays up, the ESP stays read-only, and the trickle is cut off, freeing the lock.
fn a_flood_and_a_trickle_do_not_stop_the_agent(vm: &mut slate_qemu::Vm, good: &std::path::Path) {
    let port = vm.host_port().unwrap();
    let data = std::fs::read(good).unwrap();
    // As many idle connections as QEMU's user network takes in 40 s, up to 2000. Its forwarded
    // port accepts one connection at a time (listen backlog 1), so under TCG that is about a
    // hundred: more than the agent keeps from one address, so its cap and eviction are used.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let flood_started = std::time::Instant::now();
    let mut idle = Vec::new();
    for _ in 0..2000 {
        if flood_started.elapsed() > Duration::from_secs(40) {
            break;
        }
        if let Ok(c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            idle.push(c);
        }
    }
    eprintln!(
        "{} idle connections opened in {:.0} s",
        idle.len(),
        flood_started.elapsed().as_secs_f64()
    );
    assert!(idle.len() >= 80, "only {} connections opened", idle.len());
    let mut trickle = tls_stream(port, Some(&operators().identity)).unwrap();
    write!(
        trickle,
        "POST /v1/update HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    )
    .unwrap();
    trickle.write_all(&data[..1 << 20]).unwrap();
    // While the trickle holds the install, the ESP is read-only. The install opens one short
    // read-write window to remove the idle slot's entry when it starts; the ESP must be
    // read-only again within seconds and stay so while the upload stalls.
    let window = std::time::Instant::now();
    loop {
        let mounts = vm
            .shell(
                "grep ' /run/slate/esp ' /proc/mounts",
                Duration::from_secs(60),
            )
            .unwrap();
        if mounts.contains(" ro,") {
            break;
        }
        assert!(
            window.elapsed() < Duration::from_secs(30),
            "the ESP is still read-write {:.0} s into a stalled upload: {mounts}",
            window.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let s = status(vm);
    assert!(
        s.installing,
        "the trickling upload is not being installed: {s:?}"
    );
    // Its live progress: writing, the bundle's size as the total, the first MiB (less what
    // is still buffered on the way) done; the metrics say the same phase.
    let shown = std::time::Instant::now();
    let p = loop {
        let p = status(vm)
            .progress
            .expect("an install in progress shows its progress");
        if p.bytes >= 512 << 10 || shown.elapsed() > Duration::from_secs(30) {
            break p;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(p.phase, slate_core::api::Phase::Writing, "{p:?}");
    assert_eq!(p.total, data.len() as u64, "{p:?}");
    assert!(p.bytes >= 512 << 10 && p.bytes <= 1 << 20, "{p:?}");
    let (code, metrics) = vm.http("GET", slate_core::api::METRICS_ROUTE).unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("slate_update_phase{phase=\"writing\"} 1"),
        "{metrics}"
    );
    // One byte every two seconds, from another thread, until the agent cuts the upload off.
    let started = std::time::Instant::now();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let rest = data[1 << 20..].to_vec();
        std::thread::spawn(move || {
            for b in rest {
                if stop.load(std::sync::atomic::Ordering::Relaxed)
                    || trickle
                        .write_all(&[b])
                        .and_then(|()| trickle.flush())
                        .is_err()
                {
                    break;
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        })
    };
    loop {
        std::thread::sleep(Duration::from_secs(2));
        if !status(vm).installing {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "a trickling upload still holds the install after {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "the trickling upload was cut off after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        status(vm).progress,
        None,
        "a failed install still shows progress"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = writer.join();
    // The agent closed the idle connections (evicted, or at the handshake deadline).
    let closed = idle
        .iter()
        .filter(|c| {
            c.set_nonblocking(true).is_ok()
                && match c.peek(&mut [0u8; 1]) {
                    Ok(n) => n == 0,
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                }
        })
        .count();
    assert!(
        closed + 8 >= idle.len(),
        "{closed} of {} idle connections were closed by the agent",
        idle.len()
    );
    drop(idle);
}

/// What a pre-write refusal must leave as it was: the fallback slot's image bytes and entry.
struct Fallback {
    slot: slate_core::layout::Slot,
    entry: String,
    offset: u64,
    len: u64,
    hash: slate_core::Digest32,
}

fn metric(vm: &slate_qemu::Vm, name: &str) -> String {
    let (code, text) = vm.http("GET", slate_core::api::METRICS_ROUTE).unwrap();
    assert_eq!(code, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .to_string()
}

#[test]
fn hostile_bundles_are_refused_and_the_running_slot_is_untouched() {
    use slate_core::api::{HealthState, Outcome, SlotState};
    use slate_core::layout::Slot;
    use slate_tests::corpus::Stage;
    let v1 = image("1.0.0");
    let v2 = bundle(image("1.1.0"));
    let good = bundle(image("1.3.0"));
    let parts = Parts::read(&good);
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let running: slate_core::Version = "1.1.0".parse().unwrap();
    let cases = slate_tests::corpus::generate(&parts, &running);
    assert!(
        cases.len() >= 50,
        "the corpus has only {} kinds",
        cases.len()
    );
    let (tmp, disk) = copy_disk(&v1.dir.join("disk.img")).unwrap();
    let mut vm = boot(&disk, tmp.path(), |_| {}).unwrap();
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    let url = vm.agent_url().unwrap();
    // First contact pins the device (what `slate status` does for an operator).
    slate_imager::operator::push::Device::open(&url, &access(tmp.path()))
        .unwrap()
        .status()
        .unwrap();
    strangers_are_refused(&mut vm, &v2, tmp.path());

    // The application holds the update back (its consent program answers 75: not now): the
    // push is refused once the manifest is verified, before anything is written, and the
    // status says who and until when. It then lets go.
    vm.wait_prompt("slate# ", 0, Duration::from_secs(30))
        .unwrap();
    let w = vm
        .shell("echo 75 > /data/consent", Duration::from_secs(30))
        .unwrap();
    assert!(w.ends_with("exit=0"), "{w}");
    let mark = vm.mark();
    let e = push::push(
        &url,
        &v2,
        &access(tmp.path()),
        true,
        None,
        Progress::new(true),
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("the application holds the update back"),
        "{e:#}"
    );
    assert!(vm.saw_after(
        &format!("{} not-now version=1.1.0", Kind::Consent.prefix()),
        mark
    ));
    let s = status(&vm);
    let c = s
        .consent
        .clone()
        .expect("the status shows the application's answer");
    assert_eq!(
        (c.version.as_str(), c.answer.as_str()),
        ("1.1.0", "not-now")
    );
    assert!(s.last_attempt.is_none(), "{s:?}");
    let w = vm
        .shell("rm /data/consent", Duration::from_secs(30))
        .unwrap();
    assert!(w.ends_with("exit=0"), "{w}");

    // Two good slots, as on a device that has updated once: 1.1.0 runs in b, committed, and
    // 1.0.0 in a is the fallback the corpus must not touch.
    let p = push::push(
        &url,
        &v2,
        &access(tmp.path()),
        true,
        Some(Duration::from_secs(600)),
        Progress::new(true),
    )
    .unwrap();
    assert_eq!(installed_slot(&p.answer), Slot::B);
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::B, "1.1.0"));
    let a = s.slot_status(Slot::A).expect("slot a").clone();
    assert_eq!(a.state, SlotState::Good, "{s:?}");
    let (root_a, root_a_len) = partition(&disk, "root-a").unwrap();
    // The fallback's image is v1's root (squashfs and hash tree) at the start of slot a.
    let image_len = std::fs::metadata(v1.dir.join("rootfs.img")).unwrap().len();
    assert!(image_len <= root_a_len);
    let fallback = Fallback {
        slot: Slot::A,
        entry: a.entry.clone().expect("a good slot has an entry"),
        offset: root_a,
        len: image_len,
        hash: hash_range(&disk, root_a, image_len),
    };
    let (root_b, root_b_len) = partition(&disk, "root-b").unwrap();
    let running_before = hash_range(&disk, root_b, root_b_len);
    assert_eq!(metric(&vm, "slate_fallback_available"), "1");
    esp_fsck(&disk, dir.path()).unwrap();

    let facts = slate_core::manifest::DeviceFacts {
        product: "slate-demo".into(),
        board: "qemu-x86_64".into(),
        version: running.clone(),
        security_epoch: 0,
        failed_versions: vec![],
        now: slate_imager::operator::bundle::now(),
    };
    let (before, streaming): (Vec<_>, Vec<_>) =
        cases.iter().partition(|c| c.stage == Stage::BeforeWrite);
    let mut fallback_gone = false;
    for case in before.iter().chain(streaming.iter()) {
        let path = dir.path().join("case.slate");
        std::fs::write(&path, &case.bytes).unwrap();
        let (code, answer) = post_bytes(vm.host_port().unwrap(), &case.bytes);
        // A bad bundle is the client's fault (400); 409 is only for a wrong moment (busy, on
        // trial), which no corpus case is.
        assert_eq!(code, 400, "{}: HTTP {code}: {answer}", case.name);
        let refusal: serde_json::Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("{}: the answer is not JSON ({e}): {answer}", case.name));
        assert_eq!(
            refusal["kind"].as_str(),
            Some(case.kind),
            "{}: {answer}",
            case.name
        );
        let error = refusal["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(case.expect),
            "{}: expected {:?} in {answer}",
            case.name,
            case.expect
        );
        // slate verify refuses it for the same reason, but for the slot's size, which only
        // the device knows: offline, that bundle's root image is not the manifest's size.
        let offline = slate_imager::operator::bundle::verify(&path, &k.trust, Some(&facts), None);
        match offline {
            Err(e) if case.kind == "too-large" => assert!(
                format!("{e:#}").contains("rootfs.img"),
                "{}: {e:#}",
                case.name
            ),
            Ok(m) => panic!(
                "slate verify accepted the bundle with {} ({} {})",
                case.name, m.product, m.version
            ),
            Err(e) => assert!(
                format!("{e:#}").contains(case.expect),
                "{}: slate verify refused it for another reason: {e:#} (the device: {error})",
                case.name
            ),
        }
        let s = status(&vm);
        assert_eq!(
            (s.slot, s.version.to_string().as_str(), s.health.state),
            (Slot::B, "1.1.0", HealthState::Passed),
            "{}",
            case.name
        );
        let idle = s.slot_status(fallback.slot).expect("slot a").clone();
        match case.stage {
            Stage::BeforeWrite => {
                assert_eq!(
                    (idle.state, idle.entry.as_deref()),
                    (SlotState::Good, Some(fallback.entry.as_str())),
                    "{}: the fallback's entry changed",
                    case.name
                );
                assert_eq!(
                    hash_range(&disk, fallback.offset, fallback.len),
                    fallback.hash,
                    "{}: the fallback slot's bytes changed",
                    case.name
                );
                assert_eq!(
                    metric(&vm, "slate_fallback_available"),
                    "1",
                    "{}",
                    case.name
                );
            }
            Stage::WhileStreaming => {
                // The half-written slot has no entry: it can never boot; status and metrics
                // say there is nothing to fall back to.
                assert_eq!(
                    (idle.state, idle.entry.as_deref()),
                    (SlotState::Empty, None),
                    "{}: a half-written slot has an entry",
                    case.name
                );
                assert_eq!(
                    metric(&vm, "slate_fallback_available"),
                    "0",
                    "{}",
                    case.name
                );
                fallback_gone = true;
            }
        }
        if let Err(e) = esp_fsck(&disk, dir.path()) {
            panic!("{}: the ESP is not clean after the refusal: {e}", case.name);
        }
    }
    assert!(fallback_gone, "no case was found while streaming");
    let resp = truncated_upload(vm.host_port().unwrap(), &good);
    assert!(
        resp.contains("400") && resp.contains("truncated"),
        "truncated upload: {resp}"
    );
    let s = status(&vm);
    assert_eq!(
        (s.slot, s.version.to_string().as_str(), s.health.state),
        (Slot::B, "1.1.0", HealthState::Passed)
    );
    assert_eq!(s.last_refusal.map(|r| r.outcome), Some(Outcome::Refused));

    // Two uploads at once: while one is in progress the other is refused; cutting the first
    // frees the agent.
    let data = std::fs::read(&good).unwrap();
    let mut first = tls_stream(vm.host_port().unwrap(), Some(&operators().identity)).unwrap();
    write!(
        first,
        "POST /v1/update HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .unwrap();
    first.write_all(&data[..2 << 20]).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let e = push::push(
        &url,
        &good,
        &access(tmp.path()),
        true,
        None,
        Progress::new(true),
    )
    .unwrap_err();
    // The refusal names who holds the lock.
    assert!(
        format!("{e:#}").contains("another install is in progress (held by slated (PID "),
        "{e:#}"
    );
    // The lock is root's alone: httpd's user (www, 33) cannot even open it, so no service can
    // hold it (flock works on a read-only descriptor) and block every update.
    vm.wait_prompt("slate# ", 0, SHELL).unwrap();
    let modes = vm
        .shell(
            "busybox stat -c '%n %a %U' /run/slate /run/slate/install.lock",
            SHELL,
        )
        .unwrap();
    assert!(
        modes.contains("/run/slate 700 root") && modes.contains("install.lock 600 root"),
        "{modes}"
    );
    let as_www = vm
        .shell(
            "busybox su -s /bin/sh www -c 'busybox id -u; exec 3< /run/slate/install.lock && echo opened'",
            SHELL,
        )
        .unwrap();
    assert!(
        as_www.lines().next().map(str::trim) == Some("33")
            && as_www.contains("Permission denied")
            && !as_www.contains("opened"),
        "{as_www}"
    );
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, body) = vm.http("GET", "/v1/status").unwrap();
        let s: serde_json::Value = serde_json::from_str(&body).unwrap();
        if s["installing"] == false {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cut upload kept the agent busy"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    a_flood_and_a_trickle_do_not_stop_the_agent(&mut vm, &good);

    // The next good update still works (and slate verify agrees it is good).
    slate_imager::operator::bundle::verify(&good, &k.trust, Some(&facts), None).unwrap();
    let p = push::push(
        &url,
        &good,
        &access(tmp.path()),
        false,
        None,
        Progress::new(true),
    )
    .unwrap();
    assert_eq!(installed_slot(&p.answer), Slot::A);

    // `slated install FILE` on the device console: the bundle fetched over the guest's network
    // from a one-shot HTTP server on the host (QEMU's user network reaches it at 10.0.2.2).
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let body = std::fs::read(&good).unwrap();
    let serve = std::thread::spawn(move || {
        let (mut c, _) = server.accept().unwrap();
        let mut req = [0u8; 1024];
        let _ = c.read(&mut req);
        write!(
            c,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        c.write_all(&body).unwrap();
    });
    vm.wait_prompt("slate# ", 0, Duration::from_secs(30))
        .unwrap();
    let got = vm
        .shell(
            &format!("wget -q -O /data/update.slate http://10.0.2.2:{port}/"),
            Duration::from_secs(300),
        )
        .unwrap();
    assert!(got.ends_with("exit=0"), "{got}");
    serve.join().unwrap();
    let out = vm
        .shell(
            "slated install /data/update.slate --no-reboot",
            Duration::from_secs(300),
        )
        .unwrap();
    assert!(
        out.contains("installed slate-demo 1.3.0 into slot a") && out.ends_with("exit=0"),
        "{out}"
    );
    let out = vm
        .shell(
            "slated install /data/update.slate --no-reboot --bogus",
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(
        out.contains("unknown argument") && !out.ends_with("exit=0"),
        "{out}"
    );
    vm.shutdown(Duration::from_secs(60)).unwrap();
    assert_eq!(
        hash_range(&disk, root_b, root_b_len),
        running_before,
        "the running slot changed"
    );
    esp_fsck(&disk, dir.path()).unwrap();
    let (esp, _) = partition(&disk, "esp").unwrap();
    let entry = std::process::Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args([
            "-b",
            "-i",
            &format!("{}@@{esp}", disk.display()),
            "::/loader/entries",
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&entry.stdout);
    assert!(listing.contains("slate-b-1.1.0.conf"), "{listing}");
    assert!(listing.contains("slate-a-1.3.0+3.conf"), "{listing}");
}
