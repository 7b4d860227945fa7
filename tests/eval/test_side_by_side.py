from __future__ import annotations

import os
import subprocess
import sys
from functools import partial

import pytest
import torch

from d2v.errors import D2VError
from d2v.eval.baseline import compare_with_random_init
from d2v.eval.config import LinearProbeConfig
from d2v.eval.data import EvalResult
from d2v.eval.device import EvalRuntime
from d2v.eval.input_features import RawPixels
from d2v.eval.linear_probe import linear_probe
from d2v.eval.side_by_side import SideBySideError, run_side_by_side, worth_running_side_by_side

from eval_standins import PatchEmbed, StandInEncoder


@pytest.fixture
def two_threads():
    """The comparison goes side by side only with at most two threads; make that so on any machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def draw_and_report() -> tuple[float, int, int]:
    """A job: the first draw from the seeded global RNG, its thread count and its process id."""
    return torch.rand(()).item(), torch.get_num_threads(), os.getpid()


def test_results_in_order_each_seeded_in_its_own_process() -> None:
    torch.manual_seed(0)
    expected = torch.rand(()).item()
    parent_state = torch.get_rng_state()
    first, second = run_side_by_side([draw_and_report, draw_and_report], seed=0)
    assert first[0] == second[0] == expected  # both jobs start from the seed, as in-process runs do
    assert len({first[2], second[2], os.getpid()}) == 3  # two children, neither is this process
    assert first[1] == second[1] == 1  # one thread each
    assert torch.equal(torch.get_rng_state(), parent_state)  # the parent's RNG is not touched
    assert run_side_by_side([lambda: "a", lambda: [1, 2]], seed=0) == ["a", [1, 2]]


def test_side_by_side_only_where_the_threads_are_few() -> None:
    assert worth_running_side_by_side(2, available=1) and worth_running_side_by_side(2, available=2)
    assert not worth_running_side_by_side(2, available=3)  # one run on all threads instead
    assert not worth_running_side_by_side(2, available=16)
    assert not worth_running_side_by_side(1, available=1)


def test_children_compute_after_the_parent_used_its_thread_pool() -> None:
    """libgomp's pool does not survive fork: a child that ran a 2-thread region here hung. The
    children run single-threaded, so a parallel matmul in the parent first must not matter."""
    script = (
        "import torch\n"
        "from d2v.eval.side_by_side import run_side_by_side\n"
        "torch.set_num_threads(2)\n"
        "a = torch.randn(512, 512); (a @ a).sum()\n"
        "job = lambda: float((torch.randn(512, 512) @ torch.randn(512, 512)).abs().sum() > 0)\n"
        "print(run_side_by_side([job, job], seed=0))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[1.0, 1.0]"


def fail_with_d2v_error() -> None:
    raise D2VError("text task sentiment: loss became nan at update 3; lower the lr")


def test_a_failing_job_raises_its_own_error_here() -> None:
    with pytest.raises(D2VError, match="loss became nan at update 3"):
        run_side_by_side([lambda: 1, fail_with_d2v_error], seed=0)


def test_a_job_that_dies_is_named_with_its_exit_code() -> None:
    with pytest.raises(SideBySideError, match=r"ctc \(random init\): its process died without a result \(exit code 3\)"):
        run_side_by_side([lambda: 1, lambda: os._exit(3)], seed=0, labels=["ctc (pretrained)", "ctc (random init)"])


def test_an_unpicklable_result_is_a_clear_error() -> None:
    with pytest.raises(SideBySideError, match="result could not be pickled"):
        run_side_by_side([lambda: (lambda: None), lambda: 1], seed=0)


def test_side_by_side_comparison_equals_the_sequential_one(image_encoder_factory, image_splits, two_threads) -> None:
    """A real linear probe on a stand-in encoder: the same record either way (seeding and data are the same)."""
    cfg = LinearProbeConfig(epochs=10, lr=0.05, batch_size=0, weight_decays=(0.0,), n_train=64, n_valid=None)
    probe = partial(linear_probe, splits=image_splits, cfg=cfg, pooling="mean", n_test=32, seed=0)

    def evaluate(encoder: torch.nn.Module) -> EvalResult:  # the probe, noting which process ran it
        result = probe(encoder)
        result.metrics["pid"] = float(os.getpid())
        return result

    def fresh() -> StandInEncoder:
        return StandInEncoder(PatchEmbed(1, 16, 4), dim=16, depth=2)

    pixels = RawPixels(64)  # the input baseline goes as a third single-threaded process
    records = [
        compare_with_random_init(
            "linear_probe", "top1", evaluate, image_encoder_factory(5), fresh, seed=3, side_by_side=mode,
            input_baseline=pixels,
        )
        for mode in (False, True)
    ]
    sequential, parallel = (r.record for r in records)
    assert (sequential.pretrained, sequential.random_init) == (parallel.pretrained, parallel.random_init)
    assert (sequential.input_baseline, sequential.input_baseline_delta_ci95_low) == (
        parallel.input_baseline, parallel.input_baseline_delta_ci95_low)
    for run in (1, 2, 3):
        assert records[0][run].predictions == records[1][run].predictions
    assert records[0][1].metrics["pid"] == records[0][3].metrics["pid"] == os.getpid()
    pids = {records[1][run].metrics["pid"] for run in (1, 2, 3)}
    assert len(pids) == 3 and os.getpid() not in pids


def test_side_by_side_comparison_passes_a_failure_through(two_threads) -> None:
    def evaluate(encoder: torch.nn.Module) -> EvalResult:
        if getattr(encoder, "pretrained", False):
            return EvalResult({"top1": 0.9}, 10, 5)
        raise D2VError("image fine-tuning: no 'train' split")

    pretrained = torch.nn.Linear(2, 2)
    pretrained.pretrained = True
    with pytest.raises(D2VError, match="no 'train' split"):
        compare_with_random_init("probe", "top1", evaluate, pretrained, lambda: torch.nn.Linear(2, 2), 0, side_by_side=True)


def test_many_threads_run_in_turn_in_this_process() -> None:
    def evaluate(encoder: torch.nn.Module) -> EvalResult:
        return EvalResult({"top1": 0.5, "pid": float(os.getpid())}, 10, 5)

    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        _, ours, theirs, _ = compare_with_random_init(
            "probe", "top1", evaluate, torch.nn.Linear(2, 2), lambda: torch.nn.Linear(2, 2), 0, side_by_side=True
        )
    finally:
        torch.set_num_threads(threads)
    assert ours.metrics["pid"] == theirs.metrics["pid"] == os.getpid()


def test_a_cuda_runtime_runs_in_turn_and_says_why(two_threads, capsys) -> None:
    """Side by side is a CPU trick: with evaluate.device on CUDA the runs go one after the other, in
    this process (nothing here touches a GPU: the runs are stand-ins)."""
    def evaluate(encoder: torch.nn.Module) -> EvalResult:
        return EvalResult({"top1": 0.5, "pid": float(os.getpid())}, 10, 5)

    cuda = EvalRuntime(device=torch.device("cuda", 0))
    _, ours, theirs, _ = compare_with_random_init(
        "probe", "top1", evaluate, torch.nn.Linear(2, 2), lambda: torch.nn.Linear(2, 2), 0, side_by_side=True,
        runtime=cuda,
    )
    assert ours.metrics["pid"] == theirs.metrics["pid"] == os.getpid()
    assert "probe: evaluate.side_by_side is a CPU trick and the device is cuda:0: the runs go one after the other" in (
        capsys.readouterr().err)
