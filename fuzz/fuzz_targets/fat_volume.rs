#![no_main]
//! The agent checks and repairs the ESP's FAT at every boot, whatever a cut (or a rotting
//! card) left there: it must never panic, and one repair must leave nothing for a second.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut volume = std::io::Cursor::new(data.to_vec());
    if slate_core::fat::repair(&mut volume).is_ok() {
        let again = slate_core::fat::check(&mut volume).expect("a repaired volume reads back");
        assert!(again.is_clean(), "a second check found {again:?}");
    }
});
