//! `cargo run --release -p d402-page-extractor --example bench -- DIR [REPS]`
//!
//! Times `extract` (and, for reference, `detect_interstitial` alone, which is parse +
//! detection) over every `*.html` file found under DIR, in process. Prints ms/page.

use d402_page_extractor::{ExtractOptions, detect_interstitial, extract};

fn collect(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "html") && !p.ends_with("expected.html") {
            out.push(p);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map(String::as_str).unwrap_or("."));
    let reps: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(3);
    let mut files = Vec::new();
    collect(&dir, &mut files);
    let pages: Vec<String> = files
        .iter()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect();
    let opts = ExtractOptions::default();
    let t0 = std::time::Instant::now();
    for _ in 0..reps {
        for h in &pages {
            std::hint::black_box(detect_interstitial(h));
        }
    }
    let parse = t0.elapsed().as_secs_f64() * 1000.0 / (reps * pages.len()).max(1) as f64;
    let t0 = std::time::Instant::now();
    let mut worst = (0.0, 0usize);
    for _ in 0..reps {
        for (i, h) in pages.iter().enumerate() {
            let t = std::time::Instant::now();
            std::hint::black_box(extract(h, "http://fakehost/test/page.html", &opts).ok());
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if ms > worst.0 {
                worst = (ms, i);
            }
        }
    }
    let full = t0.elapsed().as_secs_f64() * 1000.0 / (reps * pages.len()).max(1) as f64;
    println!(
        "{} pages x {reps}: parse+detect {parse:.2} ms/page, extract {full:.2} ms/page; slowest {:.1} ms {}",
        pages.len(),
        worst.0,
        files[worst.1].display()
    );
}
