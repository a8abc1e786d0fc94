//! Opens an HTML page in a real browser (Debian's headless Chromium) and measures what a reader sees: every
//! inline SVG plot's box, its texts' boxes (axis labels, ticks, legend entries, titles), overlaps between
//! texts, texts that stick out of their plot or the viewport, plots with nothing drawn, and every resource the
//! page fetched or points to outside the file (the report must work offline).
//!
//! How: a copy of the page gets a small script before `</body>` that measures the laid-out DOM and writes the
//! result as JSON into `<pre id="pt-check">`; `chromium --headless --dump-dom` prints the DOM after the script
//! ran. The network is closed to the browser (`--host-resolver-rules`, no proxy), so an external fetch fails
//! and shows up in the resource list rather than silently succeeding. `screenshot` also writes a PNG.
//!
//! `.ci/run` installs chromium and sets POWERTRAIN_REQUIRE_BROWSER=1; elsewhere a missing browser skips (`available`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Viewport of every check (a laptop screen).
pub const VIEWPORT: (u32, u32) = (1280, 900);

/// The measuring script. Plot = an inline <svg> with a width of at least 200 px (icons are ignored).
const PROBE: &str = r#"<script>
(function () {
  const r2 = (r) => ({ x: r.left, y: r.top, w: r.width, h: r.height });
  const inter = (a, b) => {
    const w = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
    const h = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
    return (w > 0 && h > 0) ? w * h : 0;
  };
  const plots = [];
  for (const svg of document.querySelectorAll('svg')) {
    const box = r2(svg.getBoundingClientRect());
    if (box.w < 200) continue;
    const texts = [...svg.querySelectorAll('text')]
      .filter(t => (t.textContent || '').trim().length > 0)
      .map(t => ({ s: t.textContent.trim(), b: r2(t.getBoundingClientRect()), cls: t.getAttribute('class') || '' }));
    const drawn = svg.querySelectorAll('path, polyline, polygon, line, rect, circle').length;
    const overlaps = [];
    for (let i = 0; i < texts.length; i++) for (let j = i + 1; j < texts.length; j++) {
      const a = texts[i].b, b = texts[j].b, o = inter(a, b);
      // Overlap beyond 15 % of the smaller text's area: two labels drawn over each other.
      if (o > 0.15 * Math.min(a.w * a.h, b.w * b.h)) overlaps.push([texts[i].s, texts[j].s]);
    }
    const outside = texts.filter(t => t.b.x < box.x - 1 || t.b.y < box.y - 1 ||
      t.b.x + t.b.w > box.x + box.w + 1 || t.b.y + t.b.h > box.y + box.h + 1).map(t => t.s);
    const legend = [...svg.querySelectorAll('.legend')].map(e => r2(e.getBoundingClientRect()));
    const area = [...svg.querySelectorAll('.plot-area')].map(e => r2(e.getBoundingClientRect()));
    const legendOverData = legend.some(l => area.some(a => inter(l, a) > 0));
    plots.push({ id: svg.id || '', title: (svg.querySelector('title') || {}).textContent || '', box, texts: texts.map(t => t.s),
      drawn, overlaps, outside, legendOverData,
      beyondViewport: box.x < 0 || box.x + box.w > window.innerWidth + 1 });
  }
  const external = [...document.querySelectorAll('[src], [href]')]
    .map(e => e.getAttribute('src') || e.getAttribute('href'))
    .filter(u => /^(https?:)?\/\//i.test(u));
  const fetched = performance.getEntriesByType('resource').map(e => e.name).filter(u => !/^(data|file|blob):/.test(u));
  const pre = document.createElement('pre');
  pre.id = 'pt-check';
  pre.textContent = JSON.stringify({ plots, external, fetched, width: document.documentElement.scrollWidth,
    viewport: window.innerWidth, title: document.title });
  document.body.appendChild(pre);
})();
</script>"#;

/// One plot as laid out in the browser.
#[derive(Debug, serde::Deserialize)]
pub struct Plot {
    pub id: String,
    pub title: String,
    pub box_: Option<Rect>,
    pub texts: Vec<String>,
    /// Drawing elements inside the SVG (paths, lines, rects, ...).
    pub drawn: usize,
    /// Pairs of texts drawn over each other.
    pub overlaps: Vec<(String, String)>,
    /// Texts that stick out of the SVG's box.
    pub outside: Vec<String>,
    /// An element of class `legend` intersects one of class `plot-area`.
    #[serde(rename = "legendOverData")]
    pub legend_over_data: bool,
    #[serde(rename = "beyondViewport")]
    pub beyond_viewport: bool,
}

#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// What the browser measured on one page.
#[derive(Debug, serde::Deserialize)]
pub struct Page {
    pub plots: Vec<Plot>,
    /// src/href attributes that point off the machine.
    pub external: Vec<String>,
    /// Resources the page actually requested that are not data:/file:/blob:.
    pub fetched: Vec<String>,
    /// The document's full width (px): wider than the viewport means horizontal scrolling.
    pub width: f64,
    pub viewport: f64,
    pub title: String,
}

impl Page {
    /// Every defect, one line each (empty: the page is fine).
    pub fn defects(&self) -> Vec<String> {
        let mut d = Vec::new();
        for (i, p) in self.plots.iter().enumerate() {
            let name = if p.title.is_empty() { format!("plot {i} ({})", p.id) } else { p.title.clone() };
            if p.drawn < 3 {
                d.push(format!("{name}: nothing drawn"));
            }
            if p.texts.len() < 2 {
                d.push(format!("{name}: no axis labels or title"));
            }
            for (a, b) in &p.overlaps {
                d.push(format!("{name}: '{a}' overlaps '{b}'"));
            }
            for t in &p.outside {
                d.push(format!("{name}: '{t}' sticks out of the plot"));
            }
            if p.legend_over_data {
                d.push(format!("{name}: the legend covers the data"));
            }
            if p.beyond_viewport {
                d.push(format!("{name}: wider than the {} px viewport", self.viewport));
            }
        }
        if self.width > self.viewport + 1.0 {
            d.push(format!("the page is {} px wide in a {} px viewport", self.width, self.viewport));
        }
        d.extend(self.external.iter().map(|u| format!("external reference {u}")));
        d.extend(self.fetched.iter().map(|u| format!("fetched {u}")));
        d
    }
}

/// The Chromium binary, if installed.
pub fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"].iter().map(PathBuf::from).find(|p| p.exists())
}

fn chromium_cmd(bin: &Path, profile: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--no-proxy-server",
    ]);
    c.arg(format!("--user-data-dir={}", profile.display()));
    c.arg(format!("--window-size={},{}", VIEWPORT.0, VIEWPORT.1));
    c
}

/// True when Chromium is installed. Without it a browser test is skipped with a note, unless
/// POWERTRAIN_REQUIRE_BROWSER=1 (set by .ci/run), where a missing browser fails the test.
pub fn available() -> bool {
    if chromium().is_some() {
        return true;
    }
    assert!(
        std::env::var("POWERTRAIN_REQUIRE_BROWSER").as_deref() != Ok("1"),
        "POWERTRAIN_REQUIRE_BROWSER=1 but chromium is not installed: apt-get install chromium"
    );
    eprintln!("skipped: chromium is not installed (apt-get install chromium; .ci/run installs it)");
    false
}

/// Open `html` in Chromium and measure it; with `screenshot`, also write a PNG of the first screen there.
pub fn check_page(html: &Path, screenshot: Option<&Path>) -> Result<Page, String> {
    let bin = chromium().ok_or("chromium is not installed (apt-get install chromium; .ci/run does)")?;
    let text = std::fs::read_to_string(html).map_err(|e| format!("{}: {e}", html.display()))?;
    let probed = match text.rfind("</body>") {
        Some(i) => format!("{}{PROBE}{}", &text[..i], &text[i..]),
        None => format!("{text}{PROBE}"),
    };
    // The copy sits beside the original so that relative links resolve the same way.
    let dir = html.parent().unwrap_or(Path::new("."));
    let copy = dir.join(format!(".pt-probe-{}.html", std::process::id()));
    std::fs::write(&copy, probed).map_err(|e| format!("{}: {e}", copy.display()))?;
    let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
    let url = format!("file://{}", copy.canonicalize().map_err(|e| e.to_string())?.display());
    let out = chromium_cmd(&bin, profile.path())
        .arg("--virtual-time-budget=2000")
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let _ = std::fs::remove_file(&copy);
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom.find("<pre id=\"pt-check\">").ok_or_else(|| {
        format!("the probe did not run on {} (chromium said: {})", html.display(), String::from_utf8_lossy(&out.stderr))
    })? + "<pre id=\"pt-check\">".len();
    let end = dom[start..].find("</pre>").ok_or("unterminated probe output")? + start;
    let json = dom[start..end].replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    let json = json.replace("\"box\":", "\"box_\":");
    let page: Page = serde_json::from_str(&json).map_err(|e| format!("probe output: {e}: {json}"))?;
    if let Some(png) = screenshot {
        let out = chromium_cmd(&bin, profile.path())
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("file://{}", html.canonicalize().map_err(|e| e.to_string())?.display()))
            .output()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        if !png.exists() {
            return Err(format!("no screenshot written: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    Ok(page)
}
