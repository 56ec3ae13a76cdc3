#![no_main]
//! A DHCP server's reply comes from anyone on the link: parsing it and judging it as a lease
//! must never panic, and a lease taken must renew before it rebinds and rebind before it ends.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(m) = slate_core::dhcp::ServerMessage::parse(data) {
        let _ = slate_core::dhcp::resolv_conf(&m.dns);
        if let Ok(l) = slate_core::dhcp::lease::lease_from(&m) {
            let t = l.timers;
            assert!(t.renew_s < t.rebind_s && t.rebind_s < t.expire_s);
            assert!((8..=30).contains(&l.prefix));
        }
    }
});
