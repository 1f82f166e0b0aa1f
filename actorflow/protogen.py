"""Regenerate (or check) the committed gRPC code from the `.proto` sources in `proto/`.

`python -m actorflow.protogen` rewrites every `*_pb2.py`, `*_pb2.pyi` and `*_pb2_grpc.py`
next to its owning package; `--check` regenerates into a scratch directory and exits 1,
naming the files, when anything committed differs (stale, missing or orphaned). The
output depends on the grpcio-tools version, which is pinned in the `dev` extra.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


class ProtogenError(Exception):
    """protoc failed, or grpcio-tools is not installed."""


def proto_sources(proto_dir: Path = PROTO_DIR) -> list[Path]:
    return sorted(proto_dir.rglob("*.proto"))


def expected_outputs(proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Paths, relative to the repository root, of every generated file."""
    out: list[Path] = []
    for src in proto_sources(proto_dir):
        rel = src.relative_to(proto_dir).with_suffix("")
        out.extend(rel.parent / f"{rel.name}{suffix}" for suffix in GENERATED_SUFFIXES)
    return out


def generate(out_dir: Path, proto_dir: Path = PROTO_DIR) -> None:
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ProtogenError("grpcio-tools is missing: pip install -e '.[dev]'") from exc
    include = Path(grpc_tools.__file__).parent / "_proto"
    sources = [str(p.relative_to(proto_dir)) for p in proto_sources(proto_dir)]
    args = [
        "protoc",
        f"-I{proto_dir}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    code = protoc.main(args)
    if code != 0:
        raise ProtogenError(f"protoc exited with {code}")


def stale_files(root: Path = ROOT, proto_dir: Path = PROTO_DIR) -> list[str]:
    """Generated files under `root` that differ from a fresh generation, are missing, or
    exist without a `.proto` behind them."""
    expected = expected_outputs(proto_dir)
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), proto_dir)
        for rel in expected:
            committed = root / rel
            if not committed.exists():
                problems.append(f"missing: {rel}")
            elif not filecmp.cmp(committed, Path(tmp) / rel, shallow=False):
                problems.append(f"stale: {rel}")
    wanted = {str(p) for p in expected}
    for pkg in {p.parts[0] for p in expected}:
        for suffix in GENERATED_SUFFIXES:
            for path in (root / pkg).rglob(f"*{suffix}"):
                rel_s = str(path.relative_to(root))
                if rel_s not in wanted:
                    problems.append(f"orphaned: {rel_s}")
    return sorted(problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="actorflow protogen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale_files()
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("generated code is stale: run `python -m actorflow.protogen`", file=sys.stderr)
            return 1
        print(f"generated code is current ({len(expected_outputs())} files)")
        return 0
    generate(ROOT)
    for rel in expected_outputs():
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
