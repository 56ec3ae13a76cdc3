//! `cargo xtask fleet-sim`: the rollout of one release to a large simulated fleet, run with
//! the agent's own decision code, so that behaviour at 100,000 devices is argued from the
//! code that ships rather than from a model of it.

mod plot;
mod sim;

use anyhow::{Context, Result};
use slate_core::channel::{Poll, Span, WaveFile, SEEDS};
use std::fmt::Write as _;
use std::path::PathBuf;

pub use sim::{Outcomes, Setup};

/// Options of `cargo xtask fleet-sim`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Devices in the fleet.
    #[arg(long, default_value_t = 100_000)]
    devices: u32,
    /// Wave file [default: the fleet defaults: 1% after 1h … 100% within 7 days].
    #[arg(long, value_name = "waves.toml")]
    waves: Option<PathBuf>,
    /// The agent's poll interval.
    #[arg(long, default_value = "6h")]
    poll_interval: Span,
    /// Share of requests the server fails, in percent.
    #[arg(long, default_value_t = 0.0)]
    error_percent: f64,
    /// Time from starting an install to running the new version.
    #[arg(long, default_value = "10m")]
    install: Span,
    /// Random seed of the run (device seeds, jitter, failures).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write the plot.
    #[arg(long, default_value = "target/fleet-sim.png")]
    plot: PathBuf,
}

/// Runs the simulation and prints its report.
pub fn fleet_sim(args: &Args) -> Result<()> {
    let waves = match &args.waves {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            WaveFile::parse(&text).with_context(|| format!("{}", p.display()))?
        }
        None => WaveFile::default_fleet(),
    };
    // What an image with this poll_interval runs (the imager writes the same settings).
    let poll = Poll::with_interval(args.poll_interval.secs());
    let last_end = waves.resolve(0).0.last().map_or(0, |w| w.end);
    let setup = Setup {
        devices: args.devices,
        waves,
        poll,
        error_rate: args.error_percent / 100.0,
        install_secs: args.install.secs(),
        horizon: last_end + 2 * poll.interval + args.install.secs(),
        seed: args.seed,
    };
    let started = std::time::Instant::now();
    let out = sim::run(&setup);
    let took = started.elapsed();
    print!("{}", report(&setup, &out));
    println!("simulated in {:.1} s", took.as_secs_f64());
    let plot_path = crate::workspace::root().join(&args.plot);
    plot::write(&plot_path, &setup, &out)?;
    println!("plot: {}", plot_path.display());
    Ok(())
}

/// Seconds until `share` of `times` (the devices' update times) have passed.
fn quantile(times: &mut [u64], share: f64) -> Option<u64> {
    times.sort_unstable();
    let k = ((times.len() as f64) * share).ceil() as usize;
    k.checked_sub(1).and_then(|k| times.get(k)).copied()
}

fn hours(secs: u64) -> String {
    format!("{:.1} h", secs as f64 / 3600.0)
}

/// The rollout's figures as text.
pub fn report(setup: &Setup, out: &Outcomes) -> String {
    let mut s = String::new();
    let n = out.devices.len();
    let mut all: Vec<u64> = out.devices.iter().filter_map(|d| d.2).collect();
    let done = all.len();
    let _ = writeln!(
        s,
        "fleet-sim: {n} devices, poll every {} ±{}%, {}% server errors, waves:",
        Span(setup.poll.interval),
        setup.poll.jitter_percent,
        setup.error_rate * 100.0
    );
    let waves = setup.waves.resolve(0);
    let _ = writeln!(
        s,
        "  wave  seeds        fleet %   opens       devices   first update   99% of wave"
    );
    for (i, w) in waves.0.iter().enumerate() {
        let mut times: Vec<u64> = out
            .devices
            .iter()
            .filter(|d| d.1 == Some(i))
            .filter_map(|d| d.2)
            .collect();
        let count = out.devices.iter().filter(|d| d.1 == Some(i)).count();
        let first = times.iter().min().copied();
        let p99 = quantile(&mut times, 0.99);
        let _ = writeln!(
            s,
            "  {:<5} {:>4}..{:<5}  {:>5.1}     {:>5}-{:<5} {:>7}   {:>12}   {:>11}",
            i + 1,
            w.first_seed,
            w.end_seed,
            f64::from(w.end_seed) * 100.0 / f64::from(SEEDS),
            hours(w.start).trim_end_matches(" h"),
            hours(w.end),
            count,
            first.map_or("-".into(), hours),
            if times.len() * 100 >= count * 99 && count > 0 {
                p99.map_or("-".into(), hours)
            } else {
                "not reached".into()
            },
        );
    }
    let _ = writeln!(s, "  rollout (share of the fleet running the release):");
    let step = 12 * 3600;
    let mut t = 0;
    while t <= setup.horizon {
        let k = all.iter().filter(|&&u| u <= t).count();
        let _ = writeln!(
            s,
            "    {:>7}  {:>6.2}%",
            hours(t),
            k as f64 * 100.0 / n.max(1) as f64
        );
        t += step;
    }
    let p99 = quantile(&mut all, 0.99 * n as f64 / done.max(1) as f64);
    let _ = writeln!(
        s,
        "  updated: {done} of {n} ({:.2}%); 99% of the fleet by {}",
        done as f64 * 100.0 / n.max(1) as f64,
        if done * 100 >= n * 99 {
            p99.map_or("-".into(), hours)
        } else {
            "never (within the simulated time)".into()
        }
    );
    let total: u64 = out.requests.iter().map(|&r| u64::from(r)).sum();
    let peak_s = out.requests.iter().copied().max().unwrap_or(0);
    let peak_min = out
        .requests
        .chunks(60)
        .map(|c| c.iter().map(|&r| u64::from(r)).sum::<u64>())
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        s,
        "  server: {total} requests; mean {:.2}/s; peak {:.2}/s over a minute, {peak_s} in one second",
        total as f64 / setup.horizon.max(1) as f64,
        peak_min as f64 / 60.0
    );
    s
}
