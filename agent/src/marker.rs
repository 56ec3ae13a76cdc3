//! Prints console markers. What they say is rendered by [`slate_core::api::Marker`], the one
//! place their wording lives (DESIGN §8); this module only writes the line.

use slate_core::api::Marker;
use std::io::Write;

/// Prints the marker as one line on stdout (the console for PID 1 and its services), and keeps
/// it in this process's log file when it has one ([`crate::logging`]).
pub fn emit(marker: &Marker) {
    let line = format!("{marker}\n");
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
    drop(out);
    crate::logging::keep(&line);
}

/// Prints `slate: warning: <text>`: something is wrong but the boot goes on.
pub fn warn(text: impl Into<String>) {
    emit(&Marker::Warning(text.into()));
}
