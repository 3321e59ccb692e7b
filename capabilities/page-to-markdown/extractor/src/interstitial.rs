//! Detection of pages that are not the requested content: bot challenges, captcha walls,
//! CDN denials, rate-limit pages and script-only shells.
//!
//! Every rule combines a marker (challenge markup or script, a title pattern) with a
//! structural condition (little visible text), so an article that merely talks about
//! Cloudflare or captchas is never taken for a wall.

use crate::dom::{Data, Dom, NodeId, normalize_ws};

/// Names of the checks [`detect`] runs, in order.
pub(crate) const CHECKS: &[&str] = &[
    "cloudflare-challenge",
    "cloudflare-block",
    "akamai",
    "imperva",
    "datadome",
    "perimeterx",
    "sucuri",
    "ddos-guard",
    "aws-waf",
    "kasada",
    "radware",
    "vercel-checkpoint",
    "amazon-captcha",
    "yandex-smartcaptcha",
    "waiting-room",
    "hcaptcha",
    "recaptcha",
    "arkose",
    "geetest",
    "captcha-prompt",
    "rate-limited",
    "access-denied",
    "enable-javascript-shell",
];

/// Facts about the page the rules look at.
struct Facts {
    /// ASCII-lower-cased raw HTML (markers in attributes and scripts); left empty for
    /// pages with substantial prose, which are never interstitials.
    raw: String,
    /// Lower-cased, whitespace-normalised `<title>`.
    title: String,
    /// Lower-cased text of the first heading (h1..h3).
    heading: String,
    /// Visible text of the body (no script/style/noscript/template, no hidden elements).
    visible: String,
    /// Text inside `<noscript>`.
    noscript: String,
    /// Number of `<script>` elements.
    scripts: usize,
    /// Number of `<p>` elements with at least 80 characters of text.
    long_paragraphs: usize,
    /// Document structure that interstitials do not have: code blocks, several section
    /// headings, article markup (`<article>`, `og:type=article`, `itemprop=articleBody`).
    structure: Structure,
}

#[derive(Default)]
struct Structure {
    pre: usize,
    subheadings: usize,
    article: bool,
}

impl Structure {
    /// Does the page look like a document (docs page, blog post, article) rather than a
    /// status page? Status pages are one heading and a line or two of text.
    fn documentish(&self, long_paragraphs: usize) -> bool {
        self.article || self.pre > 0 || self.subheadings >= 2 || long_paragraphs >= 3
    }
}

fn structure(dom: &Dom) -> Structure {
    let mut s = Structure::default();
    for n in dom.descendants(crate::dom::DOCUMENT) {
        match dom.tag(n) {
            "pre" => s.pre += 1,
            "h2" | "h3" => s.subheadings += 1,
            "article" => s.article = true,
            "meta" => {
                let prop = dom
                    .attr(n, "property")
                    .or_else(|| dom.attr(n, "name"))
                    .unwrap_or("");
                if prop.eq_ignore_ascii_case("og:type")
                    && dom
                        .attr(n, "content")
                        .is_some_and(|c| c.trim().eq_ignore_ascii_case("article"))
                {
                    s.article = true;
                }
            }
            _ => {}
        }
        if dom
            .attr(n, "itemprop")
            .is_some_and(|p| p.contains("articleBody"))
        {
            s.article = true;
        }
    }
    s
}

fn gather(dom: &Dom, html: &str) -> Facts {
    let title = dom
        .first_tag(crate::dom::DOCUMENT, "title")
        .map(|t| dom.text_content(t).to_lowercase())
        .unwrap_or_default();
    let heading = dom
        .find_tags(crate::dom::DOCUMENT, &["h1", "h2", "h3"])
        .into_iter()
        .map(|h| dom.text_content(h).to_lowercase())
        .find(|t| !t.is_empty())
        .unwrap_or_default();
    let mut visible = String::new();
    let mut noscript = String::new();
    let mut scripts = 0;
    let mut long_paragraphs = 0;
    let root = dom.body().unwrap_or(crate::dom::DOCUMENT);
    walk_visible(
        dom,
        root,
        &mut visible,
        &mut noscript,
        &mut scripts,
        &mut long_paragraphs,
    );
    scripts += dom
        .head()
        .map(|h| dom.find_tags(h, &["script"]).len())
        .unwrap_or(0);
    let visible = normalize_ws(&visible);
    // Lower-casing the raw markup is the costly part: pages with real prose skip it.
    let substantial = visible.chars().count() >= 2500 || long_paragraphs >= 5;
    Facts {
        raw: if substantial {
            String::new()
        } else {
            html.to_ascii_lowercase()
        },
        title,
        heading,
        visible: visible.to_ascii_lowercase(),
        noscript: normalize_ws(&noscript).to_lowercase(),
        scripts,
        long_paragraphs,
        structure: if substantial {
            Structure::default()
        } else {
            structure(dom)
        },
    }
}

fn walk_visible(
    dom: &Dom,
    id: NodeId,
    vis: &mut String,
    nos: &mut String,
    scripts: &mut usize,
    longp: &mut usize,
) {
    match &dom.nodes[id].data {
        Data::Text(t) => {
            vis.push_str(t);
        }
        Data::Element(e) => {
            match &*e.tag {
                "script" => {
                    *scripts += 1;
                    return;
                }
                "style" | "template" | "title" => return,
                "noscript" => {
                    let mut s = String::new();
                    dom.raw_text_into(id, &mut s);
                    nos.push(' ');
                    nos.push_str(&s);
                    return;
                }
                "p" if dom.text_content(id).chars().count() >= 80 => {
                    *longp += 1;
                }
                _ => {}
            }
            if crate::readable::is_hidden(dom, id) {
                return;
            }
            vis.push(' ');
            for &c in dom.children(id) {
                walk_visible(dom, c, vis, nos, scripts, longp);
            }
            vis.push(' ');
        }
        Data::Document => {
            for &c in dom.children(id) {
                walk_visible(dom, c, vis, nos, scripts, longp);
            }
        }
        Data::Other => {}
    }
}

fn any_in<'a>(hay: &str, needles: &[&'a str]) -> Option<&'a str> {
    needles.iter().copied().find(|n| hay.contains(n))
}

/// Detects an interstitial in an already parsed document.
pub(crate) fn detect(dom: &Dom, html: &str) -> Option<(String, String)> {
    let f = gather(dom, html);
    let vis_len = f.visible.chars().count();
    // A page with real prose is content, whatever markers it carries.
    let substantial = vis_len >= 2500 || f.long_paragraphs >= 5;
    if substantial {
        return None;
    }
    let small = vis_len < 1200 && f.long_paragraphs < 3;
    let ev = |what: String| format!("{what}; title={:?}; visible_chars={vis_len}", f.title);
    let title_is = |pats: &[&str]| pats.iter().any(|p| f.title == *p || f.title.starts_with(p));
    // The title or first heading *is* the pattern (possibly with a site/status part
    // after a separator), not merely a sentence that contains it.
    let head_or_title = |pats: &[&str]| -> Option<String> {
        pats.iter()
            .find(|p| is_label(&f.title, p) || is_label(&f.heading, p))
            .map(|p| p.to_string())
    };

    // --- Cloudflare -------------------------------------------------------------
    let cf_markers = [
        "window._cf_chl_opt",
        "_cf_chl_opt",
        "cf-chl-",
        "cf_chl_",
        "/cdn-cgi/challenge-platform/h/",
        "id=\"challenge-form\"",
        "id=\"challenge-running\"",
        "id=\"challenge-stage\"",
        "cf-browser-verification",
        "challenges.cloudflare.com/turnstile",
    ];
    let cf_titles = [
        "just a moment",
        "please wait... | cloudflare",
        "one more step",
        "checking your browser",
        "attention required! | cloudflare",
    ];
    let cf_marker = any_in(&f.raw, &cf_markers);
    if (f.raw.contains("cf-error-details")
        || (f.title.contains("cloudflare") && f.visible.contains("you have been blocked")))
        && small
        && (f.visible.contains("ray id") || f.visible.contains("cloudflare"))
    {
        return Some((
            "cloudflare-block".into(),
            ev("cloudflare block page (cf-error-details / 'you have been blocked')".into()),
        ));
    }
    if (cf_marker.is_some() && small)
        || (title_is(&cf_titles) && small && (cf_marker.is_some() || f.raw.contains("cloudflare")))
    {
        let what = match cf_marker {
            Some(m) => format!("marker={m:?}"),
            None => "challenge title".to_string(),
        };
        return Some(("cloudflare-challenge".into(), ev(what)));
    }

    // --- Akamai -----------------------------------------------------------------
    if small
        && (f.title.contains("access denied") || f.heading.contains("access denied"))
        && (f.raw.contains("errors.edgesuite.net")
            || f.visible.contains("reference #")
            || f.raw.contains("reference&#32;#"))
    {
        return Some((
            "akamai".into(),
            ev("'Access Denied' with Akamai reference".into()),
        ));
    }

    // --- Other bot managers -----------------------------------------------------
    let vendors: &[(&str, &[&str])] = &[
        // Akamai Bot Manager's challenge page (its denial page is the rule above).
        (
            "akamai",
            &["/_sec/cp_challenge/", "sec-if-cpt", "sec-cpt-if"],
        ),
        (
            "imperva",
            &[
                "_incapsula_resource",
                "incapsula incident id",
                "/_incapsula_",
            ],
        ),
        ("datadome", &["captcha-delivery.com", "datadome"]),
        (
            "perimeterx",
            &["px-captcha", "perimeterx", "_pxappid", "human challenge"],
        ),
        (
            "sucuri",
            &[
                "sucuri website firewall",
                "sucuri.net/privacy-policy",
                "cloudproxy@sucuri",
                "sucuri_cloudproxy_js",
            ],
        ),
        ("ddos-guard", &["ddos-guard", "ddos guard"]),
        (
            "aws-waf",
            &[
                "awswafcookiedomainlist",
                "aws-waf-token",
                "gokuprops",
                "/challenge.compact.js",
                ".sdk.awswaf.com",
                "awswafintegration",
            ],
        ),
        ("kasada", &["kpsdk", "x-kpsdk-"]),
        (
            "radware",
            &["perfdrive.com", "shieldsquare", "radware bot manager"],
        ),
        (
            "vercel-checkpoint",
            &[
                "vercel security checkpoint",
                "/.well-known/vercel/security/",
            ],
        ),
        ("amazon-captcha", &["/errors/validatecaptcha"]),
        (
            "yandex-smartcaptcha",
            &[
                "smartcaptcha.yandexcloud.net",
                "/checkcaptcha?",
                "/showcaptcha?",
            ],
        ),
        (
            "waiting-room",
            &[
                "queue-it.net",
                "queueit",
                "cf-waiting-room",
                "you are now in line",
            ],
        ),
    ];
    if small {
        for (name, markers) in vendors {
            if let Some(m) = any_in(&f.raw, markers) {
                return Some((name.to_string(), ev(format!("marker={m:?}"))));
            }
        }
    }

    // --- Captcha walls ----------------------------------------------------------
    // A captcha widget is also found in comment and login forms of real pages: it is a
    // wall only on a near-empty page or one whose title/heading asks for verification.
    let verify_words = [
        "verif",
        "robot",
        "human",
        "security",
        "captcha",
        "check",
        "attention",
        "one more step",
        "access",
        "blocked",
        "unusual traffic",
    ];
    let asks_verification = verify_words
        .iter()
        .any(|w| f.title.contains(w) || f.heading.contains(w));
    let documentish = f.structure.documentish(f.long_paragraphs);
    if small && (asks_verification || (vis_len < 600 && !documentish)) {
        let widgets: &[(&str, &[&str])] = &[
            (
                "hcaptcha",
                &[
                    "class=\"h-captcha\"",
                    "hcaptcha.com/1/api.js",
                    "js.hcaptcha.com",
                    "data-hcaptcha",
                    "h-captcha",
                ],
            ),
            (
                "recaptcha",
                &[
                    "class=\"g-recaptcha\"",
                    "g-recaptcha",
                    "google.com/recaptcha/api",
                    "recaptcha/enterprise.js",
                    "www.recaptcha.net/recaptcha",
                    "grecaptcha",
                ],
            ),
            ("arkose", &["arkoselabs.com", "funcaptcha"]),
            ("geetest", &["geetest.com", "geetest_"]),
        ];
        for (name, markers) in widgets {
            if let Some(m) = any_in(&f.raw, markers) {
                return Some((name.to_string(), ev(format!("marker={m:?}"))));
            }
        }
    }

    // Home-grown captchas (an image to type, an "I'm not a robot" button) say so in the
    // title or the first lines of an otherwise empty page; a short post that quotes them has
    // paragraphs of its own.
    let opening = &f.visible[..f.visible.floor_char_boundary(400)];
    if small
        && f.long_paragraphs <= 1
        && !documentish
        && let Some(p) = [opening, &f.title, &f.heading]
            .into_iter()
            .find_map(|text| {
                any_in(
                    text,
                    &[
                        "not a robot",
                        "you are human",
                        "you are a human",
                        "you're human",
                        "you're a human",
                        "detected unusual traffic",
                        "characters you see",
                        "connection needs to be verified",
                    ],
                )
            })
    {
        return Some(("captcha-prompt".into(), ev(format!("phrase={p:?}"))));
    }

    // Title/heading patterns alone are weak evidence ("Slow down" is also a blog post,
    // "429 Too Many Requests" a documentation page): only status-page shaped pages count.
    let status_page = small && !documentish;

    // --- Rate limiting ----------------------------------------------------------
    if status_page
        && let Some(p) = head_or_title(&[
            "too many requests",
            "429 too many",
            "error 429",
            "rate limit exceeded",
            "rate limited",
            "you have been rate limited",
            "slow down",
        ])
    {
        return Some(("rate-limited".into(), ev(format!("pattern={p:?}"))));
    }

    // --- Generic access denied --------------------------------------------------
    if status_page
        && let Some(p) = head_or_title(&[
            "access denied",
            "access to this page has been denied",
            "403 forbidden",
            "403 - forbidden",
            "error 403",
            "forbidden",
            "request blocked",
            "request rejected",
            "you don't have permission",
            "you do not have permission",
            "you have been blocked",
            "pardon our interruption",
            "are you a robot",
            "are you a human",
            "bot verification",
            "security check",
        ])
    {
        return Some(("access-denied".into(), ev(format!("pattern={p:?}"))));
    }
    // Block notices whose title and heading are the site's own ("Blocked", "whoa there!"):
    // the notice opens the page, often followed by paragraphs of advice; a short post that
    // quotes one further down, or any page with article structure, is content.
    if vis_len < 2000
        && !f.structure.documentish(0)
        && let Some(p) = any_in(
            opening,
            &[
                "your request has been blocked",
                "your ip has been blocked",
                "your ip address has been blocked",
                "your access to this site has been limited",
                "access to this site has been blocked",
                "blocked by network security",
                "your browsing activity has been paused",
            ],
        )
    {
        return Some(("access-denied".into(), ev(format!("phrase={p:?}"))));
    }

    // --- Script-only shells ---------------------------------------------------
    let js_phrases = [
        "enable javascript",
        "javascript is required",
        "javascript is disabled",
        "requires javascript",
        "need to enable javascript",
        "turn on javascript",
        "javascript must be enabled",
        "activate javascript",
        "enable js",
        "javascript to run this app",
        "please enable cookies",
    ];
    if vis_len < 300 && f.long_paragraphs == 0 {
        let phrase = any_in(&f.visible, &js_phrases).or_else(|| any_in(&f.noscript, &js_phrases));
        if let Some(p) = phrase {
            return Some((
                "enable-javascript-shell".into(),
                ev(format!("phrase={p:?}; scripts={}", f.scripts)),
            ));
        }
        if vis_len < 40 && f.scripts > 0 {
            return Some((
                "enable-javascript-shell".into(),
                ev(format!("no visible text; scripts={}", f.scripts)),
            ));
        }
    }
    None
}

/// `text` is `pat`, optionally followed or preceded by a separator part ("Access Denied | Site",
/// "Site - Access Denied", "403 Forbidden").
fn is_label(text: &str, pat: &str) -> bool {
    let text = text.trim().trim_end_matches(['.', '!']);
    if text == pat {
        return true;
    }
    let sep = |rest: &str| {
        let r = rest.trim_start();
        r.is_empty() || r.starts_with(['|', '-', '–', '—', ':', '(', '·', '/'])
    };
    if let Some(rest) = text.strip_prefix(pat)
        && sep(rest)
    {
        return true;
    }
    if let Some(before) = text.strip_suffix(pat) {
        let b = before.trim_end();
        if b.ends_with(['|', '-', '–', '—', ':', '·', '/'])
            || b.chars().all(|c| c.is_ascii_digit() || c.is_whitespace())
        {
            return true;
        }
    }
    false
}
