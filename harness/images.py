"""Appliance images built offline: no image registry is ever contacted.

The base image is a minimal Debian made with `debootstrap` from the Debian package mirror apt
already uses, and imported with `docker import` as `gwlb-conformance/base:<suite>`. Each
`appliance-images/<name>/Dockerfile` then builds FROM it (build argument `BASE`) with the classic
builder and no network, tagged `gwlb-conformance/<name>:<version>`, the version being the one in
that folder's `appliance.yaml`. Existing images are kept unless a rebuild is asked for. This
module only builds; the `images` command reports progress.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.descriptor import load_descriptor
from harness.errors import HarnessError

log = logging.getLogger("gwlb.images")

IMAGES_DIR = Path(__file__).resolve().parents[1] / "appliance-images"
REPOSITORY = "gwlb-conformance"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "iproute2")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
_APT_SOURCES = Path("/etc/apt")


@dataclass(frozen=True)
class ImageSpec:
    """An appliance image: `appliance-images/<name>/Dockerfile` and the tag it is built as."""

    name: str
    tag: str
    context: Path


@dataclass(frozen=True)
class Built:
    tag: str
    seconds: float
    skipped: bool


def base_tag(suite: str = SUITE) -> str:
    return f"{REPOSITORY}/base:{suite}"


def appliance_images(images_dir: Path = IMAGES_DIR) -> list[ImageSpec]:
    """Every folder of `images_dir` with a Dockerfile and an appliance.yaml, sorted by name."""
    specs = []
    for dockerfile in sorted(images_dir.glob("*/Dockerfile")):
        folder = dockerfile.parent
        descriptor = folder / "appliance.yaml"
        if not descriptor.exists():
            raise HarnessError(f"{dockerfile}: no appliance.yaml beside it to take the image's version from")
        version = load_descriptor(descriptor).version
        specs.append(ImageSpec(folder.name, f"{REPOSITORY}/{folder.name}:{version}", folder))
    return specs


def engine_problem() -> str | None:
    """Why no Docker engine can be used, or None if `docker info` answers."""
    if shutil.which("docker") is None:
        return "no docker command (install the Debian package docker.io: make setup)"
    try:
        done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 20 s"
    if done.returncode != 0 or not done.stdout.strip():
        said = done.stderr.strip().splitlines()
        return f"the Docker engine does not answer: {said[-1] if said else 'no output'} (make setup starts it)"
    return None


def image_exists(tag: str) -> bool:
    done = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, timeout=60)
    return done.returncode == 0


def apt_mirror(suite: str = SUITE, apt_dir: Path = _APT_SOURCES) -> str:
    """The mirror apt is configured with for `suite`, or Debian's default mirror."""
    for path in sorted(apt_dir.glob("sources.list.d/*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.MULTILINE))
            if suite in fields.get("Suites", "").split() and fields.get("Enabled", "yes") != "no":
                return fields["URIs"].split()[0]
    for path in [apt_dir / "sources.list", *sorted(apt_dir.glob("sources.list.d/*.list"))]:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if match and match[2] == suite:
                return match[1]
    return DEFAULT_MIRROR


def build_base(suite: str = SUITE, mirror: str | None = None, rebuild: bool = False,
               say: Callable[[str], None] = log.info) -> Built:
    """debootstrap a minimal Debian and import it as the base image."""
    tag = base_tag(suite)
    if not rebuild and image_exists(tag):
        return Built(tag, 0.0, skipped=True)
    if shutil.which("debootstrap") is None:
        raise HarnessError("no debootstrap command (install the Debian package debootstrap: make setup)")
    mirror = mirror or apt_mirror(suite)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="gwlb-conformance-base-", dir="/var/tmp"))
    rootfs = work / "rootfs"
    try:
        say(f"debootstrap {suite} from {mirror} (about a minute)")
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", suite, str(rootfs), mirror],
             "debootstrap", timeout_s=1800, log_path=work / "debootstrap.log")
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / leftover).glob("*"):
                if item.is_file():
                    item.unlink()
        say(f"docker import as {tag}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            imported = subprocess.run(
                ["docker", "import", "--change", 'CMD ["/bin/bash"]',
                 "--message", f"debootstrap --variant=minbase {suite} from {mirror}", "-", tag],
                stdin=tar.stdout, capture_output=True, text=True, timeout=600,
            )
        finally:
            tar.stdout.close()
            tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            said = imported.stderr.strip() or f"tar exit {tar.returncode}"
            raise HarnessError(f"docker import of {tag} failed: {said}")
    finally:
        _remove_tree(work)
    return Built(tag, time.monotonic() - started, skipped=False)


def build_image(spec: ImageSpec, base: str, rebuild: bool = False, say: Callable[[str], None] = log.info) -> Built:
    """`docker build` one appliance image FROM the base, offline."""
    if not rebuild and image_exists(spec.tag):
        return Built(spec.tag, 0.0, skipped=True)
    started = time.monotonic()
    say(f"docker build {spec.context} as {spec.tag}")
    _run(["docker", "build", "--network", "none", "--build-arg", f"BASE={base}",
          "--label", f"{REPOSITORY}.image={spec.name}", "--tag", spec.tag, str(spec.context)],
         f"docker build of {spec.tag}", timeout_s=900, env={"DOCKER_BUILDKIT": "0"})
    return Built(spec.tag, time.monotonic() - started, skipped=False)


def _run(command: list[str], what: str, timeout_s: float, log_path: Path | None = None,
         env: dict[str, str] | None = None) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{what} did not finish within {timeout_s:g} s") from None
    if log_path is not None:
        log_path.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise HarnessError(f"{what} failed (exit {done.returncode}): {tail}")


def _remove_tree(work: Path) -> None:
    """Delete the build folder, but never through a mount debootstrap may have left inside it."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    inside = sorted((m for m in mounts if m.startswith(f"{work}/")), key=len, reverse=True)
    for mount in inside:
        subprocess.run(["umount", "--lazy", mount], capture_output=True)
    if any(line.split()[1].startswith(f"{work}/") for line in Path("/proc/self/mounts").read_text().splitlines()):
        raise HarnessError(f"{work} still has mounts inside; remove it by hand after unmounting them")
    shutil.rmtree(work, ignore_errors=True)
