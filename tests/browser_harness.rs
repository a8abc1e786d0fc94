//! The browser harness (tests/browser) finds what it claims to find: a clean page has no defects, and a page
//! with overlapping labels, a label outside its plot, a legend over the data, an empty plot and an external
//! image has exactly those. Runs in real headless Chromium; CI installs it (.ci/run).
mod browser;

fn page(body: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("page.html");
    std::fs::write(&p, format!("<!DOCTYPE html><html><head><title>t</title></head><body>{body}</body></html>"))
        .unwrap();
    (dir, p)
}

#[test]
fn harness_passes_a_clean_page_and_flags_each_defect() {
    if !browser::available() {
        return;
    }
    let good = r#"<svg width="400" height="300"><title>good</title>
        <rect class="plot-area" x="40" y="10" width="250" height="250" fill="none" stroke="black"/>
        <polyline points="40,250 100,200 200,50" fill="none" stroke="blue"/>
        <line x1="40" y1="260" x2="290" y2="260" stroke="black"/>
        <text x="150" y="290">batch size</text><text x="5" y="20">J</text>
        <g class="legend"><rect x="300" y="20" width="90" height="30" fill="white"/><text x="305" y="40">adam</text></g></svg>"#;
    let (_d, p) = page(good);
    let shot = p.with_extension("png");
    let r = browser::check_page(&p, Some(&shot)).unwrap();
    assert_eq!(r.plots.len(), 1);
    assert!(r.defects().is_empty(), "{:?}", r.defects());
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000, "a real screenshot");

    let bad = r#"<svg width="400" height="300"><title>bad</title>
        <rect class="plot-area" x="40" y="10" width="250" height="250" fill="none" stroke="black"/>
        <polyline points="40,250 100,200" fill="none" stroke="blue"/>
        <text x="150" y="290">batch size</text><text x="152" y="291">learning rate</text>
        <text x="380" y="100">a long label that runs off</text>
        <g class="legend"><rect x="200" y="20" width="90" height="30"/><text x="205" y="40">adam</text></g></svg>
        <svg width="400" height="200"><title>empty</title><text x="10" y="20">nothing here</text></svg>
        <img src="https://example.com/x.png">"#;
    let (_d2, p2) = page(bad);
    let d = browser::check_page(&p2, None).unwrap().defects();
    let has = |s: &str| d.iter().any(|x| x.contains(s));
    assert!(has("bad: 'batch size' overlaps 'learning rate'"), "{d:?}");
    assert!(has("bad: 'a long label that runs off' sticks out"), "{d:?}");
    assert!(has("bad: the legend covers the data"), "{d:?}");
    assert!(has("empty: nothing drawn"), "{d:?}");
    assert!(has("external reference https://example.com/x.png"), "{d:?}");
}
