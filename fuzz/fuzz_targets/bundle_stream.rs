#![no_main]
//! The bundle stream reader sees every byte a client uploads.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut r = slate_core::bundle::BundleReader::new(data);
    for name in ["manifest.toml", "manifest.sig", "rootfs.img", "vmlinuz", "initrd.img"] {
        let Ok(size) = r.expect_entry(name, 1 << 20) else { return };
        let mut seen = 0u64;
        match r.stream::<()>(name, size, |c| {
            seen += c.len() as u64;
            Ok(())
        }) {
            Ok(Ok(())) => assert_eq!(seen, size),
            _ => return,
        }
    }
    let _ = r.expect_end();
});
