#![no_main]
//! A DHCP server's reply comes from anyone on the link and is parsed in PID 1: it must never
//! panic, and what it yields must be usable (a lease renews no later than it expires).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(m) = slate_core::dhcp::ServerMessage::parse(data) {
        let _ = m.renew_after_s();
        let _ = slate_core::dhcp::resolv_conf(&m.dns);
    }
});
