#![no_main]
//! The trust file is baked into images from operator input.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = slate_core::manifest::Trust::parse(text);
    }
});
