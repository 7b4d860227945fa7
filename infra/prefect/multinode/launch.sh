#!/usr/bin/env bash
# Launch multi-node data2vec pretraining on Kubernetes: renders torchrun-job.yaml and applies it.
#   NNODES=4 GPUS_PER_NODE=8 IMAGE=registry/d2v:0.1.0 \
#   TRAIN_ARGS="image --params params.yaml" infra/prefect/multinode/launch.sh
#   RENDER_ONLY=1 infra/prefect/multinode/launch.sh > job.yaml     # inspect instead of applying
# Every variable below may be overridden from the environment. A Prefect task can run this script
# (or apply the same rendered manifest) to drive a multi-node run from a flow.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

: "${NNODES:=2}"                       # pods (= nodes); torchrun --nnodes
: "${GPUS_PER_NODE:=8}"                # GPUs per pod; torchrun --nproc_per_node and the GPU limit
: "${JOB_NAME:=d2v-pretrain-$(date +%Y%m%d-%H%M%S)}"   # also the rendezvous id and Service name
: "${NAMESPACE:=d2v}"
: "${IMAGE:=ghcr.io/OWNER/d2v:0.1.0}"
: "${SERVICE_ACCOUNT:=d2v-training}"
: "${S3_SECRET:=d2v-s3-credentials}"
: "${RDZV_PORT:=29400}"
: "${RDZV_JOIN_TIMEOUT_S:=900}"        # pods land on nodes at different times (autoscaling)
: "${MAX_RESTARTS:=3}"                 # torchrun restarts all ranks after a failure, this often
: "${CPU_REQUEST:=32}"
: "${MEMORY_REQUEST:=256Gi}"
: "${MEMORY_LIMIT:=512Gi}"
: "${SHM_SIZE:=64Gi}"
: "${TRAIN_ARGS:=image}"               # arguments of `d2v pretrain`: the modality, then options
TEMPLATE_VARS=(NNODES GPUS_PER_NODE JOB_NAME NAMESPACE IMAGE SERVICE_ACCOUNT S3_SECRET RDZV_PORT
    RDZV_JOIN_TIMEOUT_S MAX_RESTARTS CPU_REQUEST MEMORY_REQUEST MEMORY_LIMIT SHM_SIZE TRAIN_ARGS)

fail() { echo "launch.sh: $*" >&2; exit 2; }
for n in NNODES GPUS_PER_NODE RDZV_PORT RDZV_JOIN_TIMEOUT_S MAX_RESTARTS; do
    [[ "${!n}" =~ ^[0-9]+$ && "${!n}" -ge 0 ]] || fail "$n must be a non-negative integer, got '${!n}'"
done
(( NNODES >= 1 && GPUS_PER_NODE >= 1 )) || fail "NNODES and GPUS_PER_NODE must be at least 1"
# JOB_NAME becomes a DNS label (<job>-<index>.<job>): lower-case alphanumerics and '-', <= 55 chars.
[[ "$JOB_NAME" =~ ^[a-z0-9]([-a-z0-9]{0,53}[a-z0-9])?$ ]] \
    || fail "JOB_NAME '$JOB_NAME' must be a DNS label: [a-z0-9-], at most 55 characters"
command -v python3 >/dev/null || fail "python3 not found (it renders the manifest)"

export "${TEMPLATE_VARS[@]}"
# Substitute only our variables (string.Template, the ${VAR} syntax of the manifest); anything left
# as ${...} afterwards is a typo in the manifest and stops the launch.
rendered="$(python3 - "$here/torchrun-job.yaml" "${TEMPLATE_VARS[@]}" <<'PY'
import os, re, string, sys
path, names = sys.argv[1], sys.argv[2:]
with open(path) as f:
    text = string.Template(f.read()).safe_substitute({name: os.environ[name] for name in names})
left = sorted(set(re.findall(r"\$\{(\w+)\}", text)))
if left:
    sys.exit(f"launch.sh: {path}: undeclared variables {left} (add them to TEMPLATE_VARS)")
print(text, end="")
PY
)"

if [[ "${RENDER_ONLY:-0}" == 1 ]]; then
    printf '%s\n' "$rendered"
    exit 0
fi
printf '%s\n' "$rendered" | kubectl apply -f -
echo "launched $JOB_NAME: $NNODES nodes x $GPUS_PER_NODE GPUs; follow with:"
echo "  kubectl -n $NAMESPACE logs -f -l batch.kubernetes.io/job-name=$JOB_NAME --max-log-requests=$NNODES"
