"""The students: deployable observations only, distilled from the privileged teacher on their own
visited states (DAgger), exported as `policy` contract models.

Two students share architecture, data schedule and seed:
- **plain**: encoder -> latent -> action head, loss = ||student action - teacher action||^2.
- **DynaWM**: the same, plus DynaWM's two additions on the student's representation:
  - a world-model auxiliary loss: from the latent z_t and the action a_t, a predictor gives the
    next latent and a terrain head gives the privileged terrain features of t+1 (true base
    velocity and the height samples around the robot);
  - a momentum target encoder: an exponential moving average of the student's encoder (BYOL /
    MoCo) encodes o_{t+1} into the next-latent target (stop-gradient). The moving average gives
    targets that drift slowly while the student's own encoder follows the teacher's moving
    action targets, and the predictor + EMA pair keeps the latent from collapsing.

DAgger: each iteration rolls the environment with the student acting (the teacher acting with
probability beta, decaying from 1), labels every visited state with the teacher's action, appends
to a bounded buffer and takes gradient steps on it.

Run: `python -m locod_train.student --variant dynawm|plain --teacher runs/teacher/ckpt.pt
--dir runs/student_dynawm [--iterations N]` (resumes from <run>/ckpt.pt; torchrun works).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import time

import numpy as np
import torch
from torch import nn

from .common import Dist, Metrics, Normalizer, Progress, mlp, save_atomic, threads_for, write_json
from .env import BiwheelEnv, EnvConfig
from .teacher import load_teacher

# Slice of the teacher's privileged observation holding the terrain features the DynaWM head
# predicts: base velocity in the body frame (3) and the height samples (39). See env.privileged_obs.
PRIV_TERRAIN = slice(27, 69)


class Student(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, latent: int = 64, dynawm: bool = True, terrain_dim: int = 42):
        super().__init__()
        self.norm = Normalizer(obs_dim)
        self.encoder = mlp([obs_dim, 256, 128, latent])
        self.actor = mlp([latent, 128, act_dim])
        self.dynawm = dynawm
        if dynawm:
            self.predictor = mlp([latent + act_dim, 128, latent])
            self.terrain_head = mlp([latent + act_dim, 128, terrain_dim])
            self.target_encoder = copy.deepcopy(self.encoder)
            for p in self.target_encoder.parameters():
                p.requires_grad_(False)

    def latent(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.norm(obs))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(action, latent): one pass for both losses, so DistributedDataParallel sees one forward."""
        z = self.latent(obs)
        return self.actor(z), z

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.latent(obs))

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        if self.dynawm:
            for t, s in zip(self.target_encoder.parameters(), self.encoder.parameters()):
                t.mul_(tau).add_(s, alpha=1 - tau)


@dataclasses.dataclass
class StudentConfig:
    variant: str = "dynawm"
    iterations: int = 300
    steps_per_iter: int = 24
    grad_steps: int = 40
    batch: int = 512
    buffer: int = 400_000
    lr: float = 5e-4
    beta_decay_iters: int = 30
    wm_weight: float = 0.5
    terrain_weight: float = 0.5
    ema_tau: float = 0.99
    save_every: int = 25
    seed: int = 1


def distillation_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((pred - target) ** 2).sum(-1).mean()


def world_model_losses(s: Student, z: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor, next_terrain: torch.Tensor, valid: torch.Tensor):
    za = torch.cat([z, act], -1)
    with torch.no_grad():
        target = s.target_encoder(s.norm(next_obs))
    w = valid / valid.sum().clamp(min=1.0)
    latent = (((s.predictor(za) - target) ** 2).mean(-1) * w).sum()
    terrain = (((s.terrain_head(za) - next_terrain) ** 2).mean(-1) * w).sum()
    return latent, terrain


class Buffer:
    def __init__(self, cap: int, obs_dim: int, act_dim: int, terrain_dim: int):
        self.cap, self.n, self.i = cap, 0, 0
        self.obs = np.zeros((cap, obs_dim), np.float32)
        self.next_obs = np.zeros((cap, obs_dim), np.float32)
        self.teacher = np.zeros((cap, act_dim), np.float32)
        self.act = np.zeros((cap, act_dim), np.float32)
        self.next_terrain = np.zeros((cap, terrain_dim), np.float32)
        self.valid = np.zeros(cap, np.float32)

    def add(self, **cols) -> None:
        k = len(cols["obs"])
        idx = (self.i + np.arange(k)) % self.cap
        for name, v in cols.items():
            getattr(self, name)[idx] = v
        self.i = (self.i + k) % self.cap
        self.n = min(self.cap, self.n + k)

    def sample(self, b: int, rng: np.random.Generator, device) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, self.n, b)
        return {
            k: torch.as_tensor(getattr(self, k)[idx], device=device)
            for k in ("obs", "next_obs", "teacher", "act", "next_terrain", "valid")
        }


def start_at_teacher_levels(env: BiwheelEnv, teacher_path: str) -> None:
    """Start where the teacher's terrain curriculum ended, so a learner learns from the hard
    terrain the teacher masters, not from the flat start of the teacher's own curriculum."""
    levels = torch.load(teacher_path, map_location="cpu", weights_only=False).get("levels")
    if levels is not None and env.cfg.curriculum:
        env.level[:] = np.resize(np.asarray(levels), env.B)
        env.reset(np.arange(env.B))


def dagger_steps(env: BiwheelEnv, teacher, act_fn, obs: np.ndarray, priv: np.ndarray, beta: float, steps: int,
                 rng: np.random.Generator, buf: Buffer, device) -> tuple[np.ndarray, np.ndarray, float, int, int]:
    """`steps` policy steps of DAgger: each robot's action is the learner's (`act_fn` of the
    deployable observation) or, with probability `beta`, the teacher's; every visited state goes
    into `buf` labelled with the teacher's action. Fallen or timed-out robots advance the
    curriculum and reset. Returns (obs, priv, mean squared learner-teacher action error, falls,
    episodes ended)."""
    clip = env.robot.action_clip
    err, falls, episodes = 0.0, 0, 0
    for _ in range(steps):
        with torch.no_grad():
            t_act = teacher.act_mean(torch.as_tensor(priv, device=device)).clamp(-clip, clip)
            s_act = act_fn(torch.as_tensor(obs, device=device))
        use_teacher = torch.as_tensor(rng.random(env.B) < beta, device=device)[:, None]
        act = torch.where(use_teacher, t_act, s_act).cpu().numpy()
        err += float(((s_act - t_act) ** 2).sum(-1).mean()) / steps
        _, fell, timeout, _ = env.step(act)
        done = fell | timeout
        next_obs = env.deployable_obs()
        next_priv = env.privileged_obs()
        buf.add(
            obs=obs,
            next_obs=next_obs,
            teacher=t_act.cpu().numpy(),
            act=np.clip(act, -clip, clip),
            next_terrain=next_priv[:, PRIV_TERRAIN],
            valid=(~done).astype(np.float32),
        )
        obs, priv = next_obs, next_priv
        ids = np.nonzero(done)[0]
        if len(ids):
            falls += int(fell[ids].sum())
            episodes += len(ids)
            env.update_curriculum(ids, fell[ids])
            env.reset(ids)
            obs = env.deployable_obs()
            priv = env.privileged_obs()
    return obs, priv, err, falls, episodes


def train(run_dir: str, teacher_path: str, cfg: StudentConfig, env_cfg: EnvConfig, device: str = "cpu") -> None:
    d = Dist(device)
    threads_for(d)
    os.makedirs(run_dir, exist_ok=True)
    torch.manual_seed(cfg.seed + d.rank)
    rng = np.random.default_rng(cfg.seed + d.rank)
    env = BiwheelEnv(dataclasses.replace(env_cfg, seed=env_cfg.seed + 1000 * d.rank))
    teacher = load_teacher(teacher_path, d.device)
    start_at_teacher_levels(env, teacher_path)
    obs = env.deployable_obs()
    priv = env.privileged_obs()
    terrain_dim = PRIV_TERRAIN.stop - PRIV_TERRAIN.start
    student = Student(obs.shape[1], env.nj, dynawm=cfg.variant == "dynawm", terrain_dim=terrain_dim).to(d.device)
    trainable = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=cfg.lr)
    start = 0
    ckpt = os.path.join(run_dir, "ckpt.pt")
    if os.path.exists(ckpt):
        ck = torch.load(ckpt, map_location=d.device, weights_only=False)
        student.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        start = ck["iteration"]
        if d.main:
            print(f"student: resuming {ckpt} at iteration {start}", flush=True)
    model = d.wrap(student)
    buf = Buffer(cfg.buffer // d.world, obs.shape[1], env.nj, terrain_dim)
    metrics = Metrics(run_dir, d.main)
    if d.main:
        write_json(os.path.join(run_dir, "config.json"), {"student": dataclasses.asdict(cfg), "env": dataclasses.asdict(env_cfg), "teacher": teacher_path, "world": d.world})
    bar = Progress(cfg.iterations, start, f"student-{cfg.variant}", d.main)
    t_start = time.time()
    falls, episodes = 0, 0
    for it in range(start, cfg.iterations):
        beta = max(0.0, 1.0 - it / max(1, cfg.beta_decay_iters))
        obs, priv, err_sum, f, e = dagger_steps(env, teacher, student.act, obs, priv, beta, cfg.steps_per_iter, rng, buf, d.device)
        falls += f
        episodes += e
        student.norm.update(torch.as_tensor(obs, device=d.device), d)
        sums = {"distill": 0.0, "wm_latent": 0.0, "wm_terrain": 0.0}
        for _ in range(cfg.grad_steps):
            b = buf.sample(cfg.batch, rng, d.device)
            pred, z = model(b["obs"])
            loss = distillation_loss(pred, b["teacher"])
            sums["distill"] += float(loss.detach()) / cfg.grad_steps
            if student.dynawm:
                lat, ter = world_model_losses(student, z, b["act"], b["next_obs"], b["next_terrain"], b["valid"])
                loss = loss + cfg.wm_weight * lat + cfg.terrain_weight * ter
                sums["wm_latent"] += float(lat.detach()) / cfg.grad_steps
                sums["wm_terrain"] += float(ter.detach()) / cfg.grad_steps
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            student.update_target(cfg.ema_tau)
        row = {
            "iteration": it + 1,
            "wall_s": time.time() - t_start,
            "beta": beta,
            "onpolicy_action_error": err_sum,
            "fall_rate": falls / max(1, episodes),
            "buffer": buf.n,
            "level_step": float(env.level[env.kind == 1].mean()) if (env.kind == 1).any() else 0.0,
            "level_stairs": float(env.level[env.kind == 2].mean()) if (env.kind == 2).any() else 0.0,
            **sums,
        }
        falls, episodes = 0, 0
        metrics.log(row)
        bar.update(f"distill {sums['distill']:.3f} err {err_sum:.3f} beta {beta:.2f}")
        if d.main and ((it + 1) % cfg.save_every == 0 or it + 1 == cfg.iterations):
            save_atomic({"model": student.state_dict(), "opt": opt.state_dict(), "iteration": it + 1, "obs_dim": obs.shape[1], "act_dim": env.nj, "variant": cfg.variant}, ckpt)
    bar.close()
    d.barrier()
    if d.main:
        print(f"student-{cfg.variant}: {cfg.iterations} iterations, {time.time() - t_start:.0f}s this run", flush=True)


def load_student(path: str) -> Student:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    s = Student(ck["obs_dim"], ck["act_dim"], dynawm=ck["variant"] == "dynawm")
    s.load_state_dict(ck["model"])
    s.eval()
    return s


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", choices=["dynawm", "plain"], default="dynawm")
    p.add_argument("--teacher", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--iterations", type=int, default=StudentConfig.iterations)
    p.add_argument("--envs", type=int, default=EnvConfig.num_envs)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    train(a.dir, a.teacher, StudentConfig(variant=a.variant, iterations=a.iterations, seed=a.seed), EnvConfig(num_envs=a.envs, seed=a.seed), a.device)


if __name__ == "__main__":
    main()
