#!/usr/bin/env bash
# Renders the Kubernetes manifests (base and the example overlay) with
# `kubectl kustomize` and validates every object against the Kubernetes
# schemas, offline, with kubernetes-validate (PyPI) in strict mode (unknown
# fields refused). Then checks what the deployment relies on: a StatefulSet
# per role, each with a persistent volume, an init container that creates
# the keys, and scrape annotations; NetworkPolicies present.
set -euo pipefail
cd "$(dirname "$0")"

fail() {
    echo "kubernetes check: $*" >&2
    exit 1
}
command -v kubectl >/dev/null || fail "no kubectl (apt-get install kubernetes-client, or kubectl)"
command -v kubernetes-validate >/dev/null || fail "no kubernetes-validate (pip install kubernetes-validate)"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for target in base overlays/example; do
    file=$out/$(echo "$target" | tr / -).yaml
    kubectl kustomize "$target" >"$file" || fail "$target: kustomize failed"
    kubernetes-validate --strict --quiet "$file" || fail "$target: schema validation failed"
    for role in directory mixnode gateway; do
        python3 - "$file" "$role" <<'PY' || fail "$target: $role: see above"
import sys, yaml
path, role = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
sts = [d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == role]
assert len(sts) == 1, f"{role}: no StatefulSet"
spec = sts[0]["spec"]
pod = spec["template"]["spec"]
assert spec.get("volumeClaimTemplates"), f"{role}: no persistent volume"
assert pod.get("initContainers"), f"{role}: no init container to create the keys"
mounts = {m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
assert "/var/lib/mixnet/data" in mounts, f"{role}: the data volume is not mounted"
ann = spec["template"]["metadata"].get("annotations", {})
assert ann.get("prometheus.io/scrape") == "true", f"{role}: no scrape annotation"
assert any(d["kind"] == "Service" and d["metadata"]["name"] == role for d in docs), f"{role}: no Service"
assert sum(d["kind"] == "NetworkPolicy" for d in docs) >= 3, "NetworkPolicies missing"
PY
    done
    echo "kubernetes check: $target: $(grep -c '^kind:' "$file") objects rendered and valid"
done
