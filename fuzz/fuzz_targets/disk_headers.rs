#![no_main]
//! `slate inspect` and the agent read GPT and verity headers from disks they did not write.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = slate_core::gpt::Table::decode(data);
    let _ = slate_core::verity::Superblock::decode(data);
});
