#!/usr/bin/env python3
"""Builds the small contract-conforming TorchScript models that test and benchmark locod's policy runtime.

Not trained: the weights are deterministic (torch.manual_seed) and the models exist to exercise the runtime
(contract checks, observation layout, student and recurrent forward, MPPI with and without a fused rollout).
Real trained models come from the training pipeline. The contract is docs/model-contract.md.

    python models/make_test_models.py [--out models/build]

Writes, for the example robot `biwheel` (config/biwheel.toml):
  student.pt             MLP student (39 -> 256 -> 128 -> 6, ELU), joint_vel with history 3
  student_gru.pt         recurrent student (GRU, hidden 64), state [1, 1, 64]
  world_model.pt         latent world model (latent 64, hidden 192 ELU MLPs, `pi` prior) with a fused `rollout`
  world_model_stepped.pt the same weights without `rollout` (locod steps `next`/`reward` itself)
and models for the tests of the load-time checks and fallbacks:
  student_nan.pt         outputs NaN
  wm_no_value.pt         a world model without `value`
  wm_no_pi.pt            a valid world model without the optional prior `pi` (the planner has no fallback)
  wm_bad_reward.pt       a world model whose `reward` returns [N, 1] instead of [N]
"""

import argparse
import json
import os
import sys
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROBOT = "biwheel"
CONTROL_HZ = 50
LATENT = 64
HIDDEN = 192

# Joint order = action order = config/biwheel.toml's [[joint]] order.
JOINTS = [
    {"name": "left_hip", "default_pos": 0.6, "mode": "position", "action_scale": 0.25, "kp": 40.0, "kd": 1.0},
    {"name": "left_knee", "default_pos": -1.2, "mode": "position", "action_scale": 0.25, "kp": 40.0, "kd": 1.0},
    {"name": "left_wheel", "default_pos": 0.0, "mode": "velocity", "action_scale": 10.0, "kp": 0.0, "kd": 0.5},
    {"name": "right_hip", "default_pos": 0.6, "mode": "position", "action_scale": 0.25, "kp": 40.0, "kd": 1.0},
    {"name": "right_knee", "default_pos": -1.2, "mode": "position", "action_scale": 0.25, "kp": 40.0, "kd": 1.0},
    {"name": "right_wheel", "default_pos": 0.0, "mode": "velocity", "action_scale": 10.0, "kp": 0.0, "kd": 0.5},
]
A = len(JOINTS)


def proprio_terms(joint_vel_history: int):
    return [
        {"name": "base_ang_vel", "scale": 0.25, "clip": [-100.0, 100.0]},
        {"name": "projected_gravity", "scale": 1.0},
        {"name": "command", "scale": [2.0, 2.0, 0.25]},
        {"name": "joint_pos", "scale": 1.0},
        {"name": "joint_vel", "scale": 0.05, "history": joint_vel_history},
        {"name": "last_action", "scale": 1.0},
    ]


def obs_dim(terms) -> int:
    dims = {"base_ang_vel": 3, "projected_gravity": 3, "command": 3, "joint_pos": A, "joint_vel": A, "last_action": A}
    return sum(dims[t["name"]] * t.get("history", 1) for t in terms)


def spec(kind: str, terms, **extra) -> str:
    s = {
        "contract": 1,
        "kind": kind,
        "robot": ROBOT,
        "control_hz": CONTROL_HZ,
        "joints": JOINTS,
        "obs": terms,
        "action": {"dim": A, "clip": 1.0},
    }
    s.update(extra)
    return json.dumps(s, sort_keys=True)


def small_head(layer: nn.Linear, gain: float) -> nn.Linear:
    """Scales a last layer so untrained outputs stay small (actions near the default pose)."""
    with torch.no_grad():
        layer.weight.mul_(gain)
        layer.bias.mul_(gain)
    return layer


def mlp(inp: int, hidden: int, out: int, gain: float = 1.0) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, hidden), nn.ELU(), small_head(nn.Linear(hidden, out), gain))


class Student(nn.Module):
    def __init__(self, spec_json: str, o: int):
        super().__init__()
        self.spec_json = spec_json
        self.net = nn.Sequential(
            nn.Linear(o, 256), nn.ELU(), nn.Linear(256, 128), nn.ELU(), small_head(nn.Linear(128, A), 0.3)
        )

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs)

    @torch.jit.export
    def locod_spec(self) -> str:
        return self.spec_json


class NanStudent(Student):
    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs) * float("nan")


class GruStudent(nn.Module):
    def __init__(self, spec_json: str, o: int, hidden: int):
        super().__init__()
        self.spec_json = spec_json
        self.gru = nn.GRU(o, hidden, num_layers=1, batch_first=True)
        self.head = small_head(nn.Linear(hidden, A), 0.3)

    def forward(self, obs: Tensor, state: Tensor) -> Tuple[Tensor, Tensor]:
        out, new_state = self.gru(obs.unsqueeze(1), state)
        return self.head(out[:, 0]), new_state

    @torch.jit.export
    def locod_spec(self) -> str:
        return self.spec_json


class WorldModel(nn.Module):
    """TD-MPC2-shaped latent model. `dynamics.*` is the part finetuning updates."""

    def __init__(self, spec_json: str, o: int):
        super().__init__()
        self.spec_json = spec_json
        self.encoder = mlp(o, HIDDEN, LATENT)
        self.dynamics = mlp(LATENT + A, HIDDEN, LATENT)
        self.reward_head = mlp(LATENT + A, HIDDEN, 1)
        self.value_head = mlp(LATENT, HIDDEN, 1)
        self.prior = mlp(LATENT, HIDDEN, A, gain=0.5)

    def forward(self, obs: Tensor) -> Tensor:
        return self.encode(obs)

    @torch.jit.export
    def encode(self, obs: Tensor) -> Tensor:
        return self.encoder(obs)

    @torch.jit.export
    def next(self, z: Tensor, a: Tensor) -> Tensor:
        return self.dynamics(torch.cat([z, a], 1))

    @torch.jit.export
    def reward(self, z: Tensor, a: Tensor) -> Tensor:
        return self.reward_head(torch.cat([z, a], 1)).squeeze(1)

    @torch.jit.export
    def value(self, z: Tensor) -> Tensor:
        return self.value_head(z).squeeze(1)

    @torch.jit.export
    def pi(self, z: Tensor) -> Tensor:
        return torch.tanh(self.prior(z))

    @torch.jit.export
    def locod_spec(self) -> str:
        return self.spec_json


def elu_(x: Tensor) -> Tensor:
    """ELU in place, as max(x, 2^(min(x, 0) * log2(e)) - 1): e^x - 1 >= x everywhere, so the max is x for x > 0
    and e^x - 1 below. Equal to nn.ELU within 6e-8 absolute (it gives up expm1's relative precision near 0, which
    the next layer cannot see), at 45% of aten::elu's cost on this machine's AVX2 CPU, where aten::elu's
    vectorised expm1 costs as much as the layer's matrix product (torch.profiler) and libtorch's exp2 costs half
    its exp. Used only in the fused rollout, the deployment path; check_rollout compares it with the stepped
    methods at export."""
    neg = torch.clamp_max(x, 0.0).mul_(1.4426950408889634).exp2_().sub_(1.0)  # 1.44...: log2(e)
    return torch.maximum(x, neg, out=x)


class FusedWorldModel(WorldModel):
    @torch.jit.export
    def rollout(self, z: Tensor, actions: Tensor, gamma: float) -> Tensor:
        # One matrix product for the first layers of reward and dynamics, which read the same (z, a). The
        # stacked weights are rebuilt on every call (a few microseconds), so finetuning `dynamics.*` in place
        # is seen here too.
        w1 = torch.cat([self.reward_head[0].weight, self.dynamics[0].weight], 0)
        b1 = torch.cat([self.reward_head[0].bias, self.dynamics[0].bias], 0)
        w_r, b_r = self.reward_head[2].weight, self.reward_head[2].bias
        w_d, b_d = self.dynamics[2].weight, self.dynamics[2].bias
        hidden = w_r.shape[1]
        g = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        discount = 1.0
        for t in range(actions.shape[1]):
            h = elu_(F.linear(torch.cat([z, actions[:, t]], 1), w1, b1))
            r = F.linear(h[:, :hidden], w_r, b_r).squeeze(1)
            z = F.linear(h[:, hidden:], w_d, b_d)
            g = g + discount * r
            discount = discount * gamma
        v = elu_(F.linear(z, self.value_head[0].weight, self.value_head[0].bias))
        v = F.linear(v, self.value_head[2].weight, self.value_head[2].bias).squeeze(1)
        return g + discount * v


class NoValueWorldModel(nn.Module):
    def __init__(self, wm: WorldModel):
        super().__init__()
        self.spec_json = wm.spec_json
        self.wm = wm

    @torch.jit.export
    def encode(self, obs: Tensor) -> Tensor:
        return self.wm.encode(obs)

    @torch.jit.export
    def next(self, z: Tensor, a: Tensor) -> Tensor:
        return self.wm.next(z, a)

    @torch.jit.export
    def reward(self, z: Tensor, a: Tensor) -> Tensor:
        return self.wm.reward(z, a)

    @torch.jit.export
    def locod_spec(self) -> str:
        return self.spec_json


class NoPiWorldModel(NoValueWorldModel):
    @torch.jit.export
    def value(self, z: Tensor) -> Tensor:
        return self.wm.value(z)


class BadRewardWorldModel(WorldModel):
    @torch.jit.export
    def reward(self, z: Tensor, a: Tensor) -> Tensor:
        return self.reward_head(torch.cat([z, a], 1))


PLANNER = {
    "horizon": 5,
    "samples": 256,
    "elites": 32,
    "iterations": 3,
    "temperature": 0.5,
    "min_std": 0.05,
    "max_std": 2.0,
    "prior_samples": 12,
    "gamma": 0.99,
}


@torch.no_grad()
def check_rollout(wm: FusedWorldModel) -> None:
    """The fused rollout must return what stepping `reward`/`next` and `value` returns."""
    torch.manual_seed(4)
    z0 = wm.encode(torch.randn(16, wm.encoder[0].in_features))
    actions = torch.rand(16, PLANNER["horizon"], A) * 2 - 1
    gamma = PLANNER["gamma"]
    want, z, discount = torch.zeros(16), z0, 1.0
    for t in range(actions.shape[1]):
        want = want + discount * wm.reward(z, actions[:, t])
        z = wm.next(z, actions[:, t])
        discount *= gamma
    want = want + discount * wm.value(z)
    got = torch.jit.script(wm).rollout(z0, actions, gamma)
    err = (got - want).abs().max().item()
    if err > 1e-5:
        raise SystemExit(f"make_test_models: the fused rollout differs from the stepped one by {err}")


def save(module: nn.Module, out: str, name: str) -> None:
    module.eval()
    scripted = torch.jit.script(module)
    tmp = os.path.join(out, f".{name}.tmp")
    torch.jit.save(scripted, tmp)
    os.replace(tmp, os.path.join(out, name))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "build"))
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)

    terms = proprio_terms(joint_vel_history=3)
    torch.manual_seed(0)
    save(Student(spec("policy", terms), obs_dim(terms)), args.out, "student.pt")
    torch.manual_seed(1)
    save(NanStudent(spec("policy", terms), obs_dim(terms)), args.out, "student_nan.pt")

    terms = proprio_terms(joint_vel_history=1)
    torch.manual_seed(2)
    gru_spec = spec("policy", terms, recurrent={"state": [1, 1, 64]})
    save(GruStudent(gru_spec, obs_dim(terms), 64), args.out, "student_gru.pt")

    wm_spec = spec("world_model", terms, latent_dim=LATENT, planner=PLANNER)
    torch.manual_seed(3)
    stepped = WorldModel(wm_spec, obs_dim(terms))
    fused = FusedWorldModel(wm_spec, obs_dim(terms))
    fused.load_state_dict(stepped.state_dict())
    check_rollout(fused)
    save(stepped, args.out, "world_model_stepped.pt")
    save(fused, args.out, "world_model.pt")
    save(NoValueWorldModel(stepped), args.out, "wm_no_value.pt")
    save(NoPiWorldModel(stepped), args.out, "wm_no_pi.pt")
    bad = BadRewardWorldModel(wm_spec, obs_dim(terms))
    bad.load_state_dict(stepped.state_dict())
    save(bad, args.out, "wm_bad_reward.pt")
    print(f"make_test_models: wrote 8 models to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
