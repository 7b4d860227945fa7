#!/usr/bin/env bash
# `make setup`: Debian data packages + .venv installed from constraints.txt. Idempotent and quick when
# nothing changed: the venv is keyed on the hashes of pyproject.toml, constraints.txt and the Python
# version, the apt step on dpkg's own records.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
APT_LIST=infra/apt-packages.txt
PIP_ATTEMPTS=${D2V_PIP_ATTEMPTS:-3}
PIP_RETRY_DELAY_S=${D2V_PIP_RETRY_DELAY_S:-10}

log() { printf '[setup] %s\n' "$*"; }

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
        bash -c "$cmd"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        log "installing Debian packages with sudo: ${missing[*]}"
        sudo bash -c "$cmd"
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
    "$VENV/bin/python" -m pip install --quiet --upgrade "pip==26.3"
    # PyPI downloads on CI machines are sometimes cut off mid-file (seen: a 46 MB wheel stopped at
    # 23 MB six times running). pip resumes within one attempt; a fresh attempt reconnects, and
    # what earlier attempts finished downloading comes from pip's cache.
    local attempt
    for ((attempt = 1; attempt <= PIP_ATTEMPTS; attempt++)); do
        if "$VENV/bin/python" -m pip install --quiet --resume-retries 10 \
            --constraint constraints.txt --editable ".[dev]"; then
            break
        fi
        if ((attempt == PIP_ATTEMPTS)); then
            echo "[setup] pip install failed $PIP_ATTEMPTS times; see pip's messages above" >&2
            exit 1
        fi
        log "pip install failed (attempt $attempt of $PIP_ATTEMPTS); retrying in ${PIP_RETRY_DELAY_S} s"
        sleep "$PIP_RETRY_DELAY_S"
    done
    rm -f "$VENV"/.d2v-setup-*
    touch "$stamp"
    log "environment ready ($VENV)"
}

install_apt_packages
install_venv
