//! Reading `check` input: files, directories and standard input, split into YAML (or JSON)
//! documents and Kubernetes objects, each remembering the file and document it came from.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::Value;

use super::kinds;
use super::load::{Lines, load};

/// Extensions read from a directory, as `kubectl apply -f DIR` does.
const MANIFEST_EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// What the command line names with `-f`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `-`: standard input.
    Stdin,
    /// A file, or a directory whose manifest files are read in name order.
    Path(PathBuf),
}

impl Source {
    /// `-` is standard input, anything else a path.
    pub fn from_arg(arg: &Path) -> Self {
        if arg.as_os_str() == "-" {
            Source::Stdin
        } else {
            Source::Path(arg.to_owned())
        }
    }
}

/// How messages and reports name standard input.
pub const STDIN_NAME: &str = "<stdin>";

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Origin {
    /// The file as given on the command line (or found in a directory); `<stdin>` for `-`.
    pub file: String,
    /// 1-based number of the YAML document in the file, counting empty ones.
    pub document: usize,
    /// 1-based position in the `items` of a `List` document.
    pub item: Option<usize>,
    /// The `# Source:` comment `helm template` puts atop each document.
    pub helm_source: Option<String>,
    /// 1-based line where the object starts in the file.
    pub line: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} document {}", self.file, self.document)?;
        if let Some(item) = self.item {
            write!(f, " item {item}")?;
        }
        Ok(())
    }
}

/// Input that cannot be checked; every message names the file, and the document when there is
/// one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("{file}: {message}")]
    Read { file: String, message: String },
    #[error("{file}: no .yaml, .yml or .json files in this directory")]
    EmptyDirectory { file: String },
    #[error("{at}: {message}")]
    Document { at: Origin, message: String },
    #[error("standard input (-) can be read only once")]
    StdinTwice,
    #[error("no Kubernetes objects in the input")]
    NoObjects,
}

/// One YAML document holding an object, or a `List` of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub file: String,
    pub number: usize,
    pub helm_source: Option<String>,
    /// The document as read (a `List` keeps its `items`).
    pub value: Value,
    /// The objects in it: the document itself, or each item of a `List`.
    pub objects: Vec<Object>,
}

/// A Kubernetes object from the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub origin: Origin,
    /// The object as written (a `List` item gets the kind its list implies, when it names none).
    pub value: Value,
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    /// Where each of its fields starts in the file, by JSON pointer from the object.
    pub lines: Lines,
}

/// Reads every source in order. Errors are collected across sources, so one run reports every
/// broken file; within a file, reading stops at the first broken document (the YAML parser
/// cannot resynchronise after a syntax error).
pub fn read_sources(
    sources: &[Source],
    stdin: &mut dyn Read,
) -> Result<Vec<Document>, Vec<InputError>> {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    let mut stdin_read = false;
    for source in sources {
        let files = match source {
            Source::Stdin if stdin_read => {
                errors.push(InputError::StdinTwice);
                continue;
            }
            Source::Stdin => {
                stdin_read = true;
                let mut bytes = Vec::new();
                match stdin.read_to_end(&mut bytes) {
                    Ok(_) => vec![(STDIN_NAME.to_owned(), bytes)],
                    Err(e) => {
                        errors.push(InputError::Read {
                            file: STDIN_NAME.to_owned(),
                            message: e.to_string(),
                        });
                        continue;
                    }
                }
            }
            Source::Path(path) => match read_path(path) {
                Ok(files) => files,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            },
        };
        for (file, bytes) in files {
            match std::str::from_utf8(&bytes) {
                Ok(text) => match parse_documents(&file, text) {
                    Ok(docs) => documents.extend(docs),
                    Err(e) => errors.push(e),
                },
                Err(e) => errors.push(InputError::Read {
                    file,
                    message: format!("not UTF-8 text ({e})"),
                }),
            }
        }
    }
    if errors.is_empty() && documents.iter().all(|d| d.objects.is_empty()) {
        errors.push(InputError::NoObjects);
    }
    if errors.is_empty() {
        Ok(documents)
    } else {
        Err(errors)
    }
}

/// A file's bytes, or a directory's manifest files in name order.
fn read_path(path: &Path) -> Result<Vec<(String, Vec<u8>)>, InputError> {
    let name = path.display().to_string();
    let read_error = |file: String, e: std::io::Error| InputError::Read {
        file,
        message: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(|e| read_error(name.clone(), e))?;
    if !meta.is_dir() {
        let bytes = std::fs::read(path).map_err(|e| read_error(name.clone(), e))?;
        return Ok(vec![(name, bytes)]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| read_error(name.clone(), e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    if files.is_empty() {
        return Err(InputError::EmptyDirectory { file: name });
    }
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let file = p.display().to_string();
            std::fs::read(&p)
                .map(|bytes| (file.clone(), bytes))
                .map_err(|e| read_error(file, e))
        })
        .collect()
}

/// Splits a file into documents and objects, reading them as kubectl does ([`load`]).
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Document>, InputError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let fail = |at: &Origin, message: String| InputError::Document {
        at: at.clone(),
        message,
    };
    let loaded = load(text).map_err(|e| {
        let at = Origin {
            file: file.to_owned(),
            document: e.document,
            item: None,
            helm_source: None,
            line: None,
        };
        fail(&at, e.message)
    })?;
    let helm = super::helm::helm_sources(text, loaded.last().map_or(0, |d| d.number));
    let mut out = Vec::new();
    for doc in loaded {
        if doc.value.is_null() {
            continue; // empty, or only comments
        }
        let helm_source = helm
            .as_ref()
            .and_then(|h| h.get(doc.number - 1).cloned().flatten());
        let at = Origin {
            file: file.to_owned(),
            document: doc.number,
            item: None,
            helm_source: helm_source.clone(),
            line: doc.lines.line_of(""),
        };
        let objects =
            objects_of(&at, &doc.value, &doc.lines).map_err(|(at, message)| fail(&at, message))?;
        out.push(Document {
            file: file.to_owned(),
            number: doc.number,
            helm_source,
            value: doc.value,
            objects,
        });
    }
    Ok(out)
}

/// The objects of one document: itself, or the items of a `List` (`kind: List`, or a typed
/// list such as `PodList` from the API, whose items name no kind).
fn objects_of(at: &Origin, value: &Value, lines: &Lines) -> Result<Vec<Object>, (Origin, String)> {
    let map = value.as_object().ok_or_else(|| {
        (
            at.clone(),
            format!(
                "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                describe(value)
            ),
        )
    })?;
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    if let (Some(list_kind), Some(items)) = (kind.strip_suffix("List"), map.get("items")) {
        let items = items.as_array().ok_or_else(|| {
            (
                at.clone(),
                format!("{kind}: items is {}, expected a sequence", describe(items)),
            )
        })?;
        let list_api_version = map.get("apiVersion").and_then(Value::as_str);
        return items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let item_lines = lines.under(&format!("/items/{i}"));
                let at = Origin {
                    item: Some(i + 1),
                    line: item_lines.line_of("").or(at.line),
                    ..at.clone()
                };
                let mut item = item.clone();
                // `kubectl get -o yaml` items carry their kind; items of a typed list from the
                // API do not, and take the list's.
                if let Some(obj) = item.as_object_mut()
                    && !list_kind.is_empty()
                {
                    if !obj.contains_key("kind") {
                        obj.insert("kind".to_owned(), Value::String(list_kind.to_owned()));
                    }
                    if let (false, Some(v)) = (obj.contains_key("apiVersion"), list_api_version) {
                        obj.insert("apiVersion".to_owned(), Value::String(v.to_owned()));
                    }
                }
                object(at, item, item_lines)
            })
            .collect();
    }
    Ok(vec![object(at.clone(), value.clone(), lines.clone())?])
}

/// Checks that a value is an object the apiserver could take: apiVersion, kind, readable
/// metadata and a name (or generateName).
fn object(at: Origin, mut value: Value, lines: Lines) -> Result<Object, (Origin, String)> {
    let Some(map) = value.as_object() else {
        return Err((
            at,
            format!(
                "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                describe(&value)
            ),
        ));
    };
    let field = |name: &str| -> Result<String, String> {
        match map.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            None | Some(Value::Null) => Err(format!("{name} is missing")),
            Some(other) => Err(format!("{name} is {}, expected a string", describe(other))),
        }
    };
    let (api_version, kind) = match (field("apiVersion"), field("kind")) {
        (Ok(a), Ok(k)) => (a, k),
        (Err(e), _) | (_, Err(e)) => return Err((at, format!("not a Kubernetes object: {e}"))),
    };
    let metadata: ObjectMeta = match map.get("metadata") {
        None | Some(Value::Null) => ObjectMeta::default(),
        Some(m) => serde_path_to_error::deserialize(m).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "metadata".to_owned()
            } else {
                format!("metadata.{path}")
            };
            (at.clone(), format!("{kind}: {field}: {}", e.inner()))
        })?,
    };
    let named = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    if !named(&metadata.name) && !named(&metadata.generate_name) {
        return Err((
            at,
            format!("{kind}: metadata.name is missing (and there is no metadata.generateName)"),
        ));
    }
    kinds::read_as_kind(&api_version, &kind, &value).map_err(|e| {
        (
            at.clone(),
            format!(
                "{kind} {}: cannot be read as a {api_version} {kind}: {e}",
                name_of(&metadata)
            ),
        )
    })?;
    kinds::clear_server_fields(&mut value);
    Ok(Object {
        origin: at,
        value,
        api_version,
        kind,
        metadata,
        lines,
    })
}

/// `metadata.name`, or `generateName` followed by `*`.
pub fn name_of(metadata: &ObjectMeta) -> String {
    match (&metadata.name, &metadata.generate_name) {
        (Some(n), _) if !n.is_empty() => n.clone(),
        (_, Some(g)) => format!("{g}*"),
        _ => String::new(),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a sequence".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Document> {
        parse_documents("t.yaml", text).expect("parses")
    }

    fn error(text: &str) -> String {
        parse_documents("t.yaml", text)
            .expect_err("broken")
            .to_string()
    }

    fn names(docs: &[Document]) -> Vec<(usize, Option<usize>, String)> {
        docs.iter()
            .flat_map(|d| &d.objects)
            .map(|o| {
                (
                    o.origin.document,
                    o.origin.item,
                    format!("{}/{}", o.kind, o.metadata.name.clone().unwrap_or_default()),
                )
            })
            .collect()
    }

    #[test]
    fn counts_documents_including_empty_ones() {
        let docs = parse(
            "---\n---\n# only a comment\n---\nkind: Pod\napiVersion: v1\nmetadata: {name: a}\n---\n\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}",
        );
        assert_eq!(
            names(&docs),
            vec![
                (3, None, "Pod/a".to_owned()),
                (5, None, "Service/b".to_owned())
            ]
        );
    }

    #[test]
    fn reads_a_document_without_trailing_newline() {
        let docs = parse("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p");
        assert_eq!(names(&docs), vec![(1, None, "Pod/p".to_owned())]);
    }

    #[test]
    fn reads_json() {
        let docs = parse(
            "{\n\t\"apiVersion\": \"v1\",\n\t\"kind\": \"Pod\",\n\t\"metadata\": {\"name\": \"p\"}\n}\n",
        );
        assert_eq!(names(&docs), vec![(1, None, "Pod/p".to_owned())]);
    }

    #[test]
    fn expands_a_list_with_item_numbers() {
        let docs = parse(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a}\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: b}\nmetadata: {resourceVersion: \"\"}\n",
        );
        assert_eq!(
            names(&docs),
            vec![
                (1, Some(1), "Pod/a".to_owned()),
                (1, Some(2), "Deployment/b".to_owned())
            ]
        );
        assert_eq!(
            docs[0].objects[1].origin.to_string(),
            "t.yaml document 1 item 2"
        );
    }

    #[test]
    fn typed_list_items_take_the_lists_kind() {
        let docs =
            parse("apiVersion: apps/v1\nkind: DeploymentList\nitems:\n- metadata: {name: b}\n");
        let o = &docs[0].objects[0];
        assert_eq!(
            (o.api_version.as_str(), o.kind.as_str()),
            ("apps/v1", "Deployment")
        );
        assert_eq!(o.value["kind"], "Deployment");
    }

    #[test]
    fn empty_list_has_no_objects() {
        let docs = parse("apiVersion: v1\nkind: List\nitems: []\n");
        assert!(docs[0].objects.is_empty());
    }

    #[test]
    fn syntax_error_names_the_document_and_line() {
        assert_eq!(
            error(
                "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: b\n labels: {}\n"
            ),
            "t.yaml document 2: while parsing a block mapping, did not find expected key at line 9 column 2"
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert_eq!(
            error("apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\n"),
            "t.yaml document 1: metadata: duplicate key \"name\" at line 5 column 3 (kubectl refuses it too)"
        );
        assert_eq!(
            error("apiVersion: v1\nkind: Pod\nkind: Service\n"),
            "t.yaml document 1: duplicate key \"kind\" at line 3 column 1 (kubectl refuses it too)"
        );
    }

    #[test]
    fn a_scalar_document_is_not_an_object() {
        assert_eq!(
            error("just text\n"),
            "t.yaml document 1: expected a Kubernetes object (a mapping with apiVersion and kind), found the string \"just text\""
        );
    }

    #[test]
    fn missing_kind_is_named() {
        assert_eq!(
            error("---\napiVersion: v1\nmetadata: {name: a}\n"),
            "t.yaml document 1: not a Kubernetes object: kind is missing"
        );
    }

    #[test]
    fn missing_name_is_named() {
        assert_eq!(
            error("apiVersion: v1\nkind: Pod\nmetadata: {labels: {a: b}}\n"),
            "t.yaml document 1: Pod: metadata.name is missing (and there is no metadata.generateName)"
        );
    }

    #[test]
    fn generate_name_is_a_name() {
        let docs = parse("apiVersion: batch/v1\nkind: Job\nmetadata: {generateName: ci-}\n");
        assert_eq!(docs[0].objects.len(), 1);
    }

    #[test]
    fn unreadable_metadata_names_the_field() {
        assert_eq!(
            error("apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels:\n    version: 1\n"),
            "t.yaml document 1: Pod: metadata.labels.version: invalid type: integer `1`, expected a string"
        );
    }

    #[test]
    fn bad_list_item_names_the_item() {
        assert_eq!(
            error(
                "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a}\n- 42\n"
            ),
            "t.yaml document 1 item 2: expected a Kubernetes object (a mapping with apiVersion and kind), found the number 42"
        );
    }

    #[test]
    fn helm_source_comments_are_kept_per_document() {
        let docs = parse(
            "---\n# Source: chart/templates/sa.yaml\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\n---\n# Source: chart/templates/svc.yaml\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n",
        );
        let sources: Vec<_> = docs.iter().map(|d| d.helm_source.as_deref()).collect();
        assert_eq!(
            sources,
            vec![
                Some("chart/templates/sa.yaml"),
                Some("chart/templates/svc.yaml")
            ]
        );
    }

    #[test]
    fn stdin_only_once_and_every_error_reported() {
        let mut stdin: &[u8] = b"apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n";
        let errors = read_sources(
            &[
                Source::Stdin,
                Source::Stdin,
                Source::Path(PathBuf::from("/nonexistent/x.yaml")),
            ],
            &mut stdin,
        )
        .expect_err("errors");
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0], InputError::StdinTwice);
        assert!(errors[1].to_string().starts_with("/nonexistent/x.yaml: "));
    }

    #[test]
    fn input_without_objects_is_an_error() {
        let mut stdin: &[u8] = b"# nothing\n---\n";
        let errors = read_sources(&[Source::Stdin], &mut stdin).expect_err("empty");
        assert_eq!(errors, vec![InputError::NoObjects]);
    }

    #[test]
    fn directory_files_are_read_in_name_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, pod) in [("b.yml", "b"), ("a.yaml", "a"), ("c.json", "c")] {
            std::fs::write(
                dir.path().join(name),
                format!("{{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {{\"name\": \"{pod}\"}}}}"),
            )
            .expect("write");
        }
        std::fs::write(dir.path().join("README.md"), "not a manifest").expect("write");
        let docs = read_sources(
            &[Source::Path(dir.path().to_owned())],
            &mut std::io::empty(),
        )
        .expect("reads");
        let pods: Vec<_> = docs
            .iter()
            .map(|d| d.objects[0].metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(pods, ["a", "b", "c"]);
    }

    #[test]
    fn empty_directory_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let errors = read_sources(
            &[Source::Path(dir.path().to_owned())],
            &mut std::io::empty(),
        )
        .expect_err("empty dir");
        assert!(matches!(errors[0], InputError::EmptyDirectory { .. }));
    }
}
