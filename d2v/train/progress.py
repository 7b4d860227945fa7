"""Progress: a tqdm bar on a terminal, plain log lines when not a TTY, in CI, or with TQDM_DISABLE."""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping

from tqdm import tqdm


def wants_bar() -> bool:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    if os.environ.get("TQDM_DISABLE", "") not in ("", "0"):
        return False
    return sys.stderr.isatty()


class Progress:
    """Shows training progress on rank 0; silent on other ranks."""

    def __init__(self, label: str, total: int, initial: int, log_every: int, enabled: bool) -> None:
        self.label = label
        self.total = total
        self.log_every = log_every
        self.enabled = enabled
        self.bar = None
        if enabled and wants_bar():
            self.bar = tqdm(total=total, initial=initial, desc=label, dynamic_ncols=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(f"[{self.label}] {text}")
        else:
            print(f"[{self.label}] {text}", file=sys.stderr, flush=True)

    def update(self, step: int, values: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        shown = {k: f"{float(v):.4g}" for k, v in values.items()}
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(shown, refresh=False)
        elif step % self.log_every == 0 or step == self.total:
            fields = " ".join(f"{k}={v}" for k, v in shown.items())
            print(f"[{self.label}] step {step}/{self.total} {fields}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
