#!/usr/bin/env bash
# Checks charts/earthly-webhook with real tools (install them first: scripts/install-tools.sh):
#   0. values.schema.json and README.md's values table match a fresh generation
#      (scripts/gen-chart-docs.py --check; needs cargo, for the config schema), and the
#      generator's own tests pass (scripts/test_gen_chart_docs.py);
#   1. values.schema.json closes every object (additionalProperties set at every level);
#   2. `helm lint --strict`, with the defaults and with each ci/*-values.yaml;
#   3. `helm template` of the defaults and of each ci/*-values.yaml, for each Kubernetes version in
#      $KUBE_VERSIONS, written to $OUT_DIR/<scenario>.k8s-<version>.yaml (tests/chart.rs reads them);
#   4. each render: structural checks (scripts/check_renders.py) and every object validated with
#      `kubernetes-validate --strict` against that Kubernetes version's schemas. The cert-manager
#      kinds Certificate and Issuer (cert-manager.io/v1) and the Prometheus Operator kinds
#      ServiceMonitor and PrometheusRule (monitoring.coreos.com/v1) are CRDs with no offline
#      schema: they are the only kinds skipped, and the skip is printed; any other kind without a
#      schema fails (tests/monitoring.rs checks the monitoring objects with promtool);
#   5. NOTES.txt renders for each scenario (helm install --dry-run=client, no cluster needed);
#   6. impossible value combinations must fail the render with the expected message.
#
# Environment:
#   TOOLS_DIR      where install-tools.sh put the tools (default: <repo>/.tools)
#   HELM           helm binary (default: $TOOLS_DIR/bin/helm)
#   OUT_DIR        where renders go (default: <repo>/target/chart-renders; emptied first)
#   KUBE_VERSIONS  Kubernetes versions to render and validate for (default: "1.25.0 1.35.0",
#                  the chart's minimum and the version of the bundled kubectl)
#   RELEASE, NAMESPACE  release name and namespace of the renders (default: earthly-webhook,
#                  earthly-system)
# Exit code: 0 when every check passed, 1 when any failed, 2 when a tool is missing.
set -uo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
chart="$repo_root/charts/earthly-webhook"
TOOLS_DIR="${TOOLS_DIR:-$repo_root/.tools}"
HELM="${HELM:-$TOOLS_DIR/bin/helm}"
KUBERNETES_VALIDATE="$TOOLS_DIR/bin/kubernetes-validate"
PYTHON="$TOOLS_DIR/bin/tools-python"
OUT_DIR="${OUT_DIR:-$repo_root/target/chart-renders}"
KUBE_VERSIONS="${KUBE_VERSIONS:-1.25.0 1.35.0}"
RELEASE="${RELEASE:-earthly-webhook}"
NAMESPACE="${NAMESPACE:-earthly-system}"

for tool in "$HELM" "$KUBERNETES_VALIDATE" "$PYTHON"; do
  if [[ ! -x "$tool" ]]; then
    echo "check-chart: $tool not found; run scripts/install-tools.sh first" >&2
    exit 2
  fi
done

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok    %s\n' "$*"; }
bad() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$*"; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/*.yaml

echo "== helm $("$HELM" version --short), kubernetes-validate $("$KUBERNETES_VALIDATE" --version)"

# --- 0. the generated files are fresh ------------------------------------------------------
echo "== values.schema.json and README.md are generated (scripts/gen-chart-docs.py --check)"
if out="$("$PYTHON" "$repo_root/scripts/test_gen_chart_docs.py" 2>&1)"; then
  ok "scripts/test_gen_chart_docs.py: the generator's own tests"
else
  bad "scripts/test_gen_chart_docs.py:"$'\n'"$out"
fi
if out="$("$PYTHON" "$repo_root/scripts/gen-chart-docs.py" --check 2>&1)"; then
  ok "values.schema.json and README.md match a fresh generation"
else
  bad "generated chart files are stale or the generator failed:"$'\n'"$out"
fi

# --- 1. the schema closes every object ----------------------------------------------------
echo "== values.schema.json"
if out="$("$PYTHON" - "$chart/values.schema.json" <<'PY' 2>&1
import json, sys
schema = json.load(open(sys.argv[1]))
problems = []
def walk(node, path):
    if isinstance(node, dict):
        if node.get("type") == "object" and "additionalProperties" not in node:
            problems.append(path or "/")
        if "properties" in node and node.get("additionalProperties") is not False:
            problems.append(f"{path} has properties but additionalProperties is not false")
        for k, v in node.items():
            walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            walk(v, f"{path}/{i}")
walk(schema, "")
for p in problems:
    print(f"object without additionalProperties: {p}")
sys.exit(1 if problems else 0)
PY
)"; then
  ok "every object in values.schema.json sets additionalProperties"
else
  bad "values.schema.json: $out"
fi

# --- 2. lint -------------------------------------------------------------------------------
echo "== helm lint"
scenarios=("$chart"/ci/*-values.yaml)
if out="$("$HELM" lint --strict "$chart" 2>&1)"; then
  ok "helm lint --strict (defaults)"
else
  bad "helm lint --strict (defaults):"$'\n'"$out"
fi
for values in "${scenarios[@]}"; do
  name="$(basename "$values" -values.yaml)"
  if out="$("$HELM" lint --strict "$chart" -f "$values" 2>&1)"; then
    ok "helm lint --strict -f ci/$(basename "$values")"
  else
    bad "helm lint --strict -f ci/$(basename "$values"):"$'\n'"$out"
  fi
done

# --- 3 and 4. render, check, validate ------------------------------------------------------
echo "== helm template + checks + kubernetes-validate --strict (Kubernetes $KUBE_VERSIONS)"
for version in $KUBE_VERSIONS; do
  for values in "${scenarios[@]}"; do
    name="$(basename "$values" -values.yaml)"
    render="$OUT_DIR/$name.k8s-$version.yaml"
    label="$name (Kubernetes $version)"
    if ! "$HELM" template "$RELEASE" "$chart" --namespace "$NAMESPACE" --kube-version "$version" \
      -f "$values" >"$render" 2>"$work/err"; then
      bad "$label: helm template failed: $(cat "$work/err")"
      continue
    fi
    if out="$("$PYTHON" "$repo_root/scripts/check_renders.py" "$render" --namespace "$NAMESPACE" \
      --values "$values" --kube-version "$version" --for-validation "$work/validate.yaml" 2>&1)"; then
      ok "$label: structure"$'\n'"$out"
    else
      bad "$label: structure"$'\n'"$out"
      continue
    fi
    # kubernetes-validate exits 0 on a kind it has no schema for (it only prints WARN), so its
    # output is read too: nothing but silence counts as a pass.
    out="$("$KUBERNETES_VALIDATE" --strict --quiet -k "$version" "$work/validate.yaml" 2>&1)"
    rc=$?
    count="$("$PYTHON" -c 'import sys, yaml; print(sum(1 for d in yaml.safe_load_all(open(sys.argv[1])) if d))' "$work/validate.yaml")"
    if [[ $rc -eq 0 && -z "$out" ]]; then
      ok "$label: $count objects valid against the Kubernetes $version schemas (strict)"
    else
      bad "$label: kubernetes-validate (rc $rc):"$'\n'"$out"
    fi
  done
done

# NOTES.txt is not part of `helm template`; a client-side dry-run install renders it offline.
echo "== NOTES.txt renders (helm install --dry-run=client)"
for values in "${scenarios[@]}"; do
  name="$(basename "$values" -values.yaml)"
  if out="$("$HELM" install "$RELEASE" "$chart" --namespace "$NAMESPACE" --dry-run=client -f "$values" 2>&1)" \
    && grep -q "kubectl label namespace" <<<"$out"; then
    ok "$name: NOTES.txt"
  else
    bad "$name: NOTES.txt did not render:"$'\n'"$(tail -n 5 <<<"$out")"
  fi
done

# --- 6. impossible combinations fail with a message -----------------------------------------
echo "== impossible values fail the render"
expect_failure() {
  local want="$1"
  shift
  if "$HELM" template "$RELEASE" "$chart" --namespace "$NAMESPACE" "$@" >/dev/null 2>"$work/err"; then
    bad "rendered although it should fail: $*"
  elif grep -qF -- "$want" "$work/err"; then
    ok "fails as expected: $* -> \"$want\""
  else
    bad "failed without \"$want\": $*"$'\n'"$(cat "$work/err")"
  fi
}
expect_failure "certificates.mode=existingSecret needs certificates.existingSecret.name" \
  --set certificates.mode=existingSecret
expect_failure "certificates.mode=existingSecret needs certificates.existingSecret.caBundle" \
  --set certificates.mode=existingSecret --set certificates.existingSecret.name=my-tls
expect_failure "cert-manager CA injector fills in the caBundle, so remove certificates.existingSecret.caBundle" \
  --set certificates.mode=certManager --set certificates.existingSecret.caBundle=LS0tLQ==
expect_failure "certificates.existingSecret.name is only used with certificates.mode=existingSecret" \
  --set certificates.existingSecret.name=my-tls
expect_failure "certificates.certManager.issuerRef.name is only used with certificates.mode=certManager" \
  --set certificates.certManager.issuerRef.name=platform-ca
expect_failure "replicaCount=0 with podDisruptionBudget.enabled=true" \
  --set replicaCount=0
expect_failure "podDisruptionBudget.minAvailable=1 with replicaCount=1 would block every node drain" \
  --set replicaCount=1
expect_failure "replicaCount=0 with webhooks.failurePolicy=Fail" \
  --set replicaCount=0 --set podDisruptionBudget.enabled=false
expect_failure "config.cluster.lookupTimeoutMs=5000 is not below webhooks.timeoutSeconds=5" \
  --set config.cluster.lookupTimeoutMs=5000
expect_failure "nothing would call the webhook" \
  --set webhooks.mutating.enabled=false --set webhooks.validating.enabled=false
expect_failure "engine=admissionPolicies needs ValidatingAdmissionPolicy" \
  --kube-version 1.29.0 --set engine=admissionPolicies
expect_failure "the chart's admission policies were generated for the default config" \
  --kube-version 1.35.0 --set engine=both --set admissionPolicies.mutating=false \
  --set 'config.detection.earthlyImages={ghcr.io/acme/earthly*}'
expect_failure "the image pattern \"*/*\" in config.detection has no literal part" \
  --kube-version 1.30.0 --set webhooks.matchConditions.enabled=true \
  --set-json 'config.detection.earthlyImages=["*/*"]'
expect_failure "serviceAccount.name must be set when serviceAccount.create is false" \
  --set serviceAccount.create=false
expect_failure "server.workerThreads=2 is more than resources.limits.cpu=1 can run at once" \
  --set server.workerThreads=2
expect_failure "server.workerThreads=3 is more than resources.limits.cpu=1500m can run at once" \
  --set server.workerThreads=3 --set resources.limits.cpu=1500m
expect_failure "metrics.prometheusRule.enabled=true selects the series of the ServiceMonitor's targets" \
  --set metrics.prometheusRule.enabled=true
expect_failure "certificateExpiry.criticalDays=14 must be below warningDays=14" \
  --set metrics.prometheusRule.enabled=true --set metrics.serviceMonitor.enabled=true \
  --set metrics.prometheusRule.certificateExpiry.criticalDays=14
expect_failure "not below the server's request timeout of 0.5s (webhooks.timeoutSeconds=1 minus 0.5 s)" \
  --set metrics.prometheusRule.enabled=true --set metrics.serviceMonitor.enabled=true \
  --set webhooks.timeoutSeconds=1 --set config.cluster.lookupTimeoutMs=500
expect_failure "terminationGracePeriodSeconds=30 does not leave room for server.shutdownDelay=15 plus server.shutdownGrace=20" \
  --set server.shutdownDelay=15
expect_failure "terminationGracePeriodSeconds=20 does not leave room for server.shutdownDelay=5 plus server.shutdownGrace=20" \
  --set terminationGracePeriodSeconds=20
# The schema rejects unknown keys (at the top and deep inside config) and bad enums.
expect_failure "additional properties 'replicas' not allowed" \
  --set replicas=3
expect_failure "additional properties 'cniMTU' not allowed" \
  --set config.mutation.cniMTU=1450
expect_failure "/config/policy/defaultMode" \
  --set config.policy.defaultMode=block
expect_failure "/config/mutation/scratchVolume/source" \
  --set-json 'config.mutation.scratchVolume.source={"emptyDir":{},"hostPath":{"path":"/x"}}'

echo
echo "renders in $OUT_DIR:"
ls -1 "$OUT_DIR" | sed 's/^/  /'
echo
echo "check-chart: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
