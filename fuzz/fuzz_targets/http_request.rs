#![no_main]
//! What slated parses of a request itself (hyper parses the HTTP framing): query flags; plus
//! the health checker's probe URLs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = slate_agent::slated::http::query_flag(Some(text), "force");
        let _ = slate_agent::slated::health::http_target(text);
    }
});
