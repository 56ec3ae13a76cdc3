//! The network's system calls: interface flags, addresses and routes (the `SIOC*` ioctls),
//! and binding a socket to an interface. Every `unsafe` here is one such call.

use anyhow::{bail, Context, Result};
use std::os::fd::AsRawFd;

// Network interfaces through the classic ioctls (struct ifreq: name[16] + 24-byte union).

fn ifreq(name: &str) -> Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        bail!("invalid interface name {name:?}");
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

fn inet_socket() -> Result<std::net::UdpSocket> {
    std::net::UdpSocket::bind("0.0.0.0:0").context("opening a socket for interface ioctls")
}

fn if_ioctl(
    sock: &std::net::UdpSocket,
    request: libc::c_ulong,
    req: &mut libc::ifreq,
    what: &str,
) -> Result<()> {
    // SAFETY: `req` is a valid, exclusively borrowed struct ifreq for the whole call, which is
    // what these SIOC* requests read and write.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, req as *mut libc::ifreq) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| what.to_string());
    }
    Ok(())
}

/// Brings an interface up.
pub fn link_up(name: &str) -> Result<()> {
    let sock = inet_socket()?;
    let mut req = ifreq(name)?;
    if_ioctl(
        &sock,
        libc::SIOCGIFFLAGS,
        &mut req,
        &format!("reading flags of {name}"),
    )?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    if_ioctl(
        &sock,
        libc::SIOCSIFFLAGS,
        &mut req,
        &format!("bringing {name} up"),
    )
}

fn sockaddr_in(addr: std::net::Ipv4Addr) -> libc::sockaddr {
    // SAFETY: sockaddr_in and sockaddr are plain old data of the same size (16 bytes).
    unsafe {
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from_ne_bytes(addr.octets());
        std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin)
    }
}

/// Gives an interface an IPv4 address and netmask.
pub fn set_ipv4(name: &str, addr: std::net::Ipv4Addr, prefix: u8) -> Result<()> {
    let sock = inet_socket()?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_addr = sockaddr_in(addr);
    if_ioctl(
        &sock,
        libc::SIOCSIFADDR,
        &mut req,
        &format!("setting {addr} on {name}"),
    )?;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_netmask = sockaddr_in(std::net::Ipv4Addr::from(mask));
    if_ioctl(
        &sock,
        libc::SIOCSIFNETMASK,
        &mut req,
        &format!("setting /{prefix} on {name}"),
    )
}

/// The hardware (MAC) address of an interface.
pub fn mac_address(name: &str) -> Result<[u8; 6]> {
    let sock = inet_socket()?;
    let mut req = ifreq(name)?;
    if_ioctl(
        &sock,
        libc::SIOCGIFHWADDR,
        &mut req,
        &format!("reading the hardware address of {name}"),
    )?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data.iter()) {
        *m = *d as u8;
    }
    Ok(mac)
}

/// Makes a socket send and receive only on interface `name` (SO_BINDTODEVICE): a DHCP client
/// talks on its interface before that has an address or a route.
pub fn bind_to_device(sock: &impl AsRawFd, name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    // SAFETY: the option value is the interface name's bytes, valid for the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            bytes.as_ptr().cast(),
            bytes.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("binding a socket to {name}"));
    }
    Ok(())
}

/// Removes the interface's IPv4 address (setting 0.0.0.0 deletes it): a lease that ended.
pub fn clear_ipv4(name: &str) -> Result<()> {
    let sock = inet_socket()?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_addr = sockaddr_in(std::net::Ipv4Addr::UNSPECIFIED);
    if_ioctl(
        &sock,
        libc::SIOCSIFADDR,
        &mut req,
        &format!("removing the address of {name}"),
    )
}

/// Makes `gateway` on `name` the one default route: every existing default route is deleted
/// first, so leases that change routers do not pile routes up.
pub fn replace_default_route(name: &str, gateway: std::net::Ipv4Addr) -> Result<()> {
    let sock = inet_socket()?;
    for _ in 0..32 {
        // SAFETY: rtentry is plain old data; all-zero is a valid value.
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr_in(std::net::Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr_in(std::net::Ipv4Addr::UNSPECIFIED);
        rt.rt_flags = libc::RTF_UP as libc::c_ushort;
        // SAFETY: `rt` is a valid rtentry for the call (no device name: any interface's).
        let rc = unsafe {
            libc::ioctl(
                sock.as_raw_fd(),
                libc::SIOCDELRT,
                &mut rt as *mut libc::rtentry,
            )
        };
        if rc < 0 {
            break;
        }
    }
    add_default_route(name, gateway)
}

/// Adds the default route through `gateway` on interface `name` (an existing one is fine).
pub fn add_default_route(name: &str, gateway: std::net::Ipv4Addr) -> Result<()> {
    let sock = inet_socket()?;
    let dev = std::ffi::CString::new(name).context("interface name")?;
    // SAFETY: rtentry is plain old data; all-zero is a valid value.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr_in(std::net::Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr_in(std::net::Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr_in(gateway);
    rt.rt_flags = (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort;
    rt.rt_dev = dev.as_ptr() as *mut libc::c_char;
    // SAFETY: `rt` is a valid rtentry whose rt_dev points at `dev`, alive for the call.
    let rc = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCADDRT,
            &mut rt as *mut libc::rtentry,
        )
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e)
                .with_context(|| format!("adding the default route via {gateway} on {name}"));
        }
    }
    Ok(())
}
