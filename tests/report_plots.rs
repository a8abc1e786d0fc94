//! Each plot defect of issue 15, checked on the SVG's structure (roxmltree), so that it fails if it comes
//! back: the legend's box outside the plot area, one band per category (no empty column or bare tick), a
//! colour scale with numbers, a tick per batch size, the method in every title, titles that fit, bar labels
//! that do not overlap, "not reached" marked, the number behind every bar and cell on hover.
mod study_fake;

use powertrain::report::svg::{self, Bar, Lines, Series};
use powertrain::report::write_report;
use powertrain::study::SweepOptions;

#[derive(Debug, Clone, Copy)]
struct R {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

fn rect_of(n: roxmltree::Node) -> R {
    let a = |k: &str| n.attribute(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    R { x: a("x"), y: a("y"), w: a("width"), h: a("height") }
}

fn overlap(a: R, b: R) -> bool {
    a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
}

fn has_class(n: &roxmltree::Node, c: &str) -> bool {
    n.attribute("class").is_some_and(|v| v.split_whitespace().any(|x| x == c))
}

fn find<'a>(d: &'a roxmltree::Document, class: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    d.descendants().filter(|n| has_class(n, class)).collect()
}

/// Texts directly inside an element of `class` (tick labels of an axis).
fn texts_in(d: &roxmltree::Document, class: &str) -> Vec<String> {
    find(d, class)
        .iter()
        .flat_map(|g| g.descendants().filter(|n| n.tag_name().name() == "text"))
        .map(|t| t.children().filter(|c| c.is_text()).map(|c| c.text().unwrap_or("")).collect::<String>())
        .collect()
}

/// The tick labels of the `axis` ("x" or "y") axis.
fn ticks(d: &roxmltree::Document, axis: &str) -> Vec<String> {
    d.descendants()
        .filter(|g| has_class(g, "axis") && has_class(g, axis))
        .flat_map(|g| g.descendants().filter(|n| has_class(n, "tick")))
        .map(|t| t.text().unwrap_or("").to_string())
        .collect()
}

/// The legend's box and the plot area never intersect; the title lines fit the chart's width.
fn check_frame(svg_text: &str) {
    let d = roxmltree::Document::parse(svg_text).unwrap();
    let area = rect_of(find(&d, "plot-area")[0]);
    for l in find(&d, "legend") {
        for r in l.descendants().filter(|n| n.tag_name().name() == "rect") {
            assert!(!overlap(area, rect_of(r)), "legend {:?} over the plot area {area:?}", rect_of(r));
        }
    }
    for t in find(&d, "title") {
        let s = t.text().unwrap_or("");
        assert!(svg::text_w(s, 15.0) <= svg::W - 20.0, "title line wider than the chart: {s}");
    }
}

#[test]
fn legend_outside_data_and_batch_sizes_ticked() {
    // 14 series (the pretraining plot) with points at the far right, where the old legend sat.
    let series: Vec<Series> = (0..14)
        .map(|i| Series { name: format!("run {i}"), points: vec![(32.0, i as f64), (128.0, 20.0 + i as f64)] })
        .collect();
    let cap = "Energy per epoch vs batch size (J) [measured (nvml-counter)]";
    let s = Lines {
        caption: cap,
        x_desc: "batch size",
        y_desc: "J",
        series: &series,
        log_x: true,
        x_at: Some(vec![32.0, 64.0, 128.0]),
        vlines: &[],
    }
    .svg()
    .unwrap();
    check_frame(&s);
    let d = roxmltree::Document::parse(&s).unwrap();
    assert_eq!(ticks(&d, "x"), vec!["32", "64", "128"], "one tick per batch size");
    // 14 distinct styles (colour, dash) and a hover number on every point.
    let styles: std::collections::BTreeSet<_> = (0..14).map(svg::style).collect();
    assert_eq!(styles.len(), 14);
    assert_eq!(d.descendants().filter(|n| n.tag_name().name() == "circle").count(), 28);
    assert!(s.contains("<title>run 3: x 128, y 23</title>"), "{s}");
}

#[test]
fn heatmap_has_one_band_per_category_and_a_colour_scale() {
    let xl: Vec<String> = ["32", "64", "128"].map(String::from).to_vec();
    let yl: Vec<String> = ["0.001", "0.01"].map(String::from).to_vec();
    let cells = vec![vec![Some(100.0), Some(105.0), None], vec![Some(101.0), Some(102.0), Some(104.0)]];
    let s = svg::heatmap(
        "Energy to target (J) [estimate (no sensor)]",
        ("batch size", "learning rate"),
        &xl,
        &yl,
        &cells,
        "J",
    )
    .unwrap();
    check_frame(&s);
    let d = roxmltree::Document::parse(&s).unwrap();
    let cellr = find(&d, "cell");
    assert_eq!(cellr.len(), 6);
    // Cells tile the plot area exactly: no empty column or row.
    let area = rect_of(find(&d, "plot-area")[0]);
    let right = cellr.iter().map(|c| rect_of(*c)).map(|r| r.x + r.w).fold(0.0, f64::max);
    let top = cellr.iter().map(|c| rect_of(*c).y).fold(f64::MAX, f64::min);
    assert!((right - (area.x + area.w)).abs() < 0.5 && (top - area.y).abs() < 0.5, "{right} {top} {area:?}");
    assert_eq!(ticks(&d, "x"), xl);
    assert_eq!(ticks(&d, "y"), yl);
    let scale = texts_in(&d, "colour-scale").join(" | ");
    assert!(scale.contains("100 J") && scale.contains("max/min 1.05x"), "{scale}");
    // 1.05x apart: not the scale's two ends (the old plot drew them pure green and pure red).
    let fills: Vec<&str> = cellr.iter().map(|c| c.attribute("fill").unwrap()).collect();
    assert_ne!(fills[1], "rgb(253,231,37)", "{fills:?}");
    assert!(s.contains("batch size 128, learning rate 0.001: not reached"), "hover says not reached");
    assert!(s.contains("batch size 64, learning rate 0.001: 105 J"));
}

#[test]
fn bars_are_readable_and_mark_not_reached() {
    let bars: Vec<Bar> = (0..12)
        .map(|i| Bar {
            label: format!("conv2d_backward_filter_variant_{i}"),
            value: if i == 3 { None } else { Some(10.0 * (i + 1) as f64) },
            err: Some(1.0),
            missing: "not reached".into(),
        })
        .collect();
    let cap = "Multi-task vs single-task networks: energy until every attribute reaches its target (J) [sim (simulated GPU counter)]";
    let s = svg::hbars(cap, "energy (J)", "J", &bars).unwrap();
    check_frame(&s);
    let d = roxmltree::Document::parse(&s).unwrap();
    let labels: Vec<f64> = find(&d, "category").iter().map(|n| n.attribute("y").unwrap().parse().unwrap()).collect();
    assert_eq!(labels.len(), 12);
    assert!(labels.windows(2).all(|w| w[1] - w[0] >= 14.0), "labels overlap: {labels:?}");
    assert_eq!(find(&d, "bar").len(), 11);
    let missing = find(&d, "missing");
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].text(), Some("not reached"));
    assert!(s.contains("conv2d_backward_filter_variant_0: 10 ± 1 J"), "hover number");
    // The title is wrapped, not clipped: every word is drawn.
    let drawn: String = find(&d, "title").iter().map(|t| t.text().unwrap_or("")).collect::<Vec<_>>().join(" ");
    assert_eq!(drawn, cap);
}

#[test]
fn every_report_plot_names_its_method_and_keeps_its_legend_off_the_data() {
    let d = tempfile::tempdir().unwrap();
    let a = SweepOptions {
        model: "pamap2".into(),
        data: "/data/pamap2".into(),
        batch_sizes: Some("32,64,128".into()),
        lrs: Some("1e-4,1e-3,1e-2".into()),
        seeds: 1,
        target_acc: Some(0.6),
        epochs: 4,
        optimizer: "adam".into(),
        tasks: None,
        device: "cpu".into(),
        energy: "estimate".into(),
        watts: Some(40.0),
        extras: Default::default(),
        quick: false,
        prune: false,
        emit_slurm: None,
        only: None,
        out: d.path().to_path_buf(),
    };
    powertrain::study::sweep_with(&a, &study_fake::fake_train).unwrap();
    let r = write_report(&[d.path().to_path_buf()], None).unwrap();
    assert_eq!(r.plots.len(), 5);
    for (f, cap) in &r.plots {
        let text = std::fs::read_to_string(d.path().join(f)).unwrap();
        assert!(cap.contains("[estimate (no sensor)]"), "{f}: {cap}");
        assert!(cap.contains("(J") || cap.contains(", W)"), "{f}: unit in {cap}");
        check_frame(&text);
    }
    let md = std::fs::read_to_string(&r.md).unwrap();
    assert!(md.contains("**What was measured:** 9 training run(s) in a sweep study"), "{md}");
    assert!(md.contains("- **sweep**: energy to the target accuracy, worst vs best"), "{md}");
    assert!(
        md.contains("Cheapest single run: the cheapest run to the target accuracy 0.6 is `bs128_lr0.001_s0`"),
        "{md}"
    );
    // Where the joules go: one page per run with kernels.csv, linked from the report.
    assert_eq!(r.pages.len(), 9);
    let page = std::fs::read_to_string(&r.pages[0]).unwrap();
    assert!(page.contains("Per kernel") && page.contains("conv2d_forward") && page.contains("estimate (no sensor)"));
    assert!(md.contains("## Where the joules go"));
}
