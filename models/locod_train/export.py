"""Export a trained student as a `policy` contract model (TorchScript, docs/model-contract.md): the
observation normaliser, encoder and action head in one `forward(obs[1, O]) -> action[1, A]`, and
`locod_spec()` with the observation terms the student was trained on.

Run: `python -m locod_train.export student --ckpt runs/student_dynawm/ckpt.pt --out biwheel/student.pt`.
"""
from __future__ import annotations

import argparse
import hashlib
import json

import torch
from torch import nn

from .contract import deployable_terms, obs_dim, spec_json
from .robot import load_robot
from .student import load_student


class ExportedPolicy(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor, encoder: nn.Module, actor: nn.Module, spec: str):
        super().__init__()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("inv_std", 1.0 / std.clone())
        self.encoder = encoder
        self.actor = actor
        self.spec = spec

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.encoder((obs - self.mean) * self.inv_std))

    @torch.jit.export
    def locod_spec(self) -> str:
        return self.spec


def export_student(ckpt: str, out: str, extra: dict | None = None) -> dict:
    robot = load_robot()
    s = load_student(ckpt)
    terms = deployable_terms()
    assert obs_dim(terms, robot.nj) == s.norm.mean.shape[0], "the student's input does not match the contract's terms"
    spec = spec_json("policy", robot, terms, **(extra or {}))
    std = torch.sqrt(s.norm.var + s.norm.eps)
    m = ExportedPolicy(s.norm.mean, std, s.encoder, s.actor, spec)
    m.eval()
    scripted = torch.jit.script(m)
    # The exported model must compute what the trained one computes.
    x = torch.randn(16, s.norm.mean.shape[0]) * 0.5
    with torch.no_grad():
        err = (scripted(x) - s.act(x)).abs().max().item()
    if err > 1e-5:
        raise SystemExit(f"export: the scripted student differs from the trained one by {err}")
    scripted.save(out)
    with open(out, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return {"path": out, "sha256": digest, "obs_dim": int(s.norm.mean.shape[0]), "spec": json.loads(spec)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    st = sub.add_parser("student")
    st.add_argument("--ckpt", required=True)
    st.add_argument("--out", required=True)
    a = p.parse_args(argv)
    info = export_student(a.ckpt, a.out)
    print(f"export: {info['path']} sha256 {info['sha256'][:16]} obs {info['obs_dim']}")


if __name__ == "__main__":
    main()
