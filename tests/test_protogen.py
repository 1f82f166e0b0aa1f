"""The committed generated code must match its `.proto` sources."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from actorflow import protogen


def test_committed_generated_code_is_current() -> None:
    assert protogen.stale_files() == []


def test_every_proto_has_its_generated_modules() -> None:
    outputs = {str(p) for p in protogen.expected_outputs()}
    assert "sidecar/api/taskhub/v1/taskhub_pb2.py" in outputs
    assert "placement/api/v1/placement_pb2_grpc.py" in outputs
    assert "reminders/api/v1/reminders_pb2.pyi" in outputs
    assert "sidecar/api/v1/actors_pb2.py" in outputs


def test_proto_dir_is_not_a_python_package() -> None:
    assert not (protogen.PROTO_DIR / "__init__.py").exists()
    assert not any(protogen.PROTO_DIR.rglob("*.py"))


@pytest.fixture
def edited_protos(tmp_path: Path) -> Path:
    copy = tmp_path / "proto"
    shutil.copytree(protogen.PROTO_DIR, copy)
    return copy


def test_check_fails_when_a_proto_is_edited_without_regenerating(edited_protos: Path) -> None:
    src = edited_protos / "reminders/api/v1/reminders.proto"
    text = src.read_text()
    src.write_text(
        text.replace("bytes data = 5;\n  // Derived", "bytes payload = 5;\n  // Derived", 1)
    )
    assert src.read_text() != text
    problems = protogen.stale_files(proto_dir=edited_protos)
    assert "stale: reminders/api/v1/reminders_pb2.py" in problems
    assert not any("placement" in p for p in problems)


def test_check_reports_a_new_proto_without_generated_code(edited_protos: Path) -> None:
    extra = edited_protos / "sidecar/api/v1/extra.proto"
    extra.write_text('syntax = "proto3";\npackage actorflow.extra.v1;\nmessage Extra {}\n')
    assert "missing: sidecar/api/v1/extra_pb2.py" in protogen.stale_files(proto_dir=edited_protos)


def test_check_reports_generated_code_without_a_proto(edited_protos: Path) -> None:
    (edited_protos / "sidecar/api/v1/actors.proto").unlink()
    assert "orphaned: sidecar/api/v1/actors_pb2.py" in protogen.stale_files(proto_dir=edited_protos)


def test_cli_check_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert protogen.main(["--check"]) == 0
    assert "current" in capsys.readouterr().out
