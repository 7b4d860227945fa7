#!/bin/sh
# Create the Docker secret files that infra/compose.yaml mounts at /run/secrets/<name>, with random values:
#   sh infra/secrets/create.sh
# An existing file is kept, never overwritten: Postgres keeps the password it was first initialised with,
# so rotating one is a deliberate, manual step (see README.md).
set -eu

cd "$(dirname "$0")"
# Without Swarm, compose bind-mounts these files with their host permissions: they must be readable by
# the containers' own users (postgres, the d2v user, root), so 0644 files in a 0700 directory that keeps
# every other host user out.
chmod 700 .
umask 022

create() {  # NAME VALUE
    if [ -e "$1" ]; then
        echo "kept     infra/secrets/$1 (exists)"
        return 0
    fi
    [ -n "$2" ] || { echo "create.sh: no value for $1 (is openssl installed?)" >&2; exit 1; }
    printf '%s\n' "$2" > "$1"
    echo "created  infra/secrets/$1"
}

create postgres_password "$(openssl rand -hex 20)"
create minio_root_user "d2v-admin"
create minio_root_password "$(openssl rand -hex 20)"
# An AWS credentials file (INI), as boto3 and DVC read it through AWS_SHARED_CREDENTIALS_FILE;
# minio-init creates this key in MinIO with the d2v policy.
secret=$(openssl rand -hex 20)
[ -n "$secret" ] || { echo "create.sh: openssl rand failed" >&2; exit 1; }
create d2v_s3_credentials "$(printf '[default]\naws_access_key_id = d2v-worker\naws_secret_access_key = %s' "$secret")"
