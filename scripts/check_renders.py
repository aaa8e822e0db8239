#!/usr/bin/env python3
"""Structural checks on one `helm template` render of charts/earthly-webhook.

Used by scripts/check-chart.sh (run with .tools/bin/tools-python, which has PyYAML):

    check_renders.py RENDER.yaml --namespace NS --for-validation OUT.yaml

Checks the properties that a schema cannot see (names within 63 characters, the webhook
entries' settings and selectors, caBundle/Secret/Certificate consistency, the exact RBAC, the
hardened pod), then writes the documents that kubernetes-validate can check to OUT.yaml: every
object except the cert-manager and Prometheus Operator kinds listed in SKIPPED_KINDS, which have
no schema offline. Monitoring objects (component `metrics`: the metrics Service, the dashboard
ConfigMap) are validated but left out of the checks of the webhook's own Service and ConfigMap.
Prints one line per problem and exits 1 if there is any.
"""

import argparse
import base64
import os
import subprocess
import sys
import tempfile

import yaml

# CRD objects (cert-manager, Prometheus Operator): kubernetes-validate only has the built-in
# Kubernetes schemas. tests/monitoring.rs checks the monitoring ones with promtool.
SKIPPED_KINDS = {
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

MODES = ("enforce", "warn", "audit")
EXPECTED_RBAC = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["services", "pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get"]},
]
# What the webhook entries register is checked against the server's rule registry by
# tests/chart.rs (chart_registers_exactly_what_the_registry_judges), the one contract; here only
# that every validating entry registers the same rules.


class Checker:
    def __init__(self, name):
        self.name = name
        self.problems = []

    def expect(self, cond, message):
        if not cond:
            self.problems.append(message)
        return cond


def rule_set(rules):
    out = set()
    for r in rules:
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                out.add((g, res, tuple(sorted(r.get("operations", [])))))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("render")
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--for-validation", required=True)
    ap.add_argument("--values", help="the values file the render used (for scenario checks)")
    ap.add_argument("--kube-version", default="", help="the --kube-version of the render")
    args = ap.parse_args()
    values = {}
    if args.values:
        with open(args.values) as f:
            values = yaml.safe_load(f) or {}

    with open(args.render) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    c = Checker(os.path.basename(args.render))
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)
        name = d.get("metadata", {}).get("name", "")
        c.expect(0 < len(name) <= 63, f"{d.get('kind')} name {name!r} is not 1-63 characters")

    def one(kind):
        # The webhook's own object of that kind; the monitoring objects are checked elsewhere.
        items = [d for d in by_kind.get(kind, []) if component(d) != "metrics"]
        c.expect(len(items) <= 1, f"expected at most one {kind}, found {len(items)}")
        return items[0] if items else None

    ns = args.namespace
    deploy = one("Deployment")
    service = one("Service")
    configmap = one("ConfigMap")
    c.expect(deploy is not None and service is not None and configmap is not None,
             "render lacks the Deployment, Service or ConfigMap")
    if not (deploy and service and configmap):
        return report(c)

    # --- the pod -------------------------------------------------------------------------
    pod = deploy["spec"]["template"]["spec"]
    containers = pod["containers"]
    c.expect(len(containers) == 1, "the webhook pod should have one container")
    ctr = containers[0]
    sc = ctr.get("securityContext", {})
    psc = pod.get("securityContext", {})
    c.expect(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true")
    c.expect(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
    c.expect("ALL" in sc.get("capabilities", {}).get("drop", []), "capabilities do not drop ALL")
    c.expect(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, "runAsNonRoot is not true")
    user = sc.get("runAsUser", psc.get("runAsUser"))
    c.expect(isinstance(user, int) and user > 0, f"runAsUser {user!r} is not a numeric non-root user")
    seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
    c.expect(seccomp == "RuntimeDefault", f"seccompProfile is {seccomp!r}")
    c.expect(pod.get("automountServiceAccountToken") is True, "automountServiceAccountToken is not true")
    c.expect(ctr.get("resources", {}).get("requests") and ctr.get("resources", {}).get("limits"),
             "resources requests/limits missing")
    ports = {p["name"]: p["containerPort"] for p in ctr.get("ports", [])}
    argv = ctr.get("args", [])
    c.expect(argv[:1] == ["serve"], f"args do not start with serve: {argv}")
    flags = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
    for flag in ("listen", "admin-listen", "tls-cert", "tls-key", "config", "log-format", "log-level", "worker-threads"):
        c.expect(flag in flags, f"--{flag} is not passed")
    c.expect(flags.get("listen", "").endswith(f":{ports.get('https')}"),
             f"--listen {flags.get('listen')} does not match the https port {ports.get('https')}")
    c.expect(flags.get("admin-listen", "").endswith(f":{ports.get('admin')}"),
             f"--admin-listen {flags.get('admin-listen')} does not match the admin port {ports.get('admin')}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = ctr.get(probe, {}).get("httpGet", {})
        c.expect(get.get("path") == path and get.get("port") in ("admin", ports.get("admin")),
                 f"{probe} is not GET {path} on the admin port: {get}")
    mounts = {m["name"]: m["mountPath"] for m in ctr.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    cm_dir = mounts.get("config")
    c.expect(cm_dir and flags.get("config") == f"{cm_dir}/config.yaml", "--config is not the mounted ConfigMap's file")
    c.expect(volumes.get("config", {}).get("configMap", {}).get("name") == configmap["metadata"]["name"],
             "the config volume is not this render's ConfigMap")
    c.expect("config.yaml" in configmap.get("data", {}), "the ConfigMap has no config.yaml")
    tls_dir = mounts.get("tls")
    c.expect(flags.get("tls-cert") == f"{tls_dir}/tls.crt" and flags.get("tls-key") == f"{tls_dir}/tls.key",
             "--tls-cert/--tls-key are not the mounted Secret's files")
    tls_secret = volumes.get("tls", {}).get("secret", {}).get("secretName")
    c.expect(bool(tls_secret), "no Secret volume for the certificate")
    c.expect(all("subPath" not in m for m in ctr.get("volumeMounts", [])),
             "a subPath mount would never see Secret or ConfigMap updates")
    c.expect("checksum/config" in deploy["spec"]["template"]["metadata"].get("annotations", {}),
             "no checksum/config annotation")

    # --- the Service ---------------------------------------------------------------------
    sports = service["spec"]["ports"]
    c.expect(len(sports) == 1, "the Service should expose one port")
    target = sports[0].get("targetPort")
    c.expect(target == "https" or target == ports.get("https"), f"Service targetPort {target!r} is not the https port")
    c.expect(service["spec"].get("selector") == deploy["spec"]["selector"]["matchLabels"],
             "the Service selector is not the Deployment's")

    # --- shutdown and rolling updates ------------------------------------------------------
    period = pod.get("terminationGracePeriodSeconds")
    c.expect(isinstance(period, int), "no terminationGracePeriodSeconds")
    seconds = {f: int(flags[f][:-1]) for f in ("shutdown-delay", "shutdown-grace")
               if flags.get(f, "").endswith("s") and flags[f][:-1].isdigit()}
    c.expect(len(seconds) == 2, "--shutdown-delay and --shutdown-grace are not both set in whole seconds")
    if isinstance(period, int) and len(seconds) == 2:
        c.expect(period > sum(seconds.values()),
                 f"terminationGracePeriodSeconds {period} is not above shutdown delay + grace {seconds}")
    ru = deploy["spec"].get("strategy", {}).get("rollingUpdate", {})
    c.expect(ru.get("maxUnavailable") == 0, "the rolling update may take a ready replica away (maxUnavailable != 0)")

    # --- PDB -----------------------------------------------------------------------------
    pdb = one("PodDisruptionBudget")
    if pdb:
        m = pdb["spec"].get("minAvailable")
        if isinstance(m, int):
            c.expect(m < deploy["spec"]["replicas"], "PDB minAvailable >= replicas blocks drains")
        c.expect(pdb["spec"]["selector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"],
                 "the PDB selector is not the Deployment's")

    # --- RBAC ----------------------------------------------------------------------------
    roles = {r["metadata"]["name"]: r for r in by_kind.get("ClusterRole", [])}
    bindings = by_kind.get("ClusterRoleBinding", [])
    sa_name = pod.get("serviceAccountName")
    webhook_bindings = [b for b in bindings
                        if any(s.get("name") == sa_name and s.get("namespace") == ns for s in b.get("subjects", []))]
    for b in webhook_bindings:
        role = roles.get(b["roleRef"]["name"])
        if c.expect(role is not None, f"binding {b['metadata']['name']} names a ClusterRole not in the render"):
            c.expect(role.get("rules") == EXPECTED_RBAC,
                     f"ClusterRole {role['metadata']['name']} rules are not exactly the lookups': {role.get('rules')}")

    # --- certificates and webhook configurations ----------------------------------------
    secrets = {s["metadata"]["name"]: s for s in by_kind.get("Secret", [])}
    certs = {x["metadata"]["name"]: x for x in by_kind.get("Certificate", [])}
    webhook_docs = by_kind.get("MutatingWebhookConfiguration", []) + by_kind.get("ValidatingWebhookConfiguration", [])
    c.expect(webhook_docs, "no webhook configuration rendered")
    cabundles = set()
    validating_rules = {}
    for doc in webhook_docs:
        kind = doc["kind"]
        base = "/mutate" if kind.startswith("Mutating") else "/validate"
        entries = doc.get("webhooks", [])
        paths = sorted(e["clientConfig"]["service"]["path"] for e in entries)
        c.expect(paths == sorted([base] + [f"{base}/{m}" for m in MODES]),
                 f"{kind} paths {paths} are not one per mode plus the plain path")
        inject = doc["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from")
        if inject:
            inj_ns, inj_name = inject.split("/", 1)
            c.expect(inj_ns == ns and inj_name in certs, f"{kind} injects from {inject}, not a Certificate of this render")
            if inj_name in certs:
                c.expect(certs[inj_name]["spec"]["secretName"] == tls_secret,
                         "the injected Certificate is not the one the pods mount")
        names = set()
        for e in entries:
            where = f"{kind} {e.get('name')}"
            c.expect(e["name"] not in names, f"{where}: duplicate name")
            names.add(e["name"])
            c.expect(e.get("sideEffects") == "None", f"{where}: sideEffects is not None")
            c.expect(e.get("admissionReviewVersions") == ["v1"], f"{where}: admissionReviewVersions is not [v1]")
            c.expect(e.get("matchPolicy") == "Equivalent", f"{where}: matchPolicy is not Equivalent")
            c.expect(e.get("failurePolicy") in ("Fail", "Ignore"), f"{where}: failurePolicy missing")
            c.expect(isinstance(e.get("timeoutSeconds"), int) and 1 <= e["timeoutSeconds"] <= 30,
                     f"{where}: timeoutSeconds not 1-30")
            svc = e["clientConfig"]["service"]
            c.expect(svc["name"] == service["metadata"]["name"] and svc["namespace"] == ns
                     and svc["port"] == sports[0]["port"], f"{where}: clientConfig does not point at the Service")
            if inject:
                c.expect("caBundle" not in e["clientConfig"], f"{where}: caBundle set although cert-manager injects it")
            else:
                c.expect(bool(e["clientConfig"].get("caBundle")), f"{where}: no caBundle")
                cabundles.add(e["clientConfig"].get("caBundle"))
            exprs = e.get("namespaceSelector", {}).get("matchExpressions", [])
            excluded = [x for x in exprs if x["key"] == "kubernetes.io/metadata.name" and x["operator"] == "NotIn"]
            c.expect(excluded and {ns, "kube-system"} <= set(excluded[0]["values"]),
                     f"{where}: the release namespace and kube-system are not excluded")
            c.expect(any(x["operator"] == "In" for x in exprs if x["key"] != "kubernetes.io/metadata.name"),
                     f"{where}: no opt-in namespace label")
            c.expect(any(x["operator"] == "NotIn" for x in e.get("objectSelector", {}).get("matchExpressions", [])),
                     f"{where}: no objectSelector opt-out")
            rules = rule_set(e.get("rules", []))
            if kind.startswith("Mutating"):
                c.expect(rules == {("", "pods", ("CREATE",))}, f"{where}: rules are not pods CREATE: {rules}")
                c.expect(e.get("reinvocationPolicy") == "IfNeeded", f"{where}: reinvocationPolicy is not IfNeeded")
            else:
                validating_rules.setdefault(frozenset(rules), []).append(where)
            for mc in e.get("matchConditions", []) or []:
                c.expect("request.resource.resource != 'pods'" in mc.get("expression", ""),
                         f"{where}: matchCondition {mc.get('name')} would also filter non-pod resources")

    c.expect(len(validating_rules) <= 1,
             f"validating entries register different rules: {list(validating_rules.values())}")

    # --- scenario expectations from the values file --------------------------------------
    mode = values.get("certificates", {}).get("mode", "chart")
    if mode == "existingSecret":
        pem = values["certificates"]["existingSecret"]["caBundle"].strip()
        want = base64.b64encode(pem.encode()).decode() if "-----BEGIN" in pem else pem
        c.expect(cabundles == {want}, "the caBundle is not the existingSecret.caBundle value")
        c.expect(tls_secret == values["certificates"]["existingSecret"]["name"], "the pods do not mount the existing Secret")
        c.expect(not secrets, "existingSecret mode rendered a Secret")
    c.expect((mode == "certManager") == bool(certs), f"certificates.mode={mode} but {len(certs)} Certificates rendered")
    want_mc = bool(values.get("webhooks", {}).get("matchConditions", {}).get("enabled")) and \
        version_tuple(args.kube_version) >= (1, 28)
    entries = [e for d in webhook_docs for e in d.get("webhooks", [])]
    with_mc = [e["name"] for e in entries if e.get("matchConditions")]
    c.expect(len(with_mc) == (len(entries) if want_mc else 0),
             f"matchConditions expected on {'every' if want_mc else 'no'} entry (Kubernetes {args.kube_version}), found on {with_mc}")

    if len(cabundles) > 1:
        c.problems.append("the webhook configurations carry different caBundles")
    if tls_secret in secrets:
        data = secrets[tls_secret].get("data", {})
        c.expect({"ca.crt", "tls.crt", "tls.key"} <= set(data), "the TLS Secret lacks ca.crt/tls.crt/tls.key")
        c.expect(cabundles == {data.get("ca.crt")}, "the caBundle is not the generated Secret's ca.crt")
        verify_chain(c, data, f"{service['metadata']['name']}.{ns}.svc")

    # --- cleanup hook --------------------------------------------------------------------
    for job in by_kind.get("Job", []):
        hook = job["metadata"].get("annotations", {}).get("helm.sh/hook")
        c.expect(hook == "pre-delete", f"Job {job['metadata']['name']} is not a pre-delete hook")
        jargs = job["spec"]["template"]["spec"]["containers"][0].get("args", [])
        for doc in webhook_docs:
            ref = f"{doc['kind'].lower()}/{doc['metadata']['name']}"
            c.expect(ref in jargs, f"the cleanup Job does not delete {ref}")

    with open(args.for_validation, "w") as out:
        kept = [d for d in docs if (d.get("apiVersion"), d.get("kind")) not in SKIPPED_KINDS]
        yaml.safe_dump_all(kept, out, sort_keys=False)
    skipped = sorted({f"{d['kind']}" for d in docs if (d.get("apiVersion"), d.get("kind")) in SKIPPED_KINDS})
    print(f"  {c.name}: {len(docs)} objects" + (f"; not schema-checked (CRDs): {', '.join(skipped)}" if skipped else ""))
    return report(c)


def component(doc):
    return doc.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component")


def version_tuple(v):
    parts = v.lstrip("v").split(".")
    try:
        return (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        return (0, 0)


def verify_chain(c, data, fqdn):
    """The generated serving certificate chains to the CA and names the Service."""
    try:
        subprocess.run(["openssl", "version"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        print("  (openssl not found: certificate chain not verified)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        ca, crt = os.path.join(tmp, "ca.crt"), os.path.join(tmp, "tls.crt")
        with open(ca, "wb") as f:
            f.write(base64.b64decode(data["ca.crt"]))
        with open(crt, "wb") as f:
            f.write(base64.b64decode(data["tls.crt"]))
        r = subprocess.run(["openssl", "verify", "-CAfile", ca, "-purpose", "sslserver", crt], capture_output=True, text=True)
        c.expect(r.returncode == 0, f"serving certificate does not verify against the CA: {r.stdout}{r.stderr}")
        r = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-ext", "subjectAltName"], capture_output=True, text=True)
        c.expect(f"DNS:{fqdn}" in r.stdout, f"serving certificate does not name {fqdn}: {r.stdout}")


def report(c):
    for p in c.problems:
        print(f"FAIL {c.name}: {p}")
    return 1 if c.problems else 0


if __name__ == "__main__":
    sys.exit(main())
