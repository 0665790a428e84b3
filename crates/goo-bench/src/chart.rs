//! The peer-comparison chart: one horizontal bar per contender, its median ratio to its
//! group's baseline (1.0, the black line), groups one under the other; drawn with plotters
//! as SVG from one or more `--json` result files (the Rust harness's and the C driver's).

use plotters::prelude::*;

use crate::harness::Results;

/// One bar: which group, which contender, its ratio.
struct Bar {
    label: String,
    ratio: f64,
    /// The group's baseline (ratio 1.0 by definition): drawn grey.
    baseline: bool,
    /// The first bar of a group: its title is drawn above it.
    title: Option<String>,
}

/// Draws `results` into an SVG file at `path`.
pub fn draw(results: &[Results], path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut bars = Vec::new();
    for r in results {
        for g in &r.groups {
            for (i, row) in g.rows.iter().enumerate() {
                bars.push(Bar {
                    label: row.name.clone(),
                    ratio: row.median_ratio,
                    baseline: row.name == g.baseline,
                    title: (i == 0).then(|| g.title.clone()),
                });
            }
        }
    }
    if bars.is_empty() {
        return Err("no results to draw".into());
    }
    // A title takes the place of one bar.
    let slots: usize = bars.len() + bars.iter().filter(|b| b.title.is_some()).count();
    let row_px = 18u32;
    let height = 90 + row_px * slots as u32;
    // Bars longer than CAP are cut there (their labels say the true ratio), so that one slow
    // contender (a debug allocator at 500x) leaves the others readable; room right of the
    // longest bar for its label.
    const CAP: f64 = 4.0;
    let max = bars.iter().map(|b| b.ratio.min(CAP)).fold(1.0f64, f64::max) * 1.6;
    let machine = results.iter().map(|r| r.machine.as_str()).find(|m| !m.is_empty()).unwrap_or("");
    let commands: Vec<&str> = results.iter().map(|r| r.command.as_str()).collect();

    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!(
        "goo-memory against its peers: median time ratio to each group's baseline (lower is faster; bars cut at {CAP}x) — {machine}"
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 14))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(0)
        .build_cartesian_2d(0.0..max, 0.0..slots as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc(format!("ratio (from: {})", commands.join("; ")))
        .x_label_formatter(&|x| format!("{x:.1}x"))
        .draw()?;

    // Slot 0 is the top row.
    let y = |slot: usize| (slots - slot) as f64;
    let mut slot = 0;
    let label_style = ("sans-serif", 11).into_font();
    for bar in &bars {
        if let Some(title) = &bar.title {
            chart.draw_series(std::iter::once(Text::new(
                title.clone(),
                (0.0, y(slot) - 0.25),
                ("sans-serif", 12).into_font().style(FontStyle::Bold),
            )))?;
            slot += 1;
        }
        let cut = bar.ratio > CAP;
        let length = bar.ratio.min(CAP);
        let color = if bar.baseline {
            RGBColor(170, 170, 170)
        } else if cut {
            RGBColor(190, 90, 70)
        } else {
            RGBColor(70, 120, 190)
        };
        let (top, bottom) = (y(slot) - 0.15, y(slot) - 0.85);
        chart.draw_series(std::iter::once(Rectangle::new([(0.0, bottom), (length, top)], color.filled())))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{:.2}x{}  {}", bar.ratio, if cut { " (cut)" } else { "" }, bar.label),
            (length + max * 0.005, y(slot) - 0.3),
            label_style.clone(),
        )))?;
        slot += 1;
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, 0.0), (1.0, slots as f64)],
        BLACK.stroke_width(1),
    )))?;
    root.present()?;
    Ok(())
}
