"""Where and how evaluation runs: device, autocast precision, loader workers, torch.compile.

`EvalRuntime.from_config(params.evaluate)` resolves `evaluate.device`, `precision`, `num_workers`
and `compile` once, before a model loads, so a bad choice fails first. Every procedure takes a
runtime (default `CPU_FP32`: the CPU demo exactly as it always ran) and goes through it:

- `place(batch)`: a batch's tensors on the device, right before the model sees it;
- `place_module(module)`: a module the procedure owns (its fine-tuning copy) moved there;
- `borrow_module(module)`: a caller's module, which is never moved: itself when already there,
  else a moved copy;
- `autocast()`: around encoder forward passes only (heads' losses and everything after stay fp32);
- `compiled(module)`: the module's forward through torch.compile, when `compile` is on;
- `loading`: how DataLoaders load (d2v.eval.data.Loading).

Outputs come back with `to_cpu` before anything is scored, so metrics, bootstrap intervals and
files are computed in fp32 on CPU tensors whatever the device.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import sys
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, TypeVar

import torch
from torch import Tensor, nn

from d2v.core.types import EncoderOutput
from d2v.errors import ConfigError
from d2v.eval.config import EvaluateConfig
from d2v.eval.data import IN_PROCESS, Loading

M = TypeVar("M", bound=nn.Module)
CPU = torch.device("cpu")
# inductor, torch.compile's default: what production uses. Tests may pass a lighter backend: on this
# 2-core CPU inductor's C++ build takes ~30 s for one graph of a tiny encoder.
COMPILE_BACKEND = "inductor"


def resolve_device(requested: str) -> torch.device:
    """evaluate.device -> a torch device: auto = cuda when torch sees a GPU, else cpu."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"evaluate.device: expected auto, cpu or cuda, got {requested!r}")
    if requested == "cpu":
        return CPU
    if torch.cuda.is_available():
        # An explicit index: parameters report cuda:0, and "cuda" alone would not compare equal.
        return torch.device("cuda", torch.cuda.current_device())
    if requested == "auto":
        return CPU
    raise ConfigError(
        f"evaluate.device: cuda was asked for, but {_why_no_cuda()}; available: cpu "
        "(set evaluate.device: auto or cpu)"
    )


def _why_no_cuda() -> str:
    if torch.version.cuda is None:
        return f"this torch build ({torch.__version__}) has no CUDA support"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hidden = "" if visible is None else f", CUDA_VISIBLE_DEVICES={visible!r}"
    return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU{hidden}"


def resolve_precision(requested: str, device: torch.device) -> torch.dtype | None:
    """evaluate.precision -> the autocast dtype of encoder forward passes, None for plain fp32.

    auto follows d2v/train/update.py's `autocast`: bf16 on CUDA, fp32 on CPU (bf16 matmuls are ~50x
    slower on these CPUs). An explicit bf16 is honoured on CPU too, slow as it is."""
    if requested not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"evaluate.precision: expected auto, fp32 or bf16, got {requested!r}")
    if requested == "fp32" or (requested == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        if requested == "auto":  # a pre-Ampere GPU: auto means "what works well here"
            return None
        raise ConfigError(
            f"evaluate.precision: bf16 was asked for, but {torch.cuda.get_device_name(device)} has no bf16 "
            "support (set evaluate.precision: auto or fp32)"
        )
    return torch.bfloat16


@dataclass(frozen=True)
class EvalRuntime:
    device: torch.device = CPU
    autocast_dtype: torch.dtype | None = None  # None: no autocast, plain fp32
    loading: Loading = IN_PROCESS
    compile: bool = False
    compile_backend: str = COMPILE_BACKEND

    @classmethod
    def from_config(cls, cfg: EvaluateConfig) -> EvalRuntime:
        device = resolve_device(cfg.device)
        return cls(
            device=device,
            autocast_dtype=resolve_precision(cfg.precision, device),
            # Page-locked host batches copy to the GPU faster (and asynchronously); useless on CPU.
            loading=Loading(num_workers=cfg.num_workers, pin_memory=device.type == "cuda"),
            compile=cfg.compile,
        )

    def describe(self) -> str:
        """One line for logs: "cuda:0, bf16 autocast, 4 loader workers, compiled"; on the CPU with
        torch's thread count, which a CPU limit lowers (d2v/cpu_limit.py): "cpu (1 thread), ..."."""
        precision = "fp32" if self.autocast_dtype is None else f"{_dtype_name(self.autocast_dtype)} autocast"
        workers = self.loading.num_workers
        loading = "in-process loading" if workers == 0 else f"{workers} loader workers"
        threads = torch.get_num_threads()
        where = f"cpu ({threads} thread{'s' if threads > 1 else ''})" if self.device.type == "cpu" else str(self.device)
        return f"{where}, {precision}, {loading}, {'compiled' if self.compile else 'eager'}"

    # ---------------------------------------------------------------------------------- placement

    def place(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Every tensor of a (flat) batch on the device; strings and lists pass as they are.

        non_blocking: a pinned batch's copy overlaps with the host; later reads on the device's
        stream are ordered after it, and copies back to the CPU wait for it."""
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}

    def place_module(self, module: M) -> M:
        """A module the procedure owns, moved to the device in place (built on CPU first, so its
        seeded initialisation is the same on every device)."""
        return module.to(self.device)

    def borrow_module(self, module: M) -> M:
        """A caller's module on the device without moving the caller's: itself when all of it is
        already there, else a moved copy."""
        tensors = itertools.chain(module.parameters(), module.buffers())
        if all(t.device == self.device for t in tensors):
            return module
        return copy.deepcopy(module).to(self.device)

    # -------------------------------------------------------------------------- how it computes

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Around encoder forward passes: autocast to `autocast_dtype`, or nothing (fp32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def compiled(self, module: M) -> M | Callable[..., Any]:
        """`module` itself (eager), or a torch.compile wrapper sharing its parameters.

        Modules without parameters (the input baselines) stay eager: there is nothing learned to
        speed up, and their feature code (scatter, torchaudio) is where dynamo is least at home."""
        if not self.compile or not any(True for _ in module.parameters()):
            return module
        return torch.compile(module, backend=self.compile_backend)

    def compile_in_place(self, module: nn.Module) -> None:
        """Compile a module's forward without changing its parameter names (nn.Module.compile), for
        modules the procedure owns and reaches by name (an optimizer's layer-wise lr groups)."""
        if self.compile and any(True for _ in module.parameters()):
            module.compile(backend=self.compile_backend)

    # ------------------------------------------------------------------------ side by side or not

    def side_by_side_blocker(self) -> str | None:
        """Why the pretrained and random-init runs cannot go side by side here, or None.

        Side by side (d2v.eval.side_by_side) is a CPU trick: two single-threaded forked daemon
        processes. On CUDA one run fills the GPU and forked children cannot use CUDA; a daemon
        process cannot start loader workers; torch.compile would compile every graph once per child."""
        if self.device.type != "cpu":
            return f"the device is {self.device}"
        if self.loading.num_workers > 0:
            return f"evaluate.num_workers is {self.loading.num_workers} (forked runs cannot start loader workers)"
        if self.compile:
            return "evaluate.compile is on (each process would compile every graph again)"
        return None


CPU_FP32 = EvalRuntime()


def to_cpu(tensor: Tensor) -> Tensor:
    """An output as fp32 on the CPU: what every metric and file is computed from."""
    return tensor.detach().float().cpu()


def fp32_features(output: EncoderOutput) -> EncoderOutput:
    """An encoder output with fp32 features (itself when they already are), so pooling and heads
    after an autocast forward pass compute in fp32."""
    cls = output.cls
    if output.x.dtype == torch.float32 and (cls is None or cls.dtype == torch.float32):
        return output
    return replace(output, x=output.x.float(), cls=None if cls is None else cls.float())


def log_line(text: str) -> None:
    print(f"[evaluate] {text}", file=sys.stderr, flush=True)


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype).removeprefix("torch."))
