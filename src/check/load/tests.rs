use super::*;
use serde_json::json;

fn one(text: &str) -> Value {
    let mut docs = load(text).expect("loads");
    assert_eq!(docs.len(), 1);
    docs.remove(0).value
}

fn error(text: &str) -> String {
    load(text).expect_err("refused").message
}

#[test]
fn scalars_are_typed_as_kubectl_types_them() {
    assert_eq!(
        one(
            "a: 0755\nb: yes\nc: 'yes'\nd: 1:20\ne: 1e3\nf: !!str 12\ng: ~\nh: \"0755\"\ni: |\n  on\n"
        ),
        json!({"a": 493, "b": true, "c": "yes", "d": "1:20", "e": 1000, "f": "12", "g": null, "h": "0755", "i": "on\n"})
    );
}

#[test]
fn keys_become_json_strings_as_kubectl_makes_them() {
    assert_eq!(
        one("yes: a\n0x10: b\n1.5: c\n"),
        json!({"true": "a", "16": "b", "1.5": "c"})
    );
    assert!(error("~: a\n").starts_with("a mapping key must be a string"));
    assert!(error("[a]: b\n").starts_with("a mapping key must be a string"));
}

#[test]
fn merge_keys_follow_go_yaml_v2() {
    // Later entries override the merge; in a merged sequence the earlier mapping wins.
    assert_eq!(
        one("base: &b {x: 1, w: 1}\nother: &o {w: 2, z: 2}\nm:\n  <<: [*b, *o]\n  x: 3\n"),
        json!({"base": {"x": 1, "w": 1}, "other": {"w": 2, "z": 2}, "m": {"w": 1, "z": 2, "x": 3}})
    );
    assert!(error("m:\n  <<: 3\n").starts_with("a merge key (<<) takes a mapping"));
    // A quoted "<<" is an ordinary key.
    assert_eq!(one("'<<': {a: 1}\n"), json!({"<<": {"a": 1}}));
}

#[test]
fn lines_point_at_keys_and_merged_entries_at_the_merge() {
    let docs = load("a: 1\nspec:\n  containers:\n  - name: x\n    image: y\nm:\n  <<: {k: 1}\n")
        .expect("loads");
    let lines = &docs[0].lines;
    assert_eq!(lines.line_of(""), Some(1));
    assert_eq!(lines.line_of("/spec/containers/0"), Some(4));
    assert_eq!(lines.line_of("/spec/containers/0/image"), Some(5));
    assert_eq!(lines.line_of("/spec/containers/0/image/deeper"), Some(5));
    assert_eq!(lines.line_of("/m/k"), Some(7));
    assert_eq!(lines.under("/spec").line_of("/containers/0/name"), Some(4));
}

#[test]
fn documents_are_numbered_counting_empty_ones() {
    let docs = load("---\n---\na: 1\n---\n# c\n---\nb: 2\n").expect("loads");
    let numbers: Vec<_> = docs.iter().map(|d| (d.number, d.value.clone())).collect();
    assert_eq!(
        numbers,
        vec![
            (1, Value::Null),
            (2, json!({"a": 1})),
            (3, Value::Null),
            (4, json!({"b": 2}))
        ]
    );
}

#[test]
fn json_is_read_as_json_with_its_lines() {
    let docs = load("{\"a\": \"\\ud83d\\ude80\", \"n\": 1.0}\n\n{\"b\": 2}").expect("loads");
    assert_eq!(docs[0].value, json!({"a": "\u{1F680}", "n": 1}));
    assert_eq!(docs[1].lines.line_of("/b"), Some(3));
    let e = load("{\"a\": }").expect_err("broken");
    assert_eq!(
        (e.document, e.message.as_str()),
        (1, "expected value at line 1 column 7")
    );
}

#[test]
fn refuses_what_kubectl_cannot_send() {
    assert!(error("a: .nan\n").starts_with(".nan has no JSON form"));
    assert!(error("a: !!int x\n").starts_with("cannot read `x` as !!int"));
    assert!(error("a: !custom x\n").starts_with("tag !custom is not one kubectl reads"));
    let e = error("a: *nothing\n");
    assert!(e.contains("anchor"), "{e}");
}

#[test]
fn alias_bombs_and_deep_nesting_are_refused_not_run() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    assert!(error(&bomb).starts_with("aliases expand to more than"));
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let e = error(&deep);
    // granit-parser's own limit, or ours, whichever comes first: an error, not a stack overflow.
    assert!(
        e.contains("recursion limit") || e.starts_with("nested more than"),
        "{e}"
    );
}
