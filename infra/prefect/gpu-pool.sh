#!/usr/bin/env bash
# Create or update the Kubernetes GPU work pool from k8s-gpu-job-template.json (idempotent).
#   export PREFECT_API_URL=http://<prefect-server>:4200/api
#   D2V_IMAGE=registry.example.com/d2v:0.1.0 infra/prefect/gpu-pool.sh
# Optional: POOL (default d2v-gpu), D2V_K8S_NAMESPACE, D2V_GPUS_PER_NODE set the template's defaults;
# a deployment can still override any variable with `job_variables` in prefect.yaml.
# The worker runs in the cluster (e.g. Prefect's Helm chart) and needs prefect-kubernetes:
#   prefect worker start --pool d2v-gpu --type kubernetes
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
POOL=${POOL:-d2v-gpu}
PREFECT=${PREFECT:-prefect}

template="$(mktemp)"
trap 'rm -f "$template"' EXIT
# Bake the site's defaults into a copy of the template; the committed file stays generic.
python3 - "$here/k8s-gpu-job-template.json" "$template" <<'PY'
import json, os, sys
source, target = sys.argv[1], sys.argv[2]
with open(source) as f:
    template = json.load(f)
props = template["variables"]["properties"]
overrides = {"image": os.environ.get("D2V_IMAGE"), "namespace": os.environ.get("D2V_K8S_NAMESPACE"),
             "gpus_per_node": os.environ.get("D2V_GPUS_PER_NODE")}
for name, value in overrides.items():
    if value:
        props[name]["default"] = int(value) if props[name]["type"] == "integer" else value
with open(target, "w") as f:
    json.dump(template, f, indent=2)
PY

if "$PREFECT" work-pool inspect "$POOL" >/dev/null 2>&1; then
    "$PREFECT" work-pool update "$POOL" --base-job-template "$template"
else
    "$PREFECT" work-pool create "$POOL" --type kubernetes --base-job-template "$template"
fi
"$PREFECT" work-pool inspect "$POOL"
