#![no_main]
//! Image specs and boards are user-written TOML.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let p = std::path::Path::new("fuzz.toml");
    let _ = slate_imager::error::parse_toml::<slate_imager::image::spec::ImageSpec>(p, data);
    let _ = slate_imager::error::parse_toml::<slate_imager::image::board::Board>(p, data);
});
