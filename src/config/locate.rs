//! Map a field path (`hosts[2].address`) back to its place in the cluster file.

use std::ops::Range;

use toml_edit::{Document, Item, Table, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// `hosts[2].address` style rendering of a path.
pub fn display(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a Table),
    Item(&'a Item),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Table(t) => t.span(),
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
        }
    }
    fn from_item(i: &'a Item) -> Node<'a> {
        match i {
            Item::Table(t) => Node::Table(t),
            Item::Value(v) => Node::Value(v),
            other => Node::Item(other),
        }
    }
    /// The child at `seg`, and the span of its key when it has one.
    fn child(self, seg: &Seg) -> Option<(Node<'a>, Option<Range<usize>>)> {
        match (self, seg) {
            (Node::Table(t), Seg::Key(k)) => {
                let (key, item) = t.get_key_value(k)?;
                Some((Node::from_item(item), key.span()))
            }
            (Node::Value(Value::InlineTable(t)), Seg::Key(k)) => {
                let (key, item) = t.get_key_value(k)?;
                Some((Node::from_item(item), key.span()))
            }
            (Node::Item(Item::ArrayOfTables(a)), Seg::Index(n)) => Some((Node::Table(a.get(*n)?), None)),
            (Node::Value(Value::Array(a)), Seg::Index(n)) => Some((Node::Value(a.get(*n)?), None)),
            _ => None,
        }
    }
}

/// Byte span for `path`: the key for a table entry (where an unknown key is best pointed at),
/// otherwise the value. Falls back to the nearest ancestor known, so a diagnostic always gets the
/// best line there is.
pub fn span(doc: &Document<String>, path: &[Seg]) -> Option<Range<usize>> {
    let mut node = Node::Table(doc.as_table());
    let mut best = None;
    for seg in path {
        match node.child(seg) {
            Some((child, key_span)) => {
                if let Some(s) = key_span.or_else(|| child.span()) {
                    best = Some(s);
                }
                node = child;
            }
            None => break,
        }
    }
    best
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The path of the innermost value whose text covers `span` (a type error's span points at the
/// offending value): the field a message about that span is about. Empty when none does.
pub fn path_at(doc: &Document<String>, span: Range<usize>) -> Vec<Seg> {
    fn covers(s: Option<Range<usize>>, span: &Range<usize>) -> bool {
        s.is_some_and(|s| s.start <= span.start && span.end.max(span.start + 1) <= s.end.max(s.start + 1))
    }
    fn in_table<'a>(entries: impl Iterator<Item = (&'a str, Node<'a>, Option<Range<usize>>)>, span: &Range<usize>, out: &mut Vec<Seg>) -> bool {
        for (key, node, key_span) in entries {
            out.push(Seg::Key(key.to_string()));
            if walk(node, span, out) || covers(key_span, span) {
                return true;
            }
            out.pop();
        }
        false
    }
    fn walk(node: Node<'_>, span: &Range<usize>, out: &mut Vec<Seg>) -> bool {
        match node {
            Node::Table(t) => in_table(t.iter().map(|(k, i)| (k, Node::from_item(i), t.key(k).and_then(|k| k.span()))), span, out),
            Node::Item(Item::ArrayOfTables(a)) => {
                for (n, t) in a.iter().enumerate() {
                    out.push(Seg::Index(n));
                    if walk(Node::Table(t), span, out) {
                        return true;
                    }
                    out.pop();
                }
                false
            }
            Node::Value(Value::InlineTable(t)) => {
                in_table(t.iter().map(|(k, v)| (k, Node::Value(v), t.key(k).and_then(|k| k.span()))), span, out) || covers(node.span(), span)
            }
            Node::Value(Value::Array(a)) => {
                for (n, v) in a.iter().enumerate() {
                    out.push(Seg::Index(n));
                    if walk(Node::Value(v), span, out) {
                        return true;
                    }
                    out.pop();
                }
                covers(node.span(), span)
            }
            other => covers(other.span(), span),
        }
    }
    let mut out = Vec::new();
    walk(Node::Table(doc.as_table()), &span, &mut out);
    out
}
