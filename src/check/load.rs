//! Reading manifest text as kubectl does: JSON when the text starts with `{` (the sniff of
//! apimachinery's `YAMLOrJSONDecoder`), else YAML with go-yaml v2's YAML 1.1 rules (see
//! [`super::scalar`]), merge keys (`<<: *base`) and anchors. The YAML events come from
//! granit-parser (the parser under serde-saphyr); only the typing of scalars, which no crate
//! does as go-yaml v2 does, is ours. Each document remembers the line every node starts on,
//! so reports can point at the offending field.

use std::collections::BTreeMap;

use serde_json::Value;

use super::scalar::float_json;

mod builder;

/// The 1-based line where each node of a document starts, by JSON pointer (`/spec/containers/0`).
/// A mapping entry's line is its key's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lines(pub(super) BTreeMap<String, usize>);

impl Lines {
    /// The line of the node at `pointer`, or of its nearest ancestor that has one.
    pub fn line_of(&self, pointer: &str) -> Option<usize> {
        let mut p = pointer;
        loop {
            if let Some(line) = self.0.get(p) {
                return Some(*line);
            }
            p = &p[..p.rfind('/')?];
        }
    }

    /// The lines under `prefix`, re-rooted there (for the items of a `List`).
    pub fn under(&self, prefix: &str) -> Lines {
        Lines(
            self.0
                .iter()
                .filter_map(|(k, v)| {
                    let rest = k.strip_prefix(prefix)?;
                    (rest.is_empty() || rest.starts_with('/')).then(|| (rest.to_owned(), *v))
                })
                .collect(),
        )
    }
}

/// One document of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// 1-based, counting empty documents.
    pub number: usize,
    /// `Null` for an empty document (or one holding only comments).
    pub value: Value,
    pub lines: Lines,
}

/// Text that cannot be read; `message` ends with the line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// 1-based number of the document that broke.
    pub document: usize,
    pub message: String,
}

/// Reads every document of a file.
pub fn load(text: &str) -> Result<Vec<Loaded>, LoadError> {
    if text.trim_start().starts_with('{') {
        load_json(text)
    } else {
        builder::Builder::new(text).documents()
    }
}

/// A JSON stream: one document per top-level value.
fn load_json(text: &str) -> Result<Vec<Loaded>, LoadError> {
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut start = 0;
    while let Some(next) = stream.next() {
        let number = out.len() + 1;
        let mut value = next.map_err(|e| LoadError {
            document: number,
            message: format!("{e}"),
        })?;
        let skipped = text[start..].len() - text[start..].trim_start().len();
        let line = text[..start + skipped].matches('\n').count() + 1;
        start = stream.byte_offset();
        whole_floats_as_integers(&mut value);
        out.push(Loaded {
            number,
            value,
            lines: Lines(BTreeMap::from([(String::new(), line)])),
        });
    }
    Ok(out)
}

/// Go decodes JSON numbers as float64 and writes whole ones without a fraction: `1.0` is sent
/// as `1`.
fn whole_floats_as_integers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(v) = n.as_f64().and_then(float_json) {
                *value = v;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(whole_floats_as_integers),
        Value::Object(m) => m.values_mut().for_each(whole_floats_as_integers),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
