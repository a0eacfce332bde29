//! [`SubscriptionIndex`]: subscriptions by pattern, in a trie of subject tokens, so a publish visits
//! only the branches its subject can match (literal token, `*`, `>`) instead of every subscription.

use std::collections::HashMap;

use super::subject::Pattern;

/// Tokens are hashed with foldhash: several times faster than SipHash on short subject tokens, and
/// seeded per process, so clients cannot aim collisions at it.
type Children<T> = HashMap<Box<str>, Node<T>, foldhash::fast::RandomState>;

/// Subscriptions with values of type `T`, found by subject.
#[derive(Debug)]
pub struct SubscriptionIndex<T> {
    root: Node<T>,
    len: usize,
}

#[derive(Debug)]
struct Node<T> {
    literal: Children<T>,
    star: Option<Box<Node<T>>>,
    /// Subscriptions whose pattern ends in `>` at this depth.
    rest: Vec<(u64, T)>,
    /// Subscriptions whose pattern ends exactly here.
    here: Vec<(u64, T)>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node { literal: Children::default(), star: None, rest: Vec::new(), here: Vec::new() }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.star.is_none() && self.rest.is_empty() && self.here.is_empty()
    }
}

impl<T> Default for SubscriptionIndex<T> {
    fn default() -> Self {
        SubscriptionIndex { root: Node::default(), len: 0 }
    }
}

impl<T> SubscriptionIndex<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds subscription `id` on `pattern`.
    pub fn insert(&mut self, pattern: &Pattern, id: u64, value: T) {
        let mut node = &mut self.root;
        for token in pattern.tokens() {
            node = match token {
                ">" => {
                    node.rest.push((id, value));
                    self.len += 1;
                    return;
                }
                "*" => node.star.get_or_insert_with(Default::default),
                literal => node.literal.entry(literal.into()).or_default(),
            };
        }
        node.here.push((id, value));
        self.len += 1;
    }

    /// Removes subscription `id` from `pattern`, pruning branches it leaves empty.
    pub fn remove(&mut self, pattern: &Pattern, id: u64) -> Option<T> {
        let tokens: Vec<&str> = pattern.tokens().collect();
        let removed = remove_at(&mut self.root, &tokens, id);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Calls `visit` with every subscription matching `subject` (a valid literal subject), with
    /// the same rule as [`Pattern::matches`] for internal (`$`) subjects.
    pub fn for_each_match<'a>(&'a self, subject: &str, mut visit: impl FnMut(u64, &'a T)) {
        match split_first(subject) {
            (first, rest) if first.starts_with('$') => {
                if let Some(child) = self.root.literal.get(first) {
                    walk(child, rest, &mut visit);
                }
            }
            _ => walk(&self.root, Some(subject), &mut visit),
        }
    }
}

fn position(list: &[(u64, impl Sized)], id: u64) -> Option<usize> {
    list.iter().position(|(i, _)| *i == id)
}

fn remove_at<T>(node: &mut Node<T>, tokens: &[&str], id: u64) -> Option<T> {
    let Some((first, rest)) = tokens.split_first() else {
        return position(&node.here, id).map(|at| node.here.swap_remove(at).1);
    };
    match *first {
        ">" => position(&node.rest, id).map(|at| node.rest.swap_remove(at).1),
        "*" => {
            let child = node.star.as_deref_mut()?;
            let removed = remove_at(child, rest, id);
            if child.is_empty() {
                node.star = None;
            }
            removed
        }
        literal => {
            let child = node.literal.get_mut(literal)?;
            let removed = remove_at(child, rest, id);
            if child.is_empty() {
                node.literal.remove(literal);
            }
            removed
        }
    }
}

/// A subject's first token and what follows its dot (`None`: it was the last).
fn split_first(subject: &str) -> (&str, Option<&str>) {
    match memchr::memchr(b'.', subject.as_bytes()) {
        Some(dot) => (&subject[..dot], Some(&subject[dot + 1..])),
        None => (subject, None),
    }
}

/// Visits the subscriptions under `node` that match `tokens`, the subject's tokens not yet
/// walked (`None`: none left). Splits as it goes: a publish allocates nothing here.
fn walk<'a, T>(node: &'a Node<T>, tokens: Option<&str>, visit: &mut impl FnMut(u64, &'a T)) {
    let Some(tokens) = tokens else {
        node.here.iter().for_each(|(id, value)| visit(*id, value));
        return;
    };
    let (first, rest) = split_first(tokens);
    node.rest.iter().for_each(|(id, value)| visit(*id, value));
    if let Some(child) = node.literal.get(first) {
        walk(child, rest, visit);
    }
    if let Some(child) = &node.star {
        walk(child, rest, visit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(index: &SubscriptionIndex<&'static str>, subject: &str) -> Vec<&'static str> {
        let mut found = Vec::new();
        index.for_each_match(subject, |_, v| found.push(*v));
        found.sort();
        found
    }

    #[test]
    fn finds_literal_star_and_rest_matches() {
        let mut index = SubscriptionIndex::default();
        let patterns = ["a.b.c", "a.*.c", "a.>", ">", "*.b.*", "x.y"];
        for (i, p) in patterns.iter().enumerate() {
            index.insert(&Pattern::new(*p).unwrap(), i as u64, *p);
        }
        assert_eq!(matches(&index, "a.b.c"), vec!["*.b.*", ">", "a.*.c", "a.>", "a.b.c"]);
        assert_eq!(matches(&index, "a"), vec![">"]);
        assert_eq!(matches(&index, "x.y"), vec![">", "x.y"]);
        assert_eq!(matches(&index, "q.b.r"), vec!["*.b.*", ">"]);
        index.insert(&Pattern::new("$DLQ.>").unwrap(), 99, "$DLQ.>");
        assert_eq!(matches(&index, "$DLQ.b.c"), vec!["$DLQ.>"]);
    }

    #[test]
    fn removal_prunes_and_leaves_the_rest() {
        let mut index = SubscriptionIndex::default();
        let p = Pattern::new("a.*.c").unwrap();
        index.insert(&p, 1, "one");
        index.insert(&p, 2, "two");
        assert_eq!(index.remove(&p, 1), Some("one"));
        assert_eq!(index.remove(&p, 1), None);
        assert_eq!(matches(&index, "a.b.c"), vec!["two"]);
        assert_eq!(index.remove(&p, 2), Some("two"));
        assert!(index.is_empty() && index.root.is_empty());
    }

    #[test]
    fn agrees_with_pattern_matching_on_random_inputs() {
        let tokens = ["a", "b", "$c", "*", ">"];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut index = SubscriptionIndex::default();
        let mut patterns = Vec::new();
        for id in 0..300u64 {
            let len = 1 + next(4);
            let text: Vec<&str> = (0..len).map(|i| tokens[next(if i + 1 == len { 5 } else { 4 })]).collect();
            let pattern = Pattern::new(text.join(".")).unwrap();
            index.insert(&pattern, id, id);
            patterns.push(pattern);
        }
        for _ in 0..500 {
            let len = 1 + next(5);
            let subject: Vec<&str> = (0..len).map(|_| tokens[next(3)]).collect();
            let subject = subject.join(".");
            let mut found = Vec::new();
            index.for_each_match(&subject, |id, _| found.push(id));
            found.sort();
            let expected: Vec<u64> = (0..300).filter(|i| patterns[*i as usize].matches(&subject)).collect();
            assert_eq!(found, expected, "{subject}");
        }
    }
}
