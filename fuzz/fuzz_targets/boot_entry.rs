#![no_main]
//! Boot entry names and contents are read back from the ESP, which a power cut may tear.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(n) = text.parse::<slate_core::bootentry::EntryName>() {
            assert_eq!(n.to_string().parse::<slate_core::bootentry::EntryName>().expect("round trip"), n);
        }
        let _ = slate_core::bootentry::Entry::parse(text);
    }
});
