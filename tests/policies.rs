//! Equivalence of `earthly-webhook policies` with the webhook: the generated CEL is evaluated
//! with a CEL interpreter (the `cel` crate, with the strings and lists extensions Kubernetes also
//! serves, its list `indexOf` and MutatingAdmissionPolicy's `JSONPatch` implemented here) over
//! every object and AdmissionReview fixture, and must refuse exactly what the webhook refuses,
//! with the same message text, give the same footgun warnings, and mutate pods into the same
//! pod. Lookups are not the policies' business: the webhook's lookups here find an empty
//! cluster, so everything it still denies is a stateless rule, and every one of those must be in
//! the policies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cel::objects::Key;
use cel::{Context, Env, Value as Cel};
use earthly_webhook::check::input::parse_documents;
use earthly_webhook::check::request::{Submission, admission_request, is_namespaced};
use earthly_webhook::check::template::{template_path, template_pod};
use earthly_webhook::cluster::{MemoryCluster, NoCluster};
use earthly_webhook::config::{Config, FailureMode, Mode};
use earthly_webhook::policies::{self, Selection};
use earthly_webhook::review::{self, Action, Policy, Route};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};
use serde_json::{Value, json};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// JSON as CEL sees an object from the apiserver: integers are `int`, and a `null` field is
/// absent (the apiserver decodes objects into their Go types, where null is the zero value).
fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map_or_else(|| Cel::Float(n.as_f64().unwrap_or(0.0)), Cel::Int),
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(a) => Cel::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(o) => {
            let m: HashMap<Key, Cel> = o
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (Key::from(k.clone()), to_cel(v)))
                .collect();
            Cel::from(m)
        }
    }
}

/// MutatingAdmissionPolicy's `JSONPatch{op, path, value}`, read back as the map it stands for.
struct JsonPatchType(cel::common::types::Type);

impl cel::StructType for JsonPatchType {
    fn get_type(&self) -> &cel::common::types::Type {
        &self.0
    }

    fn new_value<'b, 'v>(
        &self,
        fields: std::collections::BTreeMap<String, cel::common::value::CowVal<'b, 'v>>,
    ) -> Result<Box<dyn cel::common::value::Val + 'v>, cel::ExecutionError> {
        let mut map: HashMap<Key, Cel> = HashMap::new();
        for (name, value) in fields {
            if !["op", "path", "value", "from"].contains(&name.as_str()) {
                return Err(cel::ExecutionError::function_error(
                    "JSONPatch",
                    format!("no field {name}"),
                ));
            }
            let value = Cel::try_from(&*value)
                .map_err(|_| cel::ExecutionError::function_error("JSONPatch", "not a value"))?;
            map.insert(Key::from(name), value);
        }
        Ok(Cel::from(map).try_into().expect("a map is a value"))
    }
}

/// Kubernetes' list library `indexOf`: the first position of an element in a list, -1 when
/// absent (k8s.io/apiserver/pkg/cel/library/lists.go).
fn list_index_of<'b, 'v>(
    args: Vec<cel::common::value::CowVal<'b, 'v>>,
) -> Result<cel::common::value::CowVal<'b, 'v>, cel::ExecutionError> {
    let err = || cel::ExecutionError::function_error("indexOf", "expects a list and a value");
    let [list, x] = args.as_slice() else {
        return Err(err());
    };
    let (Ok(Cel::List(list)), Ok(x)) = (Cel::try_from(list.as_ref()), Cel::try_from(x.as_ref()))
    else {
        return Err(err());
    };
    let at = list.iter().position(|e| *e == x).map_or(-1, |i| i as i64);
    let value: Box<dyn cel::common::value::Val> = Cel::Int(at).try_into().map_err(|_| err())?;
    Ok(value.into())
}

/// The CEL environment of Kubernetes admission policies, as far as the policies use it: the
/// strings and lists extensions, and MutatingAdmissionPolicy's `JSONPatch` type.
fn env() -> Arc<Env> {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("strings extension");
    env.add_extension(cel::extensions::lists)
        .expect("lists extension");
    use cel::common::types::{DYN_TYPE, LIST_TYPE};
    env.add_member_overload(
        "indexOf",
        "list_indexOf",
        LIST_TYPE,
        vec![DYN_TYPE],
        list_index_of,
    )
    .expect("list indexOf");
    let patch = cel::common::types::Type::new_struct("JSONPatch".to_owned());
    env.add_type(JsonPatchType(patch)).expect("JSONPatch type");
    Arc::new(env)
}

/// A CEL value as JSON, `JSONPatch` structs as their JSON form.
fn to_json(v: &Cel) -> Value {
    match v {
        Cel::Struct(s) => Value::Object(
            s.field_values()
                .iter()
                .map(|(k, v)| (k.clone(), to_json(&Cel::try_from(&**v).expect("a value"))))
                .collect(),
        ),
        Cel::List(l) => Value::Array(l.iter().map(to_json).collect()),
        Cel::Map(m) => Value::Object(
            m.map
                .iter()
                .map(|(k, v)| (k.to_string(), to_json(v)))
                .collect(),
        ),
        other => other.json().expect("JSON value"),
    }
}

/// Compiles each expression once: the policies hold a few dozen, evaluated for every fixture.
fn compiled(env: &Env, src: &str) -> Result<Arc<cel::Program>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<cel::Program>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(p) = cache.lock().expect("cache").get(src) {
        return Ok(p.clone());
    }
    let program = Arc::new(env.compile(src).map_err(|e| e.to_string())?);
    cache
        .lock()
        .expect("cache")
        .insert(src.to_owned(), program.clone());
    Ok(program)
}

fn run(env: &Env, ctx: &Context, what: &str, src: &str) -> Result<Cel, String> {
    let program = compiled(env, src).map_err(|e| format!("{what}: does not parse: {e}"))?;
    program.execute(ctx).map_err(|e| format!("{what}: {e:?}"))
}

/// Whether a policy's `matchConstraints` select the request (no subresources are matched).
fn constrained(policy: &Value, request: &Value) -> bool {
    policy["spec"]["matchConstraints"]["resourceRules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| {
            let has = |field: &str, v: &Value| {
                r[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x == v || x == "*")
            };
            has("apiGroups", &request["resource"]["group"])
                && has("resources", &request["resource"]["resource"])
                && has("operations", &request["operation"])
                && request["subResource"].as_str().unwrap_or("").is_empty()
        })
}

/// The context a policy's expressions see for `request`, with its variables evaluated in
/// order; `None` when the policy does not apply (constraints or matchConditions).
fn prepare(
    env: &Arc<Env>,
    policy: &Value,
    request: &Value,
) -> Result<Option<Context<'static, 'static>>, String> {
    let spec = &policy["spec"];
    if !constrained(policy, request) {
        return Ok(None);
    }
    let mut ctx = Context::with_env(env.clone());
    ctx.add_variable_from_value("object", to_cel(&request["object"]));
    ctx.add_variable_from_value("oldObject", to_cel(&request["oldObject"]));
    ctx.add_variable_from_value("request", to_cel(request));
    for c in spec["matchConditions"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or_default();
        match run(
            env,
            &ctx,
            name,
            c["expression"].as_str().unwrap_or_default(),
        )? {
            Cel::Bool(true) => {}
            Cel::Bool(false) => return Ok(None),
            other => return Err(format!("matchCondition {name} gave {other:?}")),
        }
    }
    let mut variables: HashMap<Key, Cel> = HashMap::new();
    for v in spec["variables"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default().to_owned();
        ctx.add_variable_from_value("variables", Cel::from(variables.clone()));
        let value = run(
            env,
            &ctx,
            &name,
            v["expression"].as_str().unwrap_or_default(),
        )?;
        variables.insert(Key::from(name), value);
    }
    ctx.add_variable_from_value("variables", Cel::from(variables));
    Ok(Some(ctx))
}

/// What one policy says about one request: `None` when it does not apply, else the messages of
/// the validations that fail.
fn evaluate(
    env: &Arc<Env>,
    policy: &Value,
    request: &Value,
) -> Result<Option<Vec<String>>, String> {
    let Some(ctx) = prepare(env, policy, request)? else {
        return Ok(None);
    };
    let mut failures = Vec::new();
    for (i, v) in policy["spec"]["validations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let what = format!("validation {i}");
        match run(
            env,
            &ctx,
            &what,
            v["expression"].as_str().unwrap_or_default(),
        )? {
            Cel::Bool(true) => {}
            Cel::Bool(false) => {
                let what = format!("messageExpression {i}");
                match run(
                    env,
                    &ctx,
                    &what,
                    v["messageExpression"].as_str().unwrap_or_default(),
                )? {
                    Cel::String(s) => failures.push(s.to_string()),
                    other => return Err(format!("{what} gave {other:?}")),
                }
            }
            other => return Err(format!("{what} gave {other:?}")),
        }
    }
    Ok(Some(failures))
}

/// The JSONPatch a mutating policy gives for `request` (empty when it does not apply).
fn mutation(env: &Arc<Env>, policy: &Value, request: &Value) -> Result<json_patch::Patch, String> {
    let Some(ctx) = prepare(env, policy, request)? else {
        return Ok(json_patch::Patch(Vec::new()));
    };
    let mut ops = Vec::new();
    for (i, m) in policy["spec"]["mutations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let what = format!("mutation {i}");
        let value = run(
            env,
            &ctx,
            &what,
            m["jsonPatch"]["expression"].as_str().unwrap_or_default(),
        )?;
        let Value::Array(list) = to_json(&value) else {
            return Err(format!("{what} gave {value:?}"));
        };
        ops.extend(list);
    }
    serde_json::from_value(Value::Array(ops)).map_err(|e| format!("not a JSON patch: {e}"))
}

/// Fixtures kubectl refuses too (tests/data/realworld/README.md): broken YAML, `value: true`.
const UNREADABLE: &[&str] = &[
    "/broken/",
    "self-hosted-satellite-pod",
    "pod-template-verbatim",
];

/// Every request the fixtures hold: AdmissionReviews as sent, objects as CREATEs.
fn requests() -> Vec<(String, AdmissionRequest<DynamicObject>)> {
    let mut out = Vec::new();
    for dir in ["admission-reviews", "policies/reviews"] {
        for path in files(&data().join(dir)) {
            let text = std::fs::read_to_string(&path).expect("fixture");
            let review: Value = serde_json::from_str(&text).expect("AdmissionReview");
            let request = serde_json::from_value(review["request"].clone()).expect("request");
            out.push((path.display().to_string(), request));
        }
    }
    for dir in [
        "realworld",
        "manifests",
        "k8s-api-testdata",
        "policies/objects",
    ] {
        for path in files(&data().join(dir)) {
            let name = path.display().to_string();
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            // What kubectl refuses never reaches an apiserver: no request to judge.
            let Ok(documents) = parse_documents(&name, &text) else {
                assert!(
                    UNREADABLE.iter().any(|u| name.contains(u)),
                    "{name} does not read"
                );
                continue;
            };
            for (i, o) in documents.iter().flat_map(|d| d.objects.iter()).enumerate() {
                let ns = o
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_owned());
                let ns = is_namespaced(&o.kind).then_some(ns.as_str());
                if let Ok(r) = admission_request(&Submission::create(&o.value, ns)) {
                    out.push((format!("{name}#{i} {}", o.kind), r));
                }
            }
        }
    }
    out
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("json" | "yaml" | "yml")
        ) {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn config(name: &str) -> Config {
    let path = data().join("policies").join(name);
    let mut c = if name.is_empty() {
        Config::default()
    } else {
        Config::load(&path).expect("config")
    };
    c.cluster.failure_mode = FailureMode::Allow;
    c
}

/// The request as the `request` variable of CEL shows it (`namespace` is '' when absent).
fn request_json(r: &AdmissionRequest<DynamicObject>) -> Value {
    let mut v = serde_json::to_value(r).expect("request json");
    if v["namespace"].is_null() {
        v["namespace"] = json!("");
    }
    v
}

async fn equivalence(config_name: &str) -> usize {
    let config = config(config_name);
    let objects = policies::generate(&config, &Selection::default());
    let is_vap = |o: &&Value| o["kind"] == "ValidatingAdmissionPolicy";
    let is_warnings = |o: &&Value| {
        o["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("-warnings"))
    };
    let vaps: Vec<&Value> = objects
        .iter()
        .filter(is_vap)
        .filter(|o| !is_warnings(o))
        .collect();
    let warning_policies: Vec<&Value> = objects.iter().filter(is_vap).filter(is_warnings).collect();
    let policy = Policy::new(config.clone()).expect("policy");
    let env = env();
    let requests = requests();
    assert!(requests.len() > 100, "only {} fixtures", requests.len());
    let empty = MemoryCluster::default();
    let (mut denied, mut warned) = (0, 0);
    let mut mismatches = Vec::new();
    for (name, request) in &requests {
        let route = Route {
            action: Action::Validate,
            mode: Some(Mode::Enforce),
        };
        // An empty cluster answers every lookup (nothing found), so no finding is lost to a
        // failed one; what needs a lookup finds nothing to refuse.
        let reviewed = review::review(&policy, &empty, route, request).await;
        let response = reviewed.response();
        let webhook = (!response.allowed).then(|| response.result.message.clone());
        let json = request_json(request);
        let mut messages = Vec::new();
        for vap in &vaps {
            match evaluate(&env, vap, &json) {
                Ok(found) => messages.extend(found.into_iter().flatten()),
                Err(e) => messages.push(format!(
                    "evaluation error in {}: {e}",
                    vap["metadata"]["name"]
                )),
            }
        }
        let cel = (!messages.is_empty()).then(|| messages.join("; "));
        let webhook_warnings = footgun_warnings(response.warnings.as_deref().unwrap_or_default());
        let mut cel_warnings = Vec::new();
        for p in &warning_policies {
            match evaluate(&env, p, &json) {
                Ok(found) => cel_warnings.extend(found.into_iter().flatten()),
                Err(e) => cel_warnings.push(format!(
                    "evaluation error in {}: {e}",
                    p["metadata"]["name"]
                )),
            }
        }
        cel_warnings.sort();
        warned += usize::from(!webhook_warnings.is_empty());
        if cel_warnings != webhook_warnings {
            mismatches.push(format!(
                "{name} warnings:\n  webhook: {webhook_warnings:?}\n  policies: {cel_warnings:?}"
            ));
        }
        denied += usize::from(webhook.is_some());
        if std::env::var_os("POLICIES_DEBUG").is_some() && webhook.is_some() {
            eprintln!("{name}: {webhook:?}");
        }
        if cel != webhook {
            mismatches.push(format!(
                "{name}:\n  webhook: {webhook:?}\n  policies: {cel:?}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "config {config_name:?}: {} of {} differ:\n{}",
        mismatches.len(),
        requests.len(),
        mismatches.join("\n")
    );
    assert!(warned >= 20, "the fixtures hold footgun warnings: {warned}");
    denied
}

/// What tells each kind of footgun warning (`rules::footguns`) from the webhook's other warnings.
const FOOTGUNS: [&str; 5] = [
    ") is not privileged (",
    " has no scratch volume at ",
    " serves buildkit over TCP without TLS (",
    " over plain TCP with TLS disabled (",
    " sets SRC_DIR, which Earthly no longer reads (",
];

/// The webhook's footgun warnings as the policies give them: one per kind, each container's
/// joined with "; ", sorted.
fn footgun_warnings(warnings: &[String]) -> Vec<String> {
    let mut out: Vec<String> = FOOTGUNS
        .iter()
        .map(|marker| {
            let of_kind: Vec<&str> = warnings
                .iter()
                .filter(|w| w.contains(marker))
                .map(String::as_str)
                .collect();
            of_kind.join("; ")
        })
        .filter(|w| !w.is_empty())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn policies_refuse_what_the_webhook_refuses_with_the_default_config() {
    let denied = equivalence("").await;
    assert!(denied >= 25, "the fixtures hold denials: {denied}");
}

#[tokio::test]
async fn policies_refuse_what_the_webhook_refuses_with_configured_images() {
    let denied = equivalence("config-globs.yaml").await;
    assert!(denied >= 35, "the fixtures hold denials: {denied}");
}

#[tokio::test]
async fn policies_refuse_what_the_webhook_refuses_in_sticky_mode() {
    // Only the role annotations are refused without a lookup in sticky mode.
    let denied = equivalence("config-sticky.yaml").await;
    assert!(denied >= 8, "the fixtures hold denials: {denied}");
}

/// Every pod CREATE the fixtures hold: pods as sent or written, and the pods the controllers of
/// workloads, Jobs and CronJobs would create from their templates.
fn pod_creates() -> Vec<(String, AdmissionRequest<DynamicObject>)> {
    let mut out: Vec<_> = requests()
        .into_iter()
        .filter(|(_, r)| {
            r.resource.resource == "pods"
                && r.sub_resource.is_none()
                && r.operation == Operation::Create
        })
        .collect();
    for dir in [
        "realworld",
        "manifests",
        "k8s-api-testdata",
        "policies/objects",
    ] {
        for path in files(&data().join(dir)) {
            let name = path.display().to_string();
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let Ok(documents) = parse_documents(&name, &text) else {
                continue;
            };
            for (i, o) in documents.iter().flat_map(|d| d.objects.iter()).enumerate() {
                let Some(at) = template_path(&o.api_version, &o.kind) else {
                    continue;
                };
                let ns = o
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_owned());
                let Some(pod) = template_pod(o, at, &ns) else {
                    continue;
                };
                if let Ok(r) = admission_request(&Submission::create(&pod, Some(&ns))) {
                    out.push((format!("{name}#{i} {} template", o.kind), r));
                }
            }
        }
    }
    out
}

/// The mutating policy gives the pod the webhook's patch gives, and nothing more when run
/// again on it (reinvocation). Pods the webhook refuses at /mutate (role annotations) get no
/// patch from the policy either: the validating policy refuses them.
async fn mutation_equivalence(config_name: &str) -> usize {
    let config = config(config_name);
    let objects = policies::generate(&config, &Selection::default());
    let map = objects
        .iter()
        .find(|o| o["kind"] == "MutatingAdmissionPolicy")
        .expect("a MutatingAdmissionPolicy");
    let policy = Policy::new(config.clone()).expect("policy");
    let env = env();
    let pods = pod_creates();
    assert!(pods.len() > 50, "only {} pods", pods.len());
    let (mut mutated, mut mismatches) = (0, Vec::new());
    for (name, request) in &pods {
        let route = Route {
            action: Action::Mutate,
            mode: Some(Mode::Enforce),
        };
        let reviewed = review::review(&policy, &NoCluster, route, request).await;
        let response = reviewed.response();
        let json = request_json(request);
        let object = json["object"].clone();
        let mut expected = object.clone();
        if let Some(bytes) = &response.patch {
            let patch: json_patch::Patch = serde_json::from_slice(bytes).expect("webhook patch");
            json_patch::patch(&mut expected, &patch).expect("webhook patch applies");
            mutated += 1;
        }
        let mut got = object.clone();
        let outcome = mutation(&env, map, &json).and_then(|p| {
            json_patch::patch(&mut got, &p)
                .map_err(|e| format!("policy patch does not apply: {e}"))?;
            if !response.allowed && !p.0.is_empty() {
                return Err(format!(
                    "the webhook refuses the pod, the policy patches it: {p:?}"
                ));
            }
            // Reinvoked on its own output, the policy changes nothing.
            let mut again = json.clone();
            again["object"] = got.clone();
            let mut twice = got.clone();
            let p2 = mutation(&env, map, &again)?;
            json_patch::patch(&mut twice, &p2)
                .map_err(|e| format!("second patch does not apply: {e}"))?;
            if twice != got {
                return Err(format!("not idempotent: {p2:?}"));
            }
            Ok(())
        });
        let pruned = |v: &Value| to_json(&to_cel(v));
        if let Err(e) = outcome {
            mismatches.push(format!("{name}: {e}"));
        } else if pruned(&got) != pruned(&expected) {
            mismatches.push(format!(
                "{name}:\n  webhook: {}\n  policy:  {}",
                pruned(&expected),
                pruned(&got)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "config {config_name:?}: {} of {} pods differ:\n{}",
        mismatches.len(),
        pods.len(),
        mismatches.join("\n")
    );
    mutated
}

#[tokio::test]
async fn mutating_policy_gives_the_webhooks_pod_with_the_default_config() {
    let mutated = mutation_equivalence("").await;
    assert!(mutated >= 20, "the fixtures hold mutations: {mutated}");
}

#[tokio::test]
async fn mutating_policy_gives_the_webhooks_pod_with_every_mutation_configured() {
    let mutated = mutation_equivalence("config-mutation.yaml").await;
    assert!(mutated >= 20, "the fixtures hold mutations: {mutated}");
}
