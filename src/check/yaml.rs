//! A YAML writer for manifests that `kubectl` reads back exactly. kubectl parses YAML 1.1, where
//! `yes`, `on`, `n` and friends are booleans and `1:20` is a number; serde_yaml_ng writes YAML
//! 1.2 and leaves those plain, which would turn `value: "on"` into `value: true` on the way to
//! the cluster. Here any string that could read as anything but itself is quoted; keys keep
//! their order, lists sit at their key's indentation like `kubectl get -o yaml`.

use serde_json::Value;

/// The document as block YAML, ending in a newline.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0, false),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0, false),
        scalar => {
            write_scalar(&mut out, scalar, 2);
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// A mapping at `level`; `inline` when its first key follows a `- ` already written.
fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, level: usize, inline: bool) {
    for (i, (key, value)) in map.iter().enumerate() {
        if !(inline && i == 0) {
            indent(out, level);
        }
        write_string(out, key, level + 2, false);
        out.push(':');
        write_child(out, value, level);
    }
}

/// A sequence whose dashes sit at `level`; `inline` when the first dash follows a `- `.
fn write_seq(out: &mut String, seq: &[Value], level: usize, inline: bool) {
    for (i, item) in seq.iter().enumerate() {
        if !(inline && i == 0) {
            indent(out, level);
        }
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => write_map(out, m, level + 2, true),
            Value::Array(a) if !a.is_empty() => write_seq(out, a, level + 2, true),
            scalar => {
                write_scalar(out, scalar, level + 2);
                out.push('\n');
            }
        }
    }
}

/// The value of a key written at `level`, after its colon.
fn write_child(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(out, m, level + 2, false);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(out, a, level, false);
        }
        scalar => {
            out.push(' ');
            write_scalar(out, scalar, level + 2);
            out.push('\n');
        }
    }
}

/// A scalar (or an empty collection); `block_indent` is where a literal block's lines go.
fn write_scalar(out: &mut String, value: &Value, block_indent: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(out, s, block_indent, true),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

fn write_string(out: &mut String, s: &str, block_indent: usize, allow_block: bool) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if allow_block && is_block_safe(s) {
        write_block(out, s, block_indent);
    } else {
        write_quoted(out, s);
    }
}

/// A double-quoted scalar; everything YAML does not print as itself is escaped.
fn write_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_special_char(c) || !is_printable(c) => {
                let n = u32::from(c);
                if n <= 0xFFFF {
                    out.push_str(&format!("\\u{n:04X}"));
                } else {
                    out.push_str(&format!("\\U{n:08X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// YAML's printable set (spec 1.2, production 1), less what `is_special_char` already covers.
fn is_printable(c: char) -> bool {
    matches!(u32::from(c), 0x20..=0x7E | 0xA0..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// Multi-line text (scripts, config files) as a literal block, which keeps it readable.
fn write_block(out: &mut String, s: &str, block_indent: usize) {
    let body = s.trim_end_matches('\n');
    let trailing = s.len() - body.len();
    out.push_str(match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    });
    for line in body
        .split('\n')
        .chain(std::iter::repeat_n("", trailing.saturating_sub(1)))
    {
        out.push('\n');
        if !line.is_empty() {
            indent(out, block_indent);
            out.push_str(line);
        }
    }
}

/// Words YAML 1.1 (kubectl) or 1.2 reads as booleans or null; compared case-insensitively,
/// which covers every spelling either version accepts.
const NOT_STRINGS: &[&str] = &[
    "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~",
];

/// Kubernetes quantities (`500m`, `1Gi`) begin with a digit but read as strings in every YAML
/// version; everything else that begins like a number is quoted.
fn is_quantity(s: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "m", "k", "M", "G", "T", "P",
    ];
    SUFFIXES.iter().any(|suffix| {
        s.strip_suffix(suffix).is_some_and(|number| {
            let mut parts = number.splitn(2, '.');
            let whole = parts.next().unwrap_or_default();
            let fraction = parts.next();
            !whole.is_empty()
                && whole.bytes().all(|b| b.is_ascii_digit())
                && fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
        })
    })
}

/// Characters never written bare: controls, and those YAML 1.1 reads as line breaks or drops.
fn is_special_char(c: char) -> bool {
    c.is_control()
        || !is_printable(c)
        || matches!(c, '\u{feff}' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// Whether `s` can be written bare and still read back as this very string.
fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let second = s.chars().nth(1);
    let lower = s.to_ascii_lowercase();
    let numberish = first.is_ascii_digit()
        || (matches!(first, '+' | '-' | '.') && second.is_some_and(|c| c.is_ascii_digit()))
        || matches!(lower.as_str(), ".inf" | "+.inf" | "-.inf" | ".nan");
    !(s.trim() != s
        || s.chars().any(is_special_char)
        || NOT_STRINGS.contains(&lower.as_str())
        || matches!(s, "<<" | "=")
        || (numberish && !is_quantity(s))
        // Indicators that start something other than a plain scalar. A dash is fine before a
        // non-space (`--flag`), as long as it does not start a document marker.
        || "?:,[]{}#&*!|>'\"%@`<".contains(first)
        || (first == '-' && (second.is_none_or(|c| c == ' ') || s.starts_with("---")))
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':'))
}

/// Whether `s` can be a literal block: several lines, none with trailing blanks, no control
/// characters, and a first line that does not start with a space (which would need an
/// explicit indentation indicator).
fn is_block_safe(s: &str) -> bool {
    let body = s.trim_end_matches('\n');
    s.contains('\n')
        && !body.is_empty()
        && !body.starts_with([' ', '\n'])
        && !body.chars().any(|c| c != '\n' && is_special_char(c))
        && body.split('\n').all(|l| l.trim_end() == l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::json;

    fn round_trip(v: &Value) -> Value {
        let text = to_string(v);
        let yaml = serde_yaml_ng::Value::deserialize(serde_yaml_ng::Deserializer::from_str(&text))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        serde_json::to_value(yaml).expect("json")
    }

    #[test]
    fn writes_a_manifest_like_kubectl() {
        let v = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app.kubernetes.io/name": "earthly"}},
            "spec": {
                "containers": [{"name": "e", "image": "earthly/earthly:v0.8.0", "args": ["--ci", "+build"],
                                "env": [{"name": "NO_DOCKER", "value": "1"}], "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}}}],
                "volumes": [{"name": "t", "emptyDir": {}}],
                "tolerations": []
            }
        });
        assert_eq!(
            to_string(&v),
            "apiVersion: v1
kind: Pod
metadata:
  name: p
  labels:
    app.kubernetes.io/name: earthly
spec:
  containers:
  - name: e
    image: earthly/earthly:v0.8.0
    args:
    - --ci
    - +build
    env:
    - name: NO_DOCKER
      value: \"1\"
    resources:
      limits:
        cpu: 500m
        memory: 1Gi
  volumes:
  - name: t
    emptyDir: {}
  tolerations: []
"
        );
    }

    #[test]
    fn quotes_what_yaml_1_1_would_read_as_something_else() {
        for s in [
            "yes",
            "Yes",
            "on",
            "OFF",
            "y",
            "N",
            "no",
            "true",
            "null",
            "~",
            "",
            "1",
            "0777",
            "1:20",
            "1_000",
            "0x1F",
            "1e3",
            "-1",
            ".5",
            ".inf",
            "2026-11-22",
            "0.5.20",
            "2026-11-22T14:20:31Z",
            "<<",
            "=",
            "a: b",
            "a #b",
            "a:",
            "- a",
            "-",
            "---x",
            " a",
            "a ",
            "#x",
            "*x",
            "&x",
            "!x",
            "%x",
            "@x",
            "`x",
            "|",
            ">",
            "'",
            "\"",
            "[a]",
            "{a}",
            "tab\there",
            "?x",
            ":x",
            ",x",
        ] {
            assert!(!is_plain_safe(s), "{s:?} must be quoted");
            assert_eq!(round_trip(&json!({"k": s})), json!({"k": s}), "{s:?}");
        }
    }

    #[test]
    fn leaves_ordinary_strings_plain() {
        for s in [
            "earthly/earthly:v0.8.0",
            "500m",
            "1Gi",
            "1.5Gi",
            "tcp://buildkitd:8372",
            "--config=/etc/x",
            "+build",
            "earthly.dev/role",
            "a-b",
            "ClientIP",
            "yes-please",
            "github.com/earthly/ci-example-project:main+build",
            "a,b",
        ] {
            assert!(is_plain_safe(s), "{s:?} should stay plain");
        }
    }

    #[test]
    fn multi_line_text_becomes_a_literal_block() {
        let v = json!({"script": "set -e\nearthly +build\n", "keep": "a\n\n", "strip": "a\nb", "indented": "  a\nb"});
        let text = to_string(&v);
        assert_eq!(
            text,
            "script: |\n  set -e\n  earthly +build\nkeep: |+\n  a\n\nstrip: |-\n  a\n  b\nindented: \"  a\\nb\"\n"
        );
        assert_eq!(round_trip(&v), v);
    }

    #[test]
    fn nested_sequences_and_empty_collections() {
        let v = json!({"a": [[1, 2], [], {}, [{"b": null}]], "c": {"d": []}});
        assert_eq!(round_trip(&v), v);
        assert_eq!(to_string(&json!([])), "[]\n");
        assert_eq!(to_string(&json!("on")), "\"on\"\n");
    }

    fn any_string() -> impl Strategy<Value = String> {
        prop_oneof![
            ".*",
            "[a-z0-9:./ #-]{0,12}",
            prop::sample::select(vec![
                "yes", "on", "1:20", "- x", "a\nb\n", "\n", "a\n\n\n", "x\r\ny", "\u{85}"
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((any_string(), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_value_reads_back_unchanged(v in any_value()) {
            prop_assert_eq!(round_trip(&v), v);
        }
    }
}
