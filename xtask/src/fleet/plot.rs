//! The rollout as a PNG: share of each wave (and of the fleet) running the release over time.

use super::sim::Outcomes;
use super::Setup;
use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::Path;

/// Debian's fonts-dejavu-core (installed with the host tools): plotters draws text with it.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn register_font() -> Result<()> {
    let bytes = std::fs::read(FONT)
        .with_context(|| format!("reading {FONT} (apt-get install fonts-dejavu-core)"))?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{FONT}: not a font plotters can read"))
}

/// Draws the curves into `path`.
pub fn write(path: &Path, setup: &Setup, out: &Outcomes) -> Result<()> {
    register_font()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let waves = setup.waves.resolve(0);
    let hours = setup.horizon as f64 / 3600.0;
    let root = BitMapBackend::new(path, (1200, 700)).into_drawing_area();
    root.fill(&WHITE).context("drawing")?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Slate fleet-sim: {} devices", out.devices.len()),
            ("sans-serif", 28),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..hours, 0f64..100f64)
        .context("drawing the axes")?;
    chart
        .configure_mesh()
        .x_desc("hours after publishing")
        .y_desc("% running the release")
        .label_style(("sans-serif", 16))
        .draw()
        .context("drawing the grid")?;
    let samples = 400usize;
    let curve = |members: Vec<u64>| -> Vec<(f64, f64)> {
        let mut times = members;
        times.sort_unstable();
        let n = times.len().max(1) as f64;
        (0..=samples)
            .map(|k| {
                let t = setup.horizon as f64 * k as f64 / samples as f64;
                let done = times.partition_point(|&u| (u as f64) <= t);
                (t / 3600.0, done as f64 * 100.0 / n)
            })
            .collect()
    };
    for (i, _) in waves.0.iter().enumerate() {
        let members: Vec<u64> = out
            .devices
            .iter()
            .filter(|d| d.1 == Some(i))
            .map(|d| d.2.unwrap_or(u64::MAX))
            .collect();
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(curve(members), color.stroke_width(2)))
            .context("drawing a wave")?
            .label(format!("wave {}", i + 1))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    let all: Vec<u64> = out
        .devices
        .iter()
        .map(|d| d.2.unwrap_or(u64::MAX))
        .collect();
    chart
        .draw_series(LineSeries::new(curve(all), BLACK.stroke_width(4)))
        .context("drawing the fleet")?
        .label("whole fleet")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(4)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .context("drawing the legend")?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
