"""The offline validators of deploy/, each run for real: `kubernetes-validate` (the
Kubernetes schemas, strict), `check-jsonschema` (the Compose specification built into
it) and `systemd-analyze verify`. Each accepts the real files and rejects a deliberately
broken copy, so a green run means the validator really looked. A validator that cannot
run fails the test under CI (CI=true) and skips it elsewhere, with the reason."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES_DIR = DEPLOY / "kubernetes"
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
SYSTEMD_DIR = DEPLOY / "systemd"
KUBERNETES_VERSION = "1.37.0"
# The executables the unit files start; the verify root gets stand-ins for them.
UNIT_EXECUTABLES = ("/opt/actorflow/bin/actorflow",)
_HOST_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))


@dataclass(frozen=True)
class Outcome:
    ok: bool
    output: str


def unavailable(reason: str) -> None:
    """A validator that cannot run: a failure in CI, a skip elsewhere."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"validator unavailable in CI: {reason}")
    pytest.skip(f"validator unavailable: {reason}")


def tool(name: str) -> str:
    """The path of a command-line tool: the venv's own scripts first, then PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        hint = "apt-get install systemd" if name.startswith("systemd") else "the dev extra"
        unavailable(f"{name} not found ({hint})")
    assert found is not None
    return found


def _run(argv: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def kubernetes_validate(files: Sequence[Path]) -> Outcome:
    """All files in one call (each start costs about a second of schema loading)."""
    argv = [tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, *map(str, files)]
    done = _run(argv)
    output = done.stdout + done.stderr
    lines = output.splitlines()
    bad = [line for line in lines if not line.startswith("INFO ")]
    return Outcome(done.returncode == 0 and not bad and bool(lines), output)


def compose_validate(files: Sequence[Path]) -> Outcome:
    argv = [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", *map(str, files)]
    done = _run(argv)
    return Outcome(done.returncode == 0, done.stdout + done.stderr)


def systemd_verify(unit_files: Sequence[Path], instances: Sequence[str], root: Path) -> Outcome:
    """`systemd-analyze verify` in a scratch root holding the host's stock units, ours,
    and stand-ins for the executables ours start. verify exits 0 on unknown keys and
    sections (it only warns on stderr), so any stderr output is a failure too."""
    analyze = tool("systemd-analyze")
    host_units = next((d for d in _HOST_UNIT_DIRS if (d / "sysinit.target").exists()), None)
    if host_units is None:
        unavailable("no stock systemd units (sysinit.target) on this machine")
    assert host_units is not None
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    for unit in unit_files:
        shutil.copy(unit, unit_dir / unit.name)
    for exe in UNIT_EXECUTABLES:
        stand_in = root / exe.lstrip("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("#!/bin/sh\nexit 0\n")
        stand_in.chmod(0o755)
    done = _run([analyze, "verify", f"--root={root}", *instances])
    output = done.stdout + done.stderr
    return Outcome(done.returncode == 0 and not done.stderr.strip(), output)


def kubernetes_files() -> list[Path]:
    return sorted(KUBERNETES_DIR.glob("*.yaml"))


def unit_files() -> list[Path]:
    return sorted(SYSTEMD_DIR.glob("*.service"))


def unit_instances(units: Sequence[Path]) -> list[str]:
    """One instance of each template unit (`name@.service` -> `name@test.service`)."""
    return [u.name.replace("@.", "@test.") if "@." in u.name else u.name for u in units]


def _broken_copy(source: Path, target: Path, old: str, new: str) -> Path:
    text = source.read_text()
    assert old in text, f"{old!r} not in {source}: update the test's breakage"
    target.write_text(text.replace(old, new, 1))
    return target


# ---- Kubernetes ----------------------------------------------------------------------


def test_kubernetes_manifests_validate() -> None:
    files = kubernetes_files()
    assert len(files) >= 5
    outcome = kubernetes_validate(files)
    assert outcome.ok, outcome.output
    kinds = set(re.findall(r"passed for resource (\w+)/", outcome.output))
    assert {
        "namespace",
        "service",
        "statefulset",
        "deployment",
        "poddisruptionbudget",
    } <= kinds


def test_kubernetes_validator_rejects_broken_copies(tmp_path: Path) -> None:
    placement = DEPLOY / "kubernetes" / "20-placement.yaml"
    wrong_type = _broken_copy(
        placement, tmp_path / "wrong-type.yaml", "  replicas: 3\n", '  replicas: "three"\n'
    )
    unknown_field = _broken_copy(
        placement,
        tmp_path / "unknown-field.yaml",
        "  publishNotReadyAddresses: true\n",
        "  publishNotReadyAdresses: true\n",
    )
    outcome = kubernetes_validate([wrong_type, unknown_field])
    assert not outcome.ok, outcome.output
    errors = [line for line in outcome.output.splitlines() if line.startswith("ERROR")]
    assert any("wrong-type.yaml" in e and "spec.replicas" in e for e in errors), outcome.output
    assert any("unknown-field.yaml" in e for e in errors), outcome.output


# ---- Compose -------------------------------------------------------------------------


def test_compose_file_validates() -> None:
    outcome = compose_validate([COMPOSE_FILE])
    assert outcome.ok, outcome.output


def test_compose_validator_rejects_broken_copies(tmp_path: Path) -> None:
    unknown_key = _broken_copy(
        COMPOSE_FILE,
        tmp_path / "unknown-key.yaml",
        "    network_mode: service:app-0\n",
        "    netwrok_mode: service:app-0\n",
    )
    wrong_type = _broken_copy(
        COMPOSE_FILE, tmp_path / "wrong-type.yaml", "    retries: 3\n", "    retries: [3]\n"
    )
    for broken in (unknown_key, wrong_type):
        outcome = compose_validate([broken])
        assert not outcome.ok, outcome.output
        assert "Schema validation errors" in outcome.output, outcome.output
    assert "netwrok_mode" in compose_validate([unknown_key]).output


# ---- systemd -------------------------------------------------------------------------


def test_systemd_units_verify(tmp_path: Path) -> None:
    units = unit_files()
    assert {u.name for u in units} >= {
        "actorflow-placement@.service",
        "actorflow-reminders@.service",
        "actorflow-sidecar@.service",
    }
    outcome = systemd_verify(units, unit_instances(units), tmp_path / "root")
    assert outcome.ok, outcome.output


def test_systemd_verify_rejects_a_typo_key(tmp_path: Path) -> None:
    # verify exits 0 here: the warning on stderr is what tells.
    unit = _broken_copy(
        SYSTEMD_DIR / "actorflow-placement@.service",
        tmp_path / "actorflow-placement@.service",
        "Restart=on-failure",
        "Restrat=on-failure",
    )
    outcome = systemd_verify([unit], unit_instances([unit]), tmp_path / "root")
    assert not outcome.ok, outcome.output
    assert "Unknown key 'Restrat'" in outcome.output, outcome.output


def test_systemd_verify_rejects_a_bad_exec_start(tmp_path: Path) -> None:
    relative = _broken_copy(
        SYSTEMD_DIR / "actorflow-sidecar@.service",
        tmp_path / "actorflow-sidecar@.service",
        "ExecStart=/opt/actorflow/bin/actorflow sidecar",
        "ExecStart=opt/actorflow/bin/actorflow sidecar",
    )
    missing = _broken_copy(
        SYSTEMD_DIR / "actorflow-reminders@.service",
        tmp_path / "actorflow-reminders@.service",
        "ExecStart=/opt/actorflow/bin/actorflow reminders",
        "ExecStart=/opt/actorflow/bin/actorflw reminders",
    )
    for unit, expected in (
        (relative, "Neither a valid executable name nor an absolute path"),
        (missing, "is not executable"),
    ):
        outcome = systemd_verify([unit], unit_instances([unit]), tmp_path / unit.stem)
        assert not outcome.ok, outcome.output
        assert expected in outcome.output, outcome.output


# ---- Dockerfile (no engine here: check what the build would read) --------------------


def test_dockerfile_copies_existing_paths_not_ignored() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    sources = []
    for line in dockerfile.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    assert sources, "no COPY found"
    for source in sources:
        path = source.rstrip("/")
        assert (REPO / path).exists(), f"COPY {source}: no such path in the repository"
        assert path in allowed, f"COPY {source}: excluded by Dockerfile.dockerignore"
    entrypoints = re.findall(r"^ENTRYPOINT (.+)$", dockerfile, flags=re.MULTILINE)
    assert entrypoints[0] == '["actorflow"]'
