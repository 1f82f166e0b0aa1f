"""`actorflow scale`: asks a running `actorflow up` for one more sidecar, or one fewer.

Only the client half of the control socket lives here; the running `up` answers it in
`Cluster.handle_control`. It imports nothing heavy, as it runs and exits at once.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

from actorflow.up_options import CONTROL_SOCKET

__all__ = ["scale_main"]


def scale_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="actorflow scale", description="Add or remove a sidecar of a running `actorflow up`."
    )
    p.add_argument("--data-dir", type=Path, default=Path(".actorflow"))
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--add", action="store_true")
    group.add_argument("--remove", metavar="NAME", nargs="?", const="")
    p.add_argument("--app-id", default="")
    args = p.parse_args(argv)
    request = (
        {"op": "add", "app_id": args.app_id} if args.add else {"op": "remove", "name": args.remove}
    )
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(args.data_dir / CONTROL_SOCKET))
        except (FileNotFoundError, ConnectionRefusedError):
            print(
                f"actorflow scale: no actorflow up is running with --data-dir {args.data_dir} "
                f"(nothing answers on {args.data_dir / CONTROL_SOCKET})",
                file=sys.stderr,
            )
            return 1
        s.sendall((json.dumps(request) + "\n").encode())
        reply = json.loads(s.makefile().readline())
    print(json.dumps(reply))
    return 0 if reply.get("ok") else 1
