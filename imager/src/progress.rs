//! Progress on the terminal: step lines and bars for long work.
//!
//! Bars draw only on a terminal and never with `--quiet`; step lines go to stderr unless quiet,
//! so logs of scripted builds still say what happened.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// How chatty a command is.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    quiet: bool,
}

impl Progress {
    /// `quiet` silences steps and bars.
    pub fn new(quiet: bool) -> Progress {
        Progress { quiet }
    }

    /// True when nothing should be printed.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Prints one step line.
    pub fn step(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("  {}", msg.as_ref());
        }
    }

    /// A byte-counting bar of `len` bytes, hidden when quiet or not on a terminal.
    pub fn bytes(&self, len: u64, what: &str) -> ProgressBar {
        if self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "  {msg:<22} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_string());
        bar
    }

    /// A spinner for work of unknown length.
    pub fn spinner(&self, what: &str) -> ProgressBar {
        if self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        bar.set_message(what.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }
}
