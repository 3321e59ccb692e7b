//! Main-content extraction for `web.page_to_markdown@1`.
//!
//! [`extract`] turns an HTML page into clean Markdown of its main content plus metadata,
//! or rejects it (bot challenge, captcha wall, CDN denial, script-only shell, no content).
//! [`detect_interstitial`] runs the interstitial checks on their own.
//!
//! The library is pure: no I/O, clocks or randomness. The output is a deterministic
//! function of the HTML text, the page URL and the options, and the crate builds for
//! `wasm32-wasip2` as well as natively.
//!
//! # Output shape
//!
//! The Markdown starts with `# Title` (when a title is known and
//! [`ExtractOptions::title_heading`] is set) followed by the article body. A heading at
//! the top of the body that repeats the title is dropped, so the title appears once.
//! Byline, site name, date and language are returned in [`Article`] fields, not in the
//! Markdown. Links and images carry absolute URLs resolved against `<base href>` and the
//! page URL; blocks are separated by exactly one blank line.

/// Development tracing (feature `trace`): prints extraction decisions to stderr.
macro_rules! trace {
    ($($t:tt)*) => {
        #[cfg(feature = "trace")]
        eprintln!($($t)*);
    };
}
pub(crate) use trace;

mod dom;
mod interstitial;
mod markdown;
mod meta;
mod patterns;
mod readable;

use std::fmt;

/// Version of the extraction rules; bumped whenever the output for some input changes.
pub const EXTRACTOR_VERSION: &str = "0.3.1";

/// Options of [`extract`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Inputs longer than this many bytes are rejected with [`Rejection::TooLarge`].
    pub max_input_bytes: usize,
    /// Render images as `![alt](url)`.
    pub keep_images: bool,
    /// Render links as `[text](url)`; when false only the link text is kept.
    pub keep_links: bool,
    /// Start the Markdown with `# Title`.
    pub title_heading: bool,
    /// Run [`detect_interstitial`] first and reject blocked pages.
    pub detect_interstitials: bool,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            max_input_bytes: 16 * 1024 * 1024,
            keep_images: true,
            keep_links: true,
            title_heading: true,
            detect_interstitials: true,
        }
    }
}

/// The extracted article.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Article {
    /// Article title (og:title / JSON-LD headline / `<title>` without site suffix / `<h1>`).
    pub title: Option<String>,
    /// Author line, without a leading "By".
    pub byline: Option<String>,
    /// Name of the publishing site.
    pub site_name: Option<String>,
    /// Language tag of the page (`<html lang>`, content-language, og:locale).
    pub lang: Option<String>,
    /// Publication time as written by the page (usually ISO 8601).
    pub published_time: Option<String>,
    /// Short description (meta description) or the first paragraph of the body.
    pub excerpt: Option<String>,
    /// The article as CommonMark (GFM tables and strikethrough).
    pub markdown: String,
}

/// Why a page yields no article.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The page is an interstitial (challenge, captcha wall, denial, rate limit, JS shell).
    Blocked {
        /// Name of the check that fired, one of [`interstitial_checks`].
        detector: String,
        /// What was seen, for logs and receipts.
        evidence: String,
    },
    /// No readable main content was found.
    NoContent,
    /// The input exceeds [`ExtractOptions::max_input_bytes`].
    TooLarge {
        /// Size of the input in bytes.
        bytes: usize,
        /// The configured limit.
        limit: usize,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Blocked { detector, evidence } => {
                write!(f, "blocked page ({detector}): {evidence}")
            }
            Rejection::NoContent => write!(f, "no readable content"),
            Rejection::TooLarge { bytes, limit } => {
                write!(f, "input of {bytes} bytes exceeds the {limit}-byte limit")
            }
        }
    }
}

impl std::error::Error for Rejection {}

/// Names of the interstitial checks, in the order [`detect_interstitial`] runs them.
pub fn interstitial_checks() -> &'static [&'static str] {
    interstitial::CHECKS
}

/// Detects an interstitial page; returns `(detector, evidence)` when one is found.
///
/// Decisions rest on structure (little visible text, challenge markup or scripts, title
/// patterns), so articles that merely mention challenges or captchas are not flagged.
pub fn detect_interstitial(html: &str) -> Option<(String, String)> {
    let dom = dom::Dom::parse(html);
    interstitial::detect(&dom, html)
}

/// Extracts the main content of `html` (fetched from `url`) as Markdown plus metadata.
///
/// `url` is used to resolve relative links and images; an unparsable URL leaves relative
/// references as plain text.
pub fn extract(html: &str, url: &str, opts: &ExtractOptions) -> Result<Article, Rejection> {
    if html.len() > opts.max_input_bytes {
        return Err(Rejection::TooLarge {
            bytes: html.len(),
            limit: opts.max_input_bytes,
        });
    }
    let mut doc = dom::Dom::parse(html);
    if opts.detect_interstitials
        && let Some((detector, evidence)) = interstitial::detect(&doc, html)
    {
        return Err(Rejection::Blocked { detector, evidence });
    }
    let meta = meta::collect(&doc);
    let base = base_url(&doc, url);
    readable::preprocess(&mut doc);

    let content = readable::extract(&mut doc, meta.title.as_deref()).ok_or(Rejection::NoContent)?;
    let renderer =
        markdown::Renderer::new(&doc, content.root, base, opts.keep_images, opts.keep_links);
    let body = renderer.render(content.root);
    let body = tidy(&body);
    if !body.chars().any(char::is_alphanumeric) {
        return Err(Rejection::NoContent);
    }

    let mut md = String::new();
    if opts.title_heading
        && let Some(t) = &meta.title
    {
        md.push_str("# ");
        md.push_str(&markdown_heading_text(t));
        md.push_str("\n\n");
    }
    md.push_str(&body);
    md.push('\n');

    let excerpt = meta.excerpt.clone().or_else(|| first_paragraph(&body));
    Ok(Article {
        title: meta.title,
        byline: meta.byline.or(content.byline).filter(|b| !b.is_empty()),
        site_name: meta.site_name,
        lang: meta.lang,
        published_time: meta.published_time,
        excerpt,
        markdown: md,
    })
}

fn base_url(doc: &dom::Dom, page: &str) -> Option<url::Url> {
    let page = url::Url::parse(page).ok();
    let href = doc
        .first_tag(dom::DOCUMENT, "base")
        .and_then(|b| doc.attr(b, "href"))
        .map(str::trim)
        .filter(|h| !h.is_empty());
    match (page, href) {
        (Some(p), Some(h)) => p.join(h).ok().or(Some(p)),
        (None, Some(h)) => url::Url::parse(h).ok(),
        (p, None) => p,
    }
}

fn markdown_heading_text(t: &str) -> String {
    let mut s = String::new();
    for c in dom::normalize_ws(t).chars() {
        if matches!(c, '\\' | '*' | '`' | '[' | ']' | '_' | '<') {
            s.push('\\');
        }
        s.push(c);
    }
    if s.starts_with('#') {
        s.insert(0, '\\');
    }
    s
}

/// Final whitespace discipline: no trailing spaces, at most one blank line in a row.
fn tidy(md: &str) -> String {
    let mut out = String::with_capacity(md.len());
    let mut blank = 0;
    let mut in_fence: Option<String> = None;
    for line in md.lines() {
        let trimmed_start = line.trim_start();
        if let Some(f) = &in_fence {
            out.push_str(line);
            out.push('\n');
            if trimmed_start.starts_with(f.as_str())
                && trimmed_start.trim_end().chars().all(|c| c == '`')
            {
                in_fence = None;
            }
            continue;
        }
        if trimmed_start.starts_with("```") {
            let n = trimmed_start.chars().take_while(|&c| c == '`').count();
            in_fence = Some("`".repeat(n));
        }
        let l = line.trim_end();
        if l.trim().is_empty() {
            blank += 1;
            if blank > 1 || out.is_empty() {
                continue;
            }
            out.push('\n');
        } else {
            blank = 0;
            out.push_str(l);
            out.push('\n');
        }
    }
    out.trim().to_string()
}

fn first_paragraph(md: &str) -> Option<String> {
    md.split("\n\n")
        .map(str::trim)
        .find(|p| p.len() >= 80 && !p.starts_with(['#', '!', '|', '`', '-', '>']))
        .map(|p| {
            let plain: String = p.chars().filter(|c| !matches!(c, '*' | '\\')).collect();
            let s = dom::normalize_ws(&plain);
            if s.chars().count() > 300 {
                s.chars().take(297).collect::<String>() + "..."
            } else {
                s
            }
        })
}
