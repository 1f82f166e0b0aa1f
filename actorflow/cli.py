"""The `actorflow` console script.

Subcommands appear here as they become real; each one is a thin entry into the module
that owns the behaviour.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from actorflow import __version__

Runner = Callable[[list[str]], int]


def _protogen(argv: list[str]) -> int:
    from actorflow import protogen

    return protogen.main(argv)


def _smoke(argv: list[str]) -> int:
    from actorflow import smoke

    argparse.ArgumentParser(prog="actorflow smoke", description=smoke.__doc__).parse_args(argv)
    return smoke.main()


def _placement(argv: list[str]) -> int:
    from placement import cli

    return cli.main(argv)


def _reminders(argv: list[str]) -> int:
    from reminders import cli

    return cli.main(argv)


def _sidecar(argv: list[str]) -> int:
    from sidecar import cli

    return cli.main(argv)


def _up(argv: list[str]) -> int:
    from actorflow import up

    return up.main(argv)


def _scale(argv: list[str]) -> int:
    from actorflow import scale

    return scale.scale_main(argv)


def _status(argv: list[str]) -> int:
    from actorflow import status

    return status.main(argv)


def _certs(argv: list[str]) -> int:
    from actorflow import certs

    return certs.main(argv)


def _demo(argv: list[str]) -> int:
    from actorflow import demo

    return demo.main(argv)


def _bench(argv: list[str]) -> int:
    from bench import cli

    return cli.main(argv)


COMMANDS: dict[str, tuple[Runner, str]] = {
    "placement": (_placement, "run one placement node (Raft-replicated actor placement)"),
    "reminders": (_reminders, "run one reminders node (Raft-replicated durable timers)"),
    "sidecar": (_sidecar, "run one sidecar (actor runtime, app-facing Durable Task API)"),
    "up": (_up, "run a whole local cluster in the foreground (see --help)"),
    "scale": (_scale, "add or remove a sidecar of a running `actorflow up`"),
    "status": (_status, "ask every node for its role, term and quorum (see --help)"),
    "certs": (_certs, "make a CA and node certificate for mutual TLS between nodes"),
    "demo": (_demo, "the main job: a local cluster at work, narrated"),
    "bench": (_bench, "run a benchmark scenario and write its JSON result"),
    "protogen": (_protogen, "regenerate (or --check) the gRPC code generated from proto/"),
    "smoke": (_smoke, "drive a no-engine TaskHub server with the real Dapr SDK client"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="actorflow",
        description="Durable workflows on a Raft-backed virtual-actor cluster.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()),
    )
    parser.add_argument("--version", action="version", version=f"actorflow {__version__}")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="command")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(args[:1] if args and not args[0].startswith("-") else args)
    runner, _ = COMMANDS[ns.command]
    return runner(args[1:])


if __name__ == "__main__":
    sys.exit(main())
