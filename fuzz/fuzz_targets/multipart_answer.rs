#![no_main]
//! A `multipart/byteranges` answer comes from whatever server or proxy the channel's bundle
//! sits behind: reading it must never panic, however it is cut into frames, and every part it
//! gives lies inside the file its `Content-Range` names.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use slate_core::channel::multipart::Parts;
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let Some(mut parts) = Parts::new("multipart/byteranges; boundary=b") else {
        return;
    };
    let frame = usize::from(split).max(1);
    for chunk in body.chunks(frame) {
        match parts.push(chunk) {
            Ok(segments) => {
                for s in segments {
                    let end = s.offset + s.bytes.len() as u64;
                    assert!(end <= s.total, "{} + {} > {}", s.offset, s.bytes.len(), s.total);
                }
            }
            Err(_) => return,
        }
    }
});
