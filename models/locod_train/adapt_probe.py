"""Why finetuning the dynamics did or did not change how the planner acts: four measurements of a
pretrained and a finetuned world model on held-out logs (a policy-rate export, `locod export
--rate policy`, of episodes neither model was trained on).

    python -m locod_train.adapt_probe --data DIR --base world_model.pt --finetuned wm_ft.pt [--json OUT]

1. k-step latent error: from z_0 = encode(o_t), `next` along the logged actions for 16 steps, the
   mean squared distance to encode(o_t+k) (the loss `locod finetune` trains, at the planner's
   horizon rather than the finetuning horizon).
2. Plan ranking: at 300 Walk steps, 64 action sequences sampled around the prior's own 16-step
   trajectory (std 0.15, the shipped planner's) and scored by each model's fused `rollout`
   (gamma 0.99). Spearman correlation of the two models' scores, overlap of their 16 elites, how
   often they pick the same best sequence, and how far the elite-weighted first action moves from
   the prior's.
3. What the frozen heads read: value V(encode(o)) and reward r(encode(o), a) cruising (Walk steps
   1-2 s in) against the last second before a fall (1.5-0.5 s before the end of a Walk segment that
   ended early, i.e. before the longest one: `locod eval` ends an episode at a fall or at its time
   limit), with the wheels' rim speed from the logged joint velocities.
4. Slowing down: on the same pre-fall steps, the prior's trajectory with both wheel actions offset
   by d, each model's score relative to d = 0.
5. Slip (with `--eval`, the `locod eval --json` report of the logged episodes): per Walk segment,
   the distance the wheels' rims turned through against the base's progress from the simulator's
   ground truth.

Reads the export's parquet with pyarrow; the models with torch.jit (their `encode`, `next`,
`reward`, `value`, `pi`, `rollout` methods). Not for: finetuning (locod finetune) or evaluation
(locod eval, scripts/adapt.sh).
"""
from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np
import torch

HORIZON, SAMPLES, ELITES, STD, GAMMA = 16, 64, 16, 0.15, 0.99
WALK = 2  # the export's `mode` index of walk
WHEELS = (2, 5)  # action / joint indices of the wheels
WHEEL_RADIUS_M = 0.09
OFFSETS = (-0.3, -0.2, -0.1, 0.0, 0.1, 0.2)
POLICY_HZ = 50


def load(data: str) -> dict:
    import pyarrow.parquet as pq

    files = sorted(glob.glob(os.path.join(data, "data", "*", "*.parquet")))
    if not files:
        raise SystemExit(f"adapt_probe: no parquet files under {data}/data (a `locod export --rate policy` directory?)")
    cols = {}
    for f in files:
        for k, v in pq.read_table(f).to_pydict().items():
            cols.setdefault(k, []).extend(v)
    return {
        "obs": torch.tensor(np.array(cols["observation.state"], dtype=np.float32)),
        "act": torch.tensor(np.array(cols["action"], dtype=np.float32)),
        "qd": np.array(cols["observation.robot_state"], dtype=np.float32)[:, [6 + j for j in WHEELS]],
        "mode": np.array(cols["mode"]),
        "episode": np.array(cols["episode_index"]),
        "valid": np.array(cols["next.valid"]),
    }


def segments(d: dict) -> tuple[list[int], list[int]]:
    """Indices of cruising steps (1-2 s into each Walk segment) and of pre-fall steps."""
    walks = [np.where((d["episode"] == e) & (d["mode"] == WALK))[0] for e in np.unique(d["episode"])]
    walks = [w for w in walks if len(w) > 0]
    longest = max(len(w) for w in walks)
    cruise = [i for w in walks for i in w[50:100]]
    fall = [i for w in walks if len(w) < longest - 50 and len(w) > 100 for i in w[-75:-25]]
    return cruise, fall


def windows(episode: np.ndarray, valid: np.ndarray, h: int = HORIZON) -> list[int]:
    """First steps of the windows of h valid transitions in a row within one episode."""
    return [i for i in range(len(episode) - h) if episode[i] == episode[i + h] and valid[i : i + h].all()]


@torch.no_grad()
def kstep(m, d: dict) -> list[float]:
    idx = torch.tensor(windows(d["episode"], d["valid"]))
    target = m.encode(d["obs"])
    z, errs = target[idx], []
    for k in range(HORIZON):
        z = m.next(z, d["act"][idx + k])
        errs.append(((z - target[idx + k + 1]) ** 2).mean().item())
    return errs


@torch.no_grad()
def prior_trajectory(m, z0):
    z, steps = z0, []
    for _ in range(HORIZON):
        a = m.pi(z)
        steps.append(a)
        z = m.next(z, a)
    return torch.stack(steps, 1)


@torch.no_grad()
def ranking(base, ft, d: dict, walk: np.ndarray) -> dict:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    pick = torch.tensor(rng.choice(walk, size=min(300, len(walk)), replace=False))
    z0 = base.encode(d["obs"][pick])
    mean = prior_trajectory(base, z0)
    s = len(pick)
    seqs = (mean[:, None] + STD * torch.randn(s, SAMPLES, HORIZON, mean.shape[-1])).clamp(-2, 2)
    seqs[:, 0] = mean
    flat, zz = seqs.reshape(s * SAMPLES, HORIZON, -1), z0.repeat_interleave(SAMPLES, 0)
    g = [m.rollout(zz, flat, GAMMA).reshape(s, SAMPLES) for m in (base, ft)]
    r = [x.argsort(1).argsort(1).float() for x in g]
    r = [x - x.mean(1, keepdim=True) for x in r]
    rho = (r[0] * r[1]).mean(1) / (r[0].pow(2).mean(1).sqrt() * r[1].pow(2).mean(1).sqrt())
    elites = [x.topk(ELITES, 1).indices for x in g]
    overlap = np.mean([len(set(a.tolist()) & set(b.tolist())) / ELITES for a, b in zip(*elites)])

    def first_action_shift(x):
        top = x.topk(ELITES, 1)
        w = torch.softmax(0.5 * (top.values - top.values[:, :1]), 1)
        first = seqs[torch.arange(s)[:, None], top.indices, 0]
        return ((w[..., None] * first).sum(1) - mean[:, 0]).abs().mean().item()

    return {
        "states": s,
        "spearman_mean": rho.mean().item(),
        "spearman_min": rho.min().item(),
        "elite_overlap": float(overlap),
        "same_best": (g[0].argmax(1) == g[1].argmax(1)).float().mean().item(),
        "score_std": [x.std(1).mean().item() for x in g],
        "first_action_shift_from_prior": [first_action_shift(x) for x in g],
    }


@torch.no_grad()
def heads(m, d: dict, idx: list[int]) -> dict:
    i = torch.tensor(idx)
    z = m.encode(d["obs"][i])
    v, r = m.value(z).ravel(), m.reward(z, d["act"][i]).ravel()
    return {
        "steps": len(idx),
        "value": v.mean().item(),
        "value_p10": v.quantile(0.1).item(),
        "reward": r.mean().item(),
        "reward_p10": r.quantile(0.1).item(),
        "wheel_rim_speed_mps": float(d["qd"][idx].mean() * WHEEL_RADIUS_M),
    }


@torch.no_grad()
def slowing(m, d: dict, idx: list[int]) -> dict:
    z0 = m.encode(d["obs"][torch.tensor(idx)])
    mean = prior_trajectory(m, z0)
    g = []
    for off in OFFSETS:
        s = mean.clone()
        s[..., list(WHEELS)] += off
        g.append(m.rollout(z0, s.clamp(-2, 2), GAMMA))
    g = torch.stack(g, 1)
    g = g - g[:, OFFSETS.index(0.0)][:, None]
    return {
        "score_vs_offset": {f"{o:+.1f}": v for o, v in zip(OFFSETS, g.mean(0).tolist())},
        "best_offset_share": {f"{o:+.1f}": (g.argmax(1) == j).float().mean().item() for j, o in enumerate(OFFSETS)},
    }


def slip(d: dict, eval_json: str) -> list[dict]:
    """Rim travel of each Walk segment (trapezoid over policy steps) beside the evaluation's
    progress; segments and episodes pair in order (every episode has one Walk segment)."""
    with open(eval_json) as f:
        episodes = json.load(f)["per_episode"]
    walks = [np.where((d["episode"] == e) & (d["mode"] == WALK))[0] for e in np.unique(d["episode"])]
    walks = [w for w in walks if len(w) > 0]
    if len(walks) != len(episodes):
        raise SystemExit(f"adapt_probe: {len(walks)} Walk segments in the logs, {len(episodes)} episodes in {eval_json}")
    rim = d["qd"].mean(1) * WHEEL_RADIUS_M / POLICY_HZ
    return [
        {"seed": e["seed"], "fell": e["fell"], "walk_s": len(w) / POLICY_HZ, "progress_m": e["progress_m"],
         "rim_travel_m": float(rim[w].sum()), "rim_speed_last_2s_mps": float(d["qd"][w[-2 * POLICY_HZ:]].mean() * WHEEL_RADIUS_M)}
        for w, e in zip(walks, episodes)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a policy-rate export (locod export --rate policy)")
    ap.add_argument("--base", required=True, help="the pretrained world model")
    ap.add_argument("--finetuned", required=True, help="the finetuned world model")
    ap.add_argument("--eval", help="the `locod eval --json` report of the logged episodes (adds the slip table)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = load(args.data)
    base, ft = torch.jit.load(args.base), torch.jit.load(args.finetuned)
    cruise, fall = segments(d)
    if not fall:
        raise SystemExit("adapt_probe: no Walk segment ended early (a fall) in these logs")
    out = {
        "data": os.path.abspath(args.data),
        "base": os.path.abspath(args.base),
        "finetuned": os.path.abspath(args.finetuned),
        "kstep_error": {"base": kstep(base, d), "finetuned": kstep(ft, d)},
        "ranking": ranking(base, ft, d, np.where(d["mode"] == WALK)[0]),
        "heads": {"cruising": heads(base, d, cruise), "before_a_fall": heads(base, d, fall)},
        "slowing_down": {"base": slowing(base, d, fall), "finetuned": slowing(ft, d, fall)},
    }
    k = out["kstep_error"]
    print("1. latent error after k steps (base -> finetuned):")
    print("   " + "  ".join(f"k={j}: {k['base'][j - 1]:.4f} -> {k['finetuned'][j - 1]:.4f}" for j in (1, 5, 16)))
    r = out["ranking"]
    print(f"2. plan ranking over {r['states']} Walk steps x {SAMPLES} plans: Spearman {r['spearman_mean']:.2f} "
          f"(min {r['spearman_min']:.2f}), elite overlap {r['elite_overlap']:.2f}, same best plan {r['same_best']:.2f}; "
          f"score std {r['score_std'][0]:.2f} -> {r['score_std'][1]:.2f}; first action's mean shift from the prior "
          f"{r['first_action_shift_from_prior'][0]:.3f} -> {r['first_action_shift_from_prior'][1]:.3f} action units")
    print("3. the frozen heads:")
    for name, h in out["heads"].items():
        print(f"   {name:14s} {h['steps']:5d} steps: value {h['value']:.1f} (p10 {h['value_p10']:.1f}), reward/step "
              f"{h['reward']:.3f} (p10 {h['reward_p10']:.3f}), wheel rim speed {h['wheel_rim_speed_mps']:.2f} m/s")
    print("4. score of the prior's plan with the wheels offset by d, relative to d = 0 (before a fall):")
    for name, s in out["slowing_down"].items():
        print(f"   {name:10s} " + "  ".join(f"{o}: {v:+.2f}" for o, v in s["score_vs_offset"].items()))
    if args.eval:
        out["slip"] = slip(d, args.eval)
        print("5. per episode: Walk seconds, progress (ground truth) against the wheels' rim travel, rim speed over the last 2 s:")
        for e in out["slip"]:
            print(f"   seed {e['seed']}: {'fell' if e['fell'] else 'walked'} {e['walk_s']:5.1f} s, progress {e['progress_m']:5.2f} m, "
                  f"rim travel {e['rim_travel_m']:5.2f} m, rim speed {e['rim_speed_last_2s_mps']:.2f} m/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
