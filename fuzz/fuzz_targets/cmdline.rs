#![no_main]
//! The kernel command line comes from a boot entry on the ESP: what parses must write back the
//! same parameters.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = text.parse::<slate_core::cmdline::BootParams>() {
            let _ = p.verity.dm_target("/dev/vda2", &["restart_on_corruption"]);
            let again: slate_core::cmdline::BootParams =
                p.to_string().parse().expect("round trip");
            assert_eq!(again, p);
        }
        let _ = text.parse::<slate_core::verity::VerityInfo>();
    }
});
