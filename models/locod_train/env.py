"""A vectorised MuJoCo environment of the example robot, stepped at the policy rate with
`mujoco.rollout` (both cores, no Python per physics step).

What one policy step does, as the daemon and its simulator do it:
- the action is clipped and mapped to motor targets as the contract says (position joints
  `default + scale a`, velocity joints `scale a`), then limited as locod's Limiter limits them
  (joint position limits, wheel speed limit, position targets moving at most
  `action_rate_limit_radps` per control tick);
- it takes effect after a latency of whole control ticks (compute time + bus), earlier ticks keep
  the previous targets;
- the motors run the MIT PD law at the physics rate, torque-limited (robot.py).

Every robot has its own MjModel copy, so domain randomisation writes straight into it: base mass
and payload, friction of the ground, motor strength and PD gains, gravity tilted for slopes,
latency, and the terrain boxes of its curriculum level. Observations: `privileged` (the teacher's:
true base velocity, height samples around the robot, the randomised parameters) and `deployable`
(the contract observation locod builds, with sensor noise and the ToF zones at their own rate).

Not for: learning (ppo.py, student.py, world_model.py).
"""
from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
from mujoco import rollout

from . import terrain
from .contract import ObsBuilder, deployable_terms
from .robot import Robot, load_robot, standing_base_height, tof_rays, training_model

# Height samples of the teacher: a grid in the heading frame, metres.
SCAN_X = np.linspace(-0.3, 0.9, 13)
SCAN_Y = np.array([-0.15, 0.0, 0.15])


@dataclasses.dataclass
class EnvConfig:
    num_envs: int = 256
    episode_s: float = 20.0
    timestep_s: float = 0.002
    seed: int = 0
    # A fixed evaluation scene (terrain.SCENES) instead of the training mix; commands "random"
    # (piecewise constant) or "forward" (0.4 m/s straight on).
    scene: str | None = None
    commands: str = "random"
    # Terrain mix (flat, step, stairs) and curriculum.
    terrain_mix: tuple = (0.4, 0.3, 0.3)
    curriculum: bool = True
    start_level: int = 0
    # Commands: vx [m/s], yaw rate [rad/s]; resampled every command_s; zero with p_stand.
    vx_max: float = 0.8
    yaw_max: float = 1.0
    command_s: tuple = (3.0, 6.0)
    p_stand: float = 0.15
    accel_limit: tuple = (2.0, 4.0)  # the daemon's [command] max_accel for vx and yaw rate
    # Domain randomisation.
    randomise: bool = True
    friction: tuple = (0.2, 1.2)
    mass_scale: tuple = (0.9, 1.15)
    payload_kg: tuple = (0.0, 1.5)
    strength: tuple = (0.85, 1.1)
    gain_scale: tuple = (0.9, 1.1)
    latency_ticks: tuple = (0, 3)
    p_slope: float = 0.15
    slope_deg: float = 10.0
    push_every_s: float = 6.0
    push_mps: float = 0.4
    # Observation noise (added to the deployable observation only).
    noise_scale: float = 1.0
    depth_hz: float = 15.0
    depth_dropout: float = 0.02
    depth_noise_m: float = 0.01


NOISE = {"base_ang_vel": 0.03, "projected_gravity": 0.02, "joint_pos": 0.005, "joint_vel": 0.15}


def quat_to_mat(q: np.ndarray) -> np.ndarray:
    """[B, 4] wxyz -> [B, 3, 3] (body to world)."""
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def unbound_world_bvh(m: mujoco.MjModel) -> None:
    """Makes the world body's bounding-volume tree cover all space. MuJoCo's midphase culls
    collisions with the world body's geoms by a tree of boxes computed when the model compiles;
    the terrain boxes are moved and resized per episode (`place_box`), so their compiled boxes
    (at the hidden position) would cull every contact with them and the robot would pass through
    the step. Each geom's own bounding sphere (`geom_rbound`, kept true by `place_box`) still
    culls the narrowphase cheaply."""
    a, n = m.body_bvhadr[0], m.body_bvhnum[0]
    m.bvh_aabb[a : a + n] = (0.0, 0.0, 0.0, 1e10, 1e10, 1e10)


def place_box(m: mujoco.MjModel, geom: int, box: np.ndarray) -> None:
    """Moves terrain box `geom` to `box` (centre xyz, half sizes), bounding volumes included."""
    m.geom_pos[geom] = box[:3]
    m.geom_size[geom] = box[3:]
    m.geom_rbound[geom] = float(np.linalg.norm(box[3:]))
    m.geom_aabb[geom] = (0.0, 0.0, 0.0, *box[3:])


class BiwheelEnv:
    def __init__(self, cfg: EnvConfig, robot: Robot | None = None):
        self.cfg = cfg
        self.robot = robot or load_robot()
        r = self.robot
        self.B = cfg.num_envs
        self.rng = np.random.default_rng(cfg.seed)
        self.base_model = training_model(r, cfg.timestep_s)
        self.models = [training_model(r, cfg.timestep_s) for _ in range(self.B)]
        for m in self.models:
            unbound_world_bvh(m)
        self.datas = [mujoco.MjData(self.base_model) for _ in range(2)]
        self.runner = rollout.Rollout(nthread=2)
        self.spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self.nstate = mujoco.mj_stateSize(self.base_model, self.spec)
        self.nq, self.nv = self.base_model.nq, self.base_model.nv
        self.substeps = int(round(1.0 / (r.policy_hz * cfg.timestep_s)))
        self.dt = 1.0 / r.policy_hz
        self.max_steps = int(cfg.episode_s * r.policy_hz)
        self.nj = r.nj
        self.is_pos = r.is_pos()
        self.default = r.default_pos()
        self.scale = r.action_scale()
        self.lo, self.hi = r.pos_limits()
        self.vmax = r.vel_max()
        self.rate_per_tick = r.action_rate_limit_radps / r.control_hz
        self.tilt_cos = np.cos(np.radians(r.tilt_limit_deg))
        self.ray_o, self.ray_d = tof_rays(self.base_model)
        self.stand_z = standing_base_height(self.base_model, (self.default[0], self.default[1]))
        self.base_body = mujoco.mj_name2id(self.base_model, mujoco.mjtObj.mjOBJ_BODY, "base")
        self.box_geoms = [mujoco.mj_name2id(self.base_model, mujoco.mjtObj.mjOBJ_GEOM, f"box{k}") for k in range(6)]
        self.floor_geom = mujoco.mj_name2id(self.base_model, mujoco.mjtObj.mjOBJ_GEOM, "floor")
        self.nominal_mass = self.base_model.body_mass[self.base_body]
        self.nominal_gain = self.base_model.actuator_gainprm[:, 0].copy()
        self.nominal_bias = self.base_model.actuator_biasprm[:, :3].copy()
        self.nominal_force = self.base_model.actuator_forcerange.copy()

        B, J = self.B, self.nj
        self.state = np.zeros((B, self.nstate))
        self.boxes = np.zeros((B, 6, 6))
        self.kind = np.zeros(B, int)
        self.level = np.full(B, cfg.start_level)
        self.params = np.zeros((B, 5))  # friction, mass scale, payload, strength, slope (rad)
        self.gravity_dir = np.tile(np.array([0.0, 0.0, -1.0]), (B, 1))
        self.latency = np.zeros(B, int)
        self.target = np.zeros((B, J))  # targets being applied (after limits), per joint
        self.action = np.zeros((B, J), np.float32)
        self.prev_action = np.zeros((B, J), np.float32)
        self.prev2_action = np.zeros((B, J), np.float32)
        self.cmd_goal = np.zeros((B, 3))
        self.cmd = np.zeros((B, 3))
        self.cmd_timer = np.zeros(B)
        self.steps = np.zeros(B, int)
        self.start_x = np.zeros(B)
        self.depth = np.full((B, len(self.ray_o)), -1.0)
        self.depth_phase = np.zeros(B)
        self.push_timer = np.zeros(B)
        self.deployable = ObsBuilder(deployable_terms(), J, B)
        self.last_tau = np.zeros((B, J))
        self.reset(np.arange(B))

    # ----------------------------------------------------------------------------- reset
    def _randomise(self, i: int) -> None:
        cfg, m, rng = self.cfg, self.models[i], self.rng
        if cfg.scene is not None:
            kind = {"step": 1, "stairs": 2}.get(cfg.scene, 0)
            boxes = terrain.scene_layout(cfg.scene)
        else:
            kind = rng.choice(3, p=np.array(cfg.terrain_mix) / sum(cfg.terrain_mix))
            boxes = terrain.layout(terrain.KINDS[kind], int(self.level[i]), rng)
        self.kind[i] = kind
        self.boxes[i] = boxes
        for k, g in enumerate(self.box_geoms):
            place_box(m, g, boxes[k])
        u = (lambda a: rng.uniform(*a)) if cfg.randomise else (lambda a: 1.0 if a[0] <= 1.0 <= a[1] else a[0])
        friction = u(cfg.friction) if cfg.randomise else 1.0
        mass = u(cfg.mass_scale)
        payload = u(cfg.payload_kg) if cfg.randomise else 0.0
        strength = u(cfg.strength)
        gain = u(cfg.gain_scale)
        for g in [self.floor_geom, *self.box_geoms]:
            m.geom_friction[g, 0] = friction
        m.body_mass[self.base_body] = self.nominal_mass * mass + payload
        m.actuator_gainprm[:, 0] = self.nominal_gain * gain * strength
        m.actuator_biasprm[:, :3] = self.nominal_bias * gain * strength
        m.actuator_forcerange[:] = self.nominal_force * strength
        slope = 0.0
        if cfg.randomise and cfg.scene is None and kind == 0 and rng.random() < cfg.p_slope:
            slope = np.radians(rng.uniform(-cfg.slope_deg, cfg.slope_deg))
        soft = cfg.scene == "soft"
        m.geom_solref[self.floor_geom] = (0.04, 0.6) if soft else self.base_model.geom_solref[self.floor_geom]
        m.geom_solimp[self.floor_geom, :3] = (0.6, 0.95, 0.03) if soft else self.base_model.geom_solimp[self.floor_geom, :3]
        if cfg.scene == "slope":
            # scene_slope.xml's board: 8 degrees (0.1396 rad) rising along +x, friction 0.25; here
            # the robot starts on it (the scene file has a flat run-up and a level top).
            slope = 0.1396
            friction = 0.25
            for g in [self.floor_geom, *self.box_geoms]:
                m.geom_friction[g, 0] = friction
        # A slope rising along +x is the flat floor with gravity tilted backwards.
        g = np.array([-np.sin(slope), 0.0, -np.cos(slope)])
        m.opt.gravity[:] = 9.81 * g
        self.gravity_dir[i] = g
        self.params[i] = (friction, mass, payload, strength, slope)
        lat = cfg.latency_ticks
        self.latency[i] = rng.integers(lat[0], lat[1] + 1) if cfg.randomise else lat[0]

    def reset(self, ids: np.ndarray) -> None:
        if len(ids) == 0:
            return
        cfg, rng, B = self.cfg, self.rng, len(ids)
        for i in ids:
            self._randomise(int(i))
        d = mujoco.MjData(self.base_model)
        s = np.zeros(self.nstate)
        for i in ids:
            d.qpos[:] = 0
            d.qvel[:] = 0
            yaw = rng.uniform(-0.3, 0.3) if self.kind[i] == 0 else rng.uniform(-0.1, 0.1)
            pitch = rng.uniform(-0.05, 0.05)
            d.qpos[:3] = (0.0, 0.0, self.stand_z + 0.005)
            cy, sy, cp, sp = np.cos(yaw / 2), np.sin(yaw / 2), np.cos(pitch / 2), np.sin(pitch / 2)
            d.qpos[3:7] = (cy * cp, -sy * sp, cy * sp, sy * cp)
            q = self.default + np.where(self.is_pos, rng.uniform(-0.05, 0.05, self.nj), 0.0)
            d.qpos[7 : 7 + self.nj] = q
            d.qvel[0] = rng.uniform(-0.2, 0.2)
            mujoco.mj_getState(self.base_model, d, s, self.spec)
            self.state[i] = s
        self.target[ids] = np.where(self.is_pos, self.state[ids, 1 + 7 : 1 + 7 + self.nj], 0.0)
        self.action[ids] = 0
        self.prev_action[ids] = 0
        self.prev2_action[ids] = 0
        self.steps[ids] = 0
        self.start_x[ids] = 0.0
        self.cmd[ids] = 0
        self.cmd_timer[ids] = 0
        self._resample_commands(ids)
        self.depth_phase[ids] = rng.uniform(0, 1, B)
        self.depth[ids] = -1
        self.push_timer[ids] = rng.uniform(0.5, 1.0, B) * cfg.push_every_s
        self.deployable.reset(ids)
        self.last_tau[ids] = 0

    def _resample_commands(self, ids: np.ndarray) -> None:
        cfg, rng = self.cfg, self.rng
        n = len(ids)
        vx = rng.uniform(-cfg.vx_max, cfg.vx_max, n)
        yaw = rng.uniform(-cfg.yaw_max, cfg.yaw_max, n)
        terrain_env = (self.kind[ids] > 0) | (self.cfg.commands == "forward")
        # On obstacles: forward toward them, straight.
        forward = 0.4 if cfg.commands == "forward" else rng.uniform(0.3, cfg.vx_max, n)
        vx = np.where(terrain_env, forward, vx)
        yaw = np.where(terrain_env, 0.0, yaw)
        stand = (rng.random(n) < cfg.p_stand) & ~((cfg.commands == "forward") | (cfg.scene is not None and terrain_env))
        self.cmd_goal[ids] = np.stack([np.where(stand, 0, vx), np.zeros(n), np.where(stand, 0, yaw)], 1)
        self.cmd_timer[ids] = rng.uniform(*cfg.command_s, n)

    # ----------------------------------------------------------------------------- state views
    def qpos(self) -> np.ndarray:
        return self.state[:, 1 : 1 + self.nq]

    def qvel(self) -> np.ndarray:
        return self.state[:, 1 + self.nq : 1 + self.nq + self.nv]

    def frames(self):
        qp, qv = self.qpos(), self.qvel()
        R = quat_to_mat(qp[:, 3:7])
        gyro = qv[:, 3:6]  # free joint: angular velocity in the body frame
        grav = np.einsum("bji,bj->bi", R, self.gravity_dir)  # gravity direction in the body frame
        v_body = np.einsum("bji,bj->bi", R, qv[:, 0:3])
        yaw = np.arctan2(R[:, 1, 0], R[:, 0, 0])
        cy, sy = np.cos(yaw), np.sin(yaw)
        v_heading = np.stack([cy * qv[:, 0] + sy * qv[:, 1], -sy * qv[:, 0] + cy * qv[:, 1], qv[:, 2]], 1)
        return R, gyro, grav, v_body, v_heading, yaw

    def terrain_height_under(self) -> np.ndarray:
        qp = self.qpos()
        return terrain.heights(self.boxes, qp[:, 0:1], qp[:, 1:2])[:, 0]

    # ----------------------------------------------------------------------------- observations
    def raw_terms(self, noisy: bool = True) -> dict[str, np.ndarray]:
        _, gyro, grav, _, _, _ = self.frames()
        qp, qv = self.qpos(), self.qvel()
        q = qp[:, 7 : 7 + self.nj]
        qd = qv[:, 6 : 6 + self.nj]
        raw = {
            "base_ang_vel": gyro.copy(),
            "projected_gravity": grav.copy(),
            "command": self.cmd.copy(),
            "joint_pos": np.where(self.is_pos, q - self.default, 0.0),
            "joint_vel": qd.copy(),
            "last_action": self.action.astype(np.float64),
            "depth": self.depth.copy(),
        }
        if noisy and self.cfg.noise_scale > 0:
            for k, s in NOISE.items():
                raw[k] = raw[k] + self.rng.normal(0, s * self.cfg.noise_scale, raw[k].shape)
            raw["joint_pos"] = np.where(self.is_pos, raw["joint_pos"], 0.0)
        return raw

    def deployable_obs(self) -> np.ndarray:
        return self.deployable.build(self.raw_terms())

    def privileged_obs(self) -> np.ndarray:
        R, gyro, grav, v_body, _, yaw = self.frames()
        qp, qv = self.qpos(), self.qvel()
        q = qp[:, 7 : 7 + self.nj]
        qd = qv[:, 6 : 6 + self.nj]
        cy, sy = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
        gx, gy = np.meshgrid(SCAN_X, SCAN_Y, indexing="ij")
        gx, gy = gx.ravel()[None], gy.ravel()[None]
        wx = qp[:, 0:1] + cy * gx - sy * gy
        wy = qp[:, 1:2] + sy * gx + cy * gy
        h = qp[:, 2:3] - terrain.heights(self.boxes, wx, wy)
        p = self.params
        return np.concatenate(
            [
                gyro * 0.25,
                grav,
                self.cmd * np.array([2.0, 2.0, 1.0]),
                np.where(self.is_pos, q - self.default, 0.0),
                qd * 0.05,
                self.action,
                v_body * 2.0,
                np.clip(h - self.stand_z, -1.0, 1.0) * 3.0,
                np.stack([p[:, 0] - 0.7, p[:, 1] - 1.0, p[:, 2] * 0.5, p[:, 3] - 1.0, p[:, 4] * 3.0], 1),
                (self.latency[:, None] - 1.5) * 0.5,
            ],
            1,
        ).astype(np.float32)

    def _update_depth(self) -> None:
        """ToF zones at depth_hz (sample-and-hold, random phase), with noise and dropout."""
        cfg = self.cfg
        self.depth_phase += cfg.depth_hz * self.dt
        due = self.depth_phase >= 1.0
        self.depth_phase[due] -= np.floor(self.depth_phase[due])
        if not due.any():
            return
        idx = np.nonzero(due)[0]
        R, *_ = self.frames()
        R = R[idx]
        pos = self.qpos()[idx, 0:3]
        o = pos[:, None, :] + np.einsum("bij,rj->bri", R, self.ray_o)
        d = np.einsum("bij,rj->bri", R, self.ray_d)
        dist = terrain.raycast(self.boxes[idx], o, d, 4.0)
        if cfg.noise_scale > 0:
            dist = np.where(dist >= 0, dist + self.rng.normal(0, cfg.depth_noise_m * cfg.noise_scale, dist.shape), dist)
            dist = np.where(self.rng.random(dist.shape) < cfg.depth_dropout, -1.0, dist)
        # The sensor board reports whole millimetres (src/sim/board.rs).
        self.depth[idx] = np.where(dist >= 0, np.floor(np.clip(dist, 0, 4.0) * 1000.0) / 1000.0, dist)

    # ----------------------------------------------------------------------------- stepping
    def step(self, action: np.ndarray):
        cfg, r, B, J = self.cfg, self.robot, self.B, self.nj
        a = np.clip(np.nan_to_num(action.astype(np.float32)), -r.action_clip, r.action_clip)
        self.prev2_action[:] = self.prev_action
        self.prev_action[:] = self.action
        self.action[:] = a
        goal = np.where(self.is_pos, np.clip(self.default + self.scale * a, self.lo, self.hi), np.clip(self.scale * a, -self.vmax, self.vmax))
        ctrl = np.zeros((B, self.substeps, J))
        tgt = self.target.copy()
        for k in range(self.substeps):
            active = (k >= self.latency)[:, None]
            want = np.where(active, goal, tgt)
            step = np.clip(want - tgt, -self.rate_per_tick, self.rate_per_tick)
            tgt = np.where(self.is_pos, tgt + step, want)
            ctrl[:, k] = tgt
        self.target = tgt
        states, _ = self.runner.rollout(self.models, self.datas, self.state, ctrl)
        self.state = states[:, -1].copy()
        qp, qv = self.qpos(), self.qvel()
        q, qd = qp[:, 7 : 7 + J], qv[:, 6 : 6 + J]
        tau = np.where(self.is_pos, r.leg_kp * (tgt - q) - r.leg_kd * qd, r.wheel_kd * (tgt - qd))
        self.last_tau = np.clip(tau, -r.torque_max(), r.torque_max()) * self.params[:, 3:4]

        # Commands: piecewise constant goals, accel-limited like the daemon's arbiter.
        self.steps += 1
        self.cmd_timer -= self.dt
        due = np.nonzero(self.cmd_timer <= 0)[0]
        self._resample_commands(due)
        lim = np.array([cfg.accel_limit[0], 0.0, cfg.accel_limit[1]]) * self.dt
        self.cmd += np.clip(self.cmd_goal - self.cmd, -lim, lim)

        # Pushes: a random base velocity change now and then.
        if cfg.randomise and cfg.push_mps > 0:
            self.push_timer -= self.dt
            push = np.nonzero(self.push_timer <= 0)[0]
            if len(push):
                v0 = 1 + self.nq
                self.state[push, v0 : v0 + 2] += self.rng.uniform(-cfg.push_mps, cfg.push_mps, (len(push), 2))
                self.push_timer[push] = self.rng.uniform(0.5, 1.0, len(push)) * cfg.push_every_s

        self._update_depth()
        reward, terms = self.reward()
        fell = self.fallen()
        timeout = self.steps >= self.max_steps
        return reward, fell, timeout, terms

    def fallen(self) -> np.ndarray:
        _, _, grav, _, _, _ = self.frames()
        up = -grav[:, 2]
        height = self.qpos()[:, 2] - self.terrain_height_under()
        bad = ~np.isfinite(self.state).all(axis=1)
        return (up < self.tilt_cos) | (height < 0.2) | bad

    def progress(self) -> np.ndarray:
        return self.qpos()[:, 0] - self.start_x

    def reward(self):
        r = self.robot
        R, gyro, grav, v_body, v_head, _ = self.frames()
        qp, qv = self.qpos(), self.qvel()
        q, qd = qp[:, 7 : 7 + self.nj], qv[:, 6 : 6 + self.nj]
        legs = self.is_pos
        height = qp[:, 2] - self.terrain_height_under()
        terms = {
            "track_vx": 1.5 * np.exp(-np.square(v_head[:, 0] - self.cmd[:, 0]) / 0.1),
            "track_yaw": 0.75 * np.exp(-np.square(gyro[:, 2] - self.cmd[:, 2]) / 0.25),
            "alive": np.full(self.B, 0.5),
            "lat_vel": -1.0 * np.square(v_head[:, 1]),
            "vert_vel": -0.5 * np.square(v_body[:, 2]),
            "ang_vel_xy": -0.05 * (np.square(gyro[:, 0]) + np.square(gyro[:, 1])),
            "orientation": -2.0 * (np.square(grav[:, 0]) + np.square(grav[:, 1])),
            "height": -10.0 * np.square(np.clip(height - self.stand_z, -0.3, 0.0)),
            "torque": -2e-4 * np.square(self.last_tau).sum(1),
            "leg_vel": -1e-3 * np.square(qd[:, legs]).sum(1),
            "action_rate": -0.02 * np.square(self.action - self.prev_action).sum(1),
            "action_acc": -0.01 * np.square(self.action - 2 * self.prev_action + self.prev2_action).sum(1),
            "leg_symmetry": -0.5 * (np.square(q[:, 0] - q[:, 3]) + np.square(q[:, 1] - q[:, 4])),
            "pose": -0.1 * np.square(q[:, legs] - self.default[legs]).sum(1),
        }
        total = sum(terms.values())
        return total.astype(np.float32), terms

    # ----------------------------------------------------------------------------- curriculum
    def update_curriculum(self, ids: np.ndarray, fell: np.ndarray) -> None:
        """legged_gym's rule: a robot that got far enough on its terrain goes one level up, one
        that fell early goes down; flat ground has no levels."""
        if not self.cfg.curriculum or len(ids) == 0:
            return
        prog = self.progress()[ids]
        far = prog > 3.0
        up = far & ~fell
        down = fell & (prog < 1.0)
        self.level[ids] = np.clip(self.level[ids] + up.astype(int) - down.astype(int), 0, terrain.LEVELS - 1)
