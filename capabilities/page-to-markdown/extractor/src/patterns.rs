//! Fixed keyword lists matched against class names, ids and short texts.

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind};

/// A fixed list of substrings, matched in one pass over the text (Aho-Corasick) instead of one
/// substring search per entry; the automaton is built on first use.
///
/// The automaton is a non-contiguous NFA, the cheapest kind to build: the capability runs in a
/// fresh sandbox instance per page, so every automaton is rebuilt for every page, and a DFA (what
/// the crate picks for lists this small) took ~13 % of the component's compute time to build.
/// The NFA's search is slower (about 1 % more of the samples), far less than the build saved
/// (perf profiles of `d402 bench extract` with wasmtime's perf map).
pub(crate) struct Substrings {
    list: &'static [&'static str],
    automaton: OnceLock<AhoCorasick>,
}

impl Substrings {
    /// A set of the given entries.
    pub(crate) const fn new(list: &'static [&'static str]) -> Self {
        Self {
            list,
            automaton: OnceLock::new(),
        }
    }

    /// Whether `text` contains any entry.
    pub(crate) fn found_in(&self, text: &str) -> bool {
        self.automaton
            .get_or_init(|| {
                AhoCorasick::builder()
                    .kind(Some(AhoCorasickKind::NoncontiguousNFA))
                    .build(self.list)
                    .expect("keyword lists are small")
            })
            .is_match(text)
    }
}

#[cfg(test)]
mod tests {
    use super::Substrings;

    static SET: Substrings = Substrings::new(&["share", "ad-slot", "comment"]);

    #[test]
    fn finds_any_entry_anywhere() {
        assert!(SET.found_in("post-share-bar"));
        assert!(SET.found_in("x ad-slot"));
        assert!(SET.found_in("comments"));
        assert!(!SET.found_in("article body"));
        assert!(!SET.found_in(""));
    }
}
