#!/usr/bin/env bash
# Launch multi-node data2vec pretraining on Kubernetes: renders torchrun-job.yaml and applies it.
#   NNODES=4 GPUS_PER_NODE=8 IMAGE=registry/d2v:0.1.0 MODALITY=image \
#   DVC_REMOTE=s3://my-d2v-dvc/d2v infra/prefect/multinode/launch.sh
#   RENDER_ONLY=1 infra/prefect/multinode/launch.sh > job.yaml     # inspect instead of applying
# Every variable below may be overridden from the environment. A Prefect task can run this script
# (or apply the same rendered manifest) to drive a multi-node run from a flow.
# The pods pull the inputs of pretrain@$MODALITY from DVC_REMOTE (or find them in the DVC cache on
# DATA_PVC), run the stage with the rendezvous settings in their environment, and pod 0 pushes the
# outputs (docs/scale.md, "Running on Kubernetes").
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
: "${MODALITY:=image}"                 # the stage pretrain@$MODALITY; its options come from params.yaml
# --force: a stage DVC finds up to date would be skipped on pod 0 while the others wait for it at
# the rendezvous; --single-item: upstream stages are not checked (their data was pulled, not made).
: "${COMMAND:=dvc repro --single-item --force pretrain@${MODALITY}}"
: "${DVC_REMOTE:=}"                    # s3://<bucket>/<prefix>, or a DVC remote's path on DATA_PVC
: "${DATA_PVC:=}"                      # PersistentVolumeClaim mounted at /mnt/d2v (DVC cache); empty: node scratch
: "${PUSH:=1}"                         # pod 0 pushes the outputs to DVC_REMOTE when the stage succeeds
: "${GIT_URL:=}"                       # clone the code instead of using the image's tree
: "${GIT_REF:=}"
TEMPLATE_VARS=(NNODES GPUS_PER_NODE JOB_NAME NAMESPACE IMAGE SERVICE_ACCOUNT S3_SECRET RDZV_PORT
    RDZV_JOIN_TIMEOUT_S MAX_RESTARTS CPU_REQUEST MEMORY_REQUEST MEMORY_LIMIT SHM_SIZE DVC_REMOTE PUSH
    GIT_URL GIT_REF POD_ARGS DATA_VOLUME)

fail() { echo "launch.sh: $*" >&2; exit 2; }
[[ -z "${TRAIN_ARGS:-}" ]] || fail "TRAIN_ARGS is no longer used: the pods run the DVC stage" \
    "pretrain@\$MODALITY (options from params.yaml); set MODALITY, or COMMAND for another command"
for n in NNODES GPUS_PER_NODE RDZV_PORT RDZV_JOIN_TIMEOUT_S MAX_RESTARTS; do
    [[ "${!n}" =~ ^[0-9]+$ && "${!n}" -ge 0 ]] || fail "$n must be a non-negative integer, got '${!n}'"
done
(( NNODES >= 1 && GPUS_PER_NODE >= 1 )) || fail "NNODES and GPUS_PER_NODE must be at least 1"
# JOB_NAME becomes a DNS label (<job>-<index>.<job>): lower-case alphanumerics and '-', <= 55 chars.
[[ "$JOB_NAME" =~ ^[a-z0-9]([-a-z0-9]{0,53}[a-z0-9])?$ ]] \
    || fail "JOB_NAME '$JOB_NAME' must be a DNS label: [a-z0-9-], at most 55 characters"
[[ "$PUSH" == 0 || "$PUSH" == 1 ]] || fail "PUSH must be 0 or 1, got '$PUSH'"
# The pods need the stage's inputs from somewhere: a remote, or a cache already on the claim.
[[ -n "$DVC_REMOTE" || -n "$DATA_PVC" ]] \
    || fail "set DVC_REMOTE (s3://<bucket>/<prefix>, or a path on DATA_PVC) or DATA_PVC (a claim whose DVC cache holds the data)"
(( PUSH == 0 )) || [[ -n "$DVC_REMOTE" ]] || fail "PUSH=1 needs DVC_REMOTE; set PUSH=0 to keep outputs only in the pods"
command -v python3 >/dev/null || fail "python3 not found (it renders the manifest)"

export NNODES GPUS_PER_NODE JOB_NAME NAMESPACE IMAGE SERVICE_ACCOUNT S3_SECRET RDZV_PORT RDZV_JOIN_TIMEOUT_S \
    MAX_RESTARTS CPU_REQUEST MEMORY_REQUEST MEMORY_LIMIT SHM_SIZE DVC_REMOTE PUSH GIT_URL GIT_REF COMMAND DATA_PVC
# Substitute only our variables (string.Template, the ${VAR} syntax of the manifest); anything left
# as ${...} afterwards is a typo in the manifest and stops the launch. POD_ARGS and DATA_VOLUME are
# JSON (valid YAML flow style), which quotes any value safely.
rendered="$(python3 - "$here/torchrun-job.yaml" "${TEMPLATE_VARS[@]}" <<'PY'
import json, os, re, shlex, string, sys
path, names = sys.argv[1], sys.argv[2:]
claim = os.environ["DATA_PVC"]
computed = {
    "POD_ARGS": json.dumps(shlex.split(os.environ["COMMAND"])),
    "DATA_VOLUME": json.dumps({"name": "d2v-data", **({"persistentVolumeClaim": {"claimName": claim}}
                                                      if claim else {"emptyDir": {}})}),
}
values = {name: computed[name] if name in computed else os.environ[name] for name in names}
if not json.loads(values["POD_ARGS"]):
    sys.exit("launch.sh: COMMAND is empty")
with open(path) as f:
    text = string.Template(f.read()).safe_substitute(values)
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
