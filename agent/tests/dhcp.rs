//! The DHCP client against a rogue responder, with real sockets in a real network namespace:
//! `slate-init dhcp` runs in a namespace whose veth link leads to this test, which answers as
//! the network's server (192.168.77.1) and, faster, as a rogue one (claiming 192.168.77.66):
//! an offer of a foreign /32 with no router and a 68-year lease, and an Ack with the client's
//! transaction id for an address it never asked for. The client takes neither, takes the real
//! lease, renews it by unicast to the real server, and replaces (never adds) its default route
//! when the router changes. Needs root and iproute2 (CI has both).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const ROGUE: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 66);
const OFFERED: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 50);
const NEW_ROUTER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace with a veth pair: `outer` here, `inner` in the namespace.
struct Net {
    ns: String,
    outer: String,
    inner: String,
}

impl Net {
    fn new() -> Net {
        let id = std::process::id() % 100_000;
        let net = Net {
            ns: format!("slate-dhcp-{id}"),
            outer: format!("sdo{id}"),
            inner: format!("sdi{id}"),
        };
        ip(&["netns", "add", &net.ns]);
        ip(&[
            "link", "add", &net.outer, "type", "veth", "peer", "name", &net.inner,
        ]);
        ip(&["link", "set", &net.inner, "netns", &net.ns]);
        ip(&["addr", "add", "192.168.77.1/24", "dev", &net.outer]);
        ip(&["link", "set", &net.outer, "up"]);
        ip(&["-n", &net.ns, "link", "set", "lo", "up"]);
        ip(&["-n", &net.ns, "link", "set", &net.inner, "up"]);
        net
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.outer])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// What the client sent, as far as a server reads it.
#[derive(Debug, Clone)]
struct Asked {
    kind: u8,
    xid: u32,
    ciaddr: Ipv4Addr,
    mac: [u8; 6],
    server: Option<Ipv4Addr>,
}

fn read_request(b: &[u8]) -> Option<Asked> {
    if b.len() < 240 || b[0] != 1 || b[236..240] != [99, 130, 83, 99] {
        return None;
    }
    let mut asked = Asked {
        kind: 0,
        xid: u32::from_be_bytes(b[4..8].try_into().ok()?),
        ciaddr: Ipv4Addr::new(b[12], b[13], b[14], b[15]),
        mac: b[28..34].try_into().ok()?,
        server: None,
    };
    let mut i = 240;
    while i + 1 < b.len() && b[i] != 255 {
        if b[i] == 0 {
            i += 1;
            continue;
        }
        let (code, len) = (b[i], usize::from(b[i + 1]));
        let v = b.get(i + 2..i + 2 + len)?;
        match (code, len) {
            (53, 1) => asked.kind = v[0],
            (54, 4) => asked.server = Some(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
            _ => {}
        }
        i += 2 + len;
    }
    Some(asked)
}

/// A BOOTREPLY of `kind` to `asked` offering `yiaddr` from `server`, with `options`.
fn reply(asked: &Asked, kind: u8, yiaddr: Ipv4Addr, server: Ipv4Addr, options: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = 2;
    m[1] = 1;
    m[2] = 6;
    m[4..8].copy_from_slice(&asked.xid.to_be_bytes());
    m[16..20].copy_from_slice(&yiaddr.octets());
    m[28..34].copy_from_slice(&asked.mac);
    m.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind, 54, 4]);
    m.extend_from_slice(&server.octets());
    m.extend_from_slice(options);
    m.push(255);
    m
}

fn good_options(router: Ipv4Addr) -> Vec<u8> {
    let mut o = vec![1, 4, 255, 255, 255, 0, 3, 4];
    o.extend_from_slice(&router.octets());
    // DNS 192.168.77.1; a lease of 30 s: T1 at 10 s (the shortest the client takes).
    o.extend_from_slice(&[
        6, 4, 192, 168, 77, 1, 51, 4, 0, 0, 0, 30, 58, 4, 0, 0, 0, 10,
    ]);
    o
}

fn rogue_options() -> Vec<u8> {
    // A /32 and no router, for 68 years.
    vec![1, 4, 255, 255, 255, 255, 51, 4, 0x80, 0, 0, 0]
}

fn address_and_routes(net: &Net) -> (String, String) {
    (
        ip(&["-n", &net.ns, "-4", "addr", "show", "dev", &net.inner]),
        ip(&["-n", &net.ns, "-4", "route", "show", "default"]),
    )
}

#[test]
fn a_rogue_server_is_not_taken_and_the_real_lease_is_renewed_by_unicast() {
    let net = Net::new();
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    // The server's two sockets: broadcasts reach the wildcard one, unicast the address's own.
    let bcast = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    bcast.set_reuse_address(true).unwrap();
    bcast.set_broadcast(true).unwrap();
    bcast.bind_device(Some(net.outer.as_bytes())).unwrap();
    bcast
        .bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67).into())
        .unwrap();
    let bcast: UdpSocket = bcast.into();
    let unicast = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    unicast.set_reuse_address(true).unwrap();
    unicast.bind(&SocketAddrV4::new(SERVER, 67).into()).unwrap();
    let unicast: UdpSocket = unicast.into();
    for s in [&bcast, &unicast] {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }

    let mut client = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.ns,
            env!("CARGO_BIN_EXE_slate-init"),
            "dhcp",
        ])
        .arg(&net.inner)
        .args(["--hostname", "dhcp-test", "--resolv-conf"])
        .arg(&resolv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, said) = mpsc::channel::<String>();
    for pipe in [
        Box::new(client.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(client.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }

    let to_client = SocketAddrV4::new(Ipv4Addr::BROADCAST, 68);
    let mut buf = [0u8; 1500];
    let mut requests_to_server = 0;
    let mut renewal: Option<Asked> = None;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(40) && renewal.is_none() {
        for (sock, is_unicast) in [(&bcast, false), (&unicast, true)] {
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Some(asked) = read_request(&buf[..n]) else {
                continue;
            };
            match asked.kind {
                // Discover: the rogue answers first, then the server.
                1 => {
                    bcast
                        .send_to(
                            &reply(
                                &asked,
                                2,
                                Ipv4Addr::new(10, 99, 99, 99),
                                ROGUE,
                                &rogue_options(),
                            ),
                            to_client,
                        )
                        .unwrap();
                    bcast
                        .send_to(
                            &reply(&asked, 2, OFFERED, SERVER, &good_options(SERVER)),
                            to_client,
                        )
                        .unwrap();
                }
                // Request: the rogue Acks first with another address (same xid); then the
                // server answers. A renewal (ciaddr set) must come by unicast to the server.
                3 if asked.ciaddr.is_unspecified() => {
                    assert_eq!(asked.server, Some(SERVER), "it requested the rogue's offer");
                    requests_to_server += 1;
                    bcast
                        .send_to(
                            &reply(
                                &asked,
                                5,
                                Ipv4Addr::new(10, 99, 99, 99),
                                ROGUE,
                                &rogue_options(),
                            ),
                            to_client,
                        )
                        .unwrap();
                    bcast
                        .send_to(
                            &reply(&asked, 5, OFFERED, SERVER, &good_options(SERVER)),
                            to_client,
                        )
                        .unwrap();
                }
                3 => {
                    assert!(is_unicast, "a renewal was broadcast: {asked:?}");
                    assert_eq!(asked.ciaddr, OFFERED);
                    // The network's router changes with the renewal.
                    let ack = reply(&asked, 5, OFFERED, SERVER, &good_options(NEW_ROUTER));
                    unicast
                        .send_to(&ack, SocketAddrV4::new(OFFERED, 68))
                        .unwrap();
                    renewal = Some(asked);
                }
                _ => {}
            }
        }
    }
    let renewal_at = started.elapsed();
    assert_eq!(requests_to_server, 1);
    let renewal = renewal.unwrap_or_else(|| panic!("no unicast renewal within 40 s"));
    eprintln!("renewed by unicast after {renewal_at:?}: {renewal:?}");
    // Give the client a moment to apply the renewed lease.
    let mut routes = String::new();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        routes = address_and_routes(&net).1;
        if routes.contains(&NEW_ROUTER.to_string()) {
            break;
        }
    }
    let (addr, _) = address_and_routes(&net);
    let _ = client.kill();
    let _ = client.wait();
    let output: Vec<String> = said.try_iter().collect();
    let text = output.join("\n");
    assert!(addr.contains("inet 192.168.77.50/24"), "{addr}\n{text}");
    // One default route, through the new router: replaced, not added.
    assert_eq!(routes.lines().count(), 1, "{routes}\n{text}");
    assert!(routes.starts_with("default via 192.168.77.2 "), "{routes}");
    // The rogue's offer was refused with its reason, once.
    assert_eq!(
        output
            .iter()
            .filter(|l| l.contains("the DHCP answer of 192.168.77.66 is not taken"))
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains("slate: network lease iface="), "{text}");
    assert!(!text.contains("10.99.99.99/"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&resolv).unwrap(),
        "# written by slate-init from the DHCP lease\nnameserver 192.168.77.1\n"
    );
}
