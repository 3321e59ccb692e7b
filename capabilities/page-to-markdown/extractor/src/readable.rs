//! Main-content detection.
//!
//! The approach is score propagation in the spirit of Arc90/Readability, with its own
//! signals: paragraph-like units (real `<p>`, phrasing-only blocks and runs of inline
//! content inside mixed blocks) are scored by length, commas and their own link density,
//! and the score flows to a few levels of ancestors. Candidates are weighted by tag,
//! class/id vocabulary, semantic markers (`<article>`, `itemprop=articleBody`, `<main>`)
//! and penalised by link density. The best candidate is widened to a common ancestor
//! when several good candidates share it, joined with related siblings, and then cleaned
//! of boilerplate blocks (share bars, related links, comments, forms, link lists...).
//!
//! Several passes run with progressively relaxed rules; the first one yielding enough
//! text wins, otherwise the longest. Passes relink nodes in place and are undone from a
//! snapshot of the tree's links (no tree copies); text statistics (characters, link
//! characters, commas, paragraph characters) are computed bottom-up once per pass and
//! updated along the ancestor chain when a subtree is removed.

use std::collections::HashMap;

use crate::dom::{Data, Dom, Element, NodeId};
use crate::patterns::Substrings;

/// Tags that are removed before anything else: never content.
const ALWAYS_DROP: &[&str] = &[
    "script", "style", "link", "meta", "noscript", "template", "iframe", "frame", "frameset",
    "object", "embed", "applet", "canvas", "svg", "input", "button", "select", "textarea",
    "option", "datalist", "dialog", "nav", "menu", "audio", "video", "source", "track", "map",
    "area", "head", "title", "base", "param",
];

/// Block-level tags (everything else is treated as phrasing content).
pub(crate) const BLOCK_TAGS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "center",
    "dd",
    "details",
    "dialog",
    "dir",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hgroup",
    "hr",
    "html",
    "li",
    "main",
    "menu",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "ul",
    "caption",
    "listing",
    "xmp",
    "plaintext",
    "legend",
    "noscript",
    "search",
];

pub(crate) fn is_block_tag(tag: &str) -> bool {
    BLOCK_TAGS.contains(&tag)
}

#[derive(Clone, Copy, Debug)]
struct Flags {
    strip_unlikely: bool,
    weight_classes: bool,
    clean_conditionally: bool,
}

/// Result of content detection: a container node holding the article body.
pub(crate) struct Content {
    pub root: NodeId,
    /// Byline text found (and removed) in the content, if any.
    pub byline: Option<String>,
}

// ---------------------------------------------------------------------------
// Class / id vocabulary

/// Lower-cased "class id" string of an element.
fn class_id(dom: &Dom, id: NodeId) -> String {
    let mut s = String::new();
    if let Some(c) = dom.attr(id, "class") {
        s.push_str(c);
    }
    if let Some(i) = element_id(dom, id) {
        s.push(' ');
        s.push_str(i);
    }
    s.to_lowercase()
}

/// The `id` attribute, unless it is a slug of the element's own heading (documentation
/// generators derive section ids from titles: "sharing-with-a-single-developer" says
/// nothing about share bars).
fn element_id(dom: &Dom, id: NodeId) -> Option<&str> {
    let v = dom.attr(id, "id")?;
    let heading = dom
        .element_children(id)
        .next()
        .filter(|&c| matches!(dom.tag(c), "h1" | "h2" | "h3" | "h4" | "h5" | "h6"));
    if let Some(h) = heading {
        let slug = |s: &str| -> String {
            s.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect()
        };
        let (a, b) = (slug(v), slug(&dom.text_content(h)));
        if !a.is_empty() && !b.is_empty() && (a.contains(&b) || b.contains(&a)) {
            return None;
        }
    }
    Some(v)
}

/// Whether the element and its siblings of the same tag and class hold real prose together:
/// then the class marks the article's own paragraphs (publishers tag paywalled paragraphs
/// `paywall`, for example), not boilerplate. Repeated widgets (share buttons, ad slots) hold
/// no paragraph text, so they never qualify. `memo` keeps the answer per parent, tag and
/// class, so thousands of siblings are summed once.
fn class_marks_prose_siblings(
    dom: &Dom,
    st: &Stats,
    n: NodeId,
    memo: &mut HashMap<(NodeId, String), bool>,
) -> bool {
    let (Some(parent), Some(class)) = (dom.parent(n), dom.attr(n, "class")) else {
        return false;
    };
    let tag = dom.tag(n);
    *memo
        .entry((parent, format!("{tag} {class}")))
        .or_insert_with(|| {
            let prose: usize = dom
                .element_children(parent)
                .filter(|&s| dom.tag(s) == tag && dom.attr(s, "class") == Some(class))
                .map(|s| st.prose(s))
                .sum();
            prose >= 400
        })
}

/// Splits class/id text into tokens on anything that is not a letter or digit.
fn tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
}

fn has_token(s: &str, list: &[&str]) -> bool {
    tokens(s).any(|t| list.contains(&t))
}

/// Classes of skip links ("Jump to navigation").
static SKIP_LINK_SUB: Substrings = Substrings::new(&["skip", "jump"]);
/// Classes of author lines.
static BYLINE_SUB: Substrings = Substrings::new(&["byline", "dateline", "writtenby", "p-author"]);
/// Classes that name the article body itself, whatever boilerplate word they also hold.
static BODY_CLASS_SUB: Substrings = Substrings::new(&[
    "article-body",
    "articlebody",
    "entry-content",
    "post-content",
    "story-body",
    "main-content",
]);
/// Classes of images that stand for a glyph, formula or face rather than a picture.
static GLYPH_CLASS_SUB: Substrings = Substrings::new(&[
    "math", "latex", "equation", "emoji", "smiley", "icon", "avatar",
]);

/// Substrings that mark an element as very likely boilerplate (removed before scoring).
static UNLIKELY_SUB: Substrings = Substrings::new(&[
    "banner",
    "breadcrumb",
    "combx",
    "comment",
    "community",
    "cover-wrap",
    "disqus",
    "extra",
    "footer",
    "gdpr",
    "header",
    "legends",
    "menu",
    "related",
    "remark",
    "replies",
    "rss",
    "shoutbox",
    "sidebar",
    "skyscraper",
    "social",
    "sponsor",
    "supplemental",
    "ad-break",
    "agegate",
    "pagination",
    "pager",
    "popup",
    "yom-remote",
]);
/// Weaker markers: also removed before scoring, unless the element holds real prose.
static UNLIKELY_WEAK_SUB: Substrings = Substrings::new(&[
    "cookie",
    "consent",
    "newsletter",
    "share",
    "sharing",
    "outbrain",
    "taboola",
    "recommend",
    "promo",
    "subscribe",
    "signup",
    "modal",
    "skiplink",
    "skip-link",
    "toolbar",
    "masthead",
    "trending",
]);
const UNLIKELY_TOK: &[&str] = &[
    "ad",
    "ads",
    "advert",
    "advertisement",
    "nav",
    "navbar",
    "navigation",
    "tags",
];
/// Substrings that rescue an element from [`UNLIKELY_SUB`].
static MAYBE_SUB: Substrings = Substrings::new(&[
    "article",
    "body",
    "column",
    "content",
    "main",
    "shadow",
    "story",
    "entry",
    "post-text",
    "prose",
]);

const UNLIKELY_ROLES: &[&str] = &[
    "menu",
    "menubar",
    "complementary",
    "navigation",
    "alert",
    "alertdialog",
    "dialog",
    "banner",
    "contentinfo",
    "search",
];

static POSITIVE_SUB: Substrings = Substrings::new(&[
    "article",
    "body",
    "content",
    "entry",
    "hentry",
    "h-entry",
    "main",
    "page",
    "post",
    "text",
    "blog",
    "story",
    "prose",
    "markdown",
    "rich-text",
    "richtext",
]);
static NEGATIVE_SUB: Substrings = Substrings::new(&[
    "-ad-",
    "banner",
    "combx",
    "comment",
    "contact",
    "footer",
    "gdpr",
    "masthead",
    "media",
    "meta",
    "outbrain",
    "promo",
    "related",
    "scroll",
    "share",
    "shoutbox",
    "sidebar",
    "skyscraper",
    "sponsor",
    "shopping",
    "widget",
    "social",
    "cookie",
    "newsletter",
    "subscribe",
    "taboola",
    "recommend",
    "byline",
    "author",
    "teaser",
    "nav",
    "menu",
    "breadcrumb",
    "pagination",
    "toolbar",
    "signup",
    "popular",
    "trending",
]);
const NEGATIVE_TOK: &[&str] = &[
    "ad", "ads", "hidden", "hid", "tags", "tag", "aside", "links", "footnote",
];

/// Comment threads: removed even when they are prose-rich.
static HARD_BOILER_SUB: Substrings = Substrings::new(&[
    "comment-list",
    "commentlist",
    "comments",
    "disqus",
    "comment-respond",
    "reply-form",
]);
const HARD_BOILER_TOK: &[&str] = &["comment", "respond", "replies"];

/// Strong boilerplate markers used when cleaning the selected content.
static BOILER_SUB: Substrings = Substrings::new(&[
    "share",
    "sharing",
    "social",
    "related",
    "newsletter",
    "advert",
    "sponsor",
    "outbrain",
    "taboola",
    "disqus",
    "breadcrumb",
    "sidebar",
    "popup",
    "cookie",
    "consent",
    "gdpr",
    "skyscraper",
    "recommend",
    "subscribe",
    "signup",
    "sign-up",
    "promo",
    "more-stories",
    "jump-link",
    "skip-link",
    "screen-reader",
    "sr-only",
    "visually-hidden",
    "visuallyhidden",
    "print-only",
    "noprint",
    "trending",
    "most-popular",
    "mostpopular",
    "author-bio",
    "toolbar",
    "paywall",
    "inline-ad",
    "ad-container",
    "ad-slot",
    "ad-wrapper",
    "adslot",
    "adunit",
    "ad-unit",
]);
const BOILER_TOK: &[&str] = &[
    "ad",
    "ads",
    "adv",
    "comment",
    "nav",
    "navbar",
    "menu",
    "footer",
    "tags",
    "hidden",
    "widget",
    "pagination",
    "pager",
    "reply",
];

fn class_weight(dom: &Dom, id: NodeId) -> f64 {
    let mut w = 0.0;
    for attr in ["class", "id"] {
        let v = if attr == "id" {
            element_id(dom, id)
        } else {
            dom.attr(id, attr)
        };
        let Some(v) = v else { continue };
        let v = v.to_lowercase();
        if v.is_empty() {
            continue;
        }
        if NEGATIVE_SUB.found_in(&v) || has_token(&v, NEGATIVE_TOK) {
            w -= 25.0;
        }
        if POSITIVE_SUB.found_in(&v) {
            w += 25.0;
        }
    }
    if dom
        .attr(id, "itemprop")
        .is_some_and(|p| p.contains("articleBody") || p.contains("text"))
    {
        w += 30.0;
    }
    match dom.tag(id) {
        "article" => w += 10.0,
        "main" => w += 5.0,
        _ => {}
    }
    if dom
        .attr(id, "role")
        .is_some_and(|r| r == "main" || r == "article")
    {
        w += 10.0;
    }
    w
}

// ---------------------------------------------------------------------------
// Visibility and preprocessing

/// Is the element hidden by attributes or inline style?
pub(crate) fn is_hidden(dom: &Dom, id: NodeId) -> bool {
    let Some(e) = dom.element(id) else {
        return false;
    };
    for (k, v) in &e.attrs {
        match &**k {
            "hidden" => return true,
            "aria-hidden" if v.trim() == "true" => {
                // Readers keep fallback images marked aria-hidden.
                let c = dom.attr(id, "class").unwrap_or("");
                return !c.contains("fallback-image");
            }
            "style" => {
                let s: String = v
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect::<String>()
                    .to_lowercase();
                if s.contains("display:none") || s.contains("visibility:hidden") {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// Removes never-content elements, comments and hidden subtrees (done once per document).
pub(crate) fn preprocess(dom: &mut Dom) {
    let Some(body) = dom.body() else { return };
    let mut stack = vec![body];
    let mut remove = Vec::new();
    while let Some(n) = stack.pop() {
        for &c in dom.children(n) {
            match &dom.nodes[c].data {
                Data::Other => remove.push(c),
                Data::Element(e) => {
                    let t = &*e.tag;
                    if ALWAYS_DROP.contains(&t) || is_hidden(dom, c) {
                        // Keep the image fallback of lazy-loading scripts: handled in rendering.
                        remove.push(c);
                    } else {
                        stack.push(c);
                    }
                }
                _ => {}
            }
        }
    }
    for r in remove {
        dom.detach(r);
    }
}

// ---------------------------------------------------------------------------
// Text measures

#[derive(Default, Clone, Copy, Debug, PartialEq)]
pub(crate) struct Measure {
    chars: usize,
    /// Link characters in tenths (in-page anchors weigh 3, real links 10): integers, so
    /// that removals can be subtracted exactly.
    link_tenths: usize,
    commas: usize,
}

/// Per-node text statistics, computed bottom-up once and kept up to date on removals,
/// so that no decision re-walks a subtree to count its text.
pub(crate) struct Stats {
    /// Non-whitespace characters and commas of each text node (fixed for the document).
    text: Vec<(u32, u32)>,
    /// Text measure of each node's subtree (links weighted as in [`link_density`]).
    m: Vec<Measure>,
    /// Paragraph characters of the subtree ([`Stats::prose`] semantics for the node as root).
    prose: Vec<usize>,
    /// Children that are block-level elements or contain one.
    block_children: Vec<u32>,
}

fn is_comma(c: char) -> bool {
    matches!(c, ',' | '，' | '、' | '،' | '﹐' | '︐')
}

impl Stats {
    pub(crate) fn new(dom: &Dom) -> Stats {
        let text = dom
            .nodes
            .iter()
            .map(|n| match &n.data {
                Data::Text(t) => {
                    let (mut chars, mut commas) = (0u32, 0u32);
                    for c in t.chars() {
                        if !c.is_whitespace() {
                            chars += 1;
                            if is_comma(c) {
                                commas += 1;
                            }
                        }
                    }
                    (chars, commas)
                }
                _ => (0, 0),
            })
            .collect();
        Stats {
            text,
            m: Vec::new(),
            prose: Vec::new(),
            block_children: Vec::new(),
        }
    }

    fn grow(&mut self, len: usize) {
        if self.m.len() < len {
            self.m.resize(len, Measure::default());
            self.prose.resize(len, 0);
            self.block_children.resize(len, 0);
        }
    }

    /// Recomputes the statistics of the subtree at `root`.
    fn compute(&mut self, dom: &Dom, root: NodeId) {
        self.grow(dom.nodes.len());
        for n in dom.descendants(root).into_iter().rev() {
            self.update(dom, n);
        }
    }

    /// Recomputes one node from its children (whose statistics are current).
    fn update(&mut self, dom: &Dom, n: NodeId) {
        let node = &dom.nodes[n];
        let mut m = Measure::default();
        let mut block_children = 0;
        match &node.data {
            Data::Text(_) => {
                let (c, k) = self.text.get(n).copied().unwrap_or((0, 0));
                m.chars = c as usize;
                m.commas = k as usize;
            }
            Data::Element(_) | Data::Document => {
                for &c in &node.children {
                    let cm = self.m[c];
                    m.chars += cm.chars;
                    m.commas += cm.commas;
                    m.link_tenths += cm.link_tenths;
                    block_children += u32::from(self.is_block_child(dom, c));
                }
            }
            Data::Other => {}
        }
        self.m[n] = m;
        self.block_children[n] = block_children;
        self.derive(
            dom,
            n,
            node.children
                .iter()
                .map(|&c| self.prose_contribution(dom, c))
                .sum(),
        );
    }

    /// Sets what follows from a node's own measure: the link weight of an `<a>` and the prose
    /// of a paragraph (`children_prose` is what the children contribute otherwise).
    fn derive(&mut self, dom: &Dom, n: NodeId, children_prose: usize) {
        let tag = dom.tag(n);
        if tag == "a" && dom.is_element(n) {
            // In-page anchors (footnotes, tables of contents) count less than real links.
            let href = dom.attr(n, "href").unwrap_or("");
            let tenths = if href.trim_start().starts_with('#') {
                3
            } else {
                10
            };
            self.m[n].link_tenths = self.m[n].chars * tenths;
        }
        let m = self.m[n];
        self.prose[n] = match tag {
            "p" | "pre" => {
                if m.chars >= 40 && link_density(&m) < 0.3 {
                    m.chars
                } else {
                    0
                }
            }
            _ => children_prose,
        };
    }

    /// Whether a child makes its parent hold a block: it is a block element or contains one.
    fn is_block_child(&self, dom: &Dom, c: NodeId) -> bool {
        self.block_children[c] > 0 || is_block_tag(dom.tag(c))
    }

    /// Paragraph characters a child adds to its parent: paragraphs inside list items and
    /// figures (galleries, captions, teasers) do not count.
    fn prose_contribution(&self, dom: &Dom, c: NodeId) -> usize {
        if matches!(dom.tag(c), "li" | "figure" | "figcaption") {
            0
        } else {
            self.prose[c]
        }
    }

    fn measure(&self, id: NodeId) -> Measure {
        self.m[id]
    }

    /// Characters of paragraph text (`<p>`/`<pre>` with low link density) in a subtree.
    fn prose(&self, id: NodeId) -> usize {
        self.prose[id]
    }

    fn has_block_child(&self, id: NodeId) -> bool {
        self.block_children[id] > 0
    }

    /// Detaches `id` and subtracts what it contributed from its former ancestors, stopping
    /// where nothing changes: O(depth), whatever the number of siblings (thousands of share
    /// buttons removed one by one must not make extraction quadratic).
    fn detach(&mut self, dom: &mut Dom, id: NodeId) {
        let mut cur = dom.parent(id);
        // What the child on the path lost: measure, prose contribution (which can also grow:
        // a paragraph whose link is removed may become prose), block-ness.
        let mut lost = (
            self.m[id],
            self.prose_contribution(dom, id) as isize,
            u32::from(self.is_block_child(dom, id)),
        );
        dom.detach(id);
        while let Some(a) = cur {
            let before = (
                self.m[a],
                self.prose_contribution(dom, a),
                self.is_block_child(dom, a),
            );
            let m = &mut self.m[a];
            debug_assert!(
                m.chars >= lost.0.chars && m.commas >= lost.0.commas,
                "stale stats"
            );
            m.chars = m.chars.saturating_sub(lost.0.chars);
            m.commas = m.commas.saturating_sub(lost.0.commas);
            // (An `<a>` recomputes its weight from its characters in `derive`.)
            m.link_tenths = m.link_tenths.saturating_sub(lost.0.link_tenths);
            self.block_children[a] = self.block_children[a].saturating_sub(lost.2);
            // (A paragraph derives its prose from its characters, not from its children.)
            let children_prose = (self.prose[a] as isize - lost.1).max(0) as usize;
            self.derive(dom, a, children_prose);
            let after = (
                self.m[a],
                self.prose_contribution(dom, a),
                self.is_block_child(dom, a),
            );
            lost = (
                Measure {
                    chars: before.0.chars - after.0.chars,
                    link_tenths: before.0.link_tenths.saturating_sub(after.0.link_tenths),
                    commas: before.0.commas - after.0.commas,
                },
                before.1 as isize - after.1 as isize,
                u32::from(before.2 && !after.2),
            );
            if lost.0.chars == 0
                && lost.0.link_tenths == 0
                && lost.0.commas == 0
                && lost.1 == 0
                && lost.2 == 0
            {
                break;
            }
            cur = dom.parent(a);
        }
    }
}

fn link_density(m: &Measure) -> f64 {
    if m.chars == 0 {
        0.0
    } else {
        (m.link_tenths as f64 / (10 * m.chars) as f64).min(1.0)
    }
}

/// [`prose_chars`] skipping subtrees whose class/id weigh negative (comments, sidebars...).
fn prose_chars_weighted(dom: &Dom, st: &Stats, id: NodeId, flags: Flags) -> usize {
    if !flags.weight_classes {
        return st.prose(id);
    }
    let mut total = 0;
    let mut stack = vec![id];
    while let Some(d) = stack.pop() {
        if d != id && (class_weight(dom, d) < 0.0 || matches!(dom.tag(d), "aside" | "footer")) {
            continue;
        }
        if matches!(dom.tag(d), "p" | "pre") {
            total += st.prose(d);
            continue;
        }
        if d != id && matches!(dom.tag(d), "li" | "figure" | "figcaption") {
            continue;
        }
        stack.extend(dom.element_children(d));
    }
    total
}

pub(crate) fn is_glyph_image(dom: &Dom, img: NodeId) -> bool {
    let c = dom.attr(img, "class").unwrap_or("").to_lowercase();
    let alt = dom.attr(img, "alt").unwrap_or("");
    if GLYPH_CLASS_SUB.found_in(&c) || alt.starts_with("{\\displaystyle") {
        return true;
    }
    let small = |a: &str| {
        dom.attr(img, a)
            .and_then(|v| v.trim().trim_end_matches("px").parse::<u32>().ok())
            .is_some_and(|v| v <= 32)
    };
    small("width") || small("height")
}

// ---------------------------------------------------------------------------
// Entry point

/// Finds and cleans the main content of `dom` (modified in place: the result is a new
/// container node holding the content). `title` is the chosen article title (used to drop
/// a duplicate heading).
pub(crate) fn extract(dom: &mut Dom, title: Option<&str>) -> Option<Content> {
    let passes = [
        Flags {
            strip_unlikely: true,
            weight_classes: true,
            clean_conditionally: true,
        },
        Flags {
            strip_unlikely: false,
            weight_classes: true,
            clean_conditionally: true,
        },
        Flags {
            strip_unlikely: false,
            weight_classes: false,
            clean_conditionally: true,
        },
        Flags {
            strip_unlikely: false,
            weight_classes: false,
            clean_conditionally: false,
        },
    ];
    let mut st = Stats::new(dom);
    // Passes only relink nodes (and append containers): a snapshot of the links is enough
    // to start the next pass from the original tree.
    let original = dom.snapshot();
    let mut best: Option<(usize, Content, crate::dom::Snapshot)> = None;
    for (i, flags) in passes.into_iter().enumerate() {
        if i > 0 {
            dom.restore(&original);
        }
        let Some((root, byline)) = grab(dom, &mut st, flags, title) else {
            continue;
        };
        let len = st.measure(root).chars;
        let content = Content { root, byline };
        if len >= 400 {
            return Some(content);
        }
        if best.as_ref().is_none_or(|(l, _, _)| len > *l) {
            best = Some((len, content, dom.snapshot()));
        }
    }
    let (_, content, snap) = best?;
    dom.restore(&snap);
    Some(content)
}

fn grab(
    dom: &mut Dom,
    st: &mut Stats,
    flags: Flags,
    title: Option<&str>,
) -> Option<(NodeId, Option<String>)> {
    let body = dom.body()?;
    // The whole document, so that every ancestor a removal updates has current statistics.
    st.compute(dom, crate::dom::DOCUMENT);

    // 1. Remove unlikely candidates (but never one holding most of the page's prose).
    if flags.strip_unlikely {
        let total_prose = st.prose(body).max(1);
        let mut remove = Vec::new();
        let mut stack = vec![body];
        while let Some(n) = stack.pop() {
            for c in dom.element_children(n).collect::<Vec<_>>() {
                let unlikely = match is_unlikely(dom, c) {
                    Unlikely::No => false,
                    Unlikely::Strong => st.prose(c) * 10 < total_prose * 4,
                    Unlikely::Weak => {
                        let p = st.prose(c);
                        p * 10 < total_prose * 4 && p < 500
                    }
                };
                if unlikely {
                    crate::trace!("unlikely <{}> {:?}", dom.tag(c), class_id(dom, c));
                    remove.push(c);
                } else {
                    stack.push(c);
                }
            }
        }
        for r in remove {
            st.detach(dom, r);
        }
    }

    // 2. Score paragraph-like units.
    let mut scores: HashMap<NodeId, f64> = HashMap::new();
    let order = dom.descendants(body);
    for &n in &order {
        let Some(e) = dom.element(n) else { continue };
        let tag = &*e.tag;
        if matches!(tag, "p" | "pre")
            || (is_container_like(tag) && !st.has_block_child(n) && n != body)
        {
            if tag != "p"
                && tag != "pre"
                && dom.ancestors(n).any(|a| matches!(dom.tag(a), "p" | "pre"))
            {
                continue;
            }
            let m = st.measure(n);
            score_unit(dom, dom.parent(n), &m, flags, &mut scores);
        } else if is_container_like(tag) || tag == "body" {
            // Runs of inline content directly inside a mixed block count as paragraphs of it.
            let kids = dom.children(n).to_vec();
            let mut run = Measure::default();
            for (i, &c) in kids.iter().enumerate() {
                let block =
                    is_block_tag(dom.tag(c)) || (dom.is_element(c) && st.has_block_child(c));
                if !block {
                    let m = st.measure(c);
                    run.chars += m.chars;
                    run.commas += m.commas;
                    run.link_tenths += m.link_tenths;
                }
                if block || i + 1 == kids.len() {
                    if run.chars > 0 {
                        score_unit(dom, Some(n), &run, flags, &mut scores);
                    }
                    run = Measure::default();
                }
            }
        }
    }

    // 3. Final candidate scores: scaled by link density.
    let mut cands: Vec<(NodeId, f64)> = scores
        .iter()
        .filter(|(n, _)| dom.nodes[**n].parent.is_some() || **n == body)
        .map(|(&n, &s)| (n, s * (1.0 - link_density(&st.measure(n)))))
        .collect();
    cands.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let final_score: HashMap<NodeId, f64> = cands.iter().copied().collect();

    let mut top = match cands.first() {
        Some(&(n, _)) if n != body && dom.tag(n) != "html" => n,
        _ => {
            // No usable candidate: take the whole body.
            let root = new_container(dom, st, dom.children(body).to_vec());
            let by = clean(dom, st, root, flags, title, &final_score);
            return Some((root, by));
        }
    };
    let top_score = cands[0].1;

    // 4. Widen to a common ancestor of several near-best candidates.
    let alternatives: Vec<NodeId> = cands
        .iter()
        .skip(1)
        .take(4)
        .filter(|(_, s)| *s >= top_score * 0.75)
        .map(|(n, _)| *n)
        .collect();
    if alternatives.len() >= 3 {
        let mut p = dom.parent(top);
        while let Some(a) = p {
            if a == body || dom.tag(a) == "html" {
                break;
            }
            let shared = alternatives
                .iter()
                .filter(|&&alt| dom.is_ancestor(a, alt))
                .count();
            if shared >= 3 {
                top = a;
                break;
            }
            p = dom.parent(a);
        }
    }

    crate::trace!("after step 4: <{}> {:?}", dom.tag(top), class_id(dom, top));
    // 5. Climb while the parent is clearly better (its score grew from children).
    {
        let mut last = final_score.get(&top).copied().unwrap_or(0.0);
        let threshold = last / 3.0;
        let mut p = dom.parent(top);
        while let Some(a) = p {
            if a == body || dom.tag(a) == "html" {
                break;
            }
            let Some(&s) = final_score.get(&a) else {
                p = dom.parent(a);
                continue;
            };
            if s < threshold {
                break;
            }
            if s > last {
                top = a;
                break;
            }
            last = s;
            p = dom.parent(a);
        }
    }

    crate::trace!("after step 5: <{}> {:?}", dom.tag(top), class_id(dom, top));
    // 5b. Articles split into several blocks (around figures, ads, "read more" folds) are
    // cousins rather than siblings: widen to a near ancestor holding much more prose.
    {
        let top_prose = prose_chars_weighted(dom, st, top, flags);
        let mut p = dom.parent(top);
        let mut steps = 0;
        while let Some(a) = p {
            if a == body || dom.tag(a) == "html" || steps >= 3 || top_prose == 0 {
                break;
            }
            let ap = prose_chars_weighted(dom, st, a, flags);
            if ap * 10 >= top_prose * 14 && link_density(&st.measure(a)) < 0.3 {
                crate::trace!(
                    "widen to <{}> {:?}: prose {} -> {}",
                    dom.tag(a),
                    class_id(dom, a),
                    top_prose,
                    ap
                );
                top = a;
                break;
            }
            // Only branching levels count: single-child wrappers are free.
            if dom.element_children(a).nth(1).is_some() {
                steps += 1;
            }
            p = dom.parent(a);
        }
    }

    // 6. A lone child adds nothing: use the parent.
    while let Some(p) = dom.parent(top) {
        if p == body || dom.tag(p) == "html" || dom.element_children(p).count() != 1 {
            break;
        }
        top = p;
    }

    // 7. Join related siblings.
    let top_score = final_score.get(&top).copied().unwrap_or(top_score);
    crate::trace!(
        "pass {:?}: top <{}> {:?} score {:.1}; first cands {:?}",
        flags,
        dom.tag(top),
        class_id(dom, top),
        top_score,
        cands
            .iter()
            .take(5)
            .map(|(n, s)| format!("<{}> {:?} {:.1}", dom.tag(*n), class_id(dom, *n), s))
            .collect::<Vec<_>>()
    );
    let threshold = (top_score * 0.2).max(10.0);
    let top_class = dom.attr(top, "class").unwrap_or("").to_string();
    let mut picked = Vec::new();
    let parent = dom.parent(top).unwrap_or(body);
    for s in dom.children(parent).to_vec() {
        if s == top {
            picked.push(s);
            continue;
        }
        if !dom.is_element(s) {
            continue;
        }
        let mut bonus = 0.0;
        if !top_class.is_empty() && dom.attr(s, "class") == Some(top_class.as_str()) {
            bonus += top_score * 0.2;
        }
        if let Some(&sc) = final_score.get(&s)
            && sc + bonus >= threshold
        {
            picked.push(s);
            continue;
        }
        let tag = dom.tag(s);
        if tag == "p" || (is_container_like(tag) && !st.has_block_child(s)) {
            let m = st.measure(s);
            let ld = link_density(&m);
            let text = dom.text_content(s);
            let long_prose = m.chars > 80 && ld < 0.25;
            let short_sentence = m.chars > 0 && m.chars <= 80 && ld == 0.0 && ends_sentence(&text);
            if long_prose || short_sentence {
                picked.push(s);
            }
        }
    }
    let root = new_container(dom, st, picked);
    let by = clean(dom, st, root, flags, title, &final_score);
    Some((root, by))
}

fn ends_sentence(t: &str) -> bool {
    let t = t.trim_end();
    t.ends_with('.')
        || t.ends_with('!')
        || t.ends_with('?')
        || t.ends_with('。')
        || t.ends_with('"')
        || t.ends_with('”')
}

fn is_container_like(tag: &str) -> bool {
    matches!(
        tag,
        "div"
            | "section"
            | "article"
            | "main"
            | "td"
            | "li"
            | "blockquote"
            | "center"
            | "dd"
            | "font"
            | "span"
    )
}

fn score_unit(
    dom: &Dom,
    first: Option<NodeId>,
    m: &Measure,
    flags: Flags,
    scores: &mut HashMap<NodeId, f64>,
) {
    if m.chars < 25 {
        return;
    }
    let ld = link_density(m);
    let mut s = 1.0 + m.commas as f64 + (m.chars as f64 / 100.0).floor().min(3.0);
    s *= 1.0 - ld;
    if s <= 0.0 {
        return;
    }
    let mut level = 0usize;
    let mut cur = first;
    while let Some(a) = cur {
        if level >= 5 || !dom.is_element(a) {
            break;
        }
        let divider = match level {
            0 => 1.0,
            1 => 2.0,
            l => l as f64 * 3.0,
        };
        let entry = scores.entry(a).or_insert_with(|| init_score(dom, a, flags));
        *entry += s / divider;
        level += 1;
        cur = dom.parent(a);
    }
}

fn init_score(dom: &Dom, id: NodeId, flags: Flags) -> f64 {
    let base = match dom.tag(id) {
        "div" | "article" | "section" | "main" => 5.0,
        "pre" | "td" | "blockquote" => 3.0,
        "address" | "ol" | "ul" | "dl" | "dd" | "dt" | "li" | "form" => -3.0,
        "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "th" => -5.0,
        _ => 0.0,
    };
    base + if flags.weight_classes {
        class_weight(dom, id)
    } else {
        0.0
    }
}

#[derive(PartialEq, Eq)]
enum Unlikely {
    No,
    Weak,
    Strong,
}

fn is_unlikely(dom: &Dom, id: NodeId) -> Unlikely {
    let tag = dom.tag(id);
    if matches!(tag, "body" | "a" | "article" | "main" | "html") || is_math(dom, id) {
        return Unlikely::No;
    }
    if dom
        .attr(id, "itemprop")
        .is_some_and(|p| p.contains("articleBody"))
    {
        return Unlikely::No;
    }
    if matches!(tag, "aside" | "footer") {
        return Unlikely::Strong;
    }
    if let Some(role) = dom.attr(id, "role")
        && UNLIKELY_ROLES.contains(&role.trim().to_lowercase().as_str())
    {
        return Unlikely::Strong;
    }
    let ci = class_id(dom, id);
    if ci.trim().is_empty() || MAYBE_SUB.found_in(&ci) {
        return Unlikely::No;
    }
    let strength = if UNLIKELY_SUB.found_in(&ci) || has_token(&ci, UNLIKELY_TOK) {
        Unlikely::Strong
    } else if UNLIKELY_WEAK_SUB.found_in(&ci) {
        Unlikely::Weak
    } else {
        return Unlikely::No;
    };
    // Never inside tables, code or running text.
    if dom
        .ancestors(id)
        .any(|a| matches!(dom.tag(a), "table" | "pre" | "code" | "p"))
    {
        return Unlikely::No;
    }
    strength
}

/// Formula markup (MathML, MathJax/KaTeX containers, formula images): content whatever
/// its class names say.
fn is_math(dom: &Dom, id: NodeId) -> bool {
    let tag = dom.tag(id);
    if tag == "math" || tag.starts_with("mjx-") {
        return true;
    }
    let c = dom.attr(id, "class").unwrap_or("");
    c.contains("MathJax") || c.contains("katex") || c.contains("mwe-math")
}

fn new_container(dom: &mut Dom, st: &mut Stats, children: Vec<NodeId>) -> NodeId {
    let id = dom.nodes.len();
    for &c in &children {
        st.detach(dom, c);
        dom.nodes[c].parent = Some(id);
    }
    dom.nodes.push(crate::dom::Node {
        parent: None,
        children,
        data: Data::Element(Element {
            tag: "div".into(),
            ns: html5ever::ns!(html),
            attrs: Vec::new(),
            template: None,
        }),
    });
    st.grow(dom.nodes.len());
    st.update(dom, id);
    id
}

// ---------------------------------------------------------------------------
// Cleaning the selected content

fn clean(
    dom: &mut Dom,
    st: &mut Stats,
    root: NodeId,
    flags: Flags,
    title: Option<&str>,
    scores: &HashMap<NodeId, f64>,
) -> Option<String> {
    let total = st.measure(root).chars.max(1);
    let mut byline = None;

    // Structural boilerplate and class/id boilerplate (guarded: never most of the content).
    let all = dom.descendants(root);
    let mut remove = Vec::new();
    let mut content_classes = HashMap::new();
    for &n in all.iter().skip(1) {
        let Some(e) = dom.element(n) else { continue };
        let tag = &*e.tag;
        // `all` is in document order and removed subtrees are disjoint, so a node inside a
        // removed subtree is inside the last one removed.
        if remove.last().is_some_and(|&r| dom.is_ancestor(r, n)) {
            continue;
        }
        let phrasing = !is_block_tag(tag) && !st.has_block_child(n);
        let drop = match tag {
            // Skip links ("Jump to navigation") are the only inline boilerplate.
            "a" if phrasing => {
                // (footnote references may carry the same classes: they are short numbers).
                dom.attr(n, "href").is_some_and(|h| h.starts_with('#'))
                    && SKIP_LINK_SUB.found_in(&class_id(dom, n))
                    && dom
                        .text_content(n)
                        .split_whitespace()
                        .filter(|w| w.chars().any(char::is_alphabetic))
                        .count()
                        >= 2
            }
            _ if phrasing => false,
            "aside" | "footer" | "form" | "fieldset" | "label" | "legend" => {
                tag != "form" || st.measure(n).chars * 2 < total
            }
            "header" => {
                let m = st.measure(n);
                m.chars * 2 < total
                    && (link_density(&m) > 0.3 || m.chars < 200 || dom.first_tag(n, "p").is_none())
            }
            _ => {
                let ci = class_id(dom, n);
                let hard = !ci.is_empty()
                    && (HARD_BOILER_SUB.found_in(&ci) || has_token(&ci, HARD_BOILER_TOK));
                let soft = !ci.is_empty()
                    && (BOILER_SUB.found_in(&ci) || has_token(&ci, BOILER_TOK))
                    && !BODY_CLASS_SUB.found_in(&ci)
                    && dom
                        .attr(n, "itemprop")
                        .is_none_or(|p| !p.contains("articleBody"))
                    && !class_marks_prose_siblings(dom, st, n, &mut content_classes);
                let role = dom.attr(n, "role").map(|r| r.trim().to_lowercase());
                let bad_role = role.as_deref().is_some_and(|r| UNLIKELY_ROLES.contains(&r));
                (hard || soft || bad_role) && {
                    let m = st.measure(n);
                    // Class names lie (ids made from headings, "read-more" wrappers):
                    // prose-rich blocks stay unless they are comment threads.
                    (m.chars * 2 < total || m.chars < 500) && (hard || st.prose(n) < 400)
                }
            }
        };
        if drop {
            remove.push(n);
            continue;
        }
        // Byline: short element marked as author/byline.
        let ci = class_id(dom, n);
        let is_byline_marker = dom.attr(n, "rel") == Some("author")
            || dom
                .attr(n, "itemprop")
                .is_some_and(|p| p.contains("author"))
            || BYLINE_SUB.found_in(&ci)
            || has_token(&ci, &["author", "authors"]);
        if is_byline_marker && (!matches!(tag, "a" | "span") || dom.parent(n) == Some(root)) {
            let t = dom.text_content(n);
            if !t.is_empty()
                && t.chars().count() < 100
                && !has_block_desc_of(dom, n, &["p", "h1", "h2", "h3", "pre", "table", "ul", "ol"])
            {
                if byline.is_none() {
                    byline = Some(crate::meta::clean_byline(&t));
                }
                remove.push(n);
            }
        }
    }
    #[cfg(feature = "trace")]
    for &r in &remove {
        crate::trace!(
            "boilerplate remove <{}> {:?}: {:.80}",
            dom.tag(r),
            class_id(dom, r),
            dom.text_content(r)
        );
    }
    for r in remove {
        st.detach(dom, r);
    }

    // Headings: negative class weight, or duplicating the title.
    let mut title_removed = false;
    for h in dom.find_tags(root, &["h1", "h2", "h3", "h4", "h5", "h6"]) {
        if flags.weight_classes && class_weight(dom, h) < 0.0 {
            st.detach(dom, h);
            continue;
        }
        if !title_removed
            && let Some(t) = title
            && matches!(dom.tag(h), "h1" | "h2")
            && similar_title(&dom.text_content(h), t)
        {
            st.detach(dom, h);
            title_removed = true;
        }
    }

    // Conditional cleaning of blocks that look like link lists, galleries or widgets.
    if flags.clean_conditionally {
        for tag in ["table", "ul", "ol", "div", "section", "header", "figure"] {
            let nodes: Vec<NodeId> = dom.find_tags(root, &[tag]);
            for &n in nodes.iter().rev() {
                if dom.nodes[n].parent.is_none() || !dom.is_ancestor(root, n) {
                    continue;
                }
                if should_remove_conditionally(dom, st, n, flags, scores) {
                    crate::trace!(
                        "conditional remove <{}> {:?}: {:.80}",
                        tag,
                        class_id(dom, n),
                        dom.text_content(n)
                    );
                    st.detach(dom, n);
                }
            }
        }
    }

    // Empty blocks.
    for n in dom.descendants(root).into_iter().rev() {
        if n == root || dom.nodes[n].parent.is_none() {
            continue;
        }
        let tag = dom.tag(n);
        if matches!(
            tag,
            "p" | "div"
                | "section"
                | "span"
                | "li"
                | "ul"
                | "ol"
                | "h1"
                | "h2"
                | "h3"
                | "h4"
                | "h5"
                | "h6"
                | "blockquote"
                | "figure"
                | "strong"
                | "em"
                | "b"
                | "i"
                | "a"
        ) && st.measure(n).chars == 0
            && !has_block_desc_of(dom, n, &["img", "picture", "br", "hr", "table", "pre"])
        {
            st.detach(dom, n);
        }
    }
    drop_trailing_notices(dom, st, root);
    byline
}

/// Removes the copyright and rights notices that close the content ("© 2023 Example Media.
/// All rights reserved."): they belong to the site, not the article. Only short blocks at the
/// very end go, so an article that discusses copyright keeps its paragraphs.
fn drop_trailing_notices(dom: &mut Dom, st: &mut Stats, root: NodeId) {
    for _ in 0..3 {
        let last = dom.descendants(root).into_iter().rev().find(|&n| {
            n != root
                && dom.is_element(n)
                && is_block_tag(dom.tag(n))
                && !st.has_block_child(n)
                && st.measure(n).chars > 0
        });
        match last {
            Some(n) if is_rights_notice(&dom.text_content(n)) => st.detach(dom, n),
            _ => return,
        }
    }
}

fn is_rights_notice(text: &str) -> bool {
    let t = text.trim().to_lowercase();
    t.chars().count() < 300
        && (t.starts_with('©')
            || t.starts_with("copyright")
            || t.starts_with("(c)")
            || t.contains("all rights reserved"))
}

fn has_block_desc_of(dom: &Dom, id: NodeId, tags: &[&str]) -> bool {
    dom.descendants(id)
        .into_iter()
        .skip(1)
        .any(|d| tags.contains(&dom.tag(d)))
}

fn similar_title(heading: &str, title: &str) -> bool {
    let n = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let (h, t) = (n(heading), n(title));
    if h.is_empty() || t.is_empty() {
        return false;
    }
    h == t
        || (h.len() > 15
            && (t.contains(&h) || h.contains(&t))
            && h.len().min(t.len()) * 10 >= h.len().max(t.len()) * 8)
}

fn count_tags(dom: &Dom, id: NodeId, tag: &str) -> usize {
    dom.descendants(id)
        .into_iter()
        .skip(1)
        .filter(|&d| dom.tag(d) == tag)
        .count()
}

fn is_data_table(dom: &Dom, t: NodeId) -> bool {
    if dom.attr(t, "role").is_some_and(|r| r == "presentation") {
        return false;
    }
    if dom.attr(t, "datatable").is_some_and(|v| v == "0") {
        return false;
    }
    if dom.attr(t, "summary").is_some() {
        return true;
    }
    let desc = dom.descendants(t);
    if desc.iter().skip(1).any(|&d| dom.tag(d) == "table") {
        return false;
    }
    if desc.iter().any(|&d| {
        matches!(
            dom.tag(d),
            "caption" | "thead" | "tfoot" | "colgroup" | "col" | "th"
        )
    }) {
        return true;
    }
    let rows = desc.iter().filter(|&&d| dom.tag(d) == "tr").count();
    let cols = desc
        .iter()
        .filter(|&&d| dom.tag(d) == "tr")
        .map(|&r| {
            dom.element_children(r)
                .filter(|&c| matches!(dom.tag(c), "td" | "th"))
                .count()
        })
        .max()
        .unwrap_or(0);
    if rows == 1 || cols == 1 {
        return false;
    }
    rows >= 10 || cols > 4 || rows * cols > 10
}

/// Tag counts of a subtree (root excluded), gathered in one walk.
#[derive(Default)]
struct Counts {
    p: usize,
    li: usize,
    pre: usize,
    img: usize,
    content_img: usize,
    inputs: usize,
    /// Text characters of all lists (nested lists count again).
    list_chars: usize,
    /// Text characters of all headings.
    heading_chars: usize,
    /// Formula markup or formula images.
    math: bool,
}

fn counts(dom: &Dom, st: &Stats, id: NodeId) -> Counts {
    let mut c = Counts::default();
    let mut stack: Vec<NodeId> = dom.children(id).to_vec();
    while let Some(d) = stack.pop() {
        let Some(e) = dom.element(d) else { continue };
        match &*e.tag {
            "p" => c.p += 1,
            "li" => c.li += 1,
            "pre" => c.pre += 1,
            "img" => {
                c.img += 1;
                c.math |= dom
                    .attr(d, "alt")
                    .is_some_and(|a| a.trim_start().starts_with("{\\displaystyle"));
                if !is_glyph_image(dom, d) {
                    c.content_img += 1;
                }
            }
            "input" | "select" | "textarea" => c.inputs += 1,
            "ul" | "ol" => c.list_chars += st.measure(d).chars,
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => c.heading_chars += st.measure(d).chars,
            _ => c.math |= is_math(dom, d),
        }
        stack.extend_from_slice(dom.children(d));
    }
    c
}

fn should_remove_conditionally(
    dom: &Dom,
    st: &Stats,
    n: NodeId,
    flags: Flags,
    scores: &HashMap<NodeId, f64>,
) -> bool {
    let tag = dom.tag(n);
    // Code and data tables are content.
    if dom
        .ancestors(n)
        .any(|a| matches!(dom.tag(a), "pre" | "code"))
    {
        return false;
    }
    if tag == "table" && is_data_table(dom, n) {
        return false;
    }
    if dom
        .ancestors(n)
        .any(|a| dom.tag(a) == "table" && is_data_table(dom, a))
    {
        return false;
    }
    // Real prose is never a widget, nor is a formula.
    if st.prose(n) >= 1000 {
        return false;
    }
    let k = counts(dom, st, n);
    if k.math || is_math(dom, n) {
        return false;
    }
    let weight = if flags.weight_classes {
        class_weight(dom, n)
    } else {
        0.0
    };
    let score = scores.get(&n).copied().unwrap_or(0.0);
    if weight < 0.0 && weight + score < 0.0 {
        return true;
    }
    let m = st.measure(n);
    if m.commas >= 10 {
        return false;
    }
    let is_list = matches!(tag, "ul" | "ol" | "dl") || {
        // A div made of a list is a list.
        m.chars > 0 && k.list_chars as f64 / m.chars as f64 > 0.9
    };
    let p = k.p as f64;
    let img = k.content_img as f64;
    let li = k.li as f64 - 100.0;
    let inputs = k.inputs as f64;
    let heading_density = if m.chars == 0 {
        0.0
    } else {
        k.heading_chars as f64 / m.chars as f64
    };
    let ld = link_density(&m);
    let in_figure = tag == "figure" || dom.ancestors(n).any(|a| dom.tag(a) == "figure");
    let has_pre = k.pre > 0 || tag == "pre";
    if has_pre && ld < 0.5 {
        return false;
    }

    // Image galleries made of lists keep their images.
    if is_list {
        let items: Vec<NodeId> = dom.element_children(n).collect();
        if !items.is_empty()
            && items
                .iter()
                .all(|&i| count_tags(dom, i, "img") == 1 && st.measure(i).chars < 200)
        {
            return false;
        }
    }

    // A block of phrasing content without links is a paragraph, however short
    // ("Gotcha." in dialogue), when it reads as a sentence.
    let sentence = m.link_tenths == 0
        && m.chars > 0
        && k.li == 0
        && k.img == 0
        && k.heading_chars == 0
        && ends_sentence(&dom.text_content(n));

    let rules = [
        img > 1.0 && p / img < 0.5 && !in_figure,
        !is_list && li > p,
        inputs > (p / 3.0).floor(),
        !is_list
            && heading_density < 0.9
            && m.chars < 25
            && (img == 0.0 || img > 2.0)
            && !in_figure
            && !sentence,
        !is_list && weight < 25.0 && ld > 0.2 && m.chars < 2000,
        weight >= 25.0 && ld > 0.5,
    ];
    let hit = rules.iter().position(|&r| r);
    if let Some(_i) = hit {
        crate::trace!(
            "  rule {_i}: img {img} p {p} ld {ld:.2} weight {weight} chars {}",
            m.chars
        );
    }
    hit.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_keep_statistics_equal_to_a_fresh_count() {
        // A paragraph that is mostly link becomes prose when its link goes (prose grows on a
        // removal); a list loses its block child; nested containers pass changes upward.
        let html = format!(
            "<html><body><div id=\"outer\"><section>\
             <p id=\"linky\">Short words here, <a id=\"big\" href=\"/x\">{}</a> and more \
             plain words after it, enough of them to count.</p>\
             <ul><li id=\"item\"><p>{}</p></li></ul>\
             <p>Tail paragraph, with commas, that stays where it is, all along.</p>\
             <a id=\"anchor\" href=\"#top\">back to top of the page</a>\
             </section></div></body></html>",
            "a long link text ".repeat(8),
            "list paragraph text ".repeat(5)
        );
        let mut dom = Dom::parse(&html);
        let mut st = Stats::new(&dom);
        st.compute(&dom, crate::dom::DOCUMENT);
        let by_id = |dom: &Dom, id: &str| {
            dom.descendants(crate::dom::DOCUMENT)
                .into_iter()
                .find(|&n| dom.attr(n, "id") == Some(id))
                .unwrap()
        };
        let linky = by_id(&dom, "linky");
        assert_eq!(st.prose(linky), 0, "mostly link: not prose yet");
        for id in ["big", "item", "anchor"] {
            let n = by_id(&dom, id);
            st.detach(&mut dom, n);
            let mut fresh = Stats::new(&dom);
            fresh.compute(&dom, crate::dom::DOCUMENT);
            for n in dom.descendants(crate::dom::DOCUMENT) {
                assert_eq!(
                    st.m[n],
                    fresh.m[n],
                    "measure of {} after removing {id}",
                    dom.tag(n)
                );
                assert_eq!(
                    st.prose[n],
                    fresh.prose[n],
                    "prose of {} after {id}",
                    dom.tag(n)
                );
                assert_eq!(
                    st.block_children[n],
                    fresh.block_children[n],
                    "blocks of {} after {id}",
                    dom.tag(n)
                );
            }
        }
        assert!(
            st.prose(linky) > 0,
            "without its link the paragraph is prose"
        );
    }

    #[test]
    fn title_similarity() {
        assert!(similar_title("The Big Story", "The big story"));
        assert!(!similar_title(
            "Introduction",
            "The big story about everything"
        ));
    }

    #[test]
    fn token_match() {
        assert!(has_token("post ad-slot", &["ad"]));
        assert!(!has_token("header shadow", &["ad"]));
    }
}
