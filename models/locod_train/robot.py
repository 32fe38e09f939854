"""The example robot as training sees it: joints, limits and motor gains from the daemon's own
configuration (config/sim.toml), and the MuJoCo model of models/robots/biwheel with the motors'
MIT-mode PD law as MuJoCo actuators and a fixed set of movable terrain boxes.

Not for: stepping (env.py) or observations (contract.py).

The daemon's simulator (`locod sim`) computes each motor's PD torque itself at the physics rate and
clamps it to the motor's peak torque. Here the same law is a `general` actuator
(`tau = kp (q_des - q) + kd (qd_des - qd)`, force-limited to the joint's `torque_max_nm`), so
`mujoco.rollout` can step many robots in C without a Python call per physics step.
"""
from __future__ import annotations

import dataclasses
import os
import re
import tomllib

import mujoco
import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ROBOT_DIR = os.path.join(ROOT, "models", "robots", "biwheel")
SIM_CONFIG = os.path.join(ROOT, "config", "sim.toml")

# Terrain boxes every training model carries (mujoco.rollout needs models of one size); unused
# boxes sit below the floor.
N_BOXES = 6
HIDDEN_BOX = (50.0, 0.0, -5.0, 0.1, 0.1, 0.1)


@dataclasses.dataclass
class Joint:
    name: str
    mode: str  # "position" | "velocity"
    default_pos: float
    pos_min: float
    pos_max: float
    vel_max: float
    torque_max: float


@dataclasses.dataclass
class Robot:
    """The robot's joints in the daemon's order, with the gains and scales the models use."""

    name: str
    joints: list[Joint]
    control_hz: float
    policy_hz: float
    action_rate_limit_radps: float
    tilt_limit_deg: float
    wheel_radius_m: float
    depth_sensors: list[dict]
    # Contract gains and action scales: legs are position joints, wheels velocity joints.
    leg_kp: float = 40.0
    leg_kd: float = 1.0
    wheel_kd: float = 1.0
    leg_scale: float = 0.5
    wheel_scale: float = 15.0
    action_clip: float = 2.0

    @property
    def nj(self) -> int:
        return len(self.joints)

    def is_pos(self) -> np.ndarray:
        return np.array([j.mode == "position" for j in self.joints])

    def default_pos(self) -> np.ndarray:
        return np.array([j.default_pos if j.mode == "position" else 0.0 for j in self.joints])

    def kp(self) -> np.ndarray:
        return np.where(self.is_pos(), self.leg_kp, 0.0)

    def kd(self) -> np.ndarray:
        return np.where(self.is_pos(), self.leg_kd, self.wheel_kd)

    def action_scale(self) -> np.ndarray:
        return np.where(self.is_pos(), self.leg_scale, self.wheel_scale)

    def pos_limits(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.array([j.pos_min if j.mode == "position" else -np.inf for j in self.joints])
        hi = np.array([j.pos_max if j.mode == "position" else np.inf for j in self.joints])
        return lo, hi

    def vel_max(self) -> np.ndarray:
        return np.array([j.vel_max for j in self.joints])

    def torque_max(self) -> np.ndarray:
        return np.array([j.torque_max for j in self.joints])

    def contract_joints(self) -> list[dict]:
        return [
            {
                "name": j.name,
                "default_pos": j.default_pos if j.mode == "position" else 0.0,
                "mode": j.mode,
                "action_scale": float(self.action_scale()[i]),
                "kp": float(self.kp()[i]),
                "kd": float(self.kd()[i]),
            }
            for i, j in enumerate(self.joints)
        ]


def load_robot(config_path: str = SIM_CONFIG) -> Robot:
    with open(config_path, "rb") as f:
        c = tomllib.load(f)
    joints = [
        Joint(
            name=j["name"],
            mode=j.get("mode", "position"),
            default_pos=j.get("default_pos_rad", 0.0),
            pos_min=j.get("pos_min_rad", -np.inf),
            pos_max=j.get("pos_max_rad", np.inf),
            vel_max=j["vel_max_radps"],
            torque_max=j["torque_max_nm"],
        )
        for j in c["joint"]
    ]
    return Robot(
        name=c["robot"]["name"],
        joints=joints,
        control_hz=c["loop"]["control_hz"],
        policy_hz=c["loop"]["policy_hz"],
        action_rate_limit_radps=c["safety"]["action_rate_limit_radps"],
        tilt_limit_deg=c["safety"]["tilt_limit_deg"],
        wheel_radius_m=c["balance"]["wheel_radius_m"],
        depth_sensors=c["depth"]["sensor"],
    )


def training_xml(robot: Robot, timestep_s: float) -> str:
    """biwheel.xml with PD actuators, without sensors (observations are computed from the state),
    a floor and N_BOXES terrain boxes whose friction takes priority over the wheels'."""
    with open(os.path.join(ROBOT_DIR, "biwheel.xml")) as f:
        xml = f.read()
    acts = []
    for i, j in enumerate(robot.joints):
        kp, kd, tmax = robot.kp()[i], robot.kd()[i], j.torque_max
        acts.append(
            f'<general name="{j.name}" joint="{j.name}" gainprm="{kp if kp > 0 else kd}" '
            f'biastype="affine" biasprm="0 {-kp} {-kd}" forcerange="{-tmax} {tmax}" forcelimited="true"/>'
        )
    xml = re.sub(r"<actuator>.*</actuator>", "<actuator>" + "".join(acts) + "</actuator>", xml, flags=re.S)
    xml = re.sub(r"<sensor>.*</sensor>", "", xml, flags=re.S)
    xml = re.sub(r'timestep="[0-9.]+"', f'timestep="{timestep_s}"', xml)
    terrain = '<geom name="floor" type="plane" size="0 0 0.05" priority="1" contype="0" conaffinity="1"/>'
    for k in range(N_BOXES):
        x, y, z, sx, sy, sz = HIDDEN_BOX
        terrain += (
            f'<geom name="box{k}" type="box" pos="{x + k} {y} {z}" size="{sx} {sy} {sz}" priority="1" '
            f'contype="0" conaffinity="1"/>'
        )
    return xml.replace("<worldbody>", "<worldbody>" + terrain, 1)


def training_model(robot: Robot, timestep_s: float = 0.002) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(training_xml(robot, timestep_s))


def tof_rays(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
    """Origins and unit directions (base frame) of the ToF zone rays, sensor by sensor, zones in
    the daemon's order: the sites tof<s>_<row><col> of biwheel.xml. Shapes [S*64, 3]."""
    origins, dirs = [], []
    for s in range(2):
        for r in range(8):
            for c in range(8):
                sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, f"tof{s}_{r}{c}")
                origins.append(model.site_pos[sid].copy())
                mat = np.zeros(9)
                mujoco.mju_quat2Mat(mat, model.site_quat[sid])
                dirs.append(mat.reshape(3, 3)[:, 2].copy())
    return np.array(origins), np.array(dirs)


def standing_base_height(model: mujoco.MjModel, q_legs: tuple[float, float]) -> float:
    """Base height that puts the wheels on flat ground with hips and knees at q_legs."""
    d = mujoco.MjData(model)
    d.qpos[:] = 0
    d.qpos[2] = 1.0
    d.qpos[3] = 1.0
    d.qpos[7:13] = [q_legs[0], q_legs[1], 0.0, q_legs[0], q_legs[1], 0.0]
    mujoco.mj_kinematics(model, d)
    wid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "left_wheel")
    return 1.0 - d.xpos[wid][2] + 0.09 + 0.001
