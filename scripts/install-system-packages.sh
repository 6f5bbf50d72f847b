#!/usr/bin/env bash
# System packages the tests need: Mesa EGL for headless OpenGL rendering, Chromium for browser tests,
# PostgreSQL server binaries for the team-store test (tests/test_postgres_store.py).
set -euo pipefail
packages=(libegl1 libegl-mesa0 libgl1-mesa-dri chromium postgresql)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
