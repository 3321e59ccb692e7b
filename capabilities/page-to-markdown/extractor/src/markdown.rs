//! Rendering of a cleaned DOM subtree as CommonMark (+ GFM tables and strikethrough).

use url::Url;

use crate::dom::{Data, Dom, NodeId};
use crate::readable::is_block_tag;

/// Marks a hard line break (`<br>`) inside inline content until the paragraph is flushed.
const BR: char = '\u{E000}';

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Para,
    List,
    Other,
}

struct Block {
    kind: Kind,
    text: String,
}

pub(crate) struct Renderer<'a> {
    dom: &'a Dom,
    base: Option<Url>,
    keep_images: bool,
    keep_links: bool,
    /// Per node: does the subtree contain a block-level element?
    has_block: Vec<bool>,
}

impl<'a> Renderer<'a> {
    pub fn new(
        dom: &'a Dom,
        root: NodeId,
        base: Option<Url>,
        keep_images: bool,
        keep_links: bool,
    ) -> Self {
        let mut has_block = vec![false; dom.nodes.len()];
        // Post-order over the subtree.
        let order = dom.descendants(root);
        for &n in order.iter().rev() {
            let hb = dom
                .children(n)
                .iter()
                .any(|&c| has_block[c] || is_block_tag(dom.tag(c)));
            has_block[n] = hb;
        }
        Renderer {
            dom,
            base,
            keep_images,
            keep_links,
            has_block,
        }
    }

    /// Markdown of the subtree at `root`.
    pub fn render(&self, root: NodeId) -> String {
        let mut blocks = Vec::new();
        self.container(root, &mut blocks);
        join_blocks(&blocks)
    }

    fn is_block(&self, n: NodeId) -> bool {
        let tag = self.dom.tag(n);
        // An element holding block content (links included) renders as a block too.
        is_block_tag(tag) || (self.dom.is_element(n) && self.has_block[n])
    }

    /// Renders the children of `n`: inline runs become paragraphs, blocks are rendered.
    fn container(&self, n: NodeId, out: &mut Vec<Block>) {
        let mut inline = String::new();
        for &c in self.dom.children(n) {
            if self.is_block(c) {
                flush_para(&mut inline, out);
                self.block(c, out);
            } else {
                self.inline(c, &mut inline, false);
            }
        }
        flush_para(&mut inline, out);
    }

    fn block(&self, n: NodeId, out: &mut Vec<Block>) {
        let tag = self.dom.tag(n);
        match tag {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                let level = (tag.as_bytes()[1] - b'0') as usize;
                let mut s = String::new();
                for &c in self.dom.children(n) {
                    self.inline(c, &mut s, true);
                }
                let t = collapse_inline(&s.replace(BR, " "));
                let t = t.trim();
                if !t.is_empty() {
                    out.push(Block {
                        kind: Kind::Other,
                        text: format!("{} {}", "#".repeat(level), escape_line_start(t, true)),
                    });
                }
            }
            "ul" | "ol" | "menu" | "dir" => self.list(n, tag == "ol", out),
            "pre" | "listing" | "xmp" | "plaintext" => self.code_block(n, out),
            "blockquote" => {
                let mut inner = Vec::new();
                self.container(n, &mut inner);
                let body = join_blocks(&inner);
                if !body.is_empty() {
                    let quoted: Vec<String> = body
                        .lines()
                        .map(|l| {
                            if l.is_empty() {
                                ">".to_string()
                            } else {
                                format!("> {l}")
                            }
                        })
                        .collect();
                    out.push(Block {
                        kind: Kind::Other,
                        text: quoted.join("\n"),
                    });
                }
            }
            "table" => self.table(n, out),
            "hr" => {
                if out.last().is_some_and(|b| b.text != "---") {
                    out.push(Block {
                        kind: Kind::Other,
                        text: "---".into(),
                    });
                }
            }
            "dt" => {
                let mut s = String::new();
                for &c in self.dom.children(n) {
                    self.inline(c, &mut s, false);
                }
                let t = collapse_inline(&s.replace(BR, " "));
                let t = t.trim();
                if !t.is_empty() {
                    out.push(Block {
                        kind: Kind::Para,
                        text: format!("**{}**", escape_line_start(t, false)),
                    });
                }
            }
            _ => self.container(n, out),
        }
    }

    fn list(&self, n: NodeId, ordered: bool, out: &mut Vec<Block>) {
        let mut num: u64 = self
            .dom
            .attr(n, "start")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1);
        let mut items: Vec<String> = Vec::new();
        let mut loose = false;
        for &c in self.dom.children(n) {
            let mut blocks = Vec::new();
            if self.dom.tag(c) == "li" {
                self.container(c, &mut blocks);
            } else if self.dom.is_element(c) {
                if self.is_block(c) {
                    self.block(c, &mut blocks);
                } else {
                    let mut s = String::new();
                    self.inline(c, &mut s, false);
                    flush_para(&mut s, &mut blocks);
                }
            } else {
                continue;
            }
            if blocks.is_empty() {
                continue;
            }
            if blocks.iter().filter(|b| b.kind != Kind::List).count() > 1 {
                loose = true;
            }
            // A paragraph followed by a nested list stays tight.
            let mut body = String::new();
            for (i, b) in blocks.iter().enumerate() {
                if i > 0 {
                    body.push_str(
                        if b.kind == Kind::List && blocks[i - 1].kind == Kind::Para {
                            "\n"
                        } else {
                            "\n\n"
                        },
                    );
                }
                body.push_str(&b.text);
            }
            let marker = if ordered {
                format!("{num}. ")
            } else {
                "- ".to_string()
            };
            num += 1;
            let indent = " ".repeat(marker.len());
            let mut item = String::new();
            for (i, line) in body.lines().enumerate() {
                if i == 0 {
                    item.push_str(&marker);
                    item.push_str(line);
                } else {
                    item.push('\n');
                    if !line.is_empty() {
                        item.push_str(&indent);
                        item.push_str(line);
                    }
                }
            }
            items.push(item);
        }
        if !items.is_empty() {
            out.push(Block {
                kind: Kind::List,
                text: items.join(if loose { "\n\n" } else { "\n" }),
            });
        }
    }

    fn code_block(&self, n: NodeId, out: &mut Vec<Block>) {
        let mut raw = String::new();
        self.code_text(n, &mut raw);
        let text = raw
            .replace("\r\n", "\n")
            .replace('\r', "\n")
            .replace('\u{a0}', " ");
        let text = text.trim_start_matches('\n').trim_end();
        if text.trim().is_empty() {
            return;
        }
        let lang = self.code_language(n);
        let longest = longest_run(text, '`');
        let fence = "`".repeat(longest.max(2) + 1);
        out.push(Block {
            kind: Kind::Other,
            text: format!("{fence}{lang}\n{text}\n{fence}"),
        });
    }

    fn code_text(&self, n: NodeId, out: &mut String) {
        for &c in self.dom.children(n) {
            match &self.dom.nodes[c].data {
                Data::Text(t) => out.push_str(t),
                Data::Element(e) => match &*e.tag {
                    "br" => out.push('\n'),
                    _ => {
                        self.code_text(c, out);
                        // Line-per-element highlighters (div/li per line).
                        if matches!(&*e.tag, "div" | "li" | "p" | "tr") && !out.ends_with('\n') {
                            out.push('\n');
                        }
                    }
                },
                _ => {}
            }
        }
    }

    fn code_language(&self, n: NodeId) -> String {
        let mut classes = String::new();
        for id in std::iter::once(n)
            .chain(
                self.dom
                    .element_children(n)
                    .filter(|&c| self.dom.tag(c) == "code"),
            )
            .chain(self.dom.ancestors(n).take(2))
        {
            if let Some(c) = self.dom.attr(id, "class") {
                classes.push(' ');
                classes.push_str(c);
            }
            if let Some(l) = self
                .dom
                .attr(id, "data-lang")
                .or_else(|| self.dom.attr(id, "data-language"))
            {
                classes.push_str(" language-");
                classes.push_str(l);
            }
        }
        for tok in classes.split_whitespace() {
            let lower = tok.to_lowercase();
            for prefix in [
                "language-",
                "lang-",
                "highlight-source-",
                "highlight-",
                "brush:",
                "sourcecode-",
            ] {
                if let Some(l) = lower.strip_prefix(prefix) {
                    let l = l.trim_end_matches(';');
                    if !l.is_empty()
                        && l.len() <= 20
                        && l.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+#-_.".contains(c))
                        && l != "none"
                        && l != "plaintext"
                        && l != "text"
                    {
                        return l.to_string();
                    }
                }
            }
        }
        // Bare language names next to a highlighter class ("highlight python", "sourceCode rust").
        const LANGS: &[&str] = &[
            "bash",
            "c",
            "cpp",
            "csharp",
            "css",
            "diff",
            "go",
            "haskell",
            "html",
            "java",
            "javascript",
            "js",
            "json",
            "kotlin",
            "lua",
            "markdown",
            "perl",
            "php",
            "python",
            "py",
            "r",
            "ruby",
            "rust",
            "scala",
            "shell",
            "sh",
            "sql",
            "swift",
            "toml",
            "ts",
            "typescript",
            "xml",
            "yaml",
            "zsh",
            "console",
            "powershell",
            "dockerfile",
        ];
        let lower = classes.to_lowercase();
        let toks: Vec<&str> = lower.split_whitespace().collect();
        if toks.iter().any(|t| {
            matches!(
                *t,
                "highlight"
                    | "sourcecode"
                    | "hljs"
                    | "prettyprint"
                    | "code"
                    | "codehilite"
                    | "syntax"
            )
        }) && let Some(l) = toks.iter().find(|t| LANGS.contains(t))
        {
            return l.to_string();
        }
        String::new()
    }

    fn table(&self, n: NodeId, out: &mut Vec<Block>) {
        let rows = self.table_rows(n);
        let simple = !rows.is_empty()
            && rows
                .iter()
                .all(|r| r.iter().all(|&c| !self.cell_is_complex(c)))
            && rows.iter().map(|r| r.len()).max().unwrap_or(0) >= 1
            && !(rows.len() == 1 && rows[0].len() == 1);
        if !simple {
            // Layout table: render cell contents as blocks.
            for r in rows {
                for c in r {
                    self.container(c, out);
                }
            }
            return;
        }
        if let Some(cap) = self
            .dom
            .element_children(n)
            .find(|&c| self.dom.tag(c) == "caption")
        {
            let mut s = String::new();
            self.inline(cap, &mut s, false);
            flush_para(&mut s, out);
        }
        let mut grid: Vec<Vec<String>> = Vec::new();
        for r in &rows {
            let mut cells = Vec::new();
            for &c in r {
                let mut s = String::new();
                for &k in self.dom.children(c) {
                    self.inline_flat(k, &mut s);
                }
                let t = collapse_inline(&s.replace(BR, " "))
                    .trim()
                    .replace('|', "\\|");
                let span: usize = self
                    .dom
                    .attr(c, "colspan")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(1)
                    .clamp(1, 50);
                cells.push(t);
                for _ in 1..span {
                    cells.push(String::new());
                }
            }
            grid.push(cells);
        }
        grid.retain(|r| r.iter().any(|c| !c.is_empty()));
        if grid.is_empty() {
            return;
        }
        let cols = grid.iter().map(Vec::len).max().unwrap_or(1);
        let mut s = String::new();
        for (i, r) in grid.iter().enumerate() {
            s.push('|');
            for j in 0..cols {
                let c = r.get(j).map(String::as_str).unwrap_or("");
                s.push(' ');
                s.push_str(c);
                s.push_str(" |");
            }
            s.push('\n');
            if i == 0 {
                s.push('|');
                for _ in 0..cols {
                    s.push_str(" --- |");
                }
                s.push('\n');
            }
        }
        out.push(Block {
            kind: Kind::Other,
            text: s.trim_end().to_string(),
        });
    }

    /// Rows of a table (through thead/tbody/tfoot, not nested tables), each a list of cells.
    fn table_rows(&self, t: NodeId) -> Vec<Vec<NodeId>> {
        let mut rows = Vec::new();
        let mut stack: Vec<NodeId> = self.dom.element_children(t).collect();
        stack.reverse();
        while let Some(n) = stack.pop() {
            match self.dom.tag(n) {
                "tr" => rows.push(
                    self.dom
                        .element_children(n)
                        .filter(|&c| matches!(self.dom.tag(c), "td" | "th"))
                        .collect(),
                ),
                "thead" | "tbody" | "tfoot" => {
                    let mut kids: Vec<NodeId> = self.dom.element_children(n).collect();
                    kids.reverse();
                    stack.extend(kids);
                }
                _ => {}
            }
        }
        rows.retain(|r: &Vec<NodeId>| !r.is_empty());
        rows
    }

    fn cell_is_complex(&self, c: NodeId) -> bool {
        self.dom.descendants(c).into_iter().skip(1).any(|d| {
            matches!(
                self.dom.tag(d),
                "table" | "pre" | "blockquote" | "h1" | "h2" | "h3" | "ul" | "ol" | "dl"
            )
        }) || self
            .dom
            .descendants(c)
            .into_iter()
            .filter(|&d| self.dom.tag(d) == "p")
            .count()
            > 2
    }

    /// Inline rendering that flattens block children (table cells).
    fn inline_flat(&self, n: NodeId, out: &mut String) {
        if self.dom.is_element(n) && self.is_block(n) {
            out.push(' ');
            for &c in self.dom.children(n) {
                self.inline_flat(c, out);
            }
            out.push(' ');
        } else {
            self.inline(n, out, false);
        }
    }

    fn inline(&self, n: NodeId, out: &mut String, in_heading: bool) {
        match &self.dom.nodes[n].data {
            Data::Text(t) => escape_text_into(t, out),
            Data::Element(e) => {
                let tag = &*e.tag;
                match tag {
                    "br" => out.push(BR),
                    "img" => {
                        let alt_raw = self.dom.attr(n, "alt").unwrap_or("");
                        if let Some(tex) = alt_raw
                            .trim()
                            .strip_prefix("{\\displaystyle")
                            .and_then(|t| t.strip_suffix('}'))
                        {
                            // Formula fallback image: keep the TeX source.
                            out.push_str(&format!("${}$", crate::dom::normalize_ws(tex)));
                            return;
                        }
                        if crate::readable::is_glyph_image(self.dom, n) {
                            // Emoji and similar glyphs read as their alt text; icons vanish.
                            if alt_raw.chars().count() <= 4 {
                                escape_text_into(alt_raw, out);
                            }
                            return;
                        }
                        if self.keep_images
                            && let Some(src) = self.image_src(n)
                        {
                            let alt = self
                                .dom
                                .attr(n, "alt")
                                .or_else(|| self.dom.attr(n, "title"))
                                .unwrap_or("");
                            let alt = crate::dom::normalize_ws(alt)
                                .replace('[', "\\[")
                                .replace(']', "\\]");
                            out.push_str(&format!("![{alt}]({src})"));
                        }
                    }
                    "picture" => {
                        if let Some(img) = self.dom.first_tag(n, "img") {
                            self.inline(img, out, in_heading);
                        }
                    }
                    "a" => self.link(n, out, in_heading),
                    "strong" | "b" => self.wrap(n, out, "**", in_heading),
                    "em" | "i" => self.wrap(n, out, "*", in_heading),
                    "del" | "s" | "strike" => self.wrap(n, out, "~~", in_heading),
                    "code" | "kbd" | "samp" | "tt" => {
                        let t = crate::dom::normalize_ws(&self.dom.text_content_raw(n));
                        if !t.is_empty() {
                            let ticks = "`".repeat(longest_run(&t, '`') + 1);
                            let pad = if t.starts_with('`') || t.ends_with('`') {
                                " "
                            } else {
                                ""
                            };
                            out.push_str(&format!("{ticks}{pad}{t}{pad}{ticks}"));
                        }
                    }
                    "sup" | "sub" => {
                        let mut s = String::new();
                        self.children_inline(n, &mut s, in_heading);
                        if !s.trim().is_empty() {
                            // Keep footnote markers from gluing onto the previous word.
                            if tag == "sup"
                                && s.trim()
                                    .chars()
                                    .all(|c| c.is_ascii_digit() || "[]\\".contains(c))
                            {
                                out.push(' ');
                            }
                            out.push_str(&s);
                        }
                    }
                    "math" => {
                        let tex = self
                            .dom
                            .find_tags(n, &["annotation"])
                            .into_iter()
                            .find(|&a| {
                                self.dom
                                    .attr(a, "encoding")
                                    .is_some_and(|e| e.contains("tex"))
                            })
                            .map(|a| self.dom.text_content(a));
                        match tex {
                            Some(t) if !t.is_empty() => out.push_str(&format!("${t}$")),
                            _ => {
                                let t = self.dom.text_content(n);
                                escape_text_into(&t, out);
                            }
                        }
                    }
                    "script" | "style" | "noscript" | "template" => {}
                    _ => self.children_inline(n, out, in_heading),
                }
            }
            _ => {}
        }
    }

    fn children_inline(&self, n: NodeId, out: &mut String, in_heading: bool) {
        for &c in self.dom.children(n) {
            if self.dom.is_element(c) && self.is_block(c) {
                // Block inside inline context (rare after parsing): flatten.
                out.push(' ');
                self.inline_flat(c, out);
                out.push(' ');
            } else {
                self.inline(c, out, in_heading);
            }
        }
    }

    fn wrap(&self, n: NodeId, out: &mut String, mark: &str, in_heading: bool) {
        let mut s = String::new();
        self.children_inline(n, &mut s, in_heading);
        let (lead, core, trail) = split_ws(&s);
        if core.is_empty() {
            out.push_str(&s);
            return;
        }
        // Emphasis inside headings is noise; nested identical markers would break.
        if (in_heading && mark != "~~")
            || core.contains(BR)
            || core.starts_with(mark)
            || core.ends_with(mark.chars().next().unwrap_or('*'))
        {
            out.push_str(&s);
            return;
        }
        out.push_str(lead);
        out.push_str(mark);
        out.push_str(core);
        out.push_str(mark);
        out.push_str(trail);
    }

    fn link(&self, n: NodeId, out: &mut String, in_heading: bool) {
        let mut s = String::new();
        self.children_inline(n, &mut s, in_heading);
        let (lead, core, trail) = split_ws(&s);
        if core.is_empty() {
            return;
        }
        let href = self.dom.attr(n, "href").map(str::trim).unwrap_or("");
        let target = if self.keep_links {
            self.resolve_link(href)
        } else {
            None
        };
        match target {
            Some(url) if !core.contains(BR) => {
                out.push_str(lead);
                out.push('[');
                out.push_str(core);
                out.push_str("](");
                out.push_str(&url);
                out.push(')');
                out.push_str(trail);
            }
            _ => out.push_str(&s),
        }
    }

    fn resolve_link(&self, href: &str) -> Option<String> {
        if href.is_empty() || href.starts_with('#') {
            return None;
        }
        let lower = href.to_ascii_lowercase();
        if lower.starts_with("javascript:")
            || lower.starts_with("data:")
            || lower.starts_with("vbscript:")
        {
            return None;
        }
        let url = match &self.base {
            Some(b) => b.join(href).ok()?,
            None => Url::parse(href).ok()?,
        };
        if !matches!(url.scheme(), "http" | "https" | "mailto" | "ftp" | "tel") {
            return None;
        }
        Some(escape_url(url.as_str()))
    }

    fn image_src(&self, n: NodeId) -> Option<String> {
        let mut cands: Vec<&str> = Vec::new();
        for a in [
            "data-src",
            "data-lazy-src",
            "data-original",
            "data-url",
            "data-hi-res-src",
            "src",
        ] {
            if let Some(v) = self.dom.attr(n, a) {
                cands.push(v);
            }
        }
        for a in ["data-srcset", "srcset", "data-lazy-srcset"] {
            if let Some(v) = self.dom.attr(n, a)
                && let Some(first) = v
                    .split(',')
                    .next()
                    .and_then(|s| s.split_whitespace().next())
            {
                cands.push(first);
            }
        }
        if let Some(p) = self.dom.parent(n).filter(|&p| self.dom.tag(p) == "picture") {
            for s in self
                .dom
                .element_children(p)
                .filter(|&c| self.dom.tag(c) == "source")
            {
                if let Some(first) = self
                    .dom
                    .attr(s, "srcset")
                    .and_then(|v| v.split(',').next())
                    .and_then(|s| s.split_whitespace().next())
                {
                    cands.push(first);
                }
            }
        }
        cands
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty() && !s.starts_with("data:"))
            .find_map(|s| self.resolve_link(s))
    }
}

impl Dom {
    /// Raw text (no normalisation) including `<br>` as newlines, for code.
    pub(crate) fn text_content_raw(&self, id: NodeId) -> String {
        let mut s = String::new();
        self.raw_text_into(id, &mut s);
        s
    }
}

fn escape_url(u: &str) -> String {
    let mut s = String::with_capacity(u.len());
    for c in u.chars() {
        match c {
            '(' => s.push_str("%28"),
            ')' => s.push_str("%29"),
            ' ' => s.push_str("%20"),
            '<' => s.push_str("%3C"),
            '>' => s.push_str("%3E"),
            _ => s.push(c),
        }
    }
    s
}

fn split_ws(s: &str) -> (&str, &str, &str) {
    let is_ws = |c: char| c.is_whitespace();
    let core_start = s.len() - s.trim_start_matches(is_ws).len();
    let core_end = s.trim_end_matches(is_ws).len().max(core_start);
    (&s[..core_start], &s[core_start..core_end], &s[core_end..])
}

fn longest_run(s: &str, ch: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for c in s.chars() {
        if c == ch {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

/// Escapes markdown-significant characters of a text node and collapses whitespace.
fn escape_text_into(t: &str, out: &mut String) {
    let chars: Vec<char> = t.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '\u{200b}' | '\u{200c}' | '\u{feff}' | '\u{ad}' => {}
            c if c.is_whitespace() => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            '\\' | '*' | '`' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '_' => {
                let prev = if i > 0 {
                    Some(chars[i - 1])
                } else {
                    out.chars().last()
                };
                let next = chars.get(i + 1).copied();
                let intraword = prev.is_some_and(char::is_alphanumeric)
                    && next.is_some_and(char::is_alphanumeric);
                if !intraword {
                    out.push('\\');
                }
                out.push('_');
            }
            '<' => {
                if chars
                    .get(i + 1)
                    .is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?'))
                {
                    out.push('\\');
                }
                out.push('<');
            }
            '&' => {
                // Only when it would read as an entity reference.
                let rest: String = chars[i + 1..].iter().take(32).collect();
                let ent = rest.find(';').is_some_and(|e| {
                    e > 0
                        && rest[..e]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '#')
                });
                if ent {
                    out.push('\\');
                }
                out.push('&');
            }
            '~' if chars.get(i + 1) == Some(&'~') || (i > 0 && chars[i - 1] == '~') => {
                out.push('\\');
                out.push('~');
            }
            _ => out.push(c),
        }
    }
}

/// Collapses whitespace runs of rendered inline markdown (text already escaped).
fn collapse_inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == ' ' || c == '\t' || c == '\n' {
            if !out.ends_with(' ') && !out.ends_with(BR) {
                out.push(' ');
            }
        } else {
            if c == BR && out.ends_with(' ') {
                out.pop();
            }
            out.push(c);
        }
    }
    out
}

/// Escapes what would start a block construct at the beginning of a line.
fn escape_line_start(line: &str, heading: bool) -> String {
    let t = line;
    let mut chars = t.chars();
    let first = chars.next();
    match first {
        Some('#') | Some('>') if !heading || first == Some('#') => return format!("\\{t}"),
        Some('>') => return format!("\\{t}"),
        Some('-') | Some('+') | Some('=') => {
            let rest = &t[1..];
            if rest.is_empty()
                || rest.starts_with(' ')
                || t.chars().all(|c| c == '-' || c == '=' || c == ' ')
            {
                return format!("\\{t}");
            }
        }
        Some('|') => return format!("\\{t}"),
        _ => {}
    }
    // Ordered list marker: up to 9 digits then '.' or ')' and space/end.
    let digits = t.chars().take_while(|c| c.is_ascii_digit()).count();
    if (1..=9).contains(&digits) {
        let after = &t[digits..];
        if (after.starts_with(". ") || after.starts_with(") ") || after == "." || after == ")")
            && !heading
            || (heading && (after.starts_with(". ") || after.starts_with(") ")))
        {
            return format!("{}\\{}", &t[..digits], &t[digits..]);
        }
    }
    t.to_string()
}

/// Turns collected inline content into paragraph blocks (two or more `<br>` split paragraphs).
fn flush_para(inline: &mut String, out: &mut Vec<Block>) {
    if inline.trim().is_empty() {
        inline.clear();
        return;
    }
    let collapsed = collapse_inline(inline);
    inline.clear();
    let double = format!("{BR}{BR}");
    let mut text = collapsed;
    while text.contains(&format!("{BR} {BR}")) {
        text = text.replace(&format!("{BR} {BR}"), &double);
    }
    for para in text.split(&double) {
        let lines: Vec<String> = para
            .split(BR)
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .map(|l| escape_line_start(l, false))
            .collect();
        if lines.is_empty() {
            continue;
        }
        out.push(Block {
            kind: Kind::Para,
            text: lines.join("\\\n"),
        });
    }
}

fn join_blocks(blocks: &[Block]) -> String {
    let mut s = String::new();
    for b in blocks {
        let t = b.text.trim_end();
        if t.trim().is_empty() {
            continue;
        }
        if !s.is_empty() {
            s.push_str("\n\n");
        }
        s.push_str(t);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let mut s = String::new();
        escape_text_into("a *b* snake_case _x_ [y] <div> &amp; AT&T", &mut s);
        assert_eq!(
            s,
            "a \\*b\\* snake_case \\_x\\_ \\[y\\] \\<div> \\&amp; AT&T"
        );
        assert_eq!(escape_line_start("1. Not a list", false), "1\\. Not a list");
        assert_eq!(escape_line_start("# hash", false), "\\# hash");
        assert_eq!(escape_line_start("- dash", false), "\\- dash");
    }
}
