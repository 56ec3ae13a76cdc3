#![no_main]
//! A fleet server's documents come from the network: reading any of them must never panic,
//! and what is accepted must keep its promises (links on the server, a sha256 and a size).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let server = match url::Url::parse("https://fleet.example:8443/ddi") {
        Ok(u) => u,
        Err(_) => return,
    };
    use slate_core::fleet::ddi;
    if let Ok(asked) = ddi::read_base(&server, data) {
        for (u, _) in asked.deployment.iter().chain(asked.cancel.iter()) {
            assert_eq!(u.origin(), server.origin());
        }
        if let Some(s) = asked.sleep {
            assert!((ddi::SLEEP_BOUNDS.0..=ddi::SLEEP_BOUNDS.1).contains(&s));
        }
    }
    if let Ok(offer) = ddi::read_deployment(&server, data) {
        assert_eq!(offer.url.origin(), server.origin());
    }
    let _ = ddi::read_cancel(data);
});
