"""What every training stage shares: distributed set-up (torchrun: gloo on CPU, nccl on GPUs),
running observation normalisation, MLPs, atomic checkpoints, metrics files and a progress bar.

Not for: any one stage's losses.
"""
from __future__ import annotations

import csv
import json
import os
import sys
import time

import torch
import torch.distributed as dist
from torch import nn


class Dist:
    """This process's place in a torchrun job (a single process when not under torchrun)."""

    def __init__(self, device: str = "cpu"):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "cuda":
            device = f"cuda:{self.local_rank}"
        self.device = torch.device(device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        if self.world > 1:
            return nn.parallel.DistributedDataParallel(module)
        return module

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            x = x.clone()
            dist.all_reduce(x)
            x /= self.world
        return x

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def threads_for(d: Dist, threads: int = 0) -> None:
    """Torch threads per process: `threads`, or LOCOD_TORCH_THREADS, or 1. Small networks on a
    small machine are fastest on one thread: the environment steps on its own pool, and OpenMP
    workers spinning on an oversubscribed machine cost more than they give."""
    n = threads or int(os.environ.get("LOCOD_TORCH_THREADS", "1"))
    torch.set_num_threads(max(1, n))


class Normalizer(nn.Module):
    """Running mean and variance of the inputs (rsl_rl's empirical normalisation), synchronised
    across processes, frozen after `until` samples; exported inside the model."""

    def __init__(self, dim: int, until: int = 50_000_000, eps: float = 1e-2):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.until = until
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / torch.sqrt(self.var + self.eps)

    @torch.no_grad()
    def update(self, x: torch.Tensor, d: Dist | None = None) -> None:
        if self.count >= self.until:
            return
        n = torch.tensor(float(x.shape[0]), dtype=torch.float64)
        m = x.mean(0).double()
        v = x.var(0, unbiased=False).double()
        if d is not None and d.world > 1:
            # Mean of per-process moments (equal batch sizes).
            m2 = d.mean(v + m * m)
            m = d.mean(m)
            v = m2 - m * m
            n = n * d.world
        total = self.count + n
        delta = m - self.mean.double()
        new_mean = self.mean.double() + delta * n / total
        new_var = (self.var.double() * self.count + v * n + delta * delta * self.count * n / total) / total
        self.mean.copy_(new_mean.float())
        self.var.copy_(new_var.float())
        self.count.copy_(total)


def mlp(sizes: list[int], act=nn.ELU, out_act=None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
        elif out_act is not None:
            layers.append(out_act())
    return nn.Sequential(*layers)


def save_atomic(obj, path: str) -> None:
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Metrics:
    """One CSV row per iteration (the curves the model cards plot) and a JSON summary."""

    def __init__(self, run_dir: str, enabled: bool):
        self.path = os.path.join(run_dir, "metrics.csv")
        self.enabled = enabled
        self.fields: list[str] | None = None
        if enabled and os.path.exists(self.path):
            with open(self.path) as f:
                self.fields = next(csv.reader(f), None)

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        if self.fields is None:
            self.fields = list(row.keys())
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(k, "")) for k in self.fields])


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v


def read_metrics(run_dir: str) -> dict[str, list[float]]:
    path = os.path.join(run_dir, "metrics.csv")
    out: dict[str, list[float]] = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                try:
                    out.setdefault(k, []).append(float(v))
                except (TypeError, ValueError):
                    pass
    return out


class Progress:
    """A progress bar on a terminal (tqdm), a line every few percent in a log."""

    def __init__(self, total: int, start: int, desc: str, enabled: bool):
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.total, self.n, self.desc = total, start, desc
        self.t0 = time.time()
        self.bar = None
        self.last_pct = -1
        if enabled and self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True)

    def update(self, info: str) -> None:
        self.n += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(info, refresh=False)
            self.bar.update(1)
            return
        pct = int(100 * self.n / max(1, self.total))
        if pct // 5 != self.last_pct // 5 or self.n == self.total:
            self.last_pct = pct
            el = time.time() - self.t0
            print(f"{self.desc}: {self.n}/{self.total} ({pct}%) {el:.0f}s {info}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_json(path: str, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
