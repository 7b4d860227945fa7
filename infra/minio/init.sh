#!/bin/sh
# One-shot MinIO setup, run by the minio-init service of infra/compose.yaml (`/bin/sh -eu init.sh`):
# creates the artifact and DVC buckets, versions the artifact bucket, and gives d2v its own access key
# with the `d2v` policy (d2v-policy.json: list/get/put on those two buckets only, never delete), not the
# MinIO root account and not MinIO's built-in all-buckets `readwrite` policy.
#
# Every step converges (safe on each `docker compose up`) and every error stops the script: nothing is
# swallowed, and the workers, which wait for this service to complete successfully, do not start.
# Credentials come from the Docker secret files only; they never reach a command line (mc reads them
# from stdin) or the output. POSIX sh and shell built-ins only: the minio/mc image has no grep/sed/awk.
#
# No default encryption (SSE-S3): MinIO needs a KMS for it (MINIO_KMS_SECRET_KEY or KES), which this
# single-machine stack does not run; the objects sit in the minio-data volume on the host's disk, so
# encrypt that disk where encryption at rest is required.
set -eu
set -f  # no pathname expansion: nothing here is a glob

secrets=${D2V_SECRETS_DIR:-/run/secrets}  # D2V_SECRETS_DIR: for tests/infra/test_compose.py only
here=${0%/*}
artifact_bucket=${D2V_ARTIFACT_BUCKET:-d2v-artifacts}
dvc_bucket=${D2V_DVC_BUCKET:-d2v-dvc}
cr=$(printf '\r')

fail() {
    echo "minio-init: $*" >&2
    exit 1
}

# read_secret NAME: the first line of the secret file NAME, which must exist and not be empty.
read_secret() {
    [ -r "$secrets/$1" ] || fail "no readable secret file $secrets/$1 (create it with infra/secrets/create.sh)"
    value=
    while IFS= read -r line || [ -n "$line" ]; do  # `|| [ -n ]`: a last line without a newline
        value=${line%"$cr"}
        break
    done < "$secrets/$1"
    [ -n "$value" ] || fail "secret file $secrets/$1 is empty"
    printf '%s' "$value"
}

# replace TEXT PLACEHOLDER VALUE: TEXT with every PLACEHOLDER replaced by VALUE.
replace() {
    done_part= rest=$1
    while :; do
        case $rest in
            *"$2"*) done_part=$done_part${rest%%"$2"*}$3; rest=${rest#*"$2"} ;;
            *) break ;;
        esac
    done
    printf '%s' "$done_part$rest"
}

# S3 bucket names (they go into the policy document as they are): 3 to 63 of a-z 0-9 . -
for bucket in "$artifact_bucket" "$dvc_bucket"; do
    case $bucket in
        *[!a-z0-9.-]*) fail "invalid bucket name '$bucket'" ;;
    esac
    [ ${#bucket} -ge 3 ] && [ ${#bucket} -le 63 ] || fail "invalid bucket name '$bucket'"
done

root_user=$(read_secret minio_root_user)
root_password=$(read_secret minio_root_password)

# The d2v key is the [default] profile of the AWS credentials file the workers read
# (AWS_SHARED_CREDENTIALS_FILE), so both sides use the same file and cannot drift apart.
[ -r "$secrets/d2v_s3_credentials" ] || fail "no readable secret file $secrets/d2v_s3_credentials"
key_id= key_secret= section=
while IFS=' 	=' read -r name value || [ -n "$name" ]; do
    value=${value%"$cr"}
    case $name in
        '['*) section=${name%"$cr"} ;;
        aws_access_key_id) [ "$section" != '[default]' ] || key_id=$value ;;
        aws_secret_access_key) [ "$section" != '[default]' ] || key_secret=$value ;;
    esac
done < "$secrets/d2v_s3_credentials"
[ -n "$key_id" ] && [ -n "$key_secret" ] \
    || fail "$secrets/d2v_s3_credentials: no aws_access_key_id and aws_secret_access_key under [default]"

# `mc alias set ALIAS URL` and `mc admin user add ALIAS` read the keys from stdin, one a line.
printf '%s\n%s\n' "$root_user" "$root_password" | mc alias set local http://minio:9000
mc mb --ignore-existing "local/$artifact_bucket" "local/$dvc_bucket"
mc version enable "local/$artifact_bucket"
# Adds the user, or sets the secret of an existing one (so editing the credentials file rotates it).
printf '%s\n%s\n' "$key_id" "$key_secret" | mc admin user add local

# `policy create` replaces an existing policy of that name, so edits to d2v-policy.json take effect.
policy=${TMPDIR:-/tmp}/d2v-policy.json
: > "$policy"
while IFS= read -r line || [ -n "$line" ]; do
    line=$(replace "$line" @D2V_ARTIFACT_BUCKET@ "$artifact_bucket")
    line=$(replace "$line" @D2V_DVC_BUCKET@ "$dvc_bucket")
    printf '%s\n' "$line" >> "$policy"
done < "$here/d2v-policy.json"
mc admin policy create local d2v "$policy"

# The policies attached to the key, comma-separated ("" for none), from `mc --json admin user info`.
attached_policies() {
    info=$(mc --json admin user info local "$1")
    case $info in
        *'"policyName":'*) ;;
        *) return 0 ;;
    esac
    names=${info#*\"policyName\":}
    names=${names#"${names%%[!\" ]*}"}
    printf '%s' "${names%%\"*}"
}

# Attach only when not attached yet: mc releases before RELEASE.2024-10-08 fail on re-attaching ("The
# specified policy change is already in effect"), so asking first keeps re-runs working on any mc
# while every real error still stops the script.
policies=$(attached_policies "$key_id")
case ",$policies," in
    *,d2v,*) echo "policy d2v already attached to $key_id" ;;
    *) mc admin policy attach local d2v --user "$key_id" ;;
esac
# d2v must be the key's only policy: stacks set up before this script attached the built-in
# all-buckets `readwrite` policy to it, which would keep granting delete and every other bucket.
saved_ifs=$IFS
IFS=,
for other in $policies; do
    [ "$other" = d2v ] || mc admin policy detach local "$other" --user "$key_id"
done
IFS=$saved_ifs

policies=$(attached_policies "$key_id")
[ "$policies" = d2v ] || fail "$key_id has policies '$policies', expected exactly d2v"
echo "buckets ready: $artifact_bucket (versioned) $dvc_bucket; key $key_id has policy d2v only"
