//! `slate build --timings`: wall and CPU time of each build stage, so a slow build says where
//! its time goes and whether that stage uses more than one core (CPU/wall > 1).
//!
//! CPU time is read from `/proc/self/stat` (this process and the tools it waited for, such as
//! mkfs.ext4 and mtools), in the kernel's fixed 100 Hz user ticks.

use std::time::Instant;

/// Ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux architecture).
const USER_HZ: f64 = 100.0;

/// One finished stage.
#[derive(Debug, Clone)]
pub struct Stage {
    /// What ran.
    pub name: &'static str,
    /// Seconds of wall-clock time.
    pub wall: f64,
    /// Seconds of CPU time (all threads and waited-for children); None where /proc is missing.
    pub cpu: Option<f64>,
}

/// Records stages one after another.
#[derive(Debug, Default)]
pub struct Timings {
    stages: Vec<Stage>,
    current: Option<(
        &'static str,
        Instant,
        Option<f64>,
        tracing::span::EnteredSpan,
    )>,
}

/// CPU seconds this process and its waited-for children have used.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_from_stat(&stat)
}

/// utime + stime + cutime + cstime (fields 14–17) of a `/proc/<pid>/stat` line, in seconds.
fn cpu_from_stat(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces; the fields after it follow the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field n is at index n - 3.
    let ticks: u64 = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    Some(ticks as f64 / USER_HZ)
}

impl Timings {
    /// Ends the running stage (if any) and starts `name`; each stage is also a tracing span.
    pub fn stage(&mut self, name: &'static str) {
        self.finish();
        let span = tracing::info_span!("build", stage = name).entered();
        self.current = Some((name, Instant::now(), cpu_seconds(), span));
    }

    /// Ends the running stage.
    pub fn finish(&mut self) {
        if let Some((name, started, cpu0, span)) = self.current.take() {
            let wall = started.elapsed().as_secs_f64();
            let cpu = cpu0.zip(cpu_seconds()).map(|(a, b)| (b - a).max(0.0));
            tracing::info!(wall_s = wall, cpu_s = cpu, "stage done");
            drop(span);
            self.stages.push(Stage { name, wall, cpu });
        }
    }

    /// The stages recorded so far.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The table `--timings` prints.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<28} {:>9} {:>9} {:>9}\n",
            "stage", "wall s", "CPU s", "CPU/wall"
        );
        let (mut wall, mut cpu, mut cpu_known) = (0.0, 0.0, true);
        for s in &self.stages {
            wall += s.wall;
            match s.cpu {
                Some(c) => cpu += c,
                None => cpu_known = false,
            }
            out.push_str(&row(s.name, s.wall, s.cpu));
        }
        out.push_str(&row("total", wall, cpu_known.then_some(cpu)));
        out
    }
}

fn row(name: &str, wall: f64, cpu: Option<f64>) -> String {
    match cpu {
        Some(c) if wall > 0.0 => format!("{name:<28} {wall:>9.2} {c:>9.2} {:>9.2}\n", c / wall),
        Some(c) => format!("{name:<28} {wall:>9.2} {c:>9.2} {:>9}\n", "-"),
        None => format!("{name:<28} {wall:>9.2} {:>9} {:>9}\n", "n/a", "n/a"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_fields_are_read_after_the_command_name() {
        // pid (comm with ") x") state ppid pgrp session tty tpgid flags minflt cminflt majflt
        // cmajflt utime stime cutime cstime ...
        let stat = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 10 5 20 0 1 0";
        assert_eq!(cpu_from_stat(stat), Some(3.15));
        assert_eq!(cpu_from_stat("garbage"), None);
    }

    #[test]
    fn stages_are_recorded_in_order_with_a_total() {
        let mut t = Timings::default();
        t.stage("one");
        t.stage("two");
        t.finish();
        let names: Vec<&str> = t.stages().iter().map(|s| s.name).collect();
        assert_eq!(names, ["one", "two"]);
        assert!(t.stages().iter().all(|s| s.cpu.is_some()));
        let table = t.table();
        assert!(
            table.lines().last().unwrap_or("").starts_with("total"),
            "{table}"
        );
    }
}
