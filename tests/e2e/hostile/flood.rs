//! A flood of idle connections and a trickling upload: the agent stays up, its progress tells
//! the truth, and the trickle is cut off, freeing the lock.

use super::*;

/// Thousands of idle connections and an operator's upload trickling below the minimum rate:
/// the agent stays up, the ESP stays read-only, and the trickle is cut off, freeing the lock.
pub(super) fn a_flood_and_a_trickle_do_not_stop_the_agent(
    vm: &mut slate_qemu::Vm,
    good: &std::path::Path,
) {
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
