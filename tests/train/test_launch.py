"""The torchrun command `d2v pretrain` re-launches itself with, and its settings from the environment."""

from __future__ import annotations

import pytest

from d2v.errors import D2VError
from d2v.train.launch import (
    NNODES_ENV,
    NODE_RANK_ENV,
    NPROC_ENV,
    RDZV_ENDPOINT_ENV,
    RDZV_ID_ENV,
    TORCHRUN,
    Launch,
    Rendezvous,
    torchrun_command,
    under_torchrun,
)


def test_torchrun_command_standalone_and_multinode() -> None:
    assert torchrun_command(["pretrain", "image"], Launch(2)) == [
        *TORCHRUN, "--nproc_per_node=2", "--standalone", "-m", "d2v.cli", "pretrain", "image"]
    multi = torchrun_command(["pretrain", "text"], Launch(8, Rendezvous("2", 1, "c10d", "node0:29400", "job7")))
    assert multi[len(TORCHRUN):] == ["--nproc_per_node=8", "--nnodes=2", "--rdzv_backend=c10d",
                                     "--rdzv_endpoint=node0:29400", "--rdzv_id=job7", "--node_rank=1",
                                     "-m", "d2v.cli", "pretrain", "text"]
    with pytest.raises(D2VError, match="rdzv-endpoint"):
        torchrun_command(["pretrain", "text"], Launch(8, Rendezvous("2")))


def test_one_process_on_one_machine_needs_no_torchrun() -> None:
    assert not Launch().needs_torchrun
    assert Launch(2).needs_torchrun and Launch(1, Rendezvous("2")).needs_torchrun
    with pytest.raises(D2VError, match="nproc_per_node=0"):
        Launch(0)


def test_launch_round_trips_through_the_environment() -> None:
    launch = Launch(4, Rendezvous("1:3", 2, "c10d", "trainer-0:29400", "job9"))
    env = launch.to_env()
    assert env[NPROC_ENV] == "4" and env[NNODES_ENV] == "1:3" and env[NODE_RANK_ENV] == "2"
    assert Launch.from_env(env) == launch
    assert Launch.from_env({}) == Launch()
    assert Launch.from_env(Launch().to_env()) == Launch()  # unset values travel as ""
    assert Launch.from_env({RDZV_ENDPOINT_ENV: "", RDZV_ID_ENV: ""}).rdzv.endpoint is None


def test_a_bad_environment_value_is_named() -> None:
    with pytest.raises(D2VError, match="D2V_NPROC_PER_NODE='two'"):
        Launch.from_env({NPROC_ENV: "two"})


def test_ranks_started_by_torchrun_are_recognised() -> None:
    assert under_torchrun({"LOCAL_RANK": "0", "TORCHELASTIC_RUN_ID": "x"})
    assert not under_torchrun({"PATH": "/bin"})
