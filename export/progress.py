"""Progress and timing of export stages, printed as they finish ("[export] lower to XNNPACK: 41.2 s")."""

from __future__ import annotations

import time
from contextlib import contextmanager


class StageTimer:
    """Times named stages; ``seconds`` keeps every stage's duration in order."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        print(f"[{self.prefix}] {name} ...", flush=True)
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        print(f"[{self.prefix}] {name}: {self.seconds[name]:.1f} s", flush=True)
