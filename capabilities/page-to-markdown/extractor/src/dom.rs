//! A small arena DOM built directly by the html5ever tree builder.
//!
//! Nodes live in one `Vec` and refer to each other by index, which keeps the
//! tree cheap to walk, easy to annotate with side tables and trivially
//! detachable (removing a subtree only unlinks it from its parent).

use std::borrow::Cow;
use std::cell::RefCell;

use html5ever::interface::{ElemName, ElementFlags, NodeOrText, QuirksMode, TreeSink};
use html5ever::tendril::{StrTendril, TendrilSink};
use html5ever::{Attribute, LocalName, Namespace, QualName, ns};

/// Index of a node in [`Dom::nodes`].
pub(crate) type NodeId = usize;

/// Deepest element nesting kept as structure (real pages stay far below).
const MAX_DEPTH: usize = 256;

/// The document node is always the first one.
pub(crate) const DOCUMENT: NodeId = 0;

#[derive(Debug, Clone)]
pub(crate) enum Data {
    Document,
    Element(Element),
    Text(String),
    /// Comments, doctypes, processing instructions: never rendered.
    Other,
}

#[derive(Debug, Clone)]
pub(crate) struct Element {
    /// Lower-case local name (`div`, `p`, `svg`...).
    pub tag: LocalName,
    /// Namespace (HTML, SVG or MathML).
    pub ns: Namespace,
    pub attrs: Vec<(LocalName, String)>,
    /// Contents of a `<template>` element (kept out of the main tree).
    pub template: Option<NodeId>,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub parent: Option<NodeId>,
    pub children: Vec<NodeId>,
    pub data: Data,
}

/// Parsed document.
#[derive(Debug, Clone)]
pub(crate) struct Dom {
    pub nodes: Vec<Node>,
    /// Number of nodes made by the parser (later ones are synthetic containers).
    parsed_len: usize,
}

/// Tree links saved by [`Dom::snapshot`].
pub(crate) struct Snapshot {
    links: Vec<(Option<NodeId>, Vec<NodeId>)>,
    data: Vec<Data>,
}

impl Dom {
    /// Parses an HTML document (never fails: HTML5 parsing recovers from any input).
    pub fn parse(html: &str) -> Dom {
        let mut opts = html5ever::ParseOpts::default();
        // Parse <noscript> content as markup so its text and images are visible to us.
        opts.tree_builder.scripting_enabled = false;
        let mut dom = html5ever::parse_document(Sink::default(), opts).one(StrTendril::from(html));
        dom.limit_depth();
        dom.parsed_len = dom.nodes.len();
        dom
    }

    /// Flattens subtrees nested deeper than [`MAX_DEPTH`] into their text, so that the
    /// recursive walks elsewhere have bounded depth whatever the input.
    fn limit_depth(&mut self) {
        let mut stack = vec![(DOCUMENT, 0usize)];
        let mut too_deep = Vec::new();
        while let Some((n, d)) = stack.pop() {
            if d >= MAX_DEPTH {
                if self.nodes[n].children.iter().any(|&c| self.is_element(c)) {
                    too_deep.push(n);
                }
                continue;
            }
            for &c in &self.nodes[n].children {
                stack.push((c, d + 1));
            }
        }
        for n in too_deep {
            let mut text = String::new();
            self.raw_text_into(n, &mut text);
            let t = self.nodes.len();
            self.nodes.push(Node {
                parent: Some(n),
                children: Vec::new(),
                data: Data::Text(text),
            });
            for c in std::mem::replace(&mut self.nodes[n].children, vec![t]) {
                self.nodes[c].parent = None;
            }
        }
    }

    pub fn element(&self, id: NodeId) -> Option<&Element> {
        match &self.nodes[id].data {
            Data::Element(e) => Some(e),
            _ => None,
        }
    }

    /// Local name of an element, "" for anything else.
    pub fn tag(&self, id: NodeId) -> &str {
        match &self.nodes[id].data {
            Data::Element(e) => &e.tag,
            _ => "",
        }
    }

    pub fn is_element(&self, id: NodeId) -> bool {
        matches!(self.nodes[id].data, Data::Element(_))
    }

    pub fn attr(&self, id: NodeId, name: &str) -> Option<&str> {
        self.element(id)?
            .attrs
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn children(&self, id: NodeId) -> &[NodeId] {
        &self.nodes[id].children
    }

    pub fn parent(&self, id: NodeId) -> Option<NodeId> {
        self.nodes[id].parent
    }

    /// Element children only.
    pub fn element_children(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes[id]
            .children
            .iter()
            .copied()
            .filter(|&c| self.is_element(c))
    }

    /// Unlinks a node (and so its whole subtree) from the tree.
    pub fn detach(&mut self, id: NodeId) {
        if let Some(p) = self.nodes[id].parent.take() {
            self.nodes[p].children.retain(|&c| c != id);
        }
    }

    /// The tree's links (and the nodes appended since `Dom::parse`), to undo relinking.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            links: self
                .nodes
                .iter()
                .map(|n| (n.parent, n.children.clone()))
                .collect(),
            data: self.nodes[self.parsed_len..]
                .iter()
                .map(|n| n.data.clone())
                .collect(),
        }
    }

    /// Restores the links (and appended nodes) of a [`Dom::snapshot`].
    pub fn restore(&mut self, snap: &Snapshot) {
        self.nodes.truncate(self.parsed_len);
        for d in &snap.data {
            self.nodes.push(Node {
                parent: None,
                children: Vec::new(),
                data: d.clone(),
            });
        }
        for (node, (parent, children)) in self.nodes.iter_mut().zip(&snap.links) {
            node.parent = *parent;
            node.children.clone_from(children);
        }
    }

    /// All nodes of the subtree rooted at `id` in document order (root included).
    pub fn descendants(&self, id: NodeId) -> Vec<NodeId> {
        let mut out = Vec::new();
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            out.push(n);
            for &c in self.nodes[n].children.iter().rev() {
                stack.push(c);
            }
        }
        out
    }

    /// Element descendants (root excluded) with the given tag.
    pub fn find_tags(&self, id: NodeId, tags: &[&str]) -> Vec<NodeId> {
        self.descendants(id)
            .into_iter()
            .skip(1)
            .filter(|&n| tags.contains(&self.tag(n)))
            .collect()
    }

    /// First element with the given tag in document order.
    pub fn first_tag(&self, id: NodeId, tag: &str) -> Option<NodeId> {
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            if n != id && self.tag(n) == tag {
                return Some(n);
            }
            for &c in self.nodes[n].children.iter().rev() {
                stack.push(c);
            }
        }
        None
    }

    /// Is `anc` a (non-strict) ancestor of `id`?
    pub fn is_ancestor(&self, anc: NodeId, mut id: NodeId) -> bool {
        loop {
            if id == anc {
                return true;
            }
            match self.nodes[id].parent {
                Some(p) => id = p,
                None => return false,
            }
        }
    }

    /// Ancestors of `id`, nearest first (`id` excluded).
    pub fn ancestors(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        std::iter::successors(self.nodes[id].parent, move |&p| self.nodes[p].parent)
    }

    /// Raw text content of a subtree (no whitespace normalisation), skipping
    /// script/style/template-like elements.
    pub fn raw_text_into(&self, id: NodeId, out: &mut String) {
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            match &self.nodes[n].data {
                Data::Text(t) => out.push_str(t),
                Data::Element(e) => {
                    if matches!(&*e.tag, "script" | "style" | "template" | "noscript") && n != id {
                        continue;
                    }
                    for &c in self.nodes[n].children.iter().rev() {
                        stack.push(c);
                    }
                }
                Data::Document => {
                    for &c in self.nodes[n].children.iter().rev() {
                        stack.push(c);
                    }
                }
                Data::Other => {}
            }
        }
    }

    /// Whitespace-normalised text content of a subtree.
    pub fn text_content(&self, id: NodeId) -> String {
        let mut raw = String::new();
        self.raw_text_into(id, &mut raw);
        normalize_ws(&raw)
    }

    /// The `<html>`, `<head>` and `<body>` elements (when present).
    pub fn html_element(&self) -> Option<NodeId> {
        self.element_children(DOCUMENT)
            .find(|&c| self.tag(c) == "html")
    }

    pub fn head(&self) -> Option<NodeId> {
        let html = self.html_element()?;
        self.element_children(html).find(|&c| self.tag(c) == "head")
    }

    pub fn body(&self) -> Option<NodeId> {
        let html = self.html_element()?;
        self.element_children(html).find(|&c| self.tag(c) == "body")
    }
}

/// Collapses every run of whitespace into one space and trims.
pub(crate) fn normalize_ws(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for ch in s.chars() {
        if ch.is_whitespace() {
            pending_space = true;
        } else {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(ch);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// html5ever tree sink

struct Sink {
    nodes: RefCell<Vec<Node>>,
}

impl Default for Sink {
    fn default() -> Self {
        Sink {
            nodes: RefCell::new(vec![Node {
                parent: None,
                children: Vec::new(),
                data: Data::Document,
            }]),
        }
    }
}

/// Owned element name handed back to the tree builder.
#[derive(Debug, Clone)]
pub(crate) struct OwnedName {
    ns: Namespace,
    local: LocalName,
}

impl ElemName for OwnedName {
    fn ns(&self) -> &Namespace {
        &self.ns
    }
    fn local_name(&self) -> &LocalName {
        &self.local
    }
}

impl Sink {
    fn new_node(&self, data: Data) -> NodeId {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node {
            parent: None,
            children: Vec::new(),
            data,
        });
        nodes.len() - 1
    }

    fn detach(&self, id: NodeId) {
        let mut nodes = self.nodes.borrow_mut();
        if let Some(p) = nodes[id].parent.take() {
            nodes[p].children.retain(|&c| c != id);
        }
    }
}

impl TreeSink for Sink {
    type Handle = NodeId;
    type Output = Dom;
    type ElemName<'a> = OwnedName;

    fn finish(self) -> Dom {
        Dom {
            nodes: self.nodes.into_inner(),
            parsed_len: 0,
        }
    }

    fn parse_error(&self, _msg: Cow<'static, str>) {}

    fn get_document(&self) -> NodeId {
        DOCUMENT
    }

    fn elem_name<'a>(&'a self, target: &'a NodeId) -> OwnedName {
        let nodes = self.nodes.borrow();
        match &nodes[*target].data {
            Data::Element(e) => OwnedName {
                ns: e.ns.clone(),
                local: e.tag.clone(),
            },
            _ => OwnedName {
                ns: ns!(html),
                local: LocalName::from(""),
            },
        }
    }

    fn create_element(&self, name: QualName, attrs: Vec<Attribute>, flags: ElementFlags) -> NodeId {
        let template = if flags.template {
            Some(self.new_node(Data::Document))
        } else {
            None
        };
        let attrs = attrs
            .into_iter()
            .map(|a| (a.name.local, a.value.to_string()))
            .collect();
        self.new_node(Data::Element(Element {
            tag: name.local,
            ns: name.ns,
            attrs,
            template,
        }))
    }

    fn create_comment(&self, _text: StrTendril) -> NodeId {
        self.new_node(Data::Other)
    }

    fn create_pi(&self, _target: StrTendril, _data: StrTendril) -> NodeId {
        self.new_node(Data::Other)
    }

    fn append(&self, parent: &NodeId, child: NodeOrText<NodeId>) {
        match child {
            NodeOrText::AppendText(text) => {
                let mut nodes = self.nodes.borrow_mut();
                if let Some(&last) = nodes[*parent].children.last()
                    && let Data::Text(t) = &mut nodes[last].data
                {
                    t.push_str(&text);
                    return;
                }
                drop(nodes);
                let id = self.new_node(Data::Text(text.to_string()));
                let mut nodes = self.nodes.borrow_mut();
                nodes[id].parent = Some(*parent);
                nodes[*parent].children.push(id);
            }
            NodeOrText::AppendNode(id) => {
                self.detach(id);
                let mut nodes = self.nodes.borrow_mut();
                nodes[id].parent = Some(*parent);
                nodes[*parent].children.push(id);
            }
        }
    }

    fn append_based_on_parent_node(
        &self,
        element: &NodeId,
        prev_element: &NodeId,
        child: NodeOrText<NodeId>,
    ) {
        let has_parent = self.nodes.borrow()[*element].parent.is_some();
        if has_parent {
            self.append_before_sibling(element, child);
        } else {
            self.append(prev_element, child);
        }
    }

    fn append_doctype_to_document(
        &self,
        _name: StrTendril,
        _public_id: StrTendril,
        _system_id: StrTendril,
    ) {
    }

    fn get_template_contents(&self, target: &NodeId) -> NodeId {
        match &self.nodes.borrow()[*target].data {
            Data::Element(Element {
                template: Some(t), ..
            }) => *t,
            // Not a template: hand back a detached fragment so nothing reaches the tree.
            _ => usize::MAX,
        }
    }

    fn same_node(&self, x: &NodeId, y: &NodeId) -> bool {
        x == y
    }

    fn set_quirks_mode(&self, _mode: QuirksMode) {}

    fn append_before_sibling(&self, sibling: &NodeId, child: NodeOrText<NodeId>) {
        let Some(parent) = self.nodes.borrow()[*sibling].parent else {
            return;
        };
        let new_id = match child {
            NodeOrText::AppendText(text) => {
                let mut nodes = self.nodes.borrow_mut();
                let i = nodes[parent]
                    .children
                    .iter()
                    .position(|c| c == sibling)
                    .unwrap_or(0);
                if i > 0 {
                    let prev = nodes[parent].children[i - 1];
                    if let Data::Text(t) = &mut nodes[prev].data {
                        t.push_str(&text);
                        return;
                    }
                }
                drop(nodes);
                self.new_node(Data::Text(text.to_string()))
            }
            NodeOrText::AppendNode(id) => {
                self.detach(id);
                id
            }
        };
        let mut nodes = self.nodes.borrow_mut();
        let i = nodes[parent]
            .children
            .iter()
            .position(|c| c == sibling)
            .unwrap_or(0);
        nodes[parent].children.insert(i, new_id);
        nodes[new_id].parent = Some(parent);
    }

    fn add_attrs_if_missing(&self, target: &NodeId, attrs: Vec<Attribute>) {
        let mut nodes = self.nodes.borrow_mut();
        if let Data::Element(e) = &mut nodes[*target].data {
            for a in attrs {
                if !e.attrs.iter().any(|(n, _)| *n == a.name.local) {
                    e.attrs.push((a.name.local, a.value.to_string()));
                }
            }
        }
    }

    fn remove_from_parent(&self, target: &NodeId) {
        self.detach(*target);
    }

    fn reparent_children(&self, node: &NodeId, new_parent: &NodeId) {
        let mut nodes = self.nodes.borrow_mut();
        let kids = std::mem::take(&mut nodes[*node].children);
        for &k in &kids {
            nodes[k].parent = Some(*new_parent);
        }
        nodes[*new_parent].children.extend(kids);
    }
}
