//! Writing manifests that `kubectl` reads back exactly. kubectl parses YAML 1.1 (go-yaml v2),
//! where `yes`, `on`, `n` are booleans and `0755` is a number; serde-saphyr's writer quotes
//! every string a YAML 1.1 reader would take for something else (its default, `yaml_12: false`).
//! The tests read the output back with [`super::load`], the reader that types scalars as
//! kubectl does.

use serde_json::Value;

/// The document as block YAML, ending in a newline; sequences sit at their key's indentation,
/// like `kubectl get -o yaml`.
pub fn to_string(value: &Value) -> String {
    let options = serde_saphyr::ser_options! {
        // Multi-line text (scripts, config files) as literal blocks, which keep it readable...
        prefer_block_scalars: true,
        // ...but never folded: a long command line stays on one line, as it was written.
        folded_wrap_chars: usize::MAX,
    };
    // A serde_json::Value has string keys and finite numbers: serialising it cannot fail.
    let mut text = serde_saphyr::to_string_with_options(value, options).unwrap_or_default();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The output read back as kubectl reads it.
    fn round_trip(v: &Value) -> Value {
        let text = to_string(v);
        let mut docs = crate::check::load::load(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        assert_eq!(docs.len(), 1, "{text}");
        docs.remove(0).value
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
        ] {
            assert_ne!(
                to_string(&json!({"k": s})),
                format!("k: {s}\n"),
                "{s:?} must be quoted"
            );
            assert_eq!(round_trip(&json!({"k": s})), json!({"k": s}), "{s:?}");
        }
    }

    #[test]
    fn indicators_read_back_as_written() {
        for s in [
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
            assert_eq!(
                to_string(&json!({"k": s})),
                format!("k: {s}\n"),
                "{s:?} should stay plain"
            );
        }
    }

    #[test]
    fn multi_line_text_becomes_a_literal_block() {
        let v = json!({"script": "set -e\nearthly +build\n", "keep": "a\n\n", "strip": "a\nb", "indented": "  a\nb"});
        let text = to_string(&v);
        assert_eq!(
            text,
            "script: |\n  set -e\n  earthly +build\nkeep: |+\n  a\n\nstrip: |-\n  a\n  b\nindented: |2-\n    a\n  b\n"
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
