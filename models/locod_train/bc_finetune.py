"""The policy-finetuning baseline of the SimDist adaptation experiment (scripts/adapt.sh): behaviour
cloning of the student on the actions logged in the "real world", from the same policy-rate exports
the world model's dynamics are finetuned on.

    python -m locod_train.bc_finetune --student models/biwheel/student.pt --data DS... --out S.pt

Every parameter of the TorchScript student is trained (MSE to the logged action before scaling,
the quantity the student outputs) on the Walk steps; every fifth episode is held out, Adam with
cosine decay, early stopping on the held-out loss, the best epoch kept. The student's contract
(`locod_spec()`) is unchanged, so locod loads the result as it loads the student. Prints one JSON
object: steps, losses before and after, epochs.

The logged actions are the MPPI planner's (the controller that collected the data): cloning them is
the cheapest policy update the same data allows; SimDist's own baselines (IQL, RLPD) are offline RL,
which needs rewards these logs do not carry.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from locod_dataset import STATE, load_columns  # noqa: E402

MODE_WALK = 2


def load(dirs: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk steps of every export: (observation, action, a global episode id)."""
    obs, act, ep = [], [], []
    offset = 0
    for d in dirs:
        c = load_columns(d)
        walk = c["mode"].astype(int) == MODE_WALK
        obs.append(c[STATE][walk])
        act.append(c["action"][walk])
        ep.append(c["episode_index"][walk].astype(np.int64) + offset)
        offset += int(c["episode_index"].max()) + 1
    return np.concatenate(obs), np.concatenate(act), np.concatenate(ep)


def mse(model, o: torch.Tensor, a: torch.Tensor, batch: int = 4096) -> float:
    with torch.no_grad():
        total = 0.0
        for i in range(0, len(o), batch):
            total += float(((model(o[i : i + batch]) - a[i : i + batch]) ** 2).sum())
        return total / (len(o) * a.shape[1]) if len(o) else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", required=True)
    p.add_argument("--data", nargs="+", required=True, help="locod export --rate policy directories")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)
    t0 = time.time()
    obs, act, ep = load(a.data)
    held = ep % 5 == 4
    o_tr, a_tr = torch.from_numpy(obs[~held]), torch.from_numpy(act[~held])
    o_va, a_va = torch.from_numpy(obs[held]), torch.from_numpy(act[held])
    model = torch.jit.load(a.student)
    params = [q for q in model.parameters()]
    for q in params:
        q.requires_grad_(True)
    before = mse(model, o_va, a_va)
    opt = torch.optim.Adam(params, lr=a.lr)
    steps = max(1, a.epochs * math.ceil(len(o_tr) / a.batch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    best, best_state, best_epoch, waited = before, [q.detach().clone() for q in params], 0, 0
    for epoch in range(1, a.epochs + 1):
        order = torch.randperm(len(o_tr))
        for i in range(0, len(order), a.batch):
            idx = order[i : i + a.batch]
            loss = ((model(o_tr[idx]) - a_tr[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        val = mse(model, o_va, a_va)
        print(f"bc: epoch {epoch}: held-out action MSE {val:.5f}", file=sys.stderr)
        if val < best:
            best, best_state, best_epoch, waited = val, [q.detach().clone() for q in params], epoch, 0
        else:
            waited += 1
            if waited >= a.patience:
                break
    with torch.no_grad():
        for q, b in zip(params, best_state):
            q.copy_(b)
            q.requires_grad_(False)
    out = Path(a.out)
    tmp = out.with_suffix(".pt.partial")
    torch.jit.save(model, str(tmp))
    tmp.replace(out)
    print(json.dumps({
        "student": a.student, "out": str(out), "train_steps": int(len(o_tr)), "validation_steps": int(len(o_va)),
        "episodes": int(len(np.unique(ep))), "validation_mse_before": before, "validation_mse_after": best,
        "best_epoch": best_epoch, "epochs_run": epoch, "seconds": time.time() - t0,
    }))


if __name__ == "__main__":
    main()
