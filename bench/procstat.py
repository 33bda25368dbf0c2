"""Memory and CPU time of a process and its descendants, read from /proc (Linux only).

Used by bench/perf.py and bench/load.py. Units: kB for memory (``VmRSS``, ``VmHWM`` of
/proc/<pid>/status), seconds for CPU time (``utime + stime`` of /proc/<pid>/stat). A process
that has gone counts as 0.
"""
from __future__ import annotations

import os
from typing import List, Tuple


def _children(pid: int) -> List[int]:
    """Direct children of ``pid`` (from /proc/<pid>/task/*/children; [] if gone)."""
    out: List[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        pass
    return out


def process_tree(pid: int) -> List[int]:
    """``pid`` and all its descendants (pids)."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(_children(p))
    return tree


def mem_kb(pid: int) -> Tuple[int, int]:
    """(VmRSS, VmHWM) in kB of a process and its descendants (0, 0 if gone)."""
    rss = hwm = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm += int(line.split()[1])
        except OSError:
            continue
    return rss, hwm


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / ticks
