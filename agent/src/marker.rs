//! Console markers: lines starting with `slate:` that the QEMU harness and operators wait for.
//! Their wording is a contract (DESIGN §8); change only by adding new ones.

use std::io::Write;

/// Prints `slate: <text>` as one line on stdout (the console for PID 1 and its services).
pub fn emit(text: &str) {
    let line = format!("slate: {text}\n");
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}
