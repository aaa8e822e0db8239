//! The fuzz oracle (`fuzz/oracle.rs`) on the stable toolchain: every seed of the checked-in
//! corpus, then bytes and JSON mutated from the captured reviews. The coverage-guided run is
//! `scripts/fuzz.sh` (docs/fuzzing.md); this keeps the same properties under `cargo test`.

#[path = "../fuzz/oracle.rs"]
mod oracle;

use std::path::Path;
use std::sync::LazyLock;

use earthly_webhook::cluster::NoCluster;
use earthly_webhook::review::{self, Action, Route};
use proptest::prelude::*;
use serde_json::{Value, json};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/review_body");
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .filter_map(Result::ok)
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("seed");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    seeds.sort();
    seeds
}

static SEEDS: LazyLock<Vec<(String, Vec<u8>)>> = LazyLock::new(corpus);

#[test]
fn every_corpus_seed_holds_the_properties() {
    assert!(SEEDS.len() >= 20, "the corpus lost its seeds");
    for (name, body) in SEEDS.iter() {
        eprintln!("{name}");
        oracle::check_everywhere(body);
    }
}

/// The checked-in seed called `name`.
fn seed(name: &str) -> &'static [u8] {
    &SEEDS
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no seed {name}"))
        .1
}

/// A plain `/mutate` call.
const MUTATE: Route = Route {
    action: Action::Mutate,
    mode: None,
};

#[test]
fn field_order_does_not_change_the_answer() {
    let (policy, route) = (&oracle::POLICIES[0], MUTATE);
    for name in [
        "pod-create-earthly-all-in-one-from-job.json",
        "pod-create-buildkitd-from-replicaset.json",
        "pod-create-unrelated-multicontainer.json",
    ] {
        let body = seed(name);
        let reordered = oracle::reordered(body).expect("a review");
        assert_ne!(reordered, body, "the fields moved");
        let answer = |b: &[u8]| {
            let r = oracle::run(review::review_body(policy, &NoCluster, route, b)).expect("ok");
            r.to_json().expect("json")
        };
        assert_eq!(answer(&reordered), answer(body));
    }
}

/// The body is decoded from `&str` after one UTF-8 check; bytes that are not UTF-8, even in a
/// field no rule reads, are reported where they are.
#[test]
fn a_body_that_is_not_utf8_is_refused_saying_where() {
    let (policy, route) = (&oracle::POLICIES[0], MUTATE);
    let seed = seed("pod-create-earthly-all-in-one-from-job.json");
    let text = std::str::from_utf8(seed).expect("the seed is UTF-8");
    // A string in `managedFields`, which no rule reads.
    let at = text.find("kube-controller-manager").expect("manager") + "kube-".len();
    let mut body = seed.to_vec();
    body.insert(at, 0xff);
    let error =
        oracle::run(review::review_body(policy, &NoCluster, route, &body)).expect_err("refused");
    assert!(
        error.to_string().contains("invalid unicode code point"),
        "the answer does not say what is wrong: {error}"
    );
}

/// A seed with some bytes flipped, inserted, removed, or cut off.
fn mutated_bytes() -> impl Strategy<Value = Vec<u8>> {
    let edit = prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| (0u8, i, b)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| (1u8, i, b)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| (2u8, i, b)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| (3u8, i, b)),
    ];
    (
        any::<prop::sample::Index>(),
        prop::collection::vec(edit, 1..6),
    )
        .prop_map(|(seed, edits)| {
            let mut body = SEEDS[seed.index(SEEDS.len())].1.clone();
            for (kind, at, byte) in edits {
                if body.is_empty() {
                    body.push(byte);
                    continue;
                }
                let i = at.index(body.len());
                match kind {
                    0 => body[i] ^= byte | 1,
                    1 => body.insert(i, byte),
                    2 => {
                        body.remove(i);
                    }
                    _ => body.truncate(i),
                }
            }
            body
        })
}

/// Values that are wrong in interesting ways where a field is expected.
fn odd_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!(u64::MAX)),
        Just(json!("")),
        Just(json!("earthly/earthly")),
        Just(json!("/tmp/earthly/")),
        Just(json!([])),
        Just(json!({})),
        Just(json!([{}])),
        Just(json!({"name": "earthly-tmp", "mountPath": "/tmp/earthly"})),
        Just(json!({"earthly.dev/role": "buildkitd"})),
        Just(json!([{"name": "x", "image": "earthly/buildkitd"}])),
        "[a-z/~.-]{0,12}".prop_map(Value::String),
    ]
}

/// Every JSON pointer in a document, parents before children.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let token = k.replace('~', "~0").replace('/', "~1");
                pointers(c, format!("{at}/{token}"), out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// A seed with one to three fields replaced by odd values (or removed).
fn mutated_json() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<prop::sample::Index>(),
        prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                prop::option::weighted(0.8, odd_value()),
            ),
            1..4,
        ),
    )
        .prop_map(|(seed, edits)| {
            let json_seeds: Vec<&Vec<u8>> = SEEDS
                .iter()
                .filter(|(n, _)| n.ends_with(".json"))
                .map(|(_, b)| b)
                .collect();
            let body = json_seeds[seed.index(json_seeds.len())];
            let Ok(mut doc) = serde_json::from_slice::<Value>(body) else {
                return body.clone();
            };
            for (at, value) in edits {
                let mut all = Vec::new();
                pointers(&doc, String::new(), &mut all);
                let target = &all[at.index(all.len())];
                if target.is_empty() {
                    continue;
                }
                match value {
                    Some(v) => {
                        if let Some(slot) = doc.pointer_mut(target) {
                            *slot = v;
                        }
                    }
                    None => {
                        let (parent, key) = target.rsplit_once('/').expect("pointer");
                        let key = key.replace("~1", "/").replace("~0", "~");
                        match doc.pointer_mut(parent) {
                            Some(Value::Object(m)) => {
                                m.remove(&key);
                            }
                            Some(Value::Array(a)) => {
                                if let Ok(i) = key.parse::<usize>() {
                                    a.remove(i);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            serde_json::to_vec(&doc).expect("JSON")
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn mutated_bytes_hold_the_properties(body in mutated_bytes()) {
        oracle::check_everywhere(&body);
    }

    #[test]
    fn mutated_json_holds_the_properties(body in mutated_json()) {
        oracle::check_everywhere(&body);
    }
}
