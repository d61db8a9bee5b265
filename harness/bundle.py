"""The certification bundle: what a vendor hands a customer, checkable without the harness.

`bundle.tar.gz` (in the run folder) holds one folder, `gwlb-conformance-<run id>/`, with the
report (`index.html`), `results.json`, `junit.xml`, a copy of the appliance descriptor
(`appliance.yaml`), `environment.json` (kernel, OS, Python, harness and package versions) and
`SHA256SUMS` over all of them, in `sha256sum -c` format. The archive is reproducible: members are
sorted, owned by root and dated with the run's end, so the same files give the same bytes.
The report writer (harness/report/plugin.py) calls this at the end of every run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import subprocess
import tarfile
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

BUNDLE_NAME = "bundle.tar.gz"
ENVIRONMENT_NAME = "environment.json"
DESCRIPTOR_NAME = "appliance.yaml"
SUMS_NAME = "SHA256SUMS"
REPORT_FILES = ("index.html", "results.json", "junit.xml")
DEBIAN_PACKAGES = ("iproute2", "mininet", "python3", "tcpdump", "tshark")
"""Debian packages whose versions go into environment.json (the testbed's tools)."""


def environment(harness_version: str) -> dict[str, Any]:
    """Where the run happened: enough to reproduce it or explain a difference between two runs."""
    return {
        "harness_version": harness_version,
        "kernel": platform.release(),
        "kernel_build": platform.version(),
        "machine": platform.machine(),
        "os": _os_name(),
        "python": platform.python_version(),
        "python_packages": dict(sorted(
            (dist.metadata["Name"], dist.version) for dist in distributions() if dist.metadata["Name"]
        )),
        "debian_packages": _debian_versions(DEBIAN_PACKAGES),
    }


def write_environment(path: Path, harness_version: str) -> None:
    text = json.dumps(environment(harness_version), indent=2, ensure_ascii=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def write_bundle(run_dir: Path, *, run_id: str, descriptor: Path | None, mtime: float) -> Path:
    """Pack the run folder's report files into `run_dir/bundle.tar.gz`; return its path."""
    run_dir = Path(run_dir)
    members: dict[str, bytes] = {}
    for name in (*REPORT_FILES, ENVIRONMENT_NAME):
        members[name] = _read(run_dir / name, "report file")
    if descriptor is not None:
        members[DESCRIPTOR_NAME] = _read(Path(descriptor), "appliance descriptor")
    members[SUMS_NAME] = sha256sums(members).encode()
    folder = f"gwlb-conformance-{run_id}"
    path = run_dir / BUNDLE_NAME
    raw = io.BytesIO()
    with gzip.GzipFile(filename=BUNDLE_NAME.removesuffix(".gz"), mode="wb", fileobj=raw, mtime=int(mtime)) as packed:
        with tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_info(folder, tarfile.DIRTYPE, 0, mtime, 0o755))
            for name in sorted(members):
                data = members[name]
                tar.addfile(_info(f"{folder}/{name}", tarfile.REGTYPE, len(data), mtime, 0o644), io.BytesIO(data))
    path.write_bytes(raw.getvalue())
    return path


def sha256sums(files: dict[str, bytes]) -> str:
    """`sha256sum` output for the given files, sorted by name."""
    return "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items()))


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise HarnessError(f"cannot put the {what} {path} into the bundle: {error.strerror}") from None


def _info(name: str, kind: bytes, size: int, mtime: float, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime, info.mode = kind, size, int(mtime), mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "unknown")
    except OSError:
        return "unknown"


def _debian_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions; packages that are not installed (or no dpkg at all) are left out."""
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Package}\t${Version}\t${db:Status-Status}\n", *packages],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    versions = {}
    for line in done.stdout.splitlines():
        name, _, rest = line.partition("\t")
        version, _, status = rest.partition("\t")
        if status == "installed":
            versions[name] = version
    return versions
