//! Where each node of a YAML document stands, so that validation can point at
//! `file:line:column` for any field, not just at serde's first error.
//!
//! serde_yaml gives typed values without positions; this walks the same text
//! once with yaml-rust2's event parser and records the position of every key and
//! value under a dotted path such as `entities[2].md5`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_marker(m: Marker) -> Pos {
        Pos {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

/// Positions of keys and values by path.
#[derive(Debug, Default)]
pub struct Spans {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

impl Spans {
    /// Indexes `text`. A document that does not parse yields an empty index;
    /// serde reports the syntax error with its own position.
    pub fn index(text: &str) -> Spans {
        let mut recv = Recorder::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut recv, false);
        recv.spans
    }

    /// Position of the value at `path`, or of the closest ancestor that has one.
    pub fn value(&self, path: &str) -> Pos {
        self.lookup(&self.values, path)
    }

    /// Position of the key naming `path` (where an unknown field should point),
    /// falling back to its value.
    pub fn key(&self, path: &str) -> Pos {
        match self.keys.get(path) {
            Some(pos) => *pos,
            None => self.value(path),
        }
    }

    fn lookup(&self, map: &HashMap<String, Pos>, path: &str) -> Pos {
        let mut path = path;
        loop {
            if let Some(pos) = map.get(path) {
                return *pos;
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => return map.get("").copied().unwrap_or(Pos { line: 1, column: 1 }),
            }
        }
    }
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
    /// Inside a complex (non-scalar) mapping key, or the value of one: nothing
    /// here is addressable by a dotted path.
    Opaque,
}

/// What a node that starts now is.
enum Role {
    Value(String),
    Key(String),
    Unnamed,
}

/// Stands in for the name of a complex key, so that its value stays unnamed.
const COMPLEX_KEY: &str = "\u{0}";

#[derive(Default)]
struct Recorder {
    stack: Vec<Frame>,
    spans: Spans,
}

impl Recorder {
    fn role(&mut self, is_scalar: bool) -> Role {
        match self.stack.last_mut() {
            None => Role::Value(String::new()),
            Some(Frame::Opaque) => Role::Unnamed,
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Role::Value(p)
            }
            Some(Frame::Map { key: Some(k), .. }) => {
                let k = std::mem::take(k);
                if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                    *key = None;
                }
                if k == COMPLEX_KEY {
                    Role::Unnamed
                } else {
                    Role::Value(k)
                }
            }
            Some(Frame::Map {
                key: key @ None, ..
            }) if !is_scalar => {
                *key = Some(COMPLEX_KEY.to_string());
                Role::Unnamed
            }
            Some(Frame::Map { path, key: None }) => Role::Key(path.clone()),
        }
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from_marker(mark);
        let container = match &ev {
            Event::MappingStart(..) => Some(true),
            Event::SequenceStart(..) => Some(false),
            Event::Scalar(..) | Event::Alias(..) => None,
            Event::SequenceEnd | Event::MappingEnd => {
                self.stack.pop();
                return;
            }
            _ => return,
        };
        match self.role(container.is_none()) {
            Role::Key(parent) => {
                let name = match &ev {
                    Event::Scalar(name, ..) => name.clone(),
                    _ => COMPLEX_KEY.to_string(),
                };
                let full = if parent.is_empty() {
                    name
                } else {
                    format!("{parent}.{name}")
                };
                self.spans.keys.insert(full.clone(), pos);
                // A block mapping's start event is reported at its first value
                // indicator; its first key is where a reader sees it begin.
                if let Some(start) = self.spans.values.get_mut(&parent) {
                    *start = (*start).min(pos);
                }
                if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                    *key = Some(full);
                }
            }
            Role::Value(path) => {
                self.spans.values.entry(path.clone()).or_insert(pos);
                match container {
                    Some(true) => self.stack.push(Frame::Map { path, key: None }),
                    Some(false) => self.stack.push(Frame::Seq { path, next: 0 }),
                    None => {}
                }
            }
            Role::Unnamed => {
                if container.is_some() {
                    self.stack.push(Frame::Opaque);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keys_and_values_by_path() {
        let text = "a: 1\nlist:\n  - name: x\n    md5: abc\n  - name: y\nmap: { k: v }\n";
        let s = Spans::index(text);
        assert_eq!(s.value("a"), Pos { line: 1, column: 4 });
        assert_eq!(s.key("list[0].md5"), Pos { line: 4, column: 5 });
        assert_eq!(
            s.value("list[0].md5"),
            Pos {
                line: 4,
                column: 10
            }
        );
        assert_eq!(
            s.value("list[1].name"),
            Pos {
                line: 5,
                column: 11
            }
        );
        assert_eq!(
            s.value("map.k"),
            Pos {
                line: 6,
                column: 11
            }
        );
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(s.value("list[1].missing"), s.value("list[1]"));
    }

    #[test]
    fn complex_keys_do_not_confuse_later_paths() {
        let text = "? [a, b]\n: { x: 1 }\nafter: 2\n";
        let s = Spans::index(text);
        assert_eq!(s.value("after"), Pos { line: 3, column: 8 });
    }
}
