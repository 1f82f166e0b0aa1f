from __future__ import annotations

from pathlib import Path

from placement.cli import build_parser, config_from_args


def test_raft_bind_address_and_dns_cache_reach_pysyncobj(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        [
            "--node-id=p0",
            "--api-address=placement-0.example:50005",
            "--raft-address=placement-0.example:50006",
            "--raft-bind-address=0.0.0.0:50006",
            "--peer=placement-1.example:50006=placement-1.example:50005",
            f"--data-dir={tmp_path}",
            "--insecure-raft",
        ]
    )
    config = config_from_args(args)
    raft = config.raft_config()
    assert raft.self_address == "placement-0.example:50006"
    assert raft.bind_address == "0.0.0.0:50006"
    conf = raft.to_syncobj_conf()
    assert conf.bindAddress == "0.0.0.0:50006"
    assert conf.dnsCacheTime <= 5 and conf.dnsFailCacheTime <= 1
    assert config.api_address_of("placement-1.example:50006") == "placement-1.example:50005"


def test_without_a_bind_address_the_raft_address_is_bound(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["--node-id=p0", "--raft-address=127.0.0.1:7001", f"--data-dir={tmp_path}",
         "--insecure-raft"]
    )  # fmt: skip
    assert config_from_args(args).raft_config().to_syncobj_conf().bindAddress == "127.0.0.1:7001"
