"""The node's GPUs: found once through NVML (pynvml), or a simulated inventory configured explicitly.

Indices are NVML's (PCI bus order); runs are told their GPUs by UUID (see controller/capacity.py gpu_env).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from runyard.core.quantities import parse_memory

log = logging.getLogger("runyard.gpus")
SIMULATED_MODEL = "Simulated GPU"
SIMULATED_MEMORY = 16 << 30


@dataclass(frozen=True)
class Gpu:
    index: int
    model: str
    memory_bytes: int | None
    uuid: str | None = None
    simulated: bool = False


@dataclass
class GpuInventory:
    """What was found, from where, and why there is nothing when NVML failed."""

    gpus: list[Gpu]
    source: str  # "nvml" | "simulated" | "none"
    note: str | None = None  # why no GPUs were found, for messages
    _nvml: Any = field(default=None, repr=False)  # the pynvml module, initialised, when source is nvml
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def discover(cls, simulated: str | None) -> GpuInventory:
        """The simulated inventory when one is configured, else what NVML finds (nothing when it fails)."""
        if simulated is not None:
            gpus = parse_simulated(simulated)
            return cls(gpus, "simulated", None if gpus else "the simulated inventory is empty")
        return cls._from_nvml()

    @classmethod
    def _from_nvml(cls) -> GpuInventory:
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as exc:  # no driver, no library: a node without GPUs
            return cls([], "none", f"NVML is not available: {exc}")
        try:
            gpus = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                gpus.append(
                    Gpu(i, _text(pynvml.nvmlDeviceGetName(h)), int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
                        _text(pynvml.nvmlDeviceGetUUID(h)))
                )  # fmt: skip
        except Exception as exc:
            log.warning("NVML failed while listing GPUs (%s); offering none", exc)
            _shutdown(pynvml)
            return cls([], "none", f"NVML failed: {exc}")
        if not gpus:
            _shutdown(pynvml)
            return cls([], "none", "NVML found none")
        return cls(gpus, "nvml", None, pynvml)

    def utilization(self) -> dict[int, int | None]:
        """Per index, the percent of time a kernel ran over NVML's last sample period (None: unknown)."""
        out: dict[int, int | None] = {g.index: None for g in self.gpus}
        if self._nvml is None:
            return out
        with self._lock:
            for g in self.gpus:
                try:
                    h = self._nvml.nvmlDeviceGetHandleByIndex(g.index)
                    out[g.index] = int(self._nvml.nvmlDeviceGetUtilizationRates(h).gpu)
                except Exception:  # a GPU fallen off the bus, a driver reload: unknown, not an error
                    pass
        return out

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None:
                _shutdown(self._nvml)
                self._nvml = None


def parse_simulated(text: str) -> list[Gpu]:
    """'2', or a JSON list of {"model": "...", "memory": "80Gi"} (both optional). ValueError says why not."""
    text = text.strip()
    if text.isdigit():
        return [Gpu(i, SIMULATED_MODEL, SIMULATED_MEMORY, simulated=True) for i in range(int(text))]
    try:
        items = json.loads(text)
    except ValueError:
        raise ValueError(
            f'{text!r} is neither a count (\'2\') nor a JSON list such as \'[{{"model": "A100", '
            f'"memory": "80Gi"}}]\''
        ) from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError('must be a count or a JSON list of objects {"model", "memory"}')
    gpus = []
    for i, item in enumerate(items):
        unknown = set(item) - {"model", "memory"}
        if unknown:
            raise ValueError(f"item {i}: unknown keys {sorted(unknown)}; use model and memory")
        try:
            memory = parse_memory(item.get("memory", SIMULATED_MEMORY))
        except ValueError as exc:
            raise ValueError(f"item {i}: memory: {exc}") from None
        gpus.append(Gpu(i, str(item.get("model", SIMULATED_MODEL)), memory, simulated=True))
    return gpus


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _shutdown(pynvml: Any) -> None:
    with contextlib.suppress(Exception):  # nothing to release then
        pynvml.nvmlShutdown()
