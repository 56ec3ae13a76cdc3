#![no_main]
//! Unified Kernel Images come from the ESP and, for updates, from bundles: every offset in
//! their PE headers and every length in their Authenticode signature is outside input.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(pe) = slate_core::pe::Pe::parse(data) {
        for s in &pe.sections {
            let _ = pe.section(data, &s.name);
        }
        let _ = slate_core::pe::next_addresses(&pe, &[0, 1, usize::MAX / 2]);
        let _ = slate_core::authenticode::image_digest(data, &pe);
    }
    let refuse = |_: &[u8], _: &[u8], _: &[u8]| false;
    let _ = slate_core::authenticode::verify(data, &[], &refuse);
    let _ = slate_core::authenticode::rsa_public_key(data);
});
