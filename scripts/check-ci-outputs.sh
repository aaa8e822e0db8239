#!/usr/bin/env bash
# Tests `check`'s CI integrations with their real consumers (issue 15):
#   - pre-commit (PyPI): `pre-commit try-repo` runs this repository's .pre-commit-hooks.yaml
#     (the `earthly-webhook-check-system` hook, with the built binary on PATH) in a temporary
#     git repository: it must pass with a good manifest, and fail naming the denial once a bad
#     one is added;
#   - junitparser (PyPI): reads `check -o junit` and must find one case per object and one
#     failure per denied object.
# (SARIF is validated against the official schema by `cargo test`, tests/check.rs.)
# Both tools are installed into $TOOLS_DIR/ci-venv, idempotently.
#
# Usage: scripts/check-ci-outputs.sh [BINARY]   (default: target/debug/earthly-webhook, built
#        with `cargo build --locked` when missing)
# Environment: TOOLS_DIR (default <repo>/.tools), PRE_COMMIT_VERSION, JUNITPARSER_VERSION.
# Exit code: 0 when every check holds, non-zero otherwise.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$repo_root/.tools}"
PRE_COMMIT_VERSION="${PRE_COMMIT_VERSION:-4.7.0}"
JUNITPARSER_VERSION="${JUNITPARSER_VERSION:-5.0.3}"

log() { printf 'check-ci-outputs: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

binary="${1:-$repo_root/target/debug/earthly-webhook}"
if [[ ! -x "$binary" ]]; then
  log "building $binary"
  (cd "$repo_root" && cargo build --locked --quiet)
fi
binary="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")"

# --- tools ----------------------------------------------------------------------------------
venv="$TOOLS_DIR/ci-venv"
if ! "$venv/bin/pre-commit" --version 2>/dev/null | grep -qx "pre-commit $PRE_COMMIT_VERSION" \
  || ! "$venv/bin/python" -c "import junitparser, sys; sys.exit(junitparser.version != '$JUNITPARSER_VERSION')" 2>/dev/null; then
  log "installing pre-commit $PRE_COMMIT_VERSION and junitparser $JUNITPARSER_VERSION into $venv"
  python3 -m venv "$venv" 2>/dev/null || {
    [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null || die "python3 -m venv failed; install python3-venv"
    log "installing python3-venv with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "pre-commit==$PRE_COMMIT_VERSION" "junitparser==$JUNITPARSER_VERSION"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- JUnit, read by junitparser ---------------------------------------------------------------
status=0
"$binary" check -f "$repo_root/tests/data/manifests/ci-formats" -o junit >"$work/report.xml" || status=$?
[[ $status == 1 ]] || die "check -o junit exited $status; expected 1 (one object in ci-formats is denied)"
"$venv/bin/python" - "$work/report.xml" <<'PY'
import sys
from junitparser import JUnitXml, Failure
xml = JUnitXml.fromfile(sys.argv[1])
cases = [case for suite in xml for case in suite]
failed = [case for case in cases if any(isinstance(r, Failure) for r in case.result)]
assert len(cases) == 3, f"{len(cases)} test cases, expected 3"
assert [c.name for c in failed] == ["Deployment ci/buildkitd (document 1)"], [c.name for c in failed]
assert failed[0].result[0].type == "buildkitd-replicas", failed[0].result[0].type
assert xml.tests == 3 and xml.failures == 1, (xml.tests, xml.failures)
with_output = [c.name for c in cases if c.system_out]
assert len(with_output) == 2, with_output
print(f"junitparser: {len(cases)} cases, {len(failed)} failure ({failed[0].result[0].type}), {len(with_output)} with system-out")
PY

# --- pre-commit, with the published hook --------------------------------------------------------
# try-repo reads .pre-commit-hooks.yaml from the repository's committed state: a copy with the
# working tree's hook file committed, so an uncommitted edit is tested too.
hooks_repo="$work/hooks-repo"
mkdir -p "$hooks_repo"
cp "$repo_root/.pre-commit-hooks.yaml" "$hooks_repo/"
git -C "$hooks_repo" init --quiet
git -C "$hooks_repo" add .pre-commit-hooks.yaml
git -C "$hooks_repo" -c user.name=ci -c user.email=ci@localhost commit --quiet -m hooks

manifests="$work/manifests"
mkdir -p "$manifests/k8s"
git -C "$manifests" init --quiet
cp "$repo_root/tests/data/manifests/ci-formats/runner-job.yaml" "$manifests/k8s/"
git -C "$manifests" add k8s

export PATH="$(dirname "$binary"):$PATH"
export PRE_COMMIT_HOME="$work/pre-commit-home"
try_repo() {
  (cd "$manifests" && "$venv/bin/pre-commit" try-repo "$hooks_repo" earthly-webhook-check-system --all-files 2>&1)
}
out="$(try_repo)" || die "pre-commit failed on a good manifest:"$'\n'"$out"
grep -q "earthly-webhook check (installed binary).*Passed" <<<"$out" || die "no Passed line:"$'\n'"$out"
log "pre-commit passes a good manifest"

cp "$repo_root/tests/data/manifests/ci-formats/buildkitd-three-replicas.yaml" "$manifests/k8s/"
git -C "$manifests" add k8s
if out="$(try_repo)"; then
  die "pre-commit passed a manifest the policy denies:"$'\n'"$out"
fi
grep -q "earthly-webhook check (installed binary).*Failed" <<<"$out" || die "no Failed line:"$'\n'"$out"
grep -q "asks for 3 replicas" <<<"$out" || die "the denial is not shown:"$'\n'"$out"
log "pre-commit fails a denied manifest, showing the denial"
