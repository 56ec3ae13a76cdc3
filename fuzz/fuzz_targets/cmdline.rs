#![no_main]
//! The kernel command line comes from a boot entry on the ESP.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = slate_agent::cmdline::parse(text) {
            let _ = p.verity.dm_table("/dev/vda2", &["restart_on_corruption"]);
        }
        let _ = text.parse::<slate_core::verity::VerityInfo>();
    }
});
