#!/usr/bin/env bash
# `make setup`: Debian data packages + .venv installed from constraints.txt. Idempotent and quick when
# nothing changed: the venv is keyed on the hashes of pyproject.toml, constraints.txt and the Python
# version, the apt step on dpkg's own records.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
APT_LIST=infra/apt-packages.txt
# Downloads from PyPI and Debian's mirrors are sometimes cut off mid-file (seen in CI: a 46 MB
# wheel stopped at 23 MB six times running). A failed install is tried again from the start: what an
# earlier attempt finished downloading comes from pip's or apt's cache.
ATTEMPTS=${D2V_SETUP_ATTEMPTS:-3}
RETRY_DELAY_S=${D2V_SETUP_RETRY_DELAY_S:-10}
if [[ ! "$ATTEMPTS" =~ ^[1-9][0-9]*$ || ! "$RETRY_DELAY_S" =~ ^[0-9]+$ ]]; then
    echo "[setup] D2V_SETUP_ATTEMPTS must be a whole number >= 1 and D2V_SETUP_RETRY_DELAY_S one >= 0" \
        "(got '$ATTEMPTS' and '$RETRY_DELAY_S')" >&2
    exit 1
fi

log() { printf '[setup] %s\n' "$*"; }

# retry WHAT COMMAND...: run COMMAND until it succeeds, at most ATTEMPTS times; exit 1 after that.
retry() {
    local what=$1 attempt
    shift
    for ((attempt = 1; attempt <= ATTEMPTS; attempt++)); do
        "$@" && return 0
        if ((attempt == ATTEMPTS)); then
            echo "[setup] $what failed $ATTEMPTS times; see its messages above" >&2
            exit 1
        fi
        log "$what failed (attempt $attempt of $ATTEMPTS); retrying in ${RETRY_DELAY_S} s"
        sleep "$RETRY_DELAY_S"
    done
}

install_apt_packages() {
    local missing=()
    while read -r pkg; do
        [[ -z "$pkg" || "$pkg" == \#* ]] && continue
        if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done < "$APT_LIST"
    [[ ${#missing[@]} -eq 0 ]] && return 0
    local cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
    if [[ $(id -u) -eq 0 ]]; then
        log "installing Debian packages: ${missing[*]}"
        retry "apt-get install" bash -c "$cmd"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        log "installing Debian packages with sudo: ${missing[*]}"
        retry "apt-get install" sudo bash -c "$cmd"
    else
        echo "[setup] missing Debian packages: ${missing[*]}" >&2
        echo "[setup] run as root, then re-run make:  $cmd" >&2
        exit 1
    fi
}

install_venv() {
    if ! command -v "$PYTHON" >/dev/null; then
        echo "[setup] $PYTHON not found: d2v needs Python >= 3.11 (set PYTHON=/path/to/python3.x)" >&2
        exit 1
    fi
    local key
    key=$(cat pyproject.toml constraints.txt <("$PYTHON" --version) | sha256sum | cut -c1-16)
    local stamp="$VENV/.d2v-setup-$key"
    [[ -f "$stamp" ]] && return 0
    log "creating $VENV and installing d2v from constraints.txt (first time: a few minutes)"
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    retry "pip upgrade" "$VENV/bin/python" -m pip install --quiet --upgrade "pip==26.3"
    # --resume-retries: within one attempt, pip resumes a cut-off download this many times.
    retry "pip install" "$VENV/bin/python" -m pip install --quiet --resume-retries 10 \
        --constraint constraints.txt --editable ".[dev]"
    rm -f "$VENV"/.d2v-setup-*
    touch "$stamp"
    log "environment ready ($VENV)"
}

install_apt_packages
install_venv
