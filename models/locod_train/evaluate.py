"""Evaluation in the Python environment: the teacher's reference figures, and a quick check of a
student before it goes to the daemon. The figures that count for deployed models are `locod
eval`'s, measured through the daemon; these use the same definitions so the two can sit side by
side.

Per episode: fell (tilt beyond the limit or the base below 0.2 m over the terrain), success (no
fall, and on step / stairs / slope the base reached the top; the slope here is not scene_slope.xml's
ramp but the robot started on the slippery 8 degree floor, env.py's tilted gravity), vx and yaw-rate tracking RMS (heading
frame, true velocities), jerk (second difference of the action per policy step, averaged over
joints), torque RMS, tilt RMS (degrees from upright), progress (metres along x).

Run: `python -m locod_train.evaluate --teacher runs/teacher/ckpt.pt --scene flat --episodes 20`
or `--policy biwheel/student.pt`.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from .env import BiwheelEnv, EnvConfig
from .teacher import load_teacher

# Where a scene's "top" is: the base beyond this x (the last tread, or 2 m up the tilted floor;
# `locod eval`'s slope is a ramp from 1 m ahead, its top at x = 3.48 m).
TOP_X = {"step": 1.3, "stairs": 2.4, "slope": 2.0}


def evaluate(act, scene: str, episodes: int, seconds: float, seed: int, commands: str, privileged: bool) -> dict:
    cfg = EnvConfig(num_envs=episodes, seed=seed, scene=scene, commands=commands, randomise=False, curriculum=False, episode_s=seconds, push_mps=0.0)
    env = BiwheelEnv(cfg)
    B, T = env.B, env.max_steps
    fell_any = np.zeros(B, bool)
    vx_err2, yaw_err2, tau2, tilt2 = np.zeros(B), np.zeros(B), np.zeros(B), np.zeros(B)
    jerk_sum, jerk_max = np.zeros(B), np.zeros(B)
    alive_steps = np.zeros(B)
    actions = np.zeros((3, B, env.nj))
    for t in range(T):
        obs = env.privileged_obs() if privileged else env.deployable_obs()
        with torch.no_grad():
            a = act(torch.as_tensor(obs)).numpy()
        a = np.clip(a, -env.robot.action_clip, env.robot.action_clip)
        actions = np.roll(actions, 1, axis=0)
        actions[0] = a
        _, fell, _, _ = env.step(a)
        live = ~fell_any
        fell_any |= fell
        _, gyro, grav, _, v_head, _ = env.frames()
        vx_err2 += live * (v_head[:, 0] - env.cmd[:, 0]) ** 2
        yaw_err2 += live * (gyro[:, 2] - env.cmd[:, 2]) ** 2
        tau2 += live * (env.last_tau**2).mean(1)
        # The base's tilt from upright: its z axis against gravity (on the tilted floor too).
        tilt2 += live * np.degrees(np.arccos(np.clip(-grav[:, 2], -1.0, 1.0))) ** 2
        if t >= 2:
            j = np.abs(actions[0] - 2 * actions[1] + actions[2]).mean(1)
            jerk_sum += live * j
            jerk_max = np.maximum(jerk_max, np.where(live, j, 0))
        alive_steps += live
    n = np.maximum(alive_steps, 1)
    x = env.qpos()[:, 0]
    success = ~fell_any
    if scene in TOP_X:
        success &= x > TOP_X[scene]
    per = {
        "fell": fell_any.tolist(),
        "success": success.tolist(),
        "tracking_rms_mps": np.sqrt(vx_err2 / n).tolist(),
        "yaw_tracking_rms_radps": np.sqrt(yaw_err2 / n).tolist(),
        "jerk_mean": (jerk_sum / np.maximum(n - 2, 1)).tolist(),
        "jerk_max": jerk_max.tolist(),
        "torque_rms_nm": np.sqrt(tau2 / n).tolist(),
        "tilt_rms_deg": np.sqrt(tilt2 / n).tolist(),
        "progress_m": x.tolist(),
    }
    summary = {
        "scene": scene,
        "episodes": B,
        "seconds": seconds,
        "seed": seed,
        "falls": int(fell_any.sum()),
        "success_rate": float(success.mean()),
        **{k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))} for k, v in per.items() if k not in ("fell", "success")},
    }
    return {"summary": summary, "episodes": per}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--teacher")
    g.add_argument("--policy")
    p.add_argument("--scene", default="flat")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--commands", default=None)
    a = p.parse_args(argv)
    commands = a.commands or ("random" if a.scene in ("flat", "soft") else "forward")
    if a.teacher:
        t = load_teacher(a.teacher)
        res = evaluate(t.act_mean, a.scene, a.episodes, a.seconds, a.seed, commands, privileged=True)
    else:
        m = torch.jit.load(a.policy)
        res = evaluate(m, a.scene, a.episodes, a.seconds, a.seed, commands, privileged=False)
    print(json.dumps(res["summary"], indent=1))


if __name__ == "__main__":
    main()
