//! Page metadata: `<meta>` tags, JSON-LD, `<title>`, `<html lang>` and a few DOM hints.

use std::collections::HashMap;

use serde_json::Value;

use crate::dom::{Dom, NodeId, normalize_ws};

/// Metadata gathered from the whole document before any content is removed.
#[derive(Debug, Default, Clone)]
pub(crate) struct Meta {
    pub title: Option<String>,
    pub byline: Option<String>,
    pub site_name: Option<String>,
    pub lang: Option<String>,
    pub published_time: Option<String>,
    pub excerpt: Option<String>,
}

#[derive(Default)]
struct JsonLd {
    headline: Option<String>,
    authors: Vec<String>,
    date_published: Option<String>,
    publisher: Option<String>,
    description: Option<String>,
    language: Option<String>,
}

/// Collects metadata from the (unmodified) document.
pub(crate) fn collect(dom: &Dom) -> Meta {
    let metas = meta_tags(dom);
    let get = |keys: &[&str]| -> Option<String> {
        keys.iter().find_map(|k| {
            metas
                .get(*k)
                .map(|v| normalize_ws(v))
                .filter(|v| !v.is_empty())
        })
    };
    let ld = json_ld(dom);

    let doc_title = dom
        .first_tag(crate::dom::DOCUMENT, "title")
        .map(|t| dom.text_content(t))
        .filter(|t| !t.is_empty());

    let site_name = get(&["og:site_name", "application-name", "twitter:site:name"])
        .or_else(|| ld.publisher.clone())
        .filter(|s| s.chars().count() < 100);

    // Title.
    let meta_title = ld.headline.clone().or_else(|| {
        get(&[
            "og:title",
            "twitter:title",
            "dc.title",
            "dcterm:title",
            "parsely-title",
            "sailthru.title",
            "title",
        ])
    });
    let title = choose_title(dom, meta_title, doc_title, site_name.as_deref());

    // Byline.
    let byline = (!ld.authors.is_empty())
        .then(|| ld.authors.join(", "))
        .or_else(|| {
            get(&[
                "author",
                "dc.creator",
                "dcterm:creator",
                "byl",
                "parsely-author",
                "sailthru.author",
                "article:author",
                "twitter:creator",
            ])
            .filter(|a| !looks_like_url(a))
        })
        .map(|b| clean_byline(&b))
        .filter(|b| !b.is_empty() && b.chars().count() <= 200);

    let lang = dom
        .html_element()
        .and_then(|h| dom.attr(h, "lang").or_else(|| dom.attr(h, "xml:lang")))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| get(&["content-language", "dc.language", "language"]))
        .or_else(|| ld.language.clone())
        .or_else(|| get(&["og:locale"]).map(|l| l.replace('_', "-")));

    let published_time = get(&[
        "article:published_time",
        "og:article:published_time",
        "article:published",
        "datepublished",
        "pubdate",
        "publishdate",
        "publish-date",
        "publish_date",
        "parsely-pub-date",
        "sailthru.date",
        "dc.date.issued",
        "dcterms.created",
        "dc.date",
        "date",
    ])
    .or_else(|| ld.date_published.clone())
    .or_else(|| time_element(dom));

    let excerpt = ld.description.clone().or_else(|| {
        get(&[
            "og:description",
            "description",
            "twitter:description",
            "dc.description",
        ])
    });

    Meta {
        title,
        byline,
        site_name,
        lang,
        published_time,
        excerpt,
    }
}

fn looks_like_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://") || s.starts_with("//")
}

/// "By Jane Doe" -> "Jane Doe".
pub(crate) fn clean_byline(s: &str) -> String {
    let s = normalize_ws(s);
    let lower = s.to_lowercase();
    for p in ["by:", "by ", "written by ", "posted by ", "von "] {
        if lower.starts_with(p) {
            return s[p.len()..].trim().to_string();
        }
    }
    s
}

/// All `<meta>` tags keyed by lower-cased name/property/itemprop/http-equiv (first wins).
fn meta_tags(dom: &Dom) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for m in dom.find_tags(crate::dom::DOCUMENT, &["meta"]) {
        let Some(content) = dom.attr(m, "content") else {
            continue;
        };
        for key_attr in ["property", "name", "itemprop", "http-equiv"] {
            if let Some(keys) = dom.attr(m, key_attr) {
                // `property` may hold several space-separated values.
                for k in keys.split_whitespace() {
                    map.entry(k.to_lowercase())
                        .or_insert_with(|| content.to_string());
                }
            }
        }
    }
    map
}

fn is_article_type(v: &Value) -> bool {
    let check = |s: &str| {
        let s = s.rsplit('/').next().unwrap_or(s);
        s.ends_with("Article")
            || s.ends_with("Posting")
            || s == "Report"
            || s == "Review"
            || s == "Recipe"
    };
    match v.get("@type") {
        Some(Value::String(s)) => check(s),
        Some(Value::Array(a)) => a.iter().any(|t| t.as_str().is_some_and(check)),
        _ => false,
    }
}

fn json_ld(dom: &Dom) -> JsonLd {
    let mut out = JsonLd::default();
    for s in dom.find_tags(crate::dom::DOCUMENT, &["script"]) {
        if !dom
            .attr(s, "type")
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/ld+json"))
        {
            continue;
        }
        let mut raw = String::new();
        dom.raw_text_into(s, &mut raw);
        let cleaned = raw
            .trim()
            .trim_start_matches("<![CDATA[")
            .trim_end_matches("]]>")
            .trim();
        let Ok(v) = serde_json::from_str::<Value>(cleaned) else {
            continue;
        };
        let mut items = Vec::new();
        flatten_ld(&v, &mut items, 0);
        for it in items {
            if !is_article_type(it) || out.headline.is_some() {
                continue;
            }
            out.headline = str_field(it, "headline").or_else(|| str_field(it, "name"));
            out.date_published =
                str_field(it, "datePublished").or_else(|| str_field(it, "dateCreated"));
            out.description = str_field(it, "description");
            out.language = str_field(it, "inLanguage");
            if let Some(a) = it.get("author").or_else(|| it.get("creator")) {
                collect_names(a, &mut out.authors);
            }
            if let Some(p) = it.get("publisher") {
                let mut names = Vec::new();
                collect_names(p, &mut names);
                out.publisher = names.into_iter().next();
            }
        }
    }
    out.authors.dedup();
    out
}

fn flatten_ld<'a>(v: &'a Value, out: &mut Vec<&'a Value>, depth: usize) {
    if depth > 4 {
        return;
    }
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten_ld(x, out, depth + 1)),
        Value::Object(o) => {
            out.push(v);
            if let Some(g) = o.get("@graph") {
                flatten_ld(g, out, depth + 1);
            }
            if let Some(m) = o.get("mainEntity").or_else(|| o.get("mainEntityOfPage")) {
                flatten_ld(m, out, depth + 1);
            }
        }
        _ => {}
    }
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    let s = match v.get(key)? {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().find_map(|x| x.as_str().map(str::to_string))?,
        _ => return None,
    };
    let s = normalize_ws(&decode_entities(&s));
    (!s.is_empty()).then_some(s)
}

fn collect_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if !looks_like_url(s) => {
            let s = normalize_ws(&decode_entities(s));
            if !s.is_empty() {
                out.push(s);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_names(x, out)),
        Value::Object(_) => {
            if let Some(n) = str_field(v, "name") {
                out.push(n);
            }
        }
        _ => {}
    }
}

/// Decodes the handful of entities that leak into JSON-LD strings.
pub(crate) fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let ent = &rest[1..end];
        let dec = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ if ent.starts_with("#x") || ent.starts_with("#X") => {
                u32::from_str_radix(&ent[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
            }
            _ if ent.starts_with('#') => ent[1..].parse::<u32>().ok().and_then(char::from_u32),
            _ => None,
        };
        match dec {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn time_element(dom: &Dom) -> Option<String> {
    let times = dom.find_tags(crate::dom::DOCUMENT, &["time"]);
    let pick = |pred: &dyn Fn(NodeId) -> bool| {
        times.iter().copied().filter(|&t| pred(t)).find_map(|t| {
            dom.attr(t, "datetime")
                .map(|d| d.trim().to_string())
                .filter(|d| d.len() >= 4)
        })
    };
    pick(&|t| {
        dom.attr(t, "itemprop")
            .is_some_and(|p| p.contains("datePublished"))
            || dom.attr(t, "pubdate").is_some()
    })
    .or_else(|| pick(&|_| true))
}

const SEPARATORS: &[&str] = &[
    " | ", " - ", " – ", " — ", " :: ", " // ", " / ", " » ", " · ", " • ", " ~ ",
];

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

fn loose_eq(a: &str, b: &str) -> bool {
    let n = |s: &str| {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let (a, b) = (n(a), n(b));
    !a.is_empty() && a == b
}

/// Removes a trailing (or leading) site-name part from a document title.
pub(crate) fn clean_title(title: &str, site_name: Option<&str>) -> String {
    let title = normalize_ws(title);
    // Split on the first separator kind found, keep parts.
    let Some(sep) = SEPARATORS
        .iter()
        .copied()
        .filter(|s| title.contains(s))
        .max_by_key(|s| title.rfind(s))
    else {
        return title;
    };
    let parts: Vec<&str> = title
        .split(sep)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.len() < 2 {
        return title;
    }
    if let Some(site) = site_name {
        let kept: Vec<&str> = parts
            .iter()
            .copied()
            .filter(|p| !loose_eq(p, site))
            .collect();
        if kept.len() < parts.len() && !kept.is_empty() {
            return kept.join(sep);
        }
    }
    // Drop the last part; if what remains is too short, the site name came first.
    let head = parts[..parts.len() - 1].join(sep);
    if words(&head) >= 3 {
        return head;
    }
    let tail = parts[1..].join(sep);
    if words(&tail) >= 3 && words(parts[0]) <= 3 {
        return tail;
    }
    title
}

fn choose_title(
    dom: &Dom,
    meta_title: Option<String>,
    doc_title: Option<String>,
    site: Option<&str>,
) -> Option<String> {
    let cleaned_doc = doc_title.as_deref().map(|t| clean_title(t, site));
    // A heading that is contained in the document title is the article title verbatim.
    if let Some(full) = doc_title.as_deref() {
        let lower = full.to_lowercase();
        for h in dom.find_tags(crate::dom::DOCUMENT, &["h1", "h2"]) {
            let t = dom.text_content(h);
            if words(&t) >= 2 && t.len() * 10 >= full.len() * 4 && lower.contains(&t.to_lowercase())
            {
                return Some(t);
            }
        }
    }
    meta_title
        .map(|t| clean_title(&t, site))
        .or(cleaned_doc)
        .or_else(|| {
            dom.find_tags(crate::dom::DOCUMENT, &["h1"])
                .into_iter()
                .map(|h| dom.text_content(h))
                .find(|t| !t.is_empty())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_suffix_removed() {
        assert_eq!(
            clean_title("A long story about things | The Daily", None),
            "A long story about things"
        );
        assert_eq!(
            clean_title("The Daily - A long story about things", None),
            "A long story about things"
        );
        assert_eq!(clean_title("Short - Site", None), "Short - Site");
        assert_eq!(
            clean_title("Story title here – Section – The Paper", Some("The Paper")),
            "Story title here – Section"
        );
    }

    #[test]
    fn entities() {
        assert_eq!(
            decode_entities("a &amp; b &#39;c&#x27; &bogus; &"),
            "a & b 'c' &bogus; &"
        );
    }
}
