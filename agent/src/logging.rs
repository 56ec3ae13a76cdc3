//! Structured logs for PID 1 and slated: `tracing` events with levels and `key=value` fields,
//! written to the console and kept in size-capped, rotated files under `/data/slate/log/`.
//!
//! ```text
//! stage 1   markers, buffered until /data is mounted  → /data/slate/log/stage1.log
//! stage 2   its events and markers                     → console + /data/slate/log/init.log
//! slated    its events and markers                     → stdout, which stage 2 copies to the
//!                                                        console and /data/slate/log/slated.log
//! ```
//! The filter is the image's `[log] filter`, or `slate.log=` on the kernel command line for one
//! boot. Markers (`slate: …`) are printed by the marker module byte for byte, never reformatted.

use crate::logfile::RotatingLog;
use slate_core::config::LogConfig;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

/// Where the device keeps its logs.
pub const LOG_DIR: &str = "/data/slate/log";
/// Lines kept in memory before /data is mounted (stage 1 prints a few dozen).
const EARLY_LINES: usize = 512;

/// The lines of this process that go to a file besides the console.
struct Sink {
    early: Vec<String>,
    file: Option<RotatingLog>,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    early: Vec::new(),
    file: None,
});

fn sink() -> std::sync::MutexGuard<'static, Sink> {
    SINK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps one console line (with its newline) in the log file, or in memory until there is one.
pub fn keep(line: &str) {
    let mut s = sink();
    let s = &mut *s;
    match s.file.as_mut() {
        Some(f) => {
            let _ = f.write_all(line.as_bytes());
        }
        None if s.early.len() < EARLY_LINES => s.early.push(line.to_string()),
        None => {}
    }
}

/// From now on keeps this process's lines in `path` (capped at `cap` bytes with its rotated
/// generation), starting with those printed before.
pub fn attach(path: &Path, cap: u64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = RotatingLog::open(path, cap)?;
    let mut s = sink();
    for line in s.early.drain(..) {
        file.write_all(line.as_bytes())?;
    }
    s.file = Some(file);
    Ok(())
}

/// Flushes the log file (before exec or shutdown).
pub fn flush() {
    if let Some(f) = sink().file.as_mut() {
        let _ = f.flush();
    }
}

/// Closes the log file (lines after this stay on the console only): PID 1 lets go of
/// `/data` before it halts, so the file system can be unmounted clean.
pub fn detach() {
    if let Some(mut f) = sink().file.take() {
        let _ = f.flush();
    }
}

/// The filter in force: `slate.log=` on the kernel command line wins over the image's.
pub fn filter_text(cmdline: &str, config: &LogConfig) -> String {
    slate_core::cmdline::value(cmdline, "slate.log")
        .map_or_else(|| config.filter.clone(), str::to_string)
}

/// A service of the image (`slated`, the DHCP client): logs to its output (which PID 1 copies
/// to the console and the service's log) with the image's filter (`[log]`, or `slate.log=`
/// on the kernel command line); a warning to print when the filter is bad.
pub fn init_for_service() -> Option<String> {
    let log: LogConfig = std::fs::read_to_string(format!("/{}", slate_core::config::paths::INIT))
        .ok()
        .and_then(|t| toml::from_str::<slate_core::config::InitConfig>(&t).ok())
        .map(|init| init.log)
        .unwrap_or_default();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    init(&filter_text(&cmdline, &log), false)
}

/// Parses a filter; a bad one falls back to `info` and says why, rather than silencing logs.
pub fn parse_filter(text: &str) -> (Targets, Option<String>) {
    match text.parse::<Targets>() {
        Ok(t) => (t, None),
        Err(e) => (
            Targets::new().with_default(tracing::Level::INFO),
            Some(format!("log filter {text:?}: {e}; logging at info")),
        ),
    }
}

/// The console, and the kept file when `keep_in_file`.
struct Console {
    keep_in_file: bool,
}

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut out = std::io::stdout().lock();
        out.write_all(buf)?;
        out.flush()?;
        if self.keep_in_file {
            keep(&String::from_utf8_lossy(buf));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// Installs this process's subscriber: one line per event, `LEVEL target: message key=value`,
/// spans as context, no colours and no wall clock (the device's clock is often wrong at boot;
/// the console has the kernel's). Returns a warning to print when the filter was unusable.
#[must_use]
pub fn init(filter: &str, keep_in_file: bool) -> Option<String> {
    let (targets, warning) = parse_filter(filter);
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .without_time()
        .with_target(true)
        .with_writer(move || Console { keep_in_file })
        .with_filter(targets);
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::set_global_default(subscriber).ok()?;
    warning
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_overrides_the_image_filter() {
        let cfg = LogConfig::default();
        assert_eq!(filter_text("quiet slate.slot=a", &cfg), "info");
        assert_eq!(
            filter_text("slate.log=debug,hyper=warn", &cfg),
            "debug,hyper=warn"
        );
    }

    #[test]
    fn filters_parse_like_rust_log_and_bad_ones_fall_back() {
        let (t, w) = parse_filter("warn,slate_agent::slated::install=debug");
        assert!(w.is_none());
        assert!(t.would_enable("slate_agent::slated::install", &tracing::Level::DEBUG));
        assert!(!t.would_enable("slate_agent::slated::health", &tracing::Level::INFO));
        let (t, w) = parse_filter("loud=???");
        assert!(w.is_some());
        assert!(t.would_enable("anything", &tracing::Level::INFO));
    }

    #[test]
    fn early_lines_reach_the_file_once_attached() {
        let d = tempfile::tempdir().unwrap();
        keep("slate: early line\n");
        let path = d.path().join("log/stage1.log");
        attach(&path, 1 << 20).unwrap();
        keep("slate: late line\n");
        flush();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("slate: early line\nslate: late line\n"),
            "{text}"
        );
    }
}
