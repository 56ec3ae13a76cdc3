//! Users' applications from Debian packages: the nginx example boots to healthy and serves its
//! page through a forwarded port, then takes an ordinary signed update to v2 (a changed page
//! and a Debian security update of nginx) that commits; the Python example, on an address from
//! DHCP, passes its check and answers through a forwarded port.

use slate_core::api::{HealthState, Kind, Outcome};
use slate_core::layout::Slot;
use slate_imager::operator::push;
use slate_imager::progress::Progress;
use slate_tests::apps::*;
use slate_tests::*;
use std::io::{Read, Write};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(600);

/// GET `path` on the host's forwarded `port` (plain HTTP, as a browser would); the body of a
/// 200 answer.
fn get_page(port: u16, path: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(s, "GET {path} HTTP/1.0\r\nHost: device\r\n\r\n")?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        })();
        match got {
            Ok(text) if text.starts_with("HTTP/1.") && text.contains(" 200 ") => {
                return text
                    .split_once("\r\n\r\n")
                    .map(|(_, b)| b.to_string())
                    .unwrap_or_default()
            }
            other if std::time::Instant::now() > deadline => {
                panic!("GET {path} on port {port}: {other:?}")
            }
            _ => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

fn version_of(l: &slate_imager::image::debian::lock::Lock, name: &str) -> String {
    l.packages
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.version.clone())
        .unwrap_or_else(|| panic!("{name} is not in the lock"))
}

#[test]
fn nginx_example_serves_its_page_and_updates_to_v2() {
    // v1: the example as it would have been built before the security update (the suite
    // without its security archive); v2: the example as committed, with a new page.
    let v1_spec = example_copy("nginx", "v1", |dir| {
        let spec = dir.join("image.toml");
        let text = std::fs::read_to_string(&spec).unwrap();
        let text = text.replacen(
            "suite = \"bookworm\"\n",
            "suite = \"bookworm\"\nsecurity = \"\"\n",
            1,
        );
        std::fs::write(&spec, text).unwrap();
        std::fs::remove_file(dir.join("image.lock")).unwrap();
    });
    let v2_spec = example_copy("nginx", "v2", |dir| {
        let page = dir.join("overlay/srv/www/index.html");
        let text = std::fs::read_to_string(&page).unwrap();
        std::fs::write(&page, text.replace("page version 1", "page version 2")).unwrap();
    });
    let (l1, l2) = (lock_and_fetch(&v1_spec), lock_and_fetch(&v2_spec));
    let (n1, n2) = (version_of(&l1, "nginx"), version_of(&l2, "nginx"));
    assert_ne!(
        n1, n2,
        "bookworm-security holds no newer nginx than bookworm: the v2 update has no upgraded package to prove"
    );
    let v1 = build_app(&v1_spec, "1.0.0", "nginx-1.0.0");
    let v2 = build_app(&v2_spec, "2.0.0", "nginx-2.0.0");

    // Oracle: the root as squashfs-tools extracts it holds every library nginx needs, as
    // readelf names them and Debian's loader would find them (no loader cache).
    let tree = tempfile::tempdir().unwrap();
    let root = tree.path().join("root");
    slate_oracles::unsquashfs_extract(&v1.dir.join("rootfs.img"), &root).unwrap();
    let (missing, found) = missing_libraries(&root, &["/usr/sbin/nginx"]);
    assert!(missing.is_empty(), "not in the root: {missing:?}");
    let names: Vec<String> = found
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    // Found as the files the sonames' links resolve to (libz.so.1 → libz.so.1.2.13).
    for lib in [
        "libc.so.6",
        "libssl.so.3",
        "libpcre2-8.so.0",
        "libz.so.1",
        "libcrypt.so.1",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(lib)),
            "{lib} not among {names:?}"
        );
    }
    assert_eq!(
        std::fs::read_link(root.join("bin")).unwrap(),
        std::path::Path::new("usr/bin"),
        "merged-/usr"
    );
    let v2_bundle = bundle(&v2);

    // The device's own nginx.conf in /data/etc replaces the image's (the spec's
    // etc_overrides): the example's configuration plus one location.
    let (tmp, disk) = copy_disk(&v1.dir.join("disk.img")).unwrap();
    let conf =
        std::fs::read_to_string(workspace().join("examples/nginx/overlay/etc/nginx/nginx.conf"))
            .unwrap();
    let (head, _) = conf
        .rsplit_once("    }\n}")
        .expect("the example's server block");
    let own = format!(
        "{head}        location = /site {{ return 200 \"this device's own nginx.conf\\n\"; }}\n    }}\n}}\n"
    );
    write_data_file(&disk, "etc/nginx/nginx.conf", own.as_bytes());
    let mut vm = boot(&disk, tmp.path(), |cfg| cfg.extra_ports.push(80)).unwrap();
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    let web = vm.forwarded(80).unwrap();
    let page = get_page(web, "/");
    assert!(page.contains("<h1>nginx on Slate</h1>"), "{page}");
    assert!(page.contains("page version 1"), "{page}");
    assert_eq!(get_page(web, "/site"), "this device's own nginx.conf\n");
    let s = status(&vm);
    assert_eq!(s.name, "nginx-example");
    assert_eq!(s.health.state, HealthState::Passed);
    assert_eq!(s.root_hash, Some(v1.report.verity.info.root_hash));

    // v1 → v2: an ordinary signed update into slot b that commits.
    let url = vm.agent_url().unwrap();
    let acc = access(tmp.path());
    let p = push::push(
        &url,
        &v2_bundle,
        &acc,
        true,
        Some(WAIT),
        Progress::new(true),
    )
    .unwrap();
    assert_eq!(installed_slot(&p.answer), Slot::B);
    let s = status(&vm);
    assert_eq!((s.slot, s.version.to_string().as_str()), (Slot::B, "2.0.0"));
    assert_eq!(
        s.last_attempt.as_ref().map(|a| a.outcome),
        Some(Outcome::Committed)
    );
    assert_eq!(s.root_hash, Some(v2.report.verity.info.root_hash));
    let page = get_page(web, "/");
    assert!(page.contains("page version 2"), "{page}");
    // The device's own configuration stayed across the update.
    assert_eq!(get_page(web, "/site"), "this device's own nginx.conf\n");
    // The running root is v2's: its provenance names the upgraded nginx.
    let prov = std::fs::read_to_string(v2.dir.join("build.toml")).unwrap();
    assert!(
        prov.contains(&n2),
        "v2's build report does not name nginx {n2}"
    );
    vm.shutdown(Duration::from_secs(60)).unwrap();
}

#[test]
fn python_example_passes_its_check() {
    let spec = example_copy("python", "v1", |_| {});
    lock_and_fetch(&spec);
    let img = build_app(&spec, "1.0.0", "python-1.0.0");
    let (tmp, disk) = copy_disk(&img.dir.join("disk.img")).unwrap();
    let mut vm = boot(&disk, tmp.path(), |cfg| cfg.extra_ports.push(8000)).unwrap();
    vm.wait_for(&Kind::Healthy.on_version(Slot::A, "1.0.0"), BOOT_TIMEOUT)
        .unwrap();
    // The example takes its address from QEMU's DHCP server.
    let lease = vm.wait_for("DHCP lease", BOOT_TIMEOUT).unwrap();
    assert!(
        lease.text.contains("10.0.2.15/24") && lease.text.contains("10.0.2.2"),
        "{}",
        lease.text
    );
    let s = status(&vm);
    assert_eq!(s.name, "python-example");
    assert_eq!(s.health.state, HealthState::Passed);
    let page = get_page(vm.forwarded(8000).unwrap(), "/");
    assert!(page.starts_with("hello from Python 3."), "{page}");
    assert!(page.contains(" on python, "), "{page}");
    vm.shutdown(Duration::from_secs(60)).unwrap();
}
