"""`gwlb-conformance`: the command line (SPEC §8). Exit codes: 0 conformant, 1 a MUST failed,
2 harness or configuration error. Subcommands live in `harness/commands/`."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from harness.commands import discover
from harness.errors import ConfigError, HarnessError

EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gwlb-conformance", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in discover():
        command_parser = sub.add_parser(command.name, help=command.help, description=command.help)
        command.configure(command_parser)
        command_parser.set_defaults(execute=command.execute)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        return args.execute(args)
    except (ConfigError, HarnessError) as error:
        print(f"gwlb-conformance: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("gwlb-conformance: interrupted; the testbed was removed", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:
        traceback.print_exc()
        print(f"gwlb-conformance: internal error (a bug in the harness, please report it with the traceback "
              f"above): {error!r}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
