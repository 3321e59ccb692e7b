//! `web.page_to_markdown@1`: fetches (or renders) a public page through the host's `browser`
//! import, extracts the main content as clean markdown, rejects blocked-page interstitials,
//! and returns evidence that lets anyone re-check the result on the recorded snapshot.

use d402_page_extractor::{
    EXTRACTOR_VERSION, ExtractOptions, Rejection, extract, interstitial_checks,
};
pub use d402_sdk::browser::Page;
use d402_sdk::browser::{FetchRequest, RenderMode, fetch};
use d402_sdk::{Capability, RunError, TaskContext};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Name of the converter reported in evidence.
pub const CONVERTER: &str = "d402-page-extractor";

/// Task input, as the spec's buyer guide shows it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Input {
    /// Absolute http(s) URL of the page.
    pub url: String,
    /// Fetch time budget in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// `never`, `auto` (default) or `always`.
    #[serde(default)]
    pub render: Option<String>,
}

/// The result, shaped as the spec's accepted response shows it.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Final URL after redirects.
    pub url: String,
    /// Article title.
    pub title: Option<String>,
    /// Author line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub byline: Option<String>,
    /// Publishing site.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_name: Option<String>,
    /// Page language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// Publication time as the page states it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_time: Option<String>,
    /// Clean CommonMark of the main content.
    pub markdown: String,
    /// CID of the page snapshot the markdown was extracted from.
    pub snapshot_cid: String,
    /// `sha256:<hex>` of the markdown bytes.
    pub content_hash: String,
    /// How the result was produced.
    pub evidence: Evidence,
}

/// Evidence fields that let a validator reproduce the result.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// Converter name.
    pub converter: String,
    /// Converter version.
    pub converter_version: String,
    /// What fetched the page (`fetch` or `chromium`).
    pub snapshotter: String,
    /// Snapshotter name and version.
    pub snapshotter_version: String,
    /// HTTP status of the final response.
    pub http_status: u16,
    /// Whether the page was rendered in Chromium.
    pub rendered: bool,
    /// When the page was fetched (RFC 3339).
    pub fetched_at: String,
    /// Interstitial checks that ran (all passed).
    pub interstitial_checks: Vec<String>,
}

/// The capability.
pub struct PageToMarkdown;

impl Capability for PageToMarkdown {
    type Input = Input;
    type Output = Output;

    fn run(_ctx: &TaskContext, input: Input) -> Result<Output, RunError> {
        let render = match input.render.as_deref() {
            None | Some("auto") => RenderMode::Auto,
            Some("never") => RenderMode::Never,
            Some("always") => RenderMode::Always,
            Some(other) => {
                return Err(RunError::InvalidInput(format!(
                    "render must be never, auto or always, not {other:?}"
                )));
            }
        };
        let request = FetchRequest {
            url: input.url.clone(),
            render,
            timeout_ms: input.timeout_ms.unwrap_or(15_000).clamp(100, 60_000),
        };
        let page = fetch(&request).map_err(|e| RunError::UpstreamFailure(e.to_string()))?;
        convert(&page)
    }
}

/// Turns a fetched page into the capability's output (or a typed error).
pub fn convert(page: &Page) -> Result<Output, RunError> {
    let media = page
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !(media.is_empty() || media.contains("html") || media.starts_with("text/")) {
        return Err(RunError::UpstreamFailure(format!(
            "unsupported content type {media:?}"
        )));
    }
    let html = decode(&page.body, &page.content_type);
    // A wall is reported as blocked whatever the status; otherwise an error status wins.
    let article = match (
        extract(&html, &page.final_url, &ExtractOptions::default()),
        page.status >= 400,
    ) {
        (Err(Rejection::Blocked { detector, evidence }), _) => {
            return Err(RunError::Blocked(format!(
                "{detector}: {evidence} (HTTP {})",
                page.status
            )));
        }
        (_, true) => {
            return Err(RunError::UpstreamFailure(format!(
                "HTTP {} from {}",
                page.status, page.final_url
            )));
        }
        (Err(rejection), false) => {
            return Err(RunError::UpstreamFailure(format!(
                "no article content: {rejection}"
            )));
        }
        (Ok(article), false) => article,
    };
    let content_hash = content_hash(&article.markdown);
    Ok(Output {
        url: page.final_url.clone(),
        title: article.title,
        byline: article.byline,
        site_name: article.site_name,
        lang: article.lang,
        published_time: article.published_time,
        markdown: article.markdown,
        snapshot_cid: page.snapshot_cid.clone(),
        content_hash,
        evidence: Evidence {
            converter: CONVERTER.to_string(),
            converter_version: EXTRACTOR_VERSION.to_string(),
            snapshotter: if page.rendered { "chromium" } else { "fetch" }.to_string(),
            snapshotter_version: page.snapshotter_version.clone(),
            http_status: page.status,
            rendered: page.rendered,
            fetched_at: page.fetched_at.clone(),
            interstitial_checks: interstitial_checks()
                .iter()
                .map(|c| c.to_string())
                .collect(),
        },
    })
}

/// Decodes the body: a BOM wins, then the HTTP Content-Type charset; without either, bytes
/// that are valid UTF-8 are UTF-8 (legacy encodings almost never are by accident, and saved
/// pages are often re-encoded while keeping their old `<meta charset>`), then the
/// `<meta charset>`, then windows-1252 (the web's default for undeclared legacy pages).
pub fn decode(body: &[u8], content_type: &str) -> String {
    if let Some((encoding, bom_length)) = encoding_rs::Encoding::for_bom(body) {
        return encoding
            .decode_without_bom_handling(&body[bom_length..])
            .0
            .into_owned();
    }
    let label =
        |label: Option<String>| label.and_then(|l| encoding_rs::Encoding::for_label(l.as_bytes()));
    if let Some(encoding) = label(charset_param(content_type)) {
        return encoding.decode_without_bom_handling(body).0.into_owned();
    }
    if let Ok(text) = std::str::from_utf8(body) {
        return text.to_string();
    }
    let encoding = label(meta_charset(body)).unwrap_or(encoding_rs::WINDOWS_1252);
    encoding.decode_without_bom_handling(body).0.into_owned()
}

fn charset_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        (key.trim().eq_ignore_ascii_case("charset"))
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

/// Finds `charset=` in the first 1024 bytes (a `<meta charset>` or http-equiv tag).
fn meta_charset(body: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(&body[..body.len().min(1024)]).to_ascii_lowercase();
    let at = head.find("charset=")? + "charset=".len();
    let value: String = head[at..]
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    (!value.is_empty()).then_some(value)
}

/// `sha256:<lowercase hex>` of the markdown's UTF-8 bytes.
fn content_hash(markdown: &str) -> String {
    format!("sha256:{}", hex(&Sha256::digest(markdown.as_bytes())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

d402_sdk::export_capability!(PageToMarkdown);

#[cfg(test)]
mod tests {
    use super::*;

    fn page(status: u16, content_type: &str, body: &[u8]) -> Page {
        Page {
            final_url: "https://example.com/post".into(),
            status,
            content_type: content_type.into(),
            body: body.to_vec(),
            rendered: false,
            snapshot_cid: "bafkreitest".into(),
            snapshotter_version: "test".into(),
            fetched_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    const ARTICLE: &str = "<html><head><title>Post</title></head><body><article><h1>Post</h1>\
        <p>The first paragraph of a real article, long enough to count as content, with commas, clauses, and detail.</p>\
        <p>A second paragraph that carries on the story with more words, more commas, and more substance to read.</p>\
        </article></body></html>";

    #[test]
    fn converts_a_page_with_hash_and_evidence() {
        let out = convert(&page(200, "text/html", ARTICLE.as_bytes())).unwrap();
        assert!(
            out.markdown.contains("The first paragraph"),
            "{}",
            out.markdown
        );
        assert_eq!(out.content_hash, content_hash(&out.markdown));
        // The FIPS 180-2 "abc" vector pins the digest and its text form.
        assert_eq!(
            content_hash("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(out.evidence.http_status, 200);
        assert_eq!(out.snapshot_cid, "bafkreitest");
        assert!(!out.evidence.interstitial_checks.is_empty());
    }

    #[test]
    fn error_statuses_are_upstream_failures_and_walls_are_blocked() {
        assert!(
            matches!(convert(&page(404, "text/html", ARTICLE.as_bytes())), Err(RunError::UpstreamFailure(m)) if m.contains("404"))
        );
        let wall = b"<html><head><title>Just a moment...</title></head><body><div id=\"challenge-platform\"></div>\
            <script src=\"/cdn-cgi/challenge-platform/h/b/orchestrate/chl_page/v1\"></script></body></html>";
        assert!(
            matches!(convert(&page(403, "text/html", wall)), Err(RunError::Blocked(m)) if m.contains("cloudflare"))
        );
        assert!(
            matches!(convert(&page(200, "application/pdf", b"%PDF")), Err(RunError::UpstreamFailure(m)) if m.contains("content type"))
        );
    }

    #[test]
    fn decodes_declared_charsets() {
        assert_eq!(decode(b"caf\xe9", "text/html; charset=ISO-8859-1"), "café");
        assert_eq!(
            decode(b"<meta charset=\"windows-1252\">caf\xe9", "text/html"),
            "<meta charset=\"windows-1252\">café"
        );
        assert_eq!(decode("café".as_bytes(), "text/html"), "café");
        // Valid UTF-8 wins over a stale meta declaration; a BOM wins over everything.
        assert_eq!(
            decode("<meta charset=\"gb2312\">中文".as_bytes(), "text/html"),
            "<meta charset=\"gb2312\">中文"
        );
        assert_eq!(
            decode(b"\xef\xbb\xbfcaf\xc3\xa9", "text/html; charset=iso-8859-1"),
            "café"
        );
        // Undeclared, not UTF-8: windows-1252.
        assert_eq!(decode(b"caf\xe9", "text/html"), "café");
        // GBK bytes declared in a meta tag.
        assert_eq!(
            decode(b"<meta charset=\"gbk\">\xd6\xd0\xce\xc4", ""),
            "<meta charset=\"gbk\">中文"
        );
    }
}
