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

mod flood;
mod operators;
use flood::a_flood_and_a_trickle_do_not_stop_the_agent;
use operators::strangers_are_refused;

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
    // push is installed and staged (download now, install later), and the status says who
    // holds it and until when; an operator's apply is refused while it says not now. It then
    // lets go, and `slate apply` applies it with no network needed.
    vm.wait_prompt("slate# ", 0, Duration::from_secs(30))
        .unwrap();
    let w = vm
        .shell("echo 75 > /data/consent", Duration::from_secs(30))
        .unwrap();
    assert!(w.ends_with("exit=0"), "{w}");
    let mark = vm.mark();
    let p = push::push(
        &url,
        &v2,
        &access(tmp.path()),
        true,
        None,
        Progress::new(true),
    )
    .unwrap();
    let slate_core::api::UploadAnswer::Staged {
        slot: Slot::B,
        apply_at: Some(apply_at),
        ..
    } = p.answer
    else {
        panic!("not staged in slot b: {:?}", p.answer);
    };
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
        (c.version.as_str(), c.answer.as_str(), c.ask_again_at),
        ("1.1.0", "not-now", apply_at)
    );
    let staged = s
        .staged
        .clone()
        .expect("the status shows the staged update");
    assert_eq!(
        (staged.slot, staged.version.as_str(), staged.apply_at),
        (Slot::B, "1.1.0", Some(apply_at))
    );
    let quiet = Progress::new(true);
    let e = slate_imager::operator::apply::apply(&url, &access(tmp.path()), false, None, quiet)
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("the application holds the update back"),
        "{e:#}"
    );
    let w = vm
        .shell("rm /data/consent", Duration::from_secs(30))
        .unwrap();
    assert!(w.ends_with("exit=0"), "{w}");

    // Two good slots, as on a device that has updated once: 1.1.0 runs in b, committed, and
    // 1.0.0 in a is the fallback the corpus must not touch.
    let applied = slate_imager::operator::apply::apply(
        &url,
        &access(tmp.path()),
        false,
        Some(Duration::from_secs(600)),
        quiet,
    )
    .unwrap();
    assert_eq!(applied.version, "1.1.0");
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
