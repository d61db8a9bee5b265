#!/usr/bin/env bash
# Installs what the project needs, idempotently: Debian packages, then .venv/ with the project.
# The venv uses Debian's python3 because Debian's mininet lives in its dist-packages; only the
# mininet package is made importable (a .pth pointing at a folder holding a link to it).
set -euo pipefail
cd "$(dirname "$0")/.."

# python3-dev, gcc and libc6-dev build the emulator's compiled fast path (setup.py) in `pip install -e .`.
# nftables: the PERF checks' ceiling reflects GENEVE at each target (harness/reflector.py).
APT_PACKAGES=(python3 python3-venv python3-dev gcc libc6-dev mininet iproute2 iptables nftables iputils-ping tcpdump procps tshark)
# Offline appliance images (debootstrap) and an engine for `launch.kind: docker`: Debian's
# docker.io, unless an engine is already installed.
APT_PACKAGES+=(debootstrap)
command -v dockerd >/dev/null || APT_PACKAGES+=(docker.io)
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
# Chromium only renders reports in the tests; Ubuntu ships it as a snap, so it is optional there.
if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed"; then
    if apt-cache policy chromium 2>/dev/null | grep -q "Candidate: [0-9]"; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
    else
        echo "setup: no Debian chromium package here; the report browser tests will be skipped" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv .venv
fi
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p .venv/system-links
ln -sfn /usr/lib/python3/dist-packages/mininet .venv/system-links/mininet
echo "$PWD/.venv/system-links" > "$site/system-links.pth"

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] \
    || [ harness/emulator/_fastpath.c -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e .
    touch "$stamp"
fi

# Start the Docker engine if it is installed but not answering. Without systemd (containers, CI)
# dockerd runs in the background without Docker's bridge or iptables rules: the testbed never uses
# Docker networking (containers get --network none and a moved veth).
if command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl start docker || true
    else
        echo "setup: starting dockerd in the background (log: /var/log/gwlb-conformance-dockerd.log)"
        setsid dockerd --bridge=none --iptables=false </dev/null >>/var/log/gwlb-conformance-dockerd.log 2>&1 &
    fi
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || echo "setup: warning: the Docker engine did not start; Docker tests will be skipped" >&2
fi
