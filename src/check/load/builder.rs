//! The YAML half of [`super::load`]: granit-parser's events built into JSON values the way
//! go-yaml v2 and sigs.k8s.io/yaml build them for kubectl.

use std::collections::{BTreeMap, HashMap};

use granit_parser::{Event, Parser, ScalarStyle, Span, StrInput};
use serde_json::{Map, Value};

use super::{Lines, LoadError, Loaded};
use crate::check::scalar::{Scalar, resolve_plain};

/// Nodes aliases may expand to in one document: a "billion laughs" input is refused instead
/// of filling memory. Real manifests stay far below (the largest fixture has ~20,000 nodes).
const MAX_ALIAS_NODES: usize = 1_000_000;
/// Nesting depth refused before the recursive builder could exhaust the stack.
const MAX_DEPTH: usize = 256;

/// The core-schema tag prefix (`!!int` is `tag:yaml.org,2002:int`).
const CORE_TAG: &str = "tag:yaml.org,2002:";

/// Escapes a key for a JSON pointer (RFC 6901).
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn at(span: &Span) -> String {
    format!(
        "at line {} column {}",
        span.start.line(),
        span.start.col() + 1
    )
}

pub(super) struct Builder<'a> {
    parser: Parser<'a, StrInput<'a>>,
    document: usize,
    anchors: HashMap<usize, (Value, usize)>,
    alias_nodes: usize,
    lines: BTreeMap<String, usize>,
}

/// A node's value, and how many nodes it holds (for the alias budget).
type Node = (Value, usize);

impl<'a> Builder<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Self {
            parser: Parser::new_from_str(text),
            document: 0,
            anchors: HashMap::new(),
            alias_nodes: 0,
            lines: BTreeMap::new(),
        }
    }

    fn error(&self, message: String) -> LoadError {
        LoadError {
            document: self.document.max(1),
            message,
        }
    }

    /// The next event that is not a comment or anchor metadata.
    fn next(&mut self) -> Result<(Event<'a>, Span), LoadError> {
        loop {
            match self.parser.next() {
                None => return Err(self.error("unexpected end of input".to_owned())),
                Some(Err(e)) => {
                    let m = e.marker();
                    let message =
                        format!("{} at line {} column {}", e.info(), m.line(), m.col() + 1);
                    return Err(self.error(message));
                }
                Some(Ok((Event::Comment(..) | Event::Anchor(..), _))) => {}
                Some(Ok(ev)) => return Ok(ev),
            }
        }
    }

    pub(super) fn documents(mut self) -> Result<Vec<Loaded>, LoadError> {
        let mut out = Vec::new();
        loop {
            match self.next()? {
                (Event::StreamStart, _) => {}
                (Event::StreamEnd, _) => return Ok(out),
                (Event::DocumentStart(..), _) => {
                    self.document += 1;
                    self.anchors.clear();
                    self.alias_nodes = 0;
                    let (event, span) = self.next()?;
                    let (value, _) = self.node(event, span, String::new(), 0)?;
                    match self.next()? {
                        (Event::DocumentEnd, _) => {}
                        (_, span) => {
                            return Err(self
                                .error(format!("expected the end of the document {}", at(&span))));
                        }
                    }
                    out.push(Loaded {
                        number: self.document,
                        value,
                        lines: Lines(std::mem::take(&mut self.lines)),
                    });
                }
                (_, span) => return Err(self.error(format!("unexpected YAML event {}", at(&span)))),
            }
        }
    }

    fn node(
        &mut self,
        event: Event<'a>,
        span: Span,
        path: String,
        depth: usize,
    ) -> Result<Node, LoadError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!(
                "nested more than {MAX_DEPTH} levels deep {}",
                at(&span)
            )));
        }
        self.lines.entry(path.clone()).or_insert(span.start.line());
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| (t.handle().to_owned(), t.suffix().to_owned()));
                let value = self.scalar(&text, style, tag.as_ref(), &span)?;
                ((value, 1), anchor)
            }
            Event::SequenceStart(_, anchor, _) => {
                let mut items = Vec::new();
                let mut size = 1;
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    let child = format!("{path}/{}", items.len());
                    let (v, n) = self.node(event, span, child, depth + 1)?;
                    items.push(v);
                    size += n;
                }
                ((Value::Array(items), size), anchor)
            }
            Event::MappingStart(_, anchor, _) => (self.mapping(&path, depth)?, anchor),
            Event::Alias(id) => return self.alias(id, &span),
            Event::UnresolvedAlias(name) => {
                return Err(self.error(format!(
                    "alias *{name} names no anchor before it {}",
                    at(&span)
                )));
            }
            _ => return Err(self.error(format!("unexpected YAML event {}", at(&span)))),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn alias(&mut self, id: usize, span: &Span) -> Result<Node, LoadError> {
        let Some((value, size)) = self.anchors.get(&id).cloned() else {
            return Err(self.error(format!("alias names no anchor before it {}", at(span))));
        };
        self.alias_nodes += size;
        if self.alias_nodes > MAX_ALIAS_NODES {
            return Err(self.error(format!(
                "aliases expand to more than {MAX_ALIAS_NODES} nodes {}",
                at(span)
            )));
        }
        Ok((value, size))
    }

    /// A mapping, with go-yaml v2's merge semantics: a `<<` entry writes the merged mapping's
    /// entries where it stands, so later entries override it and it overrides earlier ones; in
    /// a sequence of mappings to merge, earlier ones take precedence.
    fn mapping(&mut self, path: &str, depth: usize) -> Result<Node, LoadError> {
        let mut map = Map::new();
        let mut explicit = std::collections::HashSet::new();
        let mut size = 1;
        loop {
            let (event, key_span) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                break;
            }
            let merge = match &event {
                Event::Scalar(text, ScalarStyle::Plain, _, None) => text == "<<",
                Event::Scalar(_, _, _, Some(tag)) => {
                    tag.handle() == CORE_TAG && tag.suffix() == "merge"
                }
                _ => false,
            };
            let (value_event, value_span) = if merge {
                let (event, span) = self.next()?;
                (event, span)
            } else {
                let key = self.key(event, &key_span, depth)?;
                if !explicit.insert(key.clone()) {
                    let owner = if path.is_empty() {
                        String::new()
                    } else {
                        format!("{}: ", path[1..].replace('/', "."))
                    };
                    return Err(self.error(format!(
                        "{owner}duplicate key {key:?} {} (kubectl refuses it too)",
                        at(&key_span)
                    )));
                }
                let child = format!("{path}/{}", pointer_token(&key));
                self.lines.insert(child.clone(), key_span.start.line());
                let (event, span) = self.next()?;
                let (v, n) = self.node(event, span, child, depth + 1)?;
                map.insert(key, v);
                size += n;
                continue;
            };
            // The merged values' lines are the `<<` entry's: that is where they enter.
            let scratch = format!("{path}/<<");
            let (merged, n) = self.node(value_event, value_span, scratch.clone(), depth + 1)?;
            self.lines
                .retain(|k, _| k != &scratch && !k.starts_with(&format!("{scratch}/")));
            size += n;
            let sources = match merged {
                Value::Object(m) => vec![m],
                Value::Array(items) => items
                    .into_iter()
                    .rev()
                    .map(|i| match i {
                        Value::Object(m) => Ok(m),
                        _ => Err(()),
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|()| self.merge_error(&key_span))?,
                _ => return Err(self.merge_error(&key_span)),
            };
            for source in sources {
                for (k, v) in source {
                    self.lines
                        .entry(format!("{path}/{}", pointer_token(&k)))
                        .or_insert(key_span.start.line());
                    map.insert(k, v);
                }
            }
        }
        Ok((Value::Object(map), size))
    }

    fn merge_error(&self, span: &Span) -> LoadError {
        self.error(format!(
            "a merge key (<<) takes a mapping or a sequence of mappings {}",
            at(span)
        ))
    }

    /// A mapping key as kubectl makes it a JSON key (see [`Scalar::into_key`]).
    fn key(&mut self, event: Event<'a>, span: &Span, depth: usize) -> Result<String, LoadError> {
        let key = match event {
            Event::Scalar(text, style, _, tag) => {
                let tag = tag.map(|t| (t.handle().to_owned(), t.suffix().to_owned()));
                let scalar = self.typed(&text, style, tag.as_ref(), span)?;
                scalar.into_key(&text)
            }
            Event::Alias(id) => match self.alias(id, span)?.0 {
                Value::String(s) => Some(s),
                Value::Bool(b) => Some(b.to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            },
            other => {
                // Consume the collection so the error names its start, then refuse it.
                let _ = self.node(other, *span, String::from("/?"), depth + 1);
                None
            }
        };
        key.ok_or_else(|| {
            self.error(format!(
                "a mapping key must be a string, number or boolean {} (kubectl cannot make it a JSON key)",
                at(span)
            ))
        })
    }

    fn scalar(
        &self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&(String, String)>,
        span: &Span,
    ) -> Result<Value, LoadError> {
        self.typed(text, style, tag, span)?
            .into_json(text)
            .map_err(|e| self.error(format!("{e} {}", at(span))))
    }

    /// go-yaml v2's typing: quoted and block scalars are strings, plain ones are resolved, an
    /// explicit core tag must agree with what the text resolves to.
    fn typed(
        &self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&(String, String)>,
        span: &Span,
    ) -> Result<Scalar, LoadError> {
        let wanted = match tag {
            None if style == ScalarStyle::Plain => None,
            None => Some("str"),
            Some((handle, suffix)) if handle == CORE_TAG => Some(suffix.as_str()),
            Some((handle, suffix)) if handle == "!" && suffix.is_empty() => Some("str"),
            Some((handle, suffix)) => {
                return Err(self.error(format!(
                    "tag {handle}{suffix} is not one kubectl reads {}",
                    at(span)
                )));
            }
        };
        let resolved = resolve_plain(text);
        Ok(match (wanted, resolved) {
            (Some("str" | "binary"), _) => Scalar::Str(text.to_owned()),
            (None, r) => r,
            (Some("null"), r @ Scalar::Null)
            | (Some("bool"), r @ Scalar::Bool(_))
            | (Some("int"), r @ (Scalar::Int(_) | Scalar::Uint(_)))
            | (Some("float"), r @ Scalar::Float(_)) => r,
            (Some("float"), Scalar::Int(n)) => Scalar::Float(n as f64),
            (Some("float"), Scalar::Uint(n)) => Scalar::Float(n as f64),
            (Some(t), _) => {
                return Err(self.error(format!(
                    "cannot read `{text}` as !!{t} (kubectl cannot either) {}",
                    at(span)
                )));
            }
        })
    }
}
