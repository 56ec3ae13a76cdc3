//! `slate-init`: PID 1 of a Slate device (stage 1 in the initramfs, stage 2 in the real root).
//!
//! Placeholder until the Boot issue lands: the imager already builds and ships this binary
//! (static) as `/init` of the initramfs and `/usr/lib/slate/slate-init` in the root, so the
//! whole build path is real; the stage logic comes with that issue.

fn main() {
    println!(
        "slate: stage1 placeholder (slate-init {}); boot is not implemented yet",
        env!("CARGO_PKG_VERSION")
    );
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
