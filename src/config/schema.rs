//! The JSON schema of the policy file, derived from its types (schemars), for the chart's
//! `config` value (`scripts/gen-chart-docs.py`) and for editors checking a config file.

// The Kubernetes types in the file are described by name: the chart's schema generator
// (scripts/gen-chart-docs.py) defines these shapes once for the whole chart, and fails when a
// name has no definition. k8s-openapi's own schemas close no object and name no enum.
fn kubernetes_ref(name: &str) -> schemars::Schema {
    schemars::json_schema!({ "$ref": format!("#/definitions/{name}") })
}

pub(super) fn tolerations(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "array", "items": kubernetes_ref("toleration") })
}

pub(super) fn node_affinity(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    kubernetes_ref("nodeAffinity")
}

pub(super) fn scratch_source(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    kubernetes_ref("scratchVolumeSource")
}

/// The JSON schema (draft 7) of the policy file, from these types: the chart's `config` value
/// and editors validating a config file use it. Checks `validate` makes that a schema cannot
/// state (a glob compiles, a volume source is one Kubernetes knows) are not in it.
pub fn json_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft07()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    generator.into_root_schema_for::<super::Config>().to_value()
}
