"""Kubernetes-style resource quantities: cpu as cores or millicores, memory as bytes with suffixes."""

from __future__ import annotations

import re

_MEM_SUFFIX = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|k|M|G|T)?\s*$")
_CPU_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)(m)?\s*$")


def parse_cpu(value: str | int | float) -> float:
    """Cores as a float: 2, "2", "0.5", "500m"."""
    if isinstance(value, bool):
        raise ValueError("must be a number of cores such as 2, 0.5 or '500m'")
    if isinstance(value, int | float):
        cores = float(value)
    else:
        m = _CPU_RE.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a cpu quantity; use cores (2, 0.5) or millicores ('500m')")
        cores = float(m.group(1)) / (1000 if m.group(2) else 1)
    if cores <= 0:
        raise ValueError("must be greater than 0")
    return cores


def parse_memory(value: str | int) -> int:
    """Bytes as an int: 1073741824, "512Mi", "4Gi", "1G"."""
    if isinstance(value, bool):
        raise ValueError("must be a memory quantity such as '512Mi' or '4Gi'")
    if isinstance(value, int):
        n = value
    else:
        m = _MEM_RE.match(str(value))
        if not m:
            raise ValueError(
                f"{value!r} is not a memory quantity; use bytes or a suffix: '512Mi', '4Gi', '1G'"
            )
        n = int(float(m.group(1)) * _MEM_SUFFIX[m.group(2) or ""])
    if n <= 0:
        raise ValueError("must be greater than 0")
    return n
