"""The privileged teacher: PPO on the vectorised environment, observing true state and terrain.

Our own PPO (clipped surrogate, GAE, adaptive learning rate on the KL, value clipping, empirical
observation normalisation, time-out bootstrapping: rsl_rl's recipe) rather than rsl-rl-lib itself,
because the environment is numpy + mujoco.rollout on the CPU and rsl_rl 5.x wants a torch VecEnv
with TensorDict observations; the loop below is the part of rsl_rl we need, ~150 lines.

Run: `python -m locod_train.teacher --run models/runs/teacher [--iterations N] [--device cuda]`,
or under `torchrun --nproc-per-node 2 -m locod_train.teacher ...`. Interrupted runs resume from
`<run>/ckpt.pt`. Every `save_every` iterations the checkpoint is also kept as `ckpt_<it>.pt` (the
world model's data mixes earlier checkpoints with the final one).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np
import torch
from torch import nn

from .common import Dist, Metrics, Normalizer, Progress, mlp, save_atomic, threads_for, write_json
from .env import BiwheelEnv, EnvConfig


class ActorCritic(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden=(256, 256, 128), init_std: float = 0.35):
        super().__init__()
        self.norm = Normalizer(obs_dim)
        self.actor = mlp([obs_dim, *hidden, act_dim])
        self.critic = mlp([obs_dim, *hidden, 1])
        self.log_std = nn.Parameter(torch.full((act_dim,), float(np.log(init_std))))
        nn.init.uniform_(self.actor[-1].weight, -0.01, 0.01)
        nn.init.zeros_(self.actor[-1].bias)

    def act_mean(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.norm(obs))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.norm(obs)).squeeze(-1)

    def forward(self, obs: torch.Tensor):
        x = self.norm(obs)
        return self.actor(x), self.critic(x).squeeze(-1)


@dataclasses.dataclass
class PPOConfig:
    iterations: int = 1500
    steps_per_iter: int = 24
    epochs: int = 5
    minibatches: int = 4
    gamma: float = 0.99
    lam: float = 0.95
    clip: float = 0.2
    value_coef: float = 1.0
    entropy_coef: float = 0.003
    lr: float = 1e-3
    desired_kl: float = 0.01
    max_grad_norm: float = 1.0
    save_every: int = 100
    seed: int = 1


def load_teacher(path: str, device="cpu") -> ActorCritic:
    ck = torch.load(path, map_location=device, weights_only=False)
    ac = ActorCritic(ck["obs_dim"], ck["act_dim"])
    ac.load_state_dict(ck["model"])
    ac.eval()
    return ac


def train(run_dir: str, ppo: PPOConfig, env_cfg: EnvConfig, device: str = "cpu", init: str | None = None) -> None:
    d = Dist(device)
    threads_for(d)
    os.makedirs(run_dir, exist_ok=True)
    torch.manual_seed(ppo.seed + d.rank)
    env_cfg = dataclasses.replace(env_cfg, seed=env_cfg.seed + 1000 * d.rank)
    env = BiwheelEnv(env_cfg)
    obs = env.privileged_obs()
    ac = ActorCritic(obs.shape[1], env.nj).to(d.device)
    opt = torch.optim.Adam(ac.parameters(), lr=ppo.lr)
    start, lr = 0, ppo.lr
    ckpt = os.path.join(run_dir, "ckpt.pt")
    if os.path.exists(ckpt):
        ck = torch.load(ckpt, map_location=d.device, weights_only=False)
        ac.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        start, lr = ck["iteration"], ck["lr"]
        env.level[:] = ck["levels"][: env.B] if len(ck["levels"]) >= env.B else env.level
        if d.main:
            print(f"teacher: resuming {ckpt} at iteration {start}", flush=True)
    elif init:
        # Finetune a trained teacher (weights, normaliser and curriculum levels; a new optimiser).
        ck = torch.load(init, map_location=d.device, weights_only=False)
        ac.load_state_dict(ck["model"])
        if ck.get("levels") is not None:
            env.level[:] = np.resize(np.asarray(ck["levels"]), env.B)
            env.reset(np.arange(env.B))
            obs = env.privileged_obs()
        if d.main:
            print(f"teacher: starting from {init}", flush=True)
    model = d.wrap(ac)
    metrics = Metrics(run_dir, d.main)
    if d.main:
        write_json(os.path.join(run_dir, "config.json"), {"ppo": dataclasses.asdict(ppo), "env": dataclasses.asdict(env_cfg), "world": d.world, "init": init})
    T, B = ppo.steps_per_iter, env.B
    ep_ret = np.zeros(B)
    ep_len = np.zeros(B)
    finished_ret, finished_len, finished_fall = [], [], []
    bar = Progress(ppo.iterations, start, "teacher", d.main)
    t_start = time.time()
    obs_t = torch.as_tensor(obs, device=d.device)
    for it in range(start, ppo.iterations):
        t0 = time.time()
        buf_obs = torch.zeros(T, B, obs.shape[1], device=d.device)
        buf_act = torch.zeros(T, B, env.nj, device=d.device)
        buf_logp = torch.zeros(T, B, device=d.device)
        buf_val = torch.zeros(T, B, device=d.device)
        buf_rew = torch.zeros(T, B, device=d.device)
        buf_done = torch.zeros(T, B, device=d.device)
        term_sums: dict[str, float] = {}
        for t in range(T):
            with torch.no_grad():
                ac.norm.update(obs_t, d)
                mean, val = ac(obs_t)
                std = ac.log_std.exp()
                dist_ = torch.distributions.Normal(mean, std)
                act = dist_.sample()
                logp = dist_.log_prob(act).sum(-1)
            rew, fell, timeout, terms = env.step(act.cpu().numpy())
            for k, v in terms.items():
                term_sums[k] = term_sums.get(k, 0.0) + float(v.mean()) / T
            rew_t = torch.as_tensor(rew, device=d.device)
            if timeout.any():
                # Time-out bootstrapping: a cut episode is not a terminal state.
                with torch.no_grad():
                    v_end = ac.value(torch.as_tensor(env.privileged_obs(), device=d.device))
                rew_t = rew_t + ppo.gamma * v_end * torch.as_tensor(timeout & ~fell, device=d.device)
            done = fell | timeout
            buf_obs[t], buf_act[t], buf_logp[t], buf_val[t] = obs_t, act, logp, val
            buf_rew[t], buf_done[t] = rew_t, torch.as_tensor(done, dtype=torch.float32, device=d.device)
            ep_ret += rew
            ep_len += 1
            ids = np.nonzero(done)[0]
            if len(ids):
                finished_ret.extend(ep_ret[ids].tolist())
                finished_len.extend(ep_len[ids].tolist())
                finished_fall.extend(fell[ids].tolist())
                env.update_curriculum(ids, fell[ids])
                env.reset(ids)
                ep_ret[ids] = 0
                ep_len[ids] = 0
            obs_t = torch.as_tensor(env.privileged_obs(), device=d.device)
        t_collect = time.time() - t0
        with torch.no_grad():
            last_val = ac.value(obs_t)
        adv = torch.zeros_like(buf_rew)
        gae = torch.zeros(B, device=d.device)
        for t in reversed(range(T)):
            next_val = last_val if t == T - 1 else buf_val[t + 1]
            nonterm = 1.0 - buf_done[t]
            delta = buf_rew[t] + ppo.gamma * next_val * nonterm - buf_val[t]
            gae = delta + ppo.gamma * ppo.lam * nonterm * gae
            adv[t] = gae
        ret = adv + buf_val
        flat = lambda x: x.reshape(T * B, *x.shape[2:])
        f_obs, f_act, f_logp, f_val, f_adv, f_ret = map(flat, (buf_obs, buf_act, buf_logp, buf_val, adv, ret))
        f_adv = (f_adv - f_adv.mean()) / (f_adv.std() + 1e-8)
        n = T * B
        mb = n // ppo.minibatches
        kl_mean = 0.0
        losses = {"surrogate": 0.0, "value": 0.0, "entropy": 0.0}
        for _ in range(ppo.epochs):
            perm = torch.randperm(n, device=d.device)
            for k in range(ppo.minibatches):
                idx = perm[k * mb : (k + 1) * mb]
                mean, val = model(f_obs[idx])
                std = ac.log_std.exp()
                dist_ = torch.distributions.Normal(mean, std)
                logp = dist_.log_prob(f_act[idx]).sum(-1)
                with torch.no_grad():
                    # KL of the old Gaussian (approximated by the sample's log ratio) for the lr rule.
                    kl = d.mean((f_logp[idx] - logp).mean().detach())
                    kl_mean += float(kl) / (ppo.epochs * ppo.minibatches)
                    if kl > 2 * ppo.desired_kl:
                        lr = max(1e-5, lr / 1.5)
                    elif kl < ppo.desired_kl / 2 and kl > 0:
                        lr = min(1e-2, lr * 1.5)
                    for g in opt.param_groups:
                        g["lr"] = lr
                ratio = torch.exp(logp - f_logp[idx])
                a = f_adv[idx]
                surr = -torch.min(ratio * a, torch.clamp(ratio, 1 - ppo.clip, 1 + ppo.clip) * a).mean()
                v_clip = f_val[idx] + (val - f_val[idx]).clamp(-ppo.clip, ppo.clip)
                v_loss = torch.max((val - f_ret[idx]) ** 2, (v_clip - f_ret[idx]) ** 2).mean()
                ent = dist_.entropy().sum(-1).mean()
                loss = surr + ppo.value_coef * v_loss - ppo.entropy_coef * ent
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(ac.parameters(), ppo.max_grad_norm)
                opt.step()
                losses["surrogate"] += float(surr.detach()) / (ppo.epochs * ppo.minibatches)
                losses["value"] += float(v_loss.detach()) / (ppo.epochs * ppo.minibatches)
                losses["entropy"] += float(ent.detach()) / (ppo.epochs * ppo.minibatches)
        recent = slice(-200, None)
        row = {
            "iteration": it + 1,
            "steps": (it + 1) * T * B * d.world,
            "wall_s": time.time() - t_start,
            "return": float(np.mean(finished_ret[recent])) if finished_ret else 0.0,
            "episode_s": float(np.mean(finished_len[recent])) * env.dt if finished_len else 0.0,
            "fall_rate": float(np.mean(finished_fall[recent])) if finished_fall else 0.0,
            "level_step": float(env.level[env.kind == 1].mean()) if (env.kind == 1).any() else 0.0,
            "level_stairs": float(env.level[env.kind == 2].mean()) if (env.kind == 2).any() else 0.0,
            "kl": kl_mean,
            "lr": lr,
            "std": float(ac.log_std.exp().mean()),
            "collect_s": t_collect,
            **losses,
            **{f"r_{k}": v for k, v in term_sums.items()},
        }
        finished_ret, finished_len, finished_fall = finished_ret[-200:], finished_len[-200:], finished_fall[-200:]
        metrics.log(row)
        bar.update(f"ret {row['return']:.1f} len {row['episode_s']:.1f}s fall {row['fall_rate']:.2f} lvl {row['level_step']:.1f}/{row['level_stairs']:.1f}")
        if d.main and ((it + 1) % ppo.save_every == 0 or it + 1 == ppo.iterations):
            ck = {
                "model": ac.state_dict(),
                "opt": opt.state_dict(),
                "iteration": it + 1,
                "lr": lr,
                "levels": env.level.copy(),
                "obs_dim": obs.shape[1],
                "act_dim": env.nj,
            }
            save_atomic(ck, ckpt)
            save_atomic(ck, os.path.join(run_dir, f"ckpt_{it + 1}.pt"))
    bar.close()
    d.barrier()
    if d.main:
        print(f"teacher: {ppo.iterations} iterations, {time.time() - t_start:.0f}s this run", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--iterations", type=int, default=PPOConfig.iterations)
    p.add_argument("--envs", type=int, default=EnvConfig.num_envs)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--save-every", type=int, default=PPOConfig.save_every)
    p.add_argument("--init", default=None, help="start from this trained teacher (state dict with levels) instead of random weights")
    p.add_argument("--lr", type=float, default=PPOConfig.lr)
    a = p.parse_args(argv)
    train(
        a.dir,
        PPOConfig(iterations=a.iterations, seed=a.seed, save_every=a.save_every, lr=a.lr),
        EnvConfig(num_envs=a.envs, seed=a.seed),
        a.device,
        a.init,
    )


if __name__ == "__main__":
    main()
