//! `cargo run --release -p d402-page-extractor --example extract -- PATH URL [--meta] [--no-title]`
//!
//! Prints the Markdown of the page at PATH (fetched from URL). Exits 2 on rejection.
//! Writes `extract_ms=<ms>` to stderr (in-process extraction time).

use d402_page_extractor::{ExtractOptions, extract};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: extract PATH URL [--meta] [--no-title]");
        std::process::exit(64);
    }
    let bytes = match std::fs::read(&args[1]) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot read {}: {e}", args[1]);
            std::process::exit(66);
        }
    };
    let html = String::from_utf8_lossy(&bytes);
    let t0 = std::time::Instant::now();
    let opts = ExtractOptions {
        title_heading: !args.iter().any(|a| a == "--no-title"),
        ..Default::default()
    };
    let res = extract(&html, &args[2], &opts);
    eprintln!("extract_ms={:.3}", t0.elapsed().as_secs_f64() * 1000.0);
    match res {
        Ok(a) => {
            if args.iter().any(|a| a == "--meta") {
                eprintln!(
                    "title={:?}\nbyline={:?}\nsite_name={:?}\nlang={:?}\npublished_time={:?}\nexcerpt={:?}",
                    a.title, a.byline, a.site_name, a.lang, a.published_time, a.excerpt
                );
            }
            print!("{}", a.markdown);
        }
        Err(e) => {
            eprintln!("rejected: {e}");
            std::process::exit(2);
        }
    }
}
