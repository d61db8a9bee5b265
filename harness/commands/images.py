"""`images build`: build the base and appliance images offline (see harness/images.py);
`images list`: show which of them exist."""

from __future__ import annotations

import argparse
import os
import sys

from harness import images
from harness.errors import HarnessError

NAME = "images"
HELP = "build the appliance container images offline (debootstrap base + appliance-images/*/Dockerfile)"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    build = sub.add_parser("build", help="build what is missing (a fresh base takes about a minute)")
    build.add_argument("--rebuild", action="store_true", help="build again even if the images exist")
    build.add_argument("--mirror", default=None, help="Debian mirror for debootstrap (default: the one apt uses)")
    build.add_argument("--suite", default=images.SUITE, help=f"Debian suite of the base (default {images.SUITE})")
    sub.add_parser("list", help="list the project's images and whether each exists")


def execute(args: argparse.Namespace) -> int:
    problem = images.engine_problem()
    if problem:
        raise HarnessError(f"images need a Docker engine: {problem}")
    specs = images.appliance_images()
    base = images.base_tag(getattr(args, "suite", images.SUITE))
    if args.action == "list":
        for tag in [base, *(spec.tag for spec in specs)]:
            print(f"{tag:48} {'present' if images.image_exists(tag) else 'missing'}")
        return 0
    if os.geteuid() != 0:
        raise HarnessError("images build needs root (debootstrap)")
    quiet = os.environ.get("CI") == "true"
    say = (lambda text: None) if quiet else (lambda text: print(f"images: {text}", file=sys.stderr))
    results = [images.build_base(args.suite, args.mirror, args.rebuild, say)]
    results += [images.build_image(spec, base, args.rebuild or not results[0].skipped, say) for spec in specs]
    for built in results:
        print(f"{built.tag}: {'present' if built.skipped else f'built in {built.seconds:.1f} s'}")
    return 0
