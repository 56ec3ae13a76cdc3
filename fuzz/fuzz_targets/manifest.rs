#![no_main]
//! Manifests arrive from the network before anything is trusted.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(m) = slate_core::manifest::Manifest::parse(data) {
        // What parses must serialise and parse back to the same value.
        let again = slate_core::manifest::Manifest::parse(&m.to_bytes()).expect("round trip");
        assert_eq!(again, m);
    }
});
