//! `RenderMode::Auto`: does fetched HTML look like a script-only shell that needs rendering?

/// Visible text below this many characters, with scripts present, means a shell.
const TINY_TEXT: usize = 200;
/// With an empty-looking mount point (`#root`, `#app`, `#__next`...), up to this much text.
const MOUNT_TEXT: usize = 1000;

/// Ids single-page-app frameworks mount into.
const MOUNT_IDS: [&str; 6] = ["root", "app", "__next", "__nuxt", "svelte", "___gatsby"];

/// True when `body` (of type `content_type`) is HTML whose content is written by scripts:
/// script tags and little visible text, an app mount point with little text, or a
/// `<noscript>` asking to enable JavaScript.
pub fn looks_like_script_shell(content_type: &str, body: &[u8]) -> bool {
    let ct = content_type.to_ascii_lowercase();
    let html = String::from_utf8_lossy(body).to_ascii_lowercase();
    let is_html = ct.contains("html")
        || (ct.is_empty() && html.trim_start().starts_with("<!doctype html"))
        || (ct.is_empty() && html.contains("<html"));
    if !is_html || !html.contains("<script") {
        return false;
    }
    if noscript_asks_for_javascript(&html) {
        return true;
    }
    let text = visible_text_len(&html);
    text < TINY_TEXT || (text < MOUNT_TEXT && has_mount_point(&html))
}

fn noscript_asks_for_javascript(html: &str) -> bool {
    let mut rest = html;
    while let Some(start) = rest.find("<noscript") {
        let inner = &rest[start..];
        let end = inner.find("</noscript").unwrap_or(inner.len());
        let block = &inner[..end];
        if block.contains("javascript")
            && (block.contains("enable") || block.contains("requires") || block.contains("need"))
        {
            return true;
        }
        rest = &inner[end..];
    }
    false
}

fn has_mount_point(html: &str) -> bool {
    MOUNT_IDS.iter().any(|id| {
        html.contains(&format!("id=\"{id}\""))
            || html.contains(&format!("id='{id}'"))
            || html.contains(&format!("id={id}>"))
    })
}

/// Characters of text outside tags, scripts, styles, templates and noscript, whitespace collapsed.
fn visible_text_len(html: &str) -> usize {
    let mut count = 0;
    let mut rest = html;
    let mut last_space = true;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('<') {
            let skipped = ["script", "style", "template", "noscript"]
                .iter()
                .find_map(|tag| {
                    after
                        .strip_prefix(tag)
                        .filter(|r| r.starts_with(['>', ' ', '\t', '\n', '\r', '/']))
                        .map(|r| r.find(&format!("</{tag}")).map_or("", |i| &r[i..]))
                });
            rest = match skipped {
                Some(r) => r
                    .get(2..)
                    .map_or("", |r| r.find('>').map_or("", |i| &r[i + 1..])),
                None => after.find('>').map_or("", |i| &after[i + 1..]),
            };
            continue;
        }
        let c = rest.chars().next().expect("non-empty");
        rest = &rest[c.len_utf8()..];
        if c.is_whitespace() {
            if !last_space {
                count += 1;
                last_space = true;
            }
        } else {
            count += 1;
            last_space = false;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTML: &str = "text/html; charset=utf-8";

    #[test]
    fn spa_shells_are_detected() {
        let react = br#"<!doctype html><html><head><title>App</title><script src="/main.js"></script></head><body><div id="root"></div></body></html>"#;
        assert!(looks_like_script_shell(HTML, react));
        let next = format!(
            r#"<html><body><div id="__next">{}</div><script>self.__next_f=[]</script></body></html>"#,
            "Loading… ".repeat(40)
        );
        assert!(looks_like_script_shell(HTML, next.as_bytes()));
        let noscript = format!(
            "<html><body><p>{}</p><noscript>You need to enable JavaScript to run this app.</noscript><script src=a.js></script></body></html>",
            "x ".repeat(1500)
        );
        assert!(looks_like_script_shell(HTML, noscript.as_bytes()));
    }

    #[test]
    fn content_pages_are_not_shells() {
        let article = format!(
            "<html><head><script>var analytics=1;</script></head><body><div id=\"app\"><article>{}</article></div></body></html>",
            "Real words in a real article. ".repeat(60)
        );
        assert!(!looks_like_script_shell(HTML, article.as_bytes()));
        // No script, nothing to render.
        assert!(!looks_like_script_shell(
            HTML,
            b"<html><body><div id=\"root\"></div></body></html>"
        ));
        // Not HTML.
        assert!(!looks_like_script_shell(
            "application/json",
            b"{\"a\":\"<script>\"}"
        ));
    }

    #[test]
    fn counts_only_visible_text() {
        assert_eq!(
            visible_text_len("<p>ab  cd</p><script>lots of code here</script><style>p{}</style>"),
            5
        );
        assert_eq!(visible_text_len("<scripty>ab</scripty>"), 2);
        assert_eq!(visible_text_len("<script>unterminated"), 0);
    }
}
