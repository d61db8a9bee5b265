#!/usr/bin/env bash
# Installs what the project needs, idempotently: Debian packages, then .venv/ with the project.
# The venv uses Debian's python3 because Debian's mininet lives in its dist-packages; only the
# mininet package is made importable (a .pth pointing at a folder holding a link to it).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3 python3-venv mininet iproute2 iputils-ping tcpdump procps)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv .venv
fi
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p .venv/system-links
ln -sfn /usr/lib/python3/dist-packages/mininet .venv/system-links/mininet
echo "$PWD/.venv/system-links" > "$site/system-links.pth"

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e .
    touch "$stamp"
fi
