//! Integration tests on hand-written pages under `tests/pages/`.

use d402_page_extractor::{
    Article, ExtractOptions, Rejection, detect_interstitial, extract, interstitial_checks,
};

const URL: &str = "https://www.example.com/news/2024/05/article-123";

fn page(name: &str) -> String {
    let path = format!("{}/tests/pages/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn article(name: &str) -> Article {
    match extract(&page(name), URL, &ExtractOptions::default()) {
        Ok(a) => a,
        Err(e) => panic!("{name} rejected: {e}"),
    }
}

fn blocked(name: &str) -> String {
    match extract(&page(name), URL, &ExtractOptions::default()) {
        Err(Rejection::Blocked { detector, evidence }) => {
            assert!(!evidence.is_empty(), "{name}: empty evidence");
            assert!(
                interstitial_checks().contains(&detector.as_str()),
                "{name}: unknown detector {detector}"
            );
            detector
        }
        other => panic!("{name}: expected a Blocked rejection, got {other:?}"),
    }
}

/// Whitespace discipline every output must follow.
fn assert_clean_markdown(md: &str) {
    assert!(!md.contains("\n\n\n"), "run of blank lines:\n{md}");
    assert!(
        !md.starts_with('\n') && md.ends_with('\n') && !md.ends_with("\n\n"),
        "bad trimming:\n{md:?}"
    );
    for line in md.lines() {
        assert_eq!(line, line.trim_end(), "trailing whitespace in {line:?}");
    }
    assert!(!md.contains("]()"), "empty link target:\n{md}");
    assert!(!md.contains("[]("), "empty link text:\n{md}");
    for tag in ["<div", "<span", "<p>", "<script", "<a ", "<img", "</"] {
        assert!(!md.contains(tag), "leftover HTML {tag}:\n{md}");
    }
}

#[test]
fn news_article_keeps_body_and_drops_boilerplate() {
    let a = article("news-article.html");
    let md = &a.markdown;
    assert_clean_markdown(md);
    // Title once, as the first line.
    assert!(
        md.starts_with("# Harbour council approves new tidal barrier\n\n"),
        "{md}"
    );
    assert_eq!(
        md.matches("tidal barrier\n").count(),
        1,
        "duplicated title heading:\n{md}"
    );
    // Body, structure.
    assert!(md.contains("The harbour council voted nine to two on Wednesday night"));
    assert!(md.contains("\n## Residents divided\n"));
    assert!(
        md.contains("> This is the most important decision the council has taken in a generation.")
    );
    assert!(md.contains("- Phase one: northern gate and control house\n- Phase two"));
    assert!(md.contains("An artist's impression of the completed barrier."));
    // Boilerplate gone.
    for junk in [
        "cookie",
        "Share on Twitter",
        "Related stories",
        "Floods hit lower town",
        "seagull42",
        "About time too",
        "Most read",
        "All rights reserved",
        "Advertisement",
        "Sport",
        "By Mara Quinlan",
    ] {
        assert!(!md.contains(junk), "boilerplate {junk:?} kept:\n{md}");
    }
}

#[test]
fn links_and_images_are_absolute() {
    let md = article("news-article.html").markdown;
    // Relative to <base href>, root-relative, and images.
    assert!(md.contains("[environmental assessment](https://www.coastal-gazette.example/news/reports/barrier-assessment.pdf)"), "{md}");
    assert!(
        md.contains("[project page](https://www.coastal-gazette.example/projects/tidal-barrier)"),
        "{md}"
    );
    assert!(md.contains("![Artist's impression of the tidal barrier](https://www.coastal-gazette.example/images/barrier-render.jpg)"), "{md}");
    // Without <base>, the page URL is the base.
    let html = "<html><body><article><p>Read the <a href=\"../other/page.html\">other page</a> for the full details of this long enough paragraph about nothing in particular, really.</p></article></body></html>";
    let a = extract(
        html,
        "https://site.example/a/b/c.html",
        &ExtractOptions::default(),
    )
    .unwrap();
    assert!(
        a.markdown
            .contains("[other page](https://site.example/a/other/page.html)"),
        "{}",
        a.markdown
    );
}

#[test]
fn options_drop_links_images_and_title() {
    let opts = ExtractOptions {
        keep_images: false,
        keep_links: false,
        title_heading: false,
        ..Default::default()
    };
    let a = extract(&page("news-article.html"), URL, &opts).unwrap();
    assert!(!a.markdown.contains("]("), "{}", a.markdown);
    assert!(a.markdown.contains("environmental assessment is approved"));
    assert!(
        a.markdown.starts_with("The harbour council voted"),
        "{}",
        a.markdown
    );
}

#[test]
fn news_article_metadata() {
    let a = article("news-article.html");
    assert_eq!(
        a.title.as_deref(),
        Some("Harbour council approves new tidal barrier")
    );
    assert_eq!(a.byline.as_deref(), Some("Mara Quinlan"));
    assert_eq!(a.site_name.as_deref(), Some("The Coastal Gazette"));
    assert_eq!(a.lang.as_deref(), Some("en-GB"));
    assert_eq!(a.published_time.as_deref(), Some("2024-03-14T09:30:00Z"));
    assert_eq!(
        a.excerpt.as_deref(),
        Some("The council voted 9 to 2 to fund a tidal barrier at the harbour mouth.")
    );
}

#[test]
fn blog_code_blocks_tables_and_escaping() {
    let a = article("blog-code-table.html");
    let md = &a.markdown;
    assert_clean_markdown(md);
    assert!(md.contains("```rust\nfn parse_date(s: &str) -> Result<Date, Error> {\n    let mut parts = s.splitn(3, '-');\n    // year, month, day\n    todo!()\n}\n```"), "{md}");
    assert!(md.contains("```python\nprint(\"hello\")\n```"), "{md}");
    assert!(
        md.contains(
            "| Library | Strict mode | Speed (µs) |\n| --- | --- | --- |\n| chrono | yes | 0.41 |"
        ),
        "{md}"
    );
    assert!(md.contains("`YYYY-MM-DD`"));
    assert!(md.contains("\\*stars\\* and \\_underscores\\_"), "{md}");
    assert!(!md.contains("Archives"), "sidebar kept:\n{md}");
    // JSON-LD metadata; the site suffix is not part of the title.
    assert_eq!(a.title.as_deref(), Some("Parsing dates without regrets"));
    assert_eq!(a.byline.as_deref(), Some("Ada Fennimore"));
    assert_eq!(a.published_time.as_deref(), Some("2023-11-02"));
    assert_eq!(a.site_name.as_deref(), Some("Ada's notebook"));
}

#[test]
fn docs_page_sections_survive() {
    let md = article("docs-page.html").markdown;
    assert_clean_markdown(&md);
    assert!(md.starts_with("# Configuration reference\n"), "{md}");
    assert_eq!(md.matches("Configuration reference").count(), 1, "{md}");
    assert!(md.contains("## Server"));
    // A section whose id merely contains "sharing" is content, not a share bar.
    assert!(md.contains("## Sharing storage between instances"), "{md}");
    assert!(
        md.contains("1. Configure exactly one writer.\n2. Point readers"),
        "{md}"
    );
    assert!(
        md.contains("```toml\n[server]\nlisten = \"127.0.0.1:8080\""),
        "{md}"
    );
    assert!(
        !md.contains("Table of contents") && !md.contains("Copyright"),
        "{md}"
    );
}

#[test]
fn blocked_pages_name_their_detector() {
    assert_eq!(blocked("cloudflare-challenge.html"), "cloudflare-challenge");
    assert_eq!(blocked("akamai-denied.html"), "akamai");
    assert_eq!(blocked("recaptcha-wall.html"), "recaptcha");
    assert_eq!(blocked("hcaptcha-wall.html"), "hcaptcha");
    assert_eq!(blocked("js-shell.html"), "enable-javascript-shell");
    assert_eq!(blocked("rate-limited.html"), "rate-limited");
    assert_eq!(blocked("access-denied.html"), "access-denied");
    // Title and heading are the site's own words; the notice says what happened.
    assert_eq!(blocked("network-policy-block.html"), "access-denied");
    assert_eq!(blocked("reddit-network-security.html"), "access-denied");
    assert_eq!(blocked("browsing-paused.html"), "access-denied");
    // A short post quoting such a notice further down is content.
    let a = article("short-post-quoting-block-notice.html");
    assert!(
        a.markdown.contains("The railway blocks the railway."),
        "{}",
        a.markdown
    );
}

#[test]
fn standalone_detector_agrees() {
    let (d, ev) =
        detect_interstitial(&page("cloudflare-challenge.html")).expect("challenge not detected");
    assert_eq!(d, "cloudflare-challenge");
    assert!(
        ev.contains("_cf_chl_opt") && ev.contains("just a moment"),
        "{ev}"
    );
    assert_eq!(detect_interstitial(&page("news-article.html")), None);
    assert_eq!(interstitial_checks().first(), Some(&"cloudflare-challenge"));
}

#[test]
fn article_about_challenges_is_not_blocked() {
    assert_eq!(
        detect_interstitial(&page("article-about-cloudflare.html")),
        None
    );
    let a = article("article-about-cloudflare.html");
    assert!(a.markdown.contains(
        "Under the hood, the challenge page sets a configuration object called `window._cf_chl_opt`"
    ));
    assert!(
        a.markdown.contains("```\n<form id=\"challenge-form\""),
        "{}",
        a.markdown
    );
    assert!(!a.markdown.contains("Leave a comment"), "{}", a.markdown);
}

#[test]
fn noscript_notice_with_real_body_is_not_blocked() {
    assert_eq!(detect_interstitial(&page("noscript-notice.html")), None);
    let a = article("noscript-notice.html");
    assert!(
        a.markdown
            .contains("Der Stadtwald ist an einem frühen Sommermorgen fast menschenleer.")
    );
    assert!(a.markdown.contains("Aussichtsturm"));
    assert!(!a.markdown.contains("enable JavaScript"), "{}", a.markdown);
    assert_eq!(a.lang.as_deref(), Some("de"));
    assert_eq!(a.byline.as_deref(), Some("Jonas Reinholt"));
    assert_eq!(
        a.published_time.as_deref(),
        Some("2022-06-01T08:00:00+02:00")
    );
}

#[test]
fn detection_can_be_disabled() {
    let opts = ExtractOptions {
        detect_interstitials: false,
        ..Default::default()
    };
    // The rate-limit page then extracts as (tiny) content instead of being blocked.
    let a = extract(&page("rate-limited.html"), URL, &opts).expect("extracted");
    assert!(a.markdown.contains("too many requests"), "{}", a.markdown);
}

#[test]
fn empty_and_oversized_inputs() {
    assert_eq!(
        extract("", URL, &ExtractOptions::default()),
        Err(Rejection::NoContent)
    );
    assert_eq!(
        extract(
            "<html><body><div><p>   </p></div></body></html>",
            URL,
            &ExtractOptions::default()
        ),
        Err(Rejection::NoContent)
    );
    let opts = ExtractOptions {
        max_input_bytes: 10,
        ..Default::default()
    };
    assert_eq!(
        extract("<p>hello world</p>", URL, &opts),
        Err(Rejection::TooLarge {
            bytes: 18,
            limit: 10
        })
    );
}

#[test]
fn output_is_deterministic() {
    let html = page("news-article.html");
    let a = extract(&html, URL, &ExtractOptions::default()).unwrap();
    let b = extract(&html, URL, &ExtractOptions::default()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn markdown_escaping_and_inline_formatting() {
    let html = r#"<html><head><title>Inline things</title></head><body><article>
        <p>Some <strong>bold</strong> and <em>italic</em> text, a <a href="javascript:void(0)">script link</a>,
        an <a href="https://x.example/"></a>empty link, <code>a`b</code> code, 1 &lt; 2 &amp; <b> </b>more words to reach the length.</p>
        <p>2024. A line that starts like an ordered list item and # a hash, with plenty of other words around it.</p>
        <p>Line one<br>line two</p>
        </article></body></html>"#;
    let md = extract(html, URL, &ExtractOptions::default())
        .unwrap()
        .markdown;
    assert_clean_markdown(&md);
    assert!(
        md.contains("Some **bold** and *italic* text, a script link,"),
        "{md}"
    );
    assert!(
        md.contains("empty link, ``a`b`` code, 1 < 2 & more words"),
        "{md}"
    );
    assert!(md.contains("2024\\. A line that starts"), "{md}");
    assert!(md.contains("Line one\\\nline two"), "{md}");
}

#[test]
fn pathological_nesting_does_not_overflow() {
    let depth = 3_000;
    let mut html = String::from("<html><head><title>Deep</title></head><body>");
    for _ in 0..depth {
        html.push_str("<div>");
    }
    html.push_str("<p>Deeply nested text that is long enough to count as a paragraph of prose, with commas, and more.</p>");
    for _ in 0..depth {
        html.push_str("</div>");
    }
    html.push_str("</body></html>");
    let a = extract(&html, URL, &ExtractOptions::default()).expect("extracted");
    assert!(a.markdown.contains("Deeply nested text"), "{}", a.markdown);
}

#[test]
fn short_post_with_captcha_comment_form_is_not_a_wall() {
    let html = r#"<html><head><title>Town fair moves to Saturday</title>
        <script src="https://www.google.com/recaptcha/api.js"></script></head><body>
        <article><h1>Town fair moves to Saturday</h1>
        <p>The annual town fair will take place on Saturday instead of Sunday this year, the organisers said on Monday, because of the cycling race that closes the high street on Sunday morning.</p>
        <p>Stalls open at nine and the parade starts at eleven. Parking at the school will be free all day, and extra buses will run from the station every twenty minutes.</p>
        <p>Volunteers are still needed for the tombola and the cake stand; anyone who can help should contact the parish office before Thursday.</p>
        </article>
        <form class="comment-form"><textarea></textarea><div class="g-recaptcha" data-sitekey="x"></div><button>Send</button></form>
        </body></html>"#;
    assert_eq!(detect_interstitial(html), None);
    let a = extract(html, URL, &ExtractOptions::default()).expect("not blocked");
    assert!(a.markdown.contains("Volunteers are still needed"));
}

#[test]
fn bot_manager_walls_name_their_vendor() {
    assert_eq!(blocked("imperva-incident.html"), "imperva");
    assert_eq!(blocked("datadome-captcha.html"), "datadome");
    assert_eq!(blocked("perimeterx-press-hold.html"), "perimeterx");
    assert_eq!(blocked("sucuri-denied.html"), "sucuri");
    assert_eq!(blocked("sucuri-js-challenge.html"), "sucuri");
    assert_eq!(blocked("ddos-guard-check.html"), "ddos-guard");
    assert_eq!(blocked("aws-waf-challenge.html"), "aws-waf");
    assert_eq!(blocked("akamai-bot-challenge.html"), "akamai");
    assert_eq!(blocked("amazon-robot-check.html"), "amazon-captcha");
    assert_eq!(blocked("yandex-smartcaptcha.html"), "yandex-smartcaptcha");
    assert_eq!(blocked("google-unusual-traffic.html"), "recaptcha");
    // The standalone detector agrees and reports what it saw.
    let (d, ev) =
        detect_interstitial(&page("imperva-incident.html")).expect("imperva not detected");
    assert_eq!(d, "imperva");
    assert!(ev.contains("incapsula"), "{ev}");
}

#[test]
fn captcha_prompts_without_a_known_widget_are_walls_but_posts_quoting_them_are_not() {
    // A site's own image captcha: no vendor markup, only the prompt at the top.
    assert_eq!(blocked("image-captcha-prompt.html"), "captcha-prompt");
    // A short post titled with the same kind of phrase, with paragraphs of its own.
    assert_eq!(
        detect_interstitial(&page("short-post-not-a-robot.html")),
        None
    );
    let a = article("short-post-not-a-robot.html");
    assert!(
        a.markdown.contains("The potatoes arrive on Thursday."),
        "{}",
        a.markdown
    );
}

#[test]
fn every_detector_name_is_listed_once() {
    let checks = interstitial_checks();
    for name in [
        "imperva",
        "datadome",
        "perimeterx",
        "sucuri",
        "ddos-guard",
        "aws-waf",
        "amazon-captcha",
        "yandex-smartcaptcha",
        "captcha-prompt",
        "rate-limited",
        "access-denied",
    ] {
        assert_eq!(checks.iter().filter(|c| **c == name).count(), 1, "{name}");
    }
}

#[test]
fn long_article_quoting_access_denied_is_content() {
    let html = page("article-quoting-access-denied.html");
    assert_eq!(detect_interstitial(&html), None);
    let a = article("article-quoting-access-denied.html");
    assert!(
        a.markdown
            .contains("It is not produced by the website you wanted to read."),
        "{}",
        a.markdown
    );
    assert!(
        a.markdown
            .contains("> Access Denied. You don't have permission"),
        "{}",
        a.markdown
    );
}

#[test]
fn docs_page_about_429_is_content() {
    // Title and heading are exactly a rate-limit status line, but the page is documentation:
    // code blocks and sections make it a document.
    assert_eq!(detect_interstitial(&page("docs-429.html")), None);
    let a = article("docs-429.html");
    assert!(
        a.markdown.starts_with("# 429 Too Many Requests"),
        "{}",
        a.markdown
    );
    assert!(
        a.markdown
            .contains("A `Retry-After` header might be included"),
        "{}",
        a.markdown
    );
    assert!(
        a.markdown.contains(
            "```\nHTTP/1.1 429 Too Many Requests\nContent-Type: text/html\nRetry-After: 3600\n```"
        ),
        "{}",
        a.markdown
    );
}

#[test]
fn short_post_with_status_like_title_is_content() {
    // "Slow down" is a rate-limit phrase and the page carries a captcha comment form, but it
    // is a (very short) article.
    assert_eq!(
        detect_interstitial(&page("short-post-slow-down.html")),
        None
    );
    let a = article("short-post-slow-down.html");
    assert!(
        a.markdown
            .contains("Nothing else happened. That was the point."),
        "{}",
        a.markdown
    );
    assert!(a.markdown.contains("three shops"), "{}", a.markdown);
}

#[test]
fn short_paragraphs_sharing_a_content_class_stay_and_rights_notices_go() {
    // Publishers mark paywalled paragraphs `class="paywall"`: a boilerplate-looking class on
    // every paragraph of the article, long and short alike.
    let a = article("magazine-paywall-classes.html");
    let md = &a.markdown;
    assert_clean_markdown(md);
    for kept in [
        "Ten years ago the last sleeper service",
        "“It is slower, and that is the point,” says a conductor.",
        "Tickets start at 59 euros.",
        "The operator says its business plan assumes no public money at all.",
    ] {
        assert!(md.contains(kept), "lost {kept:?}:\n{md}");
    }
    // The share bar still goes, and so does the site's closing rights notice.
    for dropped in ["Share", "Email", "All rights reserved", "© 2024"] {
        assert!(!md.contains(dropped), "kept {dropped:?}:\n{md}");
    }
}

#[test]
fn rights_notices_inside_an_article_are_content() {
    // Only a short notice at the very end is the site's; an article's own words stay.
    let html = format!(
        "<html><head><title>Who owns a photograph?</title></head><body><article>\
         <h1>Who owns a photograph?</h1>{}\
         <p>Copyright lasts seventy years after the author's death in most of Europe.</p>\
         <p>Many stock agencies print “All rights reserved” under every picture, which tells \
         a reader nothing about the licence a newspaper actually bought.</p>{}\
         </article></body></html>",
        "<p>When a photographer sells a picture to a newspaper, the newspaper usually buys a \
         licence to print it, not the picture itself, and the difference matters once the \
         image is shared online and copied by other sites without permission.</p>"
            .repeat(3),
        "<p>Courts have repeatedly held that the licence, not the caption, decides who may \
         reuse an image, and that the photographer keeps every right not expressly sold.</p>"
    );
    let a = extract(&html, URL, &ExtractOptions::default()).expect("article");
    assert!(
        a.markdown.contains("Copyright lasts seventy years"),
        "{}",
        a.markdown
    );
    assert!(
        a.markdown.contains("print “All rights reserved” under"),
        "{}",
        a.markdown
    );
    assert!(
        a.markdown.contains("the photographer keeps every right"),
        "{}",
        a.markdown
    );
}

/// A small status page around `body`, titled `title`.
fn status_page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body>{body}</body></html>"
    )
}

#[test]
fn more_bot_managers_captchas_and_waiting_rooms_are_named() {
    let walls = [
        (
            "kasada",
            status_page(
                "",
                "<script>window.KPSDK={};KPSDK.now=typeof performance!=='undefined'?\
                 performance.now.bind(performance):Date.now.bind(Date);KPSDK.start=KPSDK.now();\
                 </script><script src=\"/149e9513-01fa/2d206a39-8ed7/ips.js\"></script>",
            ),
        ),
        (
            "radware",
            status_page(
                "Radware Bot Manager Captcha",
                "<h1>We apologize for the inconvenience...</h1><p>To ensure we keep this website \
                 safe, please can you confirm you are a human by ticking the box below.</p>\
                 <form action=\"https://validate.perfdrive.com/captcha\" method=\"post\">\
                 <div id=\"captcha\"></div></form><p>Incident ID: 7b3f2c1a-55e1</p>",
            ),
        ),
        (
            "vercel-checkpoint",
            status_page(
                "Vercel Security Checkpoint",
                "<main><h1>We're verifying your browser</h1><p>Website owner? Click here to fix\
                 </p><script src=\"/.well-known/vercel/security/static/challenge.v2.min.js\">\
                 </script></main>",
            ),
        ),
        (
            "waiting-room",
            status_page(
                "Queue-it",
                "<h1>You are now in line</h1><p>Thank you for your patience. When it is your \
                 turn, you will have 10 minutes to enter the website.</p><p>Your estimated wait \
                 time is: 12 minutes</p><script src=\"//static.queue-it.net/script/queueclient.min.js\">\
                 </script>",
            ),
        ),
        (
            "arkose",
            status_page(
                "Security verification",
                "<h1>Please verify you are a human</h1><div id=\"arkose\" \
                 data-pkey=\"B7D8911C-5CC8-A9A3-35B0-554ACEE604DA\"></div>\
                 <script src=\"https://client-api.arkoselabs.com/v2/api.js\"></script>",
            ),
        ),
        (
            "geetest",
            status_page(
                "Security check",
                "<h1>Slide to complete the puzzle</h1><div class=\"geetest_holder\"></div>\
                 <script src=\"https://static.geetest.com/v4/gt4.js\"></script>",
            ),
        ),
    ];
    let prose = "<p>The city council voted on Tuesday to extend the night bus network to the \
                 three suburbs that lost their last late service in 2019, after a campaign by \
                 shift workers who had been paying for taxis home from the hospital.</p>"
        .repeat(8);
    for (detector, html) in &walls {
        match extract(html, URL, &ExtractOptions::default()) {
            Err(Rejection::Blocked {
                detector: d,
                evidence,
            }) => {
                assert_eq!(&d, detector, "{evidence}");
                assert!(interstitial_checks().contains(&d.as_str()));
            }
            other => panic!("{detector}: expected Blocked, got {other:?}"),
        }
        // The same markup on a page with an article is a widget on real content.
        let article_page = html.replace("</body>", &format!("<article>{prose}</article></body>"));
        let a = extract(&article_page, URL, &ExtractOptions::default())
            .unwrap_or_else(|e| panic!("{detector} widget on an article: {e}"));
        assert!(a.markdown.contains("night bus network"), "{detector}");
    }
}
