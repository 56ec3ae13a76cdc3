//! Bad bundles are refused with a clear reason; the running slot stays byte-identical, the agent
//! keeps serving, and the next good update still works. `slate verify` agrees with the device.

use slate_imager::progress::Progress;
use slate_imager::push;
use slate_tests::*;
use std::io::{Read, Write};
use std::time::Duration;

/// Uploads raw bytes as a bundle; returns (status, body).
fn post_bytes(port: u16, data: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    write!(s, "POST /v1/update?reboot=false HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", data.len()).unwrap();
    let _ = s.write_all(data);
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // The reason, decoded from the JSON answer (so quotes in it compare as written).
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let reason = serde_json::from_str::<serde_json::Value>(body.trim())
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or(resp);
    (code, reason)
}

/// Sends the first half of a bundle with the full Content-Length, then closes: a cut upload.
fn truncated_upload(port: u16, bundle: &std::path::Path) -> String {
    let data = std::fs::read(bundle).unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /v1/update HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    )
    .unwrap();
    s.write_all(&data[..data.len() / 2]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut resp = String::new();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let _ = s.read_to_string(&mut resp);
    resp
}

#[test]
fn hostile_bundles_are_refused_and_the_running_slot_is_untouched() {
    let v1 = image("1.0.0");
    let good = bundle(image("1.1.0"), 0);
    let parts = Parts::read(&good);
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let cases = slate_tests::corpus::generate(&parts);
    assert!(
        cases.len() >= 50,
        "the corpus has only {} kinds",
        cases.len()
    );
    let (tmp, disk) = copy_disk(&v1.dir.join("disk.img")).unwrap();
    let (root_a, root_len) = partition(&disk, "root-a").unwrap();
    let (esp, esp_len) = partition(&disk, "esp").unwrap();
    let slot_before = hash_range(&disk, root_a, root_len);
    let mut vm = boot(&disk, tmp.path(), |_| {}).unwrap();
    vm.wait_for("slate: healthy slot=a version=1.0.0", BOOT_TIMEOUT)
        .unwrap();
    let url = vm.agent_url().unwrap();
    let facts = slate_core::manifest::DeviceFacts {
        product: "slate-demo".into(),
        board: "qemu-x86_64".into(),
        version: "1.0.0".parse().unwrap(),
        security_epoch: 0,
        failed_versions: vec![],
        now: slate_imager::bundle::now(),
    };
    for case in &cases {
        let path = dir.path().join("case.slate");
        std::fs::write(&path, &case.bytes).unwrap();
        let (code, answer) = post_bytes(vm.host_port().unwrap(), &case.bytes);
        // A bad bundle is the client's fault (400); 409 is only for a wrong moment (busy, on
        // trial), which no corpus case is.
        assert_eq!(code, 400, "{}: HTTP {code}: {answer}", case.name);
        assert!(
            answer.contains(case.expect),
            "{}: expected {:?} in {answer}",
            case.name,
            case.expect
        );
        let offline = slate_imager::bundle::verify(&path, &k.trust, Some(&facts));
        assert!(
            offline.is_err(),
            "slate verify accepted the bundle with {}",
            case.name
        );
        let (code, _) = vm.http("GET", "/v1/status").unwrap();
        assert_eq!(code, 200, "agent stopped serving after {}", case.name);
    }
    let resp = truncated_upload(vm.host_port().unwrap(), &good);
    assert!(
        resp.contains("400") && resp.contains("truncated"),
        "truncated upload: {resp}"
    );
    let (_, body) = vm.http("GET", "/v1/status").unwrap();
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            s["slot"].as_str(),
            s["version"].as_str(),
            s["health"]["state"].as_str()
        ),
        (Some("a"), Some("1.0.0"), Some("passed"))
    );
    assert_eq!(s["last_refusal"]["outcome"], "refused");

    // Two uploads at once: while one is in progress the other is refused; cutting the first
    // frees the agent.
    let data = std::fs::read(&good).unwrap();
    let mut first = std::net::TcpStream::connect(("127.0.0.1", vm.host_port().unwrap())).unwrap();
    write!(
        first,
        "POST /v1/update HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .unwrap();
    first.write_all(&data[..2 << 20]).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let e = push::push(&url, &good, &access(tmp.path()), true, None, Progress::new(true)).unwrap_err();
    assert!(
        format!("{e:#}").contains("another install is in progress"),
        "{e:#}"
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

    // The next good update still works (and slate verify agrees it is good).
    slate_imager::bundle::verify(&good, &k.trust, Some(&facts)).unwrap();
    let p = push::push(&url, &good, &access(tmp.path()), false, None, Progress::new(true)).unwrap();
    assert_eq!(installed_slot(&p.answer), slate_core::layout::Slot::B);

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
        out.contains("installed slate-demo 1.1.0 into slot b") && out.ends_with("exit=0"),
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
        hash_range(&disk, root_a, root_len),
        slot_before,
        "the running slot changed"
    );
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
    assert!(listing.contains("slate-a-1.0.0.conf"), "{listing}");
    assert!(listing.contains("slate-b-1.1.0+3.conf"), "{listing}");
    let _ = esp_len;
}
