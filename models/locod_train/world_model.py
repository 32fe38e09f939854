"""The SimDist world model: data from the teacher and its earlier checkpoints with bursts of action
noise, a latent model over the deployable observation (encoder, latent dynamics, reward, value,
policy prior), and its export as a `world_model` contract model with a fused `rollout`.

Stages (each rerunnable and resumable; `all` runs them in order):

    python -m locod_train.world_model collect --dir models/runs/wm --teacher-run models/runs/teacher
    python -m locod_train.world_model train   --dir models/runs/wm
    python -m locod_train.world_model prior   --dir models/runs/wm --teacher-run models/runs/teacher
                                              # DAgger of the prior (refine_prior); export prefers it
    python -m locod_train.world_model export  --dir models/runs/wm [--out models/biwheel/world_model.pt]
    python -m locod_train.world_model all     --dir models/runs/wm --teacher-run models/runs/teacher
    python -m locod_train.world_model all --smoke          # tiny nets, a few hundred steps, seconds
    python -m locod_train.world_model play --dir models/runs/wm --controller mppi|prior|teacher
                                              # a quick closed-loop check in env.py (not locod eval)

All stages run under torchrun too: collection splits the shards by rank, training is
DistributedDataParallel (gloo on CPU, nccl on GPUs), export runs on rank 0. (`--run` is an alias
of `--dir`, but torchrun's own parser takes `--run` for its `--run-path`; use `--dir` there.)

    torchrun --nproc-per-node 2 -m locod_train.world_model all --smoke --dir models/runs/wm_smoke2

Data (`<run>/data/shard_<k>.npz`, one per (seed, k): a fresh environment of `envs` robots stepped
`shard_steps` policy steps; a written shard is skipped on rerun). Per robot and step, time-major
[T, B, ...]: `obs` the deployable observation exactly as locod builds it (env.deployable_obs),
`obs_clean` the same without sensor noise (the consistency targets, as in SimDist), `action` the action applied (after noise, clipped), `expert` the final teacher's mean action at the
same state, `reward` env.py's task reward (the reward the teacher was trained on: velocity and yaw
tracking, upright, height, smoothness, torque; progress on obstacles is velocity tracking toward
them), `value` the final teacher's privileged critic at the state (the value target: how privileged
information enters the model), `done`, `fell`, `clean` (the final teacher acted and no noise was
on), `episode` (ids unique across shards) and `policy` (the acting checkpoint's iteration). At each
reset half the robots run the final teacher, half an earlier checkpoint (up to 40 % of the final
iteration, as SimDist's 0..2,000 of 5,000); every robot draws an action-noise std once per episode
in [0.05, 1.0] action units, on in bursts of 1-49 steps and off for 25-499 (SimDist's).

Model (`WorldModel`, the same module trains and is exported): the observation normaliser (fixed
buffers from the training data), `encoder` (obs -> latent, layer-normalised without affine),
`dynamics` (z, a -> z' = LN(z + f(z, a)); the only part finetuning touches, issue 12), `reward_head`
(z, a -> r), `value_head` (z -> V), `prior` (z -> a, clip * tanh). Reward and value are predicted
in normalised units and rescaled by buffers, so the exported methods return env units.

Losses (SimDist): from z_0 = encode(o_t), roll `next` along the logged actions for H steps; latent
consistency mse(z_k, sg(encode(o_{t+k}))), reward and value on the predicted latents, behaviour
cloning (weight 4) of the final teacher's action on clean steps only; no EMA target. Windows never
cross an episode's end (masked). Adam, linear warm-up, cosine decay.

Not for: the environment (env.py), the teacher (teacher.py), finetuning on logged data (locod
finetune, issue 12), the planner (src/policy/mppi.rs).
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import math
import os
import re
import sys
import time
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import Dist, Metrics, Progress, save_atomic, threads_for, write_json
from .contract import deployable_terms, obs_dim, spec_json

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.dirname(HERE)

# The planner defaults the export writes into the contract. Horizon 16 (0.32 s, the training
# horizon): over 5 steps the terminal value decides the score and the planner follows the value
# head off the prior (it turned by holding the hips asymmetric and fell at the step; models/README,
# "The planner's settings"). 64 samples x 16 steps x 2 iterations fits the 10 ms budget.
PLANNER = {
    "horizon": 16,
    "samples": 64,
    "elites": 16,
    "iterations": 2,
    "temperature": 0.5,
    "min_std": 0.05,
    "max_std": 0.15,
    "prior_samples": 8,
    "gamma": 0.99,
    "centre": "prior",
}


# ----------------------------------------------------------------------------------- configuration
@dataclasses.dataclass
class CollectConfig:
    shards: int = 32
    envs: int = 64
    shard_steps: int = 400  # policy steps (8 s at 50 Hz)
    seed: int = 7
    p_final: float = 0.5  # robots running the final teacher at a reset
    early_frac: float = 0.4  # earlier checkpoints: iterations up to this fraction of the final one
    max_earlier: int = 8  # checkpoints loaded at most (evenly spaced)
    noise_std: tuple = (0.05, 1.0)
    noise_on: tuple = (1, 49)
    noise_off: tuple = (25, 499)
    random_levels: bool = True  # each robot's terrain level drawn uniformly (no curriculum)


@dataclasses.dataclass
class ModelConfig:
    latent: int = 64
    enc_hidden: int = 256
    dyn_hidden: int = 192
    rew_hidden: int = 64
    val_hidden: int = 192
    pi_hidden: int = 192


@dataclasses.dataclass
class TrainConfig:
    steps: int = 12_000
    batch: int = 256
    horizon: int = 16  # policy steps of latent rollout in the loss (SimDist predicts 25; 16 ranks the prior better than 6, see play)
    lr: float = 3e-4
    lr_final: float = 3e-5
    warmup: int = 1000
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    rho: float = 1.0  # per-step weight rho^k over the horizon (SimDist: uniform)
    w_consistency: float = 1.0
    w_reward: float = 1.0
    w_value: float = 1.0
    w_bc: float = 4.0
    bc_all: bool = False  # clone the final teacher's (relabelled) action on every step, not only clean ones
    val_frac: float = 0.1  # episodes held out
    log_every: int = 50
    eval_every: int = 500
    ckpt_every: int = 500
    seed: int = 3


@dataclasses.dataclass
class PriorConfig:
    """DAgger of the policy prior on its own visited states (encoder and everything else frozen)."""
    iterations: int = 150
    envs: int = 256
    steps_per_iter: int = 24
    grad_steps: int = 40
    batch: int = 512
    buffer: int = 200_000
    lr: float = 3e-4
    beta_decay_iters: int = 20
    save_every: int = 25
    seed: int = 5


def smoke_configs():
    return (
        CollectConfig(shards=2, envs=8, shard_steps=25, max_earlier=2),
        ModelConfig(latent=16, enc_hidden=32, dyn_hidden=32, rew_hidden=16, val_hidden=32, pi_hidden=32),
        TrainConfig(steps=40, batch=64, horizon=4, warmup=5, log_every=10, eval_every=20, ckpt_every=20, val_frac=0.25),
        PriorConfig(iterations=2, envs=8, steps_per_iter=4, grad_steps=2, batch=32, buffer=1_000, save_every=1),
    )


# ----------------------------------------------------------------------------------- data collection
def teacher_checkpoints(teacher_dir: str) -> tuple[Optional[str], int, list[tuple[int, str]]]:
    """(final path, final iteration, [(iteration, path)] of all earlier numbered checkpoints)."""
    numbered = []
    for p in glob.glob(os.path.join(teacher_dir, "ckpt_*.pt")):
        m = re.fullmatch(r"ckpt_(\d+)\.pt", os.path.basename(p))
        if m:
            numbered.append((int(m.group(1)), p))
    numbered.sort()
    if numbered:
        it, path = numbered[-1]
        return path, it, numbered[:-1]
    p = os.path.join(teacher_dir, "ckpt.pt")
    if os.path.exists(p):
        return p, -1, []
    return None, -1, []


def pick_earlier(earlier: list[tuple[int, str]], final_it: int, cc: CollectConfig) -> list[tuple[int, str]]:
    if not earlier:
        return []
    cut = [e for e in earlier if e[0] <= cc.early_frac * final_it] or earlier[:1]
    if len(cut) > cc.max_earlier:
        idx = np.unique(np.round(np.linspace(0, len(cut) - 1, cc.max_earlier)).astype(int))
        cut = [cut[i] for i in idx]
    return cut


def load_teachers(teacher_dir: str, cc: CollectConfig, allow_random: bool):
    from .teacher import ActorCritic, load_teacher

    final_path, final_it, earlier = teacher_checkpoints(teacher_dir) if teacher_dir else (None, -1, [])
    if final_path is None:
        if not allow_random:
            raise SystemExit(f"world_model: no teacher checkpoint in {teacher_dir!r} (ckpt_<it>.pt or ckpt.pt)")
        print("world_model: no teacher checkpoint; the smoke run uses an untrained teacher", file=sys.stderr)
        torch.manual_seed(0)
        return ActorCritic(75, 6).eval(), [], {"final": "random", "earlier": []}
    final = load_teacher(final_path)
    chosen = pick_earlier(earlier, final_it, cc)
    others = [(it, load_teacher(p)) for it, p in chosen]
    info = {"final": os.path.basename(final_path), "final_iteration": final_it, "earlier": [it for it, _ in chosen]}
    return final, others, info


def collect_shard(path: str, k: int, cc: CollectConfig, final, others, info: dict) -> dict:
    from . import terrain
    from .contract import ObsBuilder
    from .env import BiwheelEnv, EnvConfig

    seed = cc.seed * 100_003 + k
    rng = np.random.default_rng(seed)
    env = BiwheelEnv(EnvConfig(num_envs=cc.envs, seed=seed, curriculum=False))
    B, T, A = env.B, cc.shard_steps, env.nj
    clip = env.robot.action_clip
    all_ids = np.arange(B)
    if cc.random_levels:
        env.level[:] = rng.integers(0, terrain.LEVELS, B)
        env.reset(all_ids)
    ep_base = k * 1_000_000
    next_ep = 0
    episode = np.zeros(B, np.int64)
    policy = np.zeros(B, int)  # 0 = final teacher, j > 0 = others[j - 1]
    std = np.zeros(B)
    noise_on = np.zeros(B, bool)
    timer = np.zeros(B, int)

    def new_episodes(ids: np.ndarray, first: bool) -> None:
        nonlocal next_ep
        n = len(ids)
        episode[ids] = ep_base + next_ep + np.arange(n)
        next_ep += n
        use_other = (rng.random(n) >= cc.p_final) & (len(others) > 0)
        policy[ids] = np.where(use_other, rng.integers(1, len(others) + 1, n) if others else 0, 0)
        std[ids] = rng.uniform(*cc.noise_std, n)
        noise_on[ids] = False
        # A random phase of the off period, so bursts do not line up across robots.
        off = rng.integers(cc.noise_off[0], cc.noise_off[1] + 1, n)
        timer[ids] = rng.integers(0, off + 1) if first else off

    new_episodes(all_ids, True)
    # The same observation without sensor noise (SimDist's targets come from clean observations):
    # a second builder over env.raw_terms(noisy=False), reset with the environment's. The ToF zones
    # keep their noise and dropout (env.py adds them when it casts the rays).
    clean_obs = ObsBuilder(deployable_terms(), env.nj, B)
    O = env.deployable.dim
    out = {
        "obs": np.zeros((T, B, O), np.float32),
        "obs_clean": np.zeros((T, B, O), np.float32),
        "action": np.zeros((T, B, A), np.float32),
        "expert": np.zeros((T, B, A), np.float32),
        "reward": np.zeros((T, B), np.float32),
        "value": np.zeros((T, B), np.float32),
        "done": np.zeros((T, B), bool),
        "fell": np.zeros((T, B), bool),
        "clean": np.zeros((T, B), bool),
        "episode": np.zeros((T, B), np.int64),
        "policy": np.zeros((T, B), np.int32),
    }
    its = np.array([info.get("final_iteration", -1)] + [it for it, _ in others])
    for t in range(T):
        obs = env.deployable_obs()
        out["obs_clean"][t] = clean_obs.build(env.raw_terms(noisy=False))
        priv = torch.as_tensor(env.privileged_obs())
        with torch.no_grad():
            expert = final.act_mean(priv)
            value = final.value(priv)
            act = expert.clone()
            for j, (_, ac) in enumerate(others, start=1):
                m = torch.as_tensor(policy == j)
                if bool(m.any()):
                    act[m] = ac.act_mean(priv[m])
        act = act.numpy()
        # Noise bursts: on for 1-49 steps, off for 25-499.
        timer -= 1
        flip = np.nonzero(timer <= 0)[0]
        if len(flip):
            noise_on[flip] = ~noise_on[flip]
            on_len = rng.integers(cc.noise_on[0], cc.noise_on[1] + 1, len(flip))
            off_len = rng.integers(cc.noise_off[0], cc.noise_off[1] + 1, len(flip))
            timer[flip] = np.where(noise_on[flip], on_len, off_len)
        noisy = act + noise_on[:, None] * std[:, None] * rng.standard_normal((B, A))
        applied = np.clip(noisy, -clip, clip).astype(np.float32)
        reward, fell, timeout, _ = env.step(applied)
        done = fell | timeout
        out["obs"][t] = obs
        out["action"][t] = applied
        out["expert"][t] = np.clip(expert.numpy(), -clip, clip)
        out["reward"][t] = reward
        out["value"][t] = value.numpy()
        out["done"][t] = done
        out["fell"][t] = fell
        out["clean"][t] = (policy == 0) & ~noise_on
        out["episode"][t] = episode
        out["policy"][t] = its[policy]
        ids = np.nonzero(done)[0]
        if len(ids):
            env.reset(ids)
            clean_obs.reset(ids)
            new_episodes(ids, False)
        yield None
    meta = {"shard": k, "seed": seed, "teachers": info, "config": dataclasses.asdict(cc), "obs_dim": O, "act_dim": A}
    out["meta"] = np.array(json.dumps(meta))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **out)
    os.replace(tmp, path)
    return out


def collect(run: str, teacher_dir: str, cc: CollectConfig, smoke: bool = False) -> None:
    d = Dist("cpu")
    threads_for(d)
    data_dir = os.path.join(run, "data")
    os.makedirs(data_dir, exist_ok=True)
    mine = [k for k in range(cc.shards) if k % d.world == d.rank]
    todo = [k for k in mine if not os.path.exists(os.path.join(data_dir, f"shard_{k:05d}.npz"))]
    if d.main:
        print(f"world_model collect: {cc.shards} shards of {cc.envs} robots x {cc.shard_steps} steps; "
              f"rank 0 has {len(todo)} of its {len(mine)} to do", file=sys.stderr)
    if todo:
        final, others, info = load_teachers(teacher_dir, cc, allow_random=smoke)
        if d.main:
            print(f"world_model collect: teachers {info}", file=sys.stderr)
        bar = Progress(len(todo) * cc.shard_steps, 0, "wm collect", d.main)
        t0 = time.time()
        stats = []
        for k in todo:
            gen = collect_shard(os.path.join(data_dir, f"shard_{k:05d}.npz"), k, cc, final, others, info)
            try:
                while True:
                    next(gen)
                    bar.update(f"shard {k}")
            except StopIteration as e:
                out = e.value
            stats.append((float(out["reward"].mean()), int(out["fell"].sum()), float(out["clean"].mean())))
        bar.close()
        el = time.time() - t0
        n = len(todo) * cc.envs * cc.shard_steps
        print(f"world_model collect (rank {d.rank}): {len(todo)} shards, {n} steps in {el:.0f}s "
              f"({n / max(el, 1e-9):.0f} steps/s); mean reward {np.mean([s[0] for s in stats]):.3f}, "
              f"falls {sum(s[1] for s in stats)}, clean {np.mean([s[2] for s in stats]):.2f}", file=sys.stderr)
    d.barrier()
    if d.main:
        write_json(os.path.join(run, "collect.json"), {"config": dataclasses.asdict(cc), "teacher": teacher_dir})


# ----------------------------------------------------------------------------------- model
def elu_(x: Tensor) -> Tensor:
    """ELU in place via exp2 (make_test_models.elu_): max(x, 2^(min(x,0) log2 e) - 1). Within 6e-8
    of F.elu; used only in the fused rollout, which export checks against the stepped methods."""
    neg = torch.clamp_max(x, 0.0).mul_(1.4426950408889634).exp2_().sub_(1.0)
    return torch.maximum(x, neg, out=x)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


class WorldModel(nn.Module):
    """Trained and exported as is (torch.jit.script). Parameters `dynamics.*` are the latent
    dynamics, the only part finetuning updates; everything else (normaliser, encoder, heads, prior)
    lives outside it."""

    def __init__(self, obs_dim_: int, act_dim: int, mc: ModelConfig, action_clip: float, spec: str = "{}"):
        super().__init__()
        L, A = mc.latent, act_dim
        self.spec_json = spec
        self.latent = L
        self.action_clip = float(action_clip)
        self.register_buffer("obs_mean", torch.zeros(obs_dim_))
        self.register_buffer("obs_std", torch.ones(obs_dim_))
        self.register_buffer("r_mean", torch.zeros(()))
        self.register_buffer("r_std", torch.ones(()))
        self.register_buffer("v_mean", torch.zeros(()))
        self.register_buffer("v_std", torch.ones(()))
        self.encoder = _mlp([obs_dim_, mc.enc_hidden, mc.enc_hidden, L])
        # Two layers each, so the fused rollout can stack the first layers of reward and dynamics.
        self.dynamics = _mlp([L + A, mc.dyn_hidden, L])
        self.reward_head = _mlp([L + A, mc.rew_hidden, 1])
        self.value_head = _mlp([L, mc.val_hidden, 1])
        self.prior = _mlp([L, mc.pi_hidden, mc.pi_hidden, A])
        with torch.no_grad():
            # Small initial dynamics residual, heads at the data mean, prior near zero.
            self.dynamics[2].weight.mul_(0.1)
            self.dynamics[2].bias.zero_()
            for head in (self.reward_head, self.value_head):
                head[2].weight.mul_(0.1)
                head[2].bias.zero_()
            self.prior[4].weight.mul_(0.1)
            self.prior[4].bias.zero_()

    def forward(self, obs: Tensor) -> Tensor:
        return self.encode(obs)

    def _ln(self, z: Tensor) -> Tensor:
        return F.layer_norm(z, [self.latent])

    @torch.jit.export
    def encode(self, obs: Tensor) -> Tensor:
        x = ((obs - self.obs_mean) / self.obs_std).clamp(-10.0, 10.0)
        return self._ln(self.encoder(x))

    @torch.jit.export
    def next(self, z: Tensor, a: Tensor) -> Tensor:
        return self._ln(z + self.dynamics(torch.cat([z, a], 1)))

    @torch.jit.export
    def reward_norm(self, z: Tensor, a: Tensor) -> Tensor:
        return self.reward_head(torch.cat([z, a], 1)).squeeze(1)

    @torch.jit.export
    def value_norm(self, z: Tensor) -> Tensor:
        return self.value_head(z).squeeze(1)

    @torch.jit.export
    def reward(self, z: Tensor, a: Tensor) -> Tensor:
        return self.reward_norm(z, a) * self.r_std + self.r_mean

    @torch.jit.export
    def value(self, z: Tensor) -> Tensor:
        return self.value_norm(z) * self.v_std + self.v_mean

    @torch.jit.export
    def pi(self, z: Tensor) -> Tensor:
        return self.action_clip * torch.tanh(self.prior(z) / self.action_clip)

    @torch.jit.export
    def rollout(self, z: Tensor, actions: Tensor, gamma: float) -> Tensor:
        """sum_t gamma^t r_t + gamma^H V(z_H), fused: the first layers of reward and dynamics read
        the same (z, a) and are one matrix product; ELU through exp2 in place. The stacked weights
        are rebuilt per call (microseconds), so finetuning `dynamics.*` in place is seen here."""
        w1 = torch.cat([self.reward_head[0].weight, self.dynamics[0].weight], 0)
        b1 = torch.cat([self.reward_head[0].bias, self.dynamics[0].bias], 0)
        # Reward rescaling folded into its last layer (r_std * (w h + b) + r_mean).
        w_r = self.reward_head[2].weight * self.r_std
        b_r = self.reward_head[2].bias * self.r_std + self.r_mean
        w_d, b_d = self.dynamics[2].weight, self.dynamics[2].bias
        hr = w_r.shape[1]
        g = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        discount = 1.0
        for t in range(actions.shape[1]):
            h = elu_(F.linear(torch.cat([z, actions[:, t]], 1), w1, b1))
            r = F.linear(h[:, :hr], w_r, b_r).squeeze(1)
            z = F.layer_norm(torch.addmm(b_d, h[:, hr:], w_d.t()).add_(z), [self.latent])
            g = g + discount * r
            discount = discount * gamma
        v = elu_(F.linear(z, self.value_head[0].weight, self.value_head[0].bias))
        v = F.linear(v, self.value_head[2].weight * self.v_std, self.value_head[2].bias * self.v_std + self.v_mean)
        return g + discount * v.squeeze(1)

    @torch.jit.export
    def locod_spec(self) -> str:
        return self.spec_json


class Objective(nn.Module):
    """The training loss around the model (DDP wraps this; the exported module is `wm`)."""

    def __init__(self, wm: WorldModel, tc: TrainConfig):
        super().__init__()
        self.wm = wm
        self.tc = tc

    def forward(self, obs, obs_clean, act, expert, rew, val, mask, clean):
        """obs / obs_clean [B, H+1, O] (the model's input / the targets' input), act / expert
        [B, H+1, A], rew / val / clean [B, H+1], mask [B, H+1] (step k in the same episode as
        step 0). Returns (total, dict of per-term means)."""
        tc, wm = self.tc, self.wm
        H = obs.shape[1] - 1
        z = wm.encode(obs[:, 0])
        with torch.no_grad():
            target = wm.encode(obs_clean[:, 1:].reshape(-1, obs.shape[2])).reshape(obs.shape[0], H, -1)
        maskf = mask.float()
        bcm = maskf if tc.bc_all else maskf * clean.float()
        rn = (rew - wm.r_mean) / wm.r_std
        vn = (val - wm.v_mean) / wm.v_std
        sums = {"consistency": 0.0, "reward": 0.0, "value": 0.0, "bc": 0.0}
        norms = {"consistency": 0.0, "reward": 0.0, "value": 0.0, "bc": 0.0}

        def add(name, err, m, w):
            sums[name] = sums[name] + w * (err * m).sum()
            norms[name] = norms[name] + w * m.sum()

        for k in range(H + 1):
            w = tc.rho ** k
            m = maskf[:, k]
            add("value", (wm.value_norm(z) - vn[:, k]) ** 2, m, w)
            add("bc", ((wm.pi(z) - expert[:, k]) ** 2).mean(1), bcm[:, k], w)
            if k == H:
                break
            add("reward", (wm.reward_norm(z, act[:, k]) - rn[:, k]) ** 2, m, w)
            z = wm.next(z, act[:, k])
            add("consistency", ((z - target[:, k]) ** 2).mean(1), maskf[:, k + 1], w)
        terms = {k: sums[k] / torch.clamp(torch.as_tensor(norms[k]), min=1.0) for k in sums}
        total = (
            tc.w_consistency * terms["consistency"]
            + tc.w_reward * terms["reward"]
            + tc.w_value * terms["value"]
            + tc.w_bc * terms["bc"]
        )
        return total, terms


# ----------------------------------------------------------------------------------- dataset
class Windows:
    """All shards robot-major and flattened: step i + k follows step i when both carry the same
    episode id. Training windows start at every step of the split's episodes."""

    KEYS = ("obs", "obs_clean", "action", "expert", "reward", "value", "clean")

    def __init__(self, data_dir: str, val_frac: float):
        paths = sorted(glob.glob(os.path.join(data_dir, "shard_*.npz")))
        if not paths:
            raise SystemExit(f"world_model: no data in {data_dir} (run `collect` first)")
        parts: dict[str, list[np.ndarray]] = {k: [] for k in (*self.KEYS, "episode", "fell")}
        self.teachers = set()
        for p in paths:
            with np.load(p) as z:
                for k in parts:
                    a = z[k] if k in z.files or k != "obs_clean" else z["obs"]
                    a = np.swapaxes(a, 0, 1)  # [B, T, ...]
                    parts[k].append(a.reshape(a.shape[0] * a.shape[1], *a.shape[2:]))
                self.teachers.add(json.dumps(json.loads(str(z["meta"]))["teachers"], sort_keys=True))
        self.shards = len(paths)
        cat = {k: np.concatenate(v) for k, v in parts.items()}
        self.n = len(cat["episode"])
        self.t = {k: torch.as_tensor(cat[k]) for k in self.KEYS}
        self.t["clean"] = self.t["clean"].bool()
        self.episode = torch.as_tensor(cat["episode"])
        self.falls = int(cat["fell"].sum())
        self.episodes = int(len(np.unique(cat["episode"])))
        # Held-out episodes: a fixed hash of the id.
        h = (cat["episode"].astype(np.uint64) * np.uint64(2654435761)) % np.uint64(1000)
        is_val = h < np.uint64(int(round(1000 * val_frac)))
        self.idx = {"train": torch.as_tensor(np.nonzero(~is_val)[0]), "val": torch.as_tensor(np.nonzero(is_val)[0])}

    def batch(self, split: str, size: int, H: int, g: torch.Generator):
        pool = self.idx[split]
        start = pool[torch.randint(len(pool), (size,), generator=g)]
        return self.gather(start, H)

    def gather(self, start: Tensor, H: int):
        off = start[:, None] + torch.arange(H + 1)[None]
        inb = off < self.n
        off = off.clamp(max=self.n - 1)
        mask = inb & (self.episode[off] == self.episode[start][:, None])
        # Once an episode ended, later steps stay masked (ids are never reused, so this holds).
        t = self.t
        return (t["obs"][off], t["obs_clean"][off], t["action"][off], t["expert"][off], t["reward"][off], t["value"][off], mask, t["clean"][off])

    def stats(self):
        obs = self.t["obs"][self.idx["train"]]
        r = self.t["reward"][self.idx["train"]]
        v = self.t["value"][self.idx["train"]]
        return obs.mean(0), obs.std(0), r.mean(), r.std(), v.mean(), v.std()


# ----------------------------------------------------------------------------------- training
def lr_at(step: int, tc: TrainConfig) -> float:
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    p = min(1.0, (step - tc.warmup) / max(1, tc.steps - tc.warmup))
    return tc.lr_final + 0.5 * (tc.lr - tc.lr_final) * (1 + math.cos(math.pi * p))


def make_model(robot, mc: ModelConfig) -> WorldModel:
    terms = deployable_terms()
    O = obs_dim(terms, robot.nj)
    return WorldModel(O, robot.nj, mc, robot.action_clip)


@torch.no_grad()
def evaluate(obj: Objective, data: Windows, split: str, tc: TrainConfig, batches: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    acc: dict[str, float] = {}
    for _ in range(batches):
        batch = data.batch(split, tc.batch, tc.horizon, g)
        total, terms = obj(*batch)
        for k, v in {"total": total, **terms, **diagnostics(obj.wm, batch)}.items():
            acc[k] = acc.get(k, 0.0) + float(v) / batches
    return acc


@torch.no_grad()
def return_check(wm: WorldModel, data: Windows, split: str, tc: TrainConfig, gamma: float, n: int = 2048) -> dict:
    """What the planner scores: `rollout` of the logged actions from the encoded first observation
    against the logged discounted rewards plus the teacher's value at the end, on whole windows."""
    g = torch.Generator().manual_seed(99)
    obs, _, act, _, rew, val, mask, _ = data.batch(split, n, tc.horizon, g)
    full = mask.all(1)
    obs, act, rew, val = obs[full], act[full], rew[full], val[full]
    H = tc.horizon
    disc = gamma ** torch.arange(H, dtype=torch.float32)
    want = (rew[:, :H] * disc).sum(1) + gamma ** H * val[:, H]
    got = wm.rollout(wm.encode(obs[:, 0]), act[:, :H].contiguous(), gamma)
    base = want - val[:, 0]  # the part of the return the first state's value does not explain
    pred = got - wm.value(wm.encode(obs[:, 0]))
    corr = lambda x, y: float(torch.corrcoef(torch.stack([x, y]))[0, 1])
    return {"windows": int(full.sum()), "return_rmse": float(((got - want) ** 2).mean().sqrt()),
            "return_std": float(want.std()), "return_corr": corr(got, want), "advantage_corr": corr(pred, base)}


@torch.no_grad()
def diagnostics(wm: WorldModel, batch) -> dict:
    """What the losses mean: `persist` is the consistency loss of a model that predicts no change
    (z_k = z_0), the floor a useful dynamics must beat; `latent_std` the spread of the encoded
    latents across the batch (near 0 = collapse); `value_rmse` / `reward_rmse` in env units (one
    step, from the encoded latent)."""
    obs, obs_clean, act, _, rew, val, mask, _ = batch
    H = obs.shape[1] - 1
    zc = wm.encode(obs_clean.reshape(-1, obs.shape[2])).reshape(obs.shape[0], H + 1, -1)
    z = wm.encode(obs[:, 0])
    m = mask[:, 1:].float()
    persist = (((zc[:, 1:] - z[:, None]) ** 2).mean(2) * m).sum() / m.sum().clamp(min=1.0)
    return {
        "persist": persist,
        "latent_std": z.std(0).mean(),
        "value_rmse": ((wm.value(z) - val[:, 0]) ** 2).mean().sqrt(),
        "reward_rmse": ((wm.reward(z, act[:, 0]) - rew[:, 0]) ** 2).mean().sqrt(),
    }


def train(run: str, mc: ModelConfig, tc: TrainConfig, device: str = "cpu") -> dict:
    from .robot import load_robot

    d = Dist(device)
    threads_for(d)
    torch.manual_seed(tc.seed + d.rank)
    data = Windows(os.path.join(run, "data"), tc.val_frac)
    robot = load_robot()
    wm = make_model(robot, mc)
    ckpt_path = os.path.join(run, "ckpt.pt")
    start = 0
    ck = None
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ck.get("model_config") != dataclasses.asdict(mc):
            raise SystemExit(f"world_model: {ckpt_path} has another model configuration; remove it to start over")
        wm.load_state_dict(ck["model"])
        start = ck["step"]
    else:
        om, os_, rm, rs, vm, vs = data.stats()
        with torch.no_grad():
            wm.obs_mean.copy_(om)
            wm.obs_std.copy_(torch.sqrt(os_ ** 2 + 1e-4))
            wm.r_mean.copy_(rm)
            wm.r_std.copy_(rs.clamp(min=1e-3))
            wm.v_mean.copy_(vm)
            wm.v_std.copy_(vs.clamp(min=1e-3))
    wm.to(d.device)
    obj = Objective(wm, tc)
    model = d.wrap(obj)
    opt = torch.optim.Adam(wm.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    if ck is not None:
        opt.load_state_dict(ck["opt"])
    if d.main:
        n_par = sum(p.numel() for p in wm.parameters())
        n_dyn = sum(p.numel() for n, p in wm.named_parameters() if n.startswith("dynamics."))
        print(f"world_model train: {data.n} steps in {data.shards} shards, {data.episodes} episodes "
              f"({len(data.idx['train'])} train / {len(data.idx['val'])} val steps), {data.falls} falls; "
              f"{n_par} parameters ({n_dyn} in dynamics); from step {start} to {tc.steps}", file=sys.stderr)
        write_json(os.path.join(run, "train_config.json"), {"model": dataclasses.asdict(mc), "train": dataclasses.asdict(tc), "world": d.world, "teachers": sorted(data.teachers)})
    metrics = Metrics(run, d.main)
    bar = Progress(tc.steps, start, "wm train", d.main)
    g = torch.Generator().manual_seed(tc.seed * 1000 + d.rank + 7919 * start)
    t0 = time.time()
    run_acc: dict[str, float] = {}
    n_acc = 0
    # Validation before the first step too, so the metrics file has its columns from the first row.
    last_val = evaluate(obj, data, "val", tc, 4, 12345) if len(data.idx["val"]) else {}
    wall0 = ck.get("wall_s", 0.0) if ck else 0.0

    def save(step: int) -> None:
        if d.main:
            save_atomic({"model": wm.state_dict(), "opt": opt.state_dict(), "step": step,
                         "model_config": dataclasses.asdict(mc), "train_config": dataclasses.asdict(tc),
                         "wall_s": wall0 + time.time() - t0}, ckpt_path)

    for step in range(start, tc.steps):
        lr = lr_at(step, tc)
        for grp in opt.param_groups:
            grp["lr"] = lr
        batch = [x.to(d.device) for x in data.batch("train", tc.batch, tc.horizon, g)]
        total, terms = model(*batch)
        opt.zero_grad(set_to_none=True)
        total.backward()
        gn = nn.utils.clip_grad_norm_(wm.parameters(), tc.grad_clip)
        opt.step()
        for k, v in {"total": total, **terms}.items():
            run_acc[k] = run_acc.get(k, 0.0) + float(v.detach())
        n_acc += 1
        done = step + 1
        if done % tc.eval_every == 0 or done == tc.steps:
            wm.eval()
            last_val = evaluate(obj, data, "val", tc, 4, 12345) if len(data.idx["val"]) else {}
            wm.train()
        if done % tc.log_every == 0 or done == tc.steps:
            row = {"step": done, "wall_s": wall0 + time.time() - t0, "lr": lr, "grad_norm": float(gn)}
            row.update({f"train_{k}": v / n_acc for k, v in run_acc.items()})
            row.update({f"val_{k}": v for k, v in last_val.items()})
            metrics.log(row)
            run_acc, n_acc = {}, 0
        if done % tc.ckpt_every == 0 or done == tc.steps:
            save(done)
        bar.update(f"loss {float(total.detach()):.3f} c {float(terms['consistency'].detach()):.3f} "
                   f"r {float(terms['reward'].detach()):.3f} v {float(terms['value'].detach()):.3f} bc {float(terms['bc'].detach()):.3f}")
    bar.close()
    d.barrier()
    result = {}
    if d.main:
        wm.eval()
        result = {
            "train": evaluate(obj, data, "train", tc, 8, 777),
            "val": evaluate(obj, data, "val", tc, 8, 778) if len(data.idx["val"]) else {},
            "wall_s_this_run": time.time() - t0,
            "steps": tc.steps,
            "data_steps": data.n,
        }
        result["val_return"] = return_check(wm, data, "val", tc, PLANNER["gamma"]) if len(data.idx["val"]) else {}
        write_json(os.path.join(run, "train_result.json"), result)
        fmt = lambda r: " ".join(f"{k} {v:.4f}" for k, v in r.items())
        print(f"world_model train: final train [{fmt(result['train'])}]", file=sys.stderr)
        print(f"world_model train: final val   [{fmt(result['val'])}]", file=sys.stderr)
        print(f"world_model train: val H-step return (rollout of logged actions vs logged rewards + teacher value): "
              f"{fmt(result['val_return'])}", file=sys.stderr)
        print(f"world_model train: {time.time() - t0:.0f}s this run", file=sys.stderr)
    return result


# ----------------------------------------------------------------------------------- policy prior
def model_config_of(state: dict) -> ModelConfig:
    """The ModelConfig a state dict (a checkpoint's or an exported model's) was built with."""
    return ModelConfig(latent=state["encoder.4.weight"].shape[0], enc_hidden=state["encoder.0.weight"].shape[0],
                       dyn_hidden=state["dynamics.0.weight"].shape[0], rew_hidden=state["reward_head.0.weight"].shape[0],
                       val_hidden=state["value_head.0.weight"].shape[0], pi_hidden=state["prior.0.weight"].shape[0])


def refine_prior(run: str, teacher_dir: str, pc: PriorConfig, base: Optional[str] = None, device: str = "cpu",
                 allow_random: bool = False) -> None:
    """DAgger of the policy prior, after `train`: the prior (z -> a) acts in the environment on the
    frozen encoder's latent, every visited state is labelled with the final teacher's action and
    the prior is regressed on them. Behaviour cloning on the teacher's own states alone (what
    `train` does, as SimDist) leaves a prior that drifts into states the teacher never visits and
    falls there; MPPI's prior samples and the planner's fallback need one that stays up. Only
    `prior.*` changes; encoder, dynamics, reward and value stay bit-identical (checked). Reads
    <run>/ckpt.pt (or `base`, an exported world model), writes <run>/ckpt_prior.pt, which export
    prefers; resumes from it."""
    from .env import BiwheelEnv, EnvConfig
    from .robot import load_robot
    from .student import Buffer, PRIV_TERRAIN, dagger_steps, distillation_loss, start_at_teacher_levels

    d = Dist(device)
    threads_for(d)
    torch.manual_seed(pc.seed + d.rank)
    rng = np.random.default_rng(pc.seed + d.rank)
    out = os.path.join(run, "ckpt_prior.pt")
    if base:
        state, step = torch.jit.load(base, map_location="cpu").state_dict(), -1
    else:
        ck = torch.load(os.path.join(run, "ckpt.pt"), map_location="cpu", weights_only=False)
        state, step = ck["model"], ck["step"]
    mc = model_config_of(state)
    wm = make_model(load_robot(), mc)
    wm.load_state_dict(state)
    frozen = {k: v.clone() for k, v in wm.state_dict().items() if not k.startswith("prior.")}
    for name, par in wm.named_parameters():
        par.requires_grad_(name.startswith("prior."))
    opt = torch.optim.Adam(wm.prior.parameters(), lr=pc.lr)
    start = 0
    if os.path.exists(out):
        ck = torch.load(out, map_location="cpu", weights_only=False)
        wm.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        start = ck["prior_iteration"]
        if d.main:
            print(f"world_model prior: resuming {out} at iteration {start}", file=sys.stderr)
    wm.to(d.device).eval()
    prior = d.wrap(wm.prior)
    final, _, info = load_teachers(teacher_dir, CollectConfig(max_earlier=0), allow_random)
    final = final.to(d.device)
    env = BiwheelEnv(EnvConfig(num_envs=pc.envs, seed=pc.seed + 1000 * d.rank))
    teacher_path = teacher_checkpoints(teacher_dir)[0] if teacher_dir else None
    if teacher_path:
        start_at_teacher_levels(env, teacher_path)
    obs, priv = env.deployable_obs(), env.privileged_obs()
    buf = Buffer(pc.buffer // d.world, obs.shape[1], env.nj, PRIV_TERRAIN.stop - PRIV_TERRAIN.start)
    os.makedirs(os.path.join(run, "prior"), exist_ok=True)
    metrics = Metrics(os.path.join(run, "prior"), d.main)
    bar = Progress(pc.iterations, start, "wm prior", d.main)
    t0 = time.time()
    act = lambda o: wm.pi(wm.encode(o))
    for it in range(start, pc.iterations):
        beta = max(0.0, 1.0 - it / max(1, pc.beta_decay_iters))
        obs, priv, err, falls, episodes = dagger_steps(env, final, act, obs, priv, beta, pc.steps_per_iter, rng, buf, d.device)
        loss_sum = 0.0
        for _ in range(pc.grad_steps):
            b = buf.sample(pc.batch, rng, d.device)
            with torch.no_grad():
                z = wm.encode(b["obs"])
            pred = wm.action_clip * torch.tanh(prior(z) / wm.action_clip)
            loss = distillation_loss(pred, b["teacher"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(wm.prior.parameters(), 1.0)
            opt.step()
            loss_sum += float(loss.detach()) / pc.grad_steps
        metrics.log({"iteration": it + 1, "wall_s": time.time() - t0, "beta": beta, "bc": loss_sum,
                     "onpolicy_action_error": err, "fall_rate": falls / max(1, episodes), "buffer": buf.n})
        bar.update(f"bc {loss_sum:.3f} err {err:.3f} falls {falls}/{episodes} beta {beta:.2f}")
        if d.main and ((it + 1) % pc.save_every == 0 or it + 1 == pc.iterations):
            save_atomic({"model": wm.state_dict(), "opt": opt.state_dict(), "prior_iteration": it + 1, "step": step,
                         "model_config": dataclasses.asdict(mc), "prior_config": dataclasses.asdict(pc),
                         "teacher": info}, out)
    bar.close()
    d.barrier()
    changed = [k for k, v in wm.state_dict().items() if k in frozen and not torch.equal(v.cpu(), frozen[k])]
    if changed:
        raise SystemExit(f"world_model prior: parameters outside the prior changed: {changed}")
    if d.main:
        print(f"world_model prior: {pc.iterations} DAgger iterations ({time.time() - t0:.0f}s this run); "
              f"encoder, dynamics, reward and value unchanged", file=sys.stderr)


# ----------------------------------------------------------------------------------- export
def stepped_return(m, z: Tensor, actions: Tensor, gamma: float) -> tuple[Tensor, Tensor]:
    """What the fused `rollout` returns, in its two parts, by stepping `reward`/`next`/`value`:
    (the discounted rewards' sum over the horizon, the discounted terminal value), each [N]."""
    rewards, discount = torch.zeros(z.shape[0]), 1.0
    for t in range(actions.shape[1]):
        rewards = rewards + discount * m.reward(z, actions[:, t]).reshape(-1)
        z = m.next(z, actions[:, t])
        discount *= gamma
    return rewards, discount * m.value(z).reshape(-1)


@torch.no_grad()
def check_rollout(scripted, wm: WorldModel, horizon: int, gamma: float) -> float:
    """Max relative error of the fused rollout against stepping reward/next/value; also the
    scripted encode against the eager one."""
    torch.manual_seed(4)
    O = wm.obs_mean.shape[0]
    A = wm.dynamics[0].in_features - wm.latent
    obs = wm.obs_mean + wm.obs_std * torch.randn(64, O)
    z0 = scripted.encode(obs)
    err_enc = (z0 - wm.encode(obs)).abs().max().item()
    actions = (torch.rand(64, horizon, A) * 2 - 1) * wm.action_clip
    rewards, terminal = stepped_return(scripted, z0, actions, gamma)
    want = rewards + terminal
    got = scripted.rollout(z0, actions, gamma)
    scale = want.abs().clamp(min=1.0)
    return max(((got - want).abs() / scale).max().item(), err_enc)


def time_rollout(scripted, wm: WorldModel, p: dict, reps: int = 200) -> dict:
    """Python-side timing of what a plan calls: rollout with N = samples, then iterations - 1 more
    with N = samples - prior_samples, on one thread."""
    A = wm.dynamics[0].in_features - wm.latent
    N, H = p["samples"], p["horizon"]
    z = torch.randn(N, wm.latent)
    acts = torch.randn(N, H, A)
    n2 = N - p["prior_samples"]
    times, single = [], []
    with torch.inference_mode():
        for _ in range(20):
            scripted.rollout(z, acts, p["gamma"])
            scripted.rollout(z[:n2], acts[:n2], p["gamma"])
        for _ in range(reps):
            t0 = time.perf_counter()
            scripted.rollout(z, acts, p["gamma"])
            t1 = time.perf_counter()
            for _ in range(p["iterations"] - 1):
                scripted.rollout(z[:n2], acts[:n2], p["gamma"])
            t2 = time.perf_counter()
            single.append(t1 - t0)
            times.append(t2 - t0)
    ms = lambda x, q: 1e3 * float(np.percentile(x, q))
    return {"rollout_p50_ms": ms(single, 50), "rollout_p99_ms": ms(single, 99),
            "plan_rollouts_p50_ms": ms(times, 50), "plan_rollouts_p99_ms": ms(times, 99),
            "horizon": H, "samples": N, "iterations": p["iterations"]}


def export(run: str, out: Optional[str] = None, planner: Optional[dict] = None, tol: float = 1e-5) -> dict:
    from .robot import load_robot

    d = Dist("cpu")
    if not d.main:
        return {}
    threads_for(d)
    prior_ck = os.path.join(run, "ckpt_prior.pt")
    path = prior_ck if os.path.exists(prior_ck) else os.path.join(run, "ckpt.pt")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    mc = ModelConfig(**ck["model_config"])
    robot = load_robot()
    p = dict(PLANNER, **(planner or {}))
    wm = make_model(robot, mc)
    wm.load_state_dict(ck["model"])
    wm.spec_json = spec_json("world_model", robot, deployable_terms(), latent_dim=mc.latent, planner=p)
    wm.eval()
    scripted = torch.jit.script(wm)
    err = check_rollout(scripted, wm, p["horizon"], p["gamma"])
    if not err <= tol:
        raise SystemExit(f"world_model export: the fused rollout differs from the stepped methods by {err:.3g} (relative) > {tol}; not written")
    # Probe as locod does: encode [1, O], the rest with a batch of 3 and the contract's horizon.
    O = wm.obs_mean.shape[0]
    with torch.no_grad():
        z = scripted.encode(torch.zeros(1, O)).expand(3, -1).contiguous()
        a = torch.zeros(3, robot.nj)
        probe = [scripted.next(z, a), scripted.reward(z, a), scripted.value(z), scripted.pi(z),
                 scripted.rollout(z, torch.zeros(3, p["horizon"], robot.nj), p["gamma"])]
    shapes = [tuple(x.shape) for x in probe]
    assert shapes == [(3, mc.latent), (3,), (3,), (3, robot.nj), (3,)], shapes
    assert all(bool(torch.isfinite(x).all()) for x in probe)
    timing = time_rollout(scripted, wm, p)
    out = out or os.path.join(run, "world_model.pt")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    torch.jit.save(scripted, tmp)
    os.replace(tmp, out)
    n_dyn = sum(v.numel() for k, v in wm.named_parameters() if k.startswith("dynamics."))
    res = {"out": out, "check_max_rel_err": err, "parameters": sum(v.numel() for v in wm.parameters()),
           "dynamics_parameters": n_dyn, "planner": p, "step": ck["step"], "from": os.path.basename(path),
           "prior_iteration": ck.get("prior_iteration"), **timing}
    write_json(os.path.join(run, "export.json"), res)
    print(f"world_model export: {out} (from {os.path.basename(path)}, step {ck['step']}), fused vs stepped max rel err {err:.2e}; "
          f"rollout N={p['samples']} H={p['horizon']}: p50 {timing['rollout_p50_ms']:.2f} ms, "
          f"plan ({p['iterations']} rollouts) p50 {timing['plan_rollouts_p50_ms']:.2f} / p99 {timing['plan_rollouts_p99_ms']:.2f} ms",
          file=sys.stderr)
    return res


# ----------------------------------------------------------------------------------- closed loop
@torch.no_grad()
def mppi_plan(wm, z: Tensor, mean: Tensor, p: dict, clip: float, g: torch.Generator,
              stats: Optional[dict] = None) -> tuple[Tensor, Tensor]:
    """One plan per robot, batched over robots, as src/policy/mppi.rs plans (a Python stand-in
    for a quick check; locod's planner is the reference): `prior_samples` trajectories of `pi`
    (the first exact, the others with `min_std` noise), the rest Gaussian with `max_std` around
    the prior's exact trajectory (`centre` "prior") or the last plan shifted (`mean`, "last_plan"),
    elites weighted by exp(temperature * (R - Rmax)). Returns (action [B, A], the next plan's
    shifted mean [B, H, A])."""
    B, L = z.shape
    H, S, P, E = p["horizon"], p["samples"], p["prior_samples"], p["elites"]
    A = mean.shape[2]
    gamma, temp, lo, hi = p["gamma"], p["temperature"], p["min_std"], p["max_std"]
    seqs = torch.empty(B, S, H, A)
    zp = z.repeat_interleave(P, 0)
    noise = torch.randn(B, P, H, A, generator=g) * lo
    noise[:, 0] = 0
    for h in range(H):
        a = (wm.pi(zp) + noise[:, :, h].reshape(B * P, A)).clamp(-clip, clip)
        seqs[:, :P, h] = a.view(B, P, A)
        zp = wm.next(zp, a)
    mu, std = (seqs[:, 0].clone() if p.get("centre") == "prior" else mean.clone()), torch.full((B, H, A), hi)
    returns = torch.empty(B, S)
    for it in range(p["iterations"]):
        seqs[:, P:] = (mu[:, None] + std[:, None] * torch.randn(B, S - P, H, A, generator=g)).clamp(-clip, clip)
        if it == 0:
            returns = wm.rollout(z.repeat_interleave(S, 0), seqs.reshape(B * S, H, A), gamma).view(B, S)
        else:
            returns[:, P:] = wm.rollout(z.repeat_interleave(S - P, 0), seqs[:, P:].reshape(-1, H, A), gamma).view(B, S - P)
        r = torch.where(torch.isfinite(returns), returns, torch.full_like(returns, -1e30))
        top, idx = r.topk(E, dim=1)
        if stats is not None and it == 0:
            # How the model ranks the prior's exact trajectory among all samples (0 = best).
            stats["prior_rank"] = stats.get("prior_rank", 0.0) + float((r > r[:, :1]).float().sum(1).mean())
            stats["return_spread"] = stats.get("return_spread", 0.0) + float(r[:, P:].std(1).mean())
            # Which part of the score ranks the samples: the discounted rewards over the horizon,
            # or the terminal value (stepped methods; the fused rollout returns only their sum)?
            rsum, term = stepped_return(wm, z.repeat_interleave(S, 0), seqs.reshape(B * S, H, A), gamma)
            rsum, term = rsum.view(B, S), term.view(B, S)
            tot = rsum + term
            corr = ((tot - tot.mean(1, keepdim=True)) * (term - term.mean(1, keepdim=True))).mean(1) / (tot.std(1, unbiased=False) * term.std(1, unbiased=False) + 1e-12)
            stats["reward_spread"] = stats.get("reward_spread", 0.0) + float(rsum.std(1).mean())
            stats["value_spread"] = stats.get("value_spread", 0.0) + float(term.std(1).mean())
            stats["return_value_corr"] = stats.get("return_value_corr", 0.0) + float(corr.mean())
            stats["plans"] = stats.get("plans", 0) + 1
        elites = seqs[torch.arange(B)[:, None], idx]  # [B, E, H, A]
        w = torch.exp(temp * (top - top[:, :1]))
        w = w / w.sum(1, keepdim=True)
        mu = (w[:, :, None, None] * elites).sum(1)
        std = (w[:, :, None, None] * (elites - mu[:, None]) ** 2).sum(1).sqrt().clamp(lo, hi)
    action = mu[:, 0].clamp(-clip, clip)
    return action, torch.cat([mu[:, 1:], torch.zeros(B, 1, A)], 1)


@torch.no_grad()
def play(run: str, controller: str, envs: int, steps: int, seed: int, teacher_dir: str, scene: str = "flat",
         model: Optional[str] = None, planner: Optional[dict] = None) -> dict:
    """Drives the environment with the exported model's prior, MPPI over the model, or the final
    teacher, and reports reward per step, falls, vx and yaw-rate tracking. A quick Python check on
    env.py's randomised training distribution; `locod eval` is the evaluation of record."""
    from .env import BiwheelEnv, EnvConfig

    threads_for(Dist("cpu"))
    mix = {"flat": (1.0, 0.0, 0.0), "step": (0.0, 1.0, 0.0), "stairs": (0.0, 0.0, 1.0), "mix": (0.4, 0.3, 0.3)}[scene]
    env = BiwheelEnv(EnvConfig(num_envs=envs, seed=seed, curriculum=False, terrain_mix=mix))
    clip = env.robot.action_clip
    wm = torch.jit.load(model or os.path.join(run, "world_model.pt"))
    p = dict(json.loads(wm.locod_spec())["planner"], **(planner or {}))
    teacher = load_teachers(teacher_dir, CollectConfig(), allow_random=False)[0] if controller == "teacher" else None
    g = torch.Generator().manual_seed(seed)
    mean = torch.zeros(envs, p["horizon"], env.nj)
    rew_sum, falls, n, vx_se, yaw_se, yaw_e, t_plan = 0.0, 0, 0, 0.0, 0.0, 0.0, 0.0
    stats: dict = {}
    for _ in range(steps):
        obs = torch.as_tensor(env.deployable_obs())
        t0 = time.perf_counter()
        if controller == "teacher":
            a = teacher.act_mean(torch.as_tensor(env.privileged_obs()))
        elif controller == "prior":
            a = wm.pi(wm.encode(obs))
        else:
            a, mean = mppi_plan(wm, wm.encode(obs), mean, p, clip, g, stats)
        t_plan += time.perf_counter() - t0
        _, _, _, _, v_head, _ = env.frames()
        reward, fell, timeout, terms = env.step(a.numpy())
        _, gyro, _, _, v_head, _ = env.frames()
        vx_se += float(((v_head[:, 0] - env.cmd[:, 0]) ** 2).sum())
        yaw_se += float(((gyro[:, 2] - env.cmd[:, 2]) ** 2).sum())
        yaw_e += float((gyro[:, 2] - env.cmd[:, 2]).sum())
        rew_sum += float(reward.sum())
        n += envs
        done = fell | timeout
        falls += int(fell.sum())
        ids = np.nonzero(done)[0]
        if len(ids):
            env.reset(ids)
            mean[torch.as_tensor(ids)] = 0
    res = {"controller": controller, "planner": p if controller == "mppi" else None, "scene": scene, "envs": envs, "steps": steps, "robot_seconds": n * env.dt,
           "reward_per_step": rew_sum / n, "falls": falls, "falls_per_minute": falls / (n * env.dt / 60),
           "vx_rms_mps": math.sqrt(vx_se / n), "yaw_rms_radps": math.sqrt(yaw_se / n),
           "yaw_error_mean_radps": yaw_e / n,
           "compute_ms_per_step_all_robots": 1e3 * t_plan / steps}
    if stats:
        res["prior_rank_first_iteration"] = stats["prior_rank"] / stats["plans"]
        res["sample_return_std"] = stats["return_spread"] / stats["plans"]
        res["sample_reward_sum_std"] = stats["reward_spread"] / stats["plans"]
        res["sample_terminal_value_std"] = stats["value_spread"] / stats["plans"]
        res["return_value_corr"] = stats["return_value_corr"] / stats["plans"]
    print(f"world_model play: {json.dumps(res)}", file=sys.stderr)
    return res


# ----------------------------------------------------------------------------------- CLI
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("stage", choices=["collect", "train", "prior", "export", "all", "play"])
    p.add_argument("--dir", "--run", dest="run", default=None,
                   help="run directory (default models/runs/wm, models/runs/wm_smoke with --smoke)")
    p.add_argument("--teacher-run", "--teacher", dest="teacher", default=os.path.join(MODELS, "runs", "teacher"),
                   help="the teacher's run directory (its ckpt_<iteration>.pt files)")
    p.add_argument("--smoke", action="store_true", help="tiny nets, a few hundred steps of data, a short training")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="exported model (default <run>/world_model.pt)")
    p.add_argument("--shards", type=int)
    p.add_argument("--envs", type=int)
    p.add_argument("--shard-steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--steps", type=int, help="gradient steps")
    p.add_argument("--batch", type=int)
    p.add_argument("--horizon", type=int, help="training horizon (policy steps)")
    p.add_argument("--lr", type=float)
    p.add_argument("--latent", type=int)
    p.add_argument("--dyn-hidden", type=int)
    p.add_argument("--rew-hidden", type=int)
    p.add_argument("--w-consistency", type=float, help="weight of the latent consistency loss (SimDist: 1)")
    p.add_argument("--controller", default="mppi", choices=["mppi", "prior", "teacher"], help="play: what drives")
    p.add_argument("--scene", default="flat", choices=["flat", "step", "stairs", "mix"], help="play: terrain")
    p.add_argument("--play-steps", type=int, default=250, help="play: policy steps")
    p.add_argument("--planner", action="append", default=[], metavar="KEY=VALUE",
                   help="export / play: override a planner default (horizon, samples, elites, iterations, "
                   "temperature, min_std, max_std, prior_samples, gamma, centre)")
    p.add_argument("--bc-all", action="store_true", help="clone the final teacher's action on every step")
    p.add_argument("--prior-iterations", type=int, help="prior: DAgger iterations")
    p.add_argument("--base", default=None, help="prior: start from this exported world model instead of <run>/ckpt.pt")
    a = p.parse_args(argv)
    cc, mc, tc, pc = smoke_configs() if a.smoke else (CollectConfig(), ModelConfig(), TrainConfig(), PriorConfig())
    over = lambda obj, **kw: dataclasses.replace(obj, **{k: v for k, v in kw.items() if v is not None})
    cc = over(cc, shards=a.shards, envs=a.envs, shard_steps=a.shard_steps, seed=a.seed)
    tc = over(tc, seed=a.seed)
    mc = over(mc, latent=a.latent, dyn_hidden=a.dyn_hidden, rew_hidden=a.rew_hidden)
    tc = over(tc, steps=a.steps, batch=a.batch, horizon=a.horizon, lr=a.lr, bc_all=a.bc_all or None, w_consistency=a.w_consistency)
    if a.steps is not None and not a.smoke:
        tc = dataclasses.replace(tc, warmup=min(tc.warmup, max(1, a.steps // 10)))
    planner = {}
    for kv in a.planner:
        k, v = kv.split("=", 1)
        if k not in PLANNER:
            raise SystemExit(f"world_model: unknown planner setting {k!r} (one of {', '.join(PLANNER)})")
        kind = type(PLANNER[k])
        planner[k] = v if kind is str else kind(float(v)) if kind is float else int(v)
    run = a.run or os.path.join(MODELS, "runs", "wm_smoke" if a.smoke else "wm")
    os.makedirs(run, exist_ok=True)
    t0 = time.time()
    if a.stage in ("collect", "all"):
        collect(run, a.teacher, cc, smoke=a.smoke)
    if a.stage in ("train", "all"):
        train(run, mc, tc, a.device)
    if a.stage in ("prior", "all"):
        pc = over(pc, iterations=a.prior_iterations, seed=a.seed, envs=a.envs)
        refine_prior(run, a.teacher, pc, a.base, a.device, allow_random=a.smoke)
    if a.stage in ("export", "all"):
        export(run, a.out, planner)
    if a.stage == "play":
        play(run, a.controller, a.envs or 16, a.play_steps, a.seed or 11, a.teacher, a.scene, a.out, planner)
    d = Dist("cpu")
    d.barrier()
    if d.main:
        print(f"world_model {a.stage}: {time.time() - t0:.0f}s", file=sys.stderr)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
