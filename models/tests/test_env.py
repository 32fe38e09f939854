"""The training environment against MuJoCo's own sensors and the contract's observation rules."""
import json
import os
import unittest

import mujoco
import numpy as np

from locod_train import terrain
from locod_train.contract import ObsBuilder
from locod_train.env import BiwheelEnv, EnvConfig, quat_to_mat
from locod_train.robot import ROBOT_DIR, tof_rays


class RaysAndFrames(unittest.TestCase):
    def test_zone_rays_match_the_simulators_rangefinders(self):
        m = mujoco.MjModel.from_xml_path(os.path.join(ROBOT_DIR, "scene_stairs.xml"))
        d = mujoco.MjData(m)
        o, dr = tof_rays(m)
        boxes = terrain.scene_layout("stairs")
        rng = np.random.default_rng(0)
        for _ in range(5):
            q = np.array([1.0, *rng.normal(0, 0.08, 3)])
            q /= np.linalg.norm(q)
            x, y = rng.uniform(-0.5, 2.5), rng.uniform(-0.2, 0.2)
            ground = terrain.heights(boxes[None], np.array([[x + 0.2]]), np.array([[y]]))[0, 0]
            d.qpos[:] = [x, y, ground + rng.uniform(0.4, 0.8), *q, 0.6, -1.2, 0, 0.6, -1.2, 0]
            mujoco.mj_forward(m, d)
            want = np.array([d.sensor(f"tof{s}_{r}{c}").data[0] for s in range(2) for r in range(8) for c in range(8)])
            want[want >= 4.0] = -1.0  # the rangefinder reads its cutoff when nothing is hit
            R = quat_to_mat(d.qpos[None, 3:7])
            got = terrain.raycast(boxes[None], d.qpos[None, None, :3] + np.einsum("bij,rj->bri", R, o), np.einsum("bij,rj->bri", R, dr), 4.0)[0]
            np.testing.assert_allclose(got, want, atol=1e-9)

    def test_the_robot_collides_with_the_moved_terrain_boxes(self):
        # The boxes are moved per episode after the model compiles; a wheel set half into the
        # step's edge (and a shank into a stair) must touch them, as in the simulator's scenes.
        for scene, x in (("step", 1.05), ("stairs", 1.35)):
            env = BiwheelEnv(EnvConfig(num_envs=1, seed=1, scene=scene, randomise=False))
            m = env.models[0]
            d = mujoco.MjData(m)
            d.qpos[:] = 0
            d.qpos[0:7] = [x, 0.0, 0.40, 1.0, 0.0, 0.0, 0.0]
            d.qpos[7:13] = [0.78, -1.32, 0.0, 0.78, -1.32, 0.0]
            mujoco.mj_forward(m, d)
            touched = {int(d.contact[i].geom2) for i in range(d.ncon)} | {int(d.contact[i].geom1) for i in range(d.ncon)}
            self.assertTrue(touched & set(env.box_geoms), f"{scene}: no contact with a terrain box at x={x}")

    def test_gyro_and_gravity_match_the_imu(self):
        env = BiwheelEnv(EnvConfig(num_envs=4, seed=1, randomise=False))
        for _ in range(10):
            env.step(np.random.default_rng(1).normal(0, 0.5, (4, 6)))
        m = mujoco.MjModel.from_xml_path(os.path.join(ROBOT_DIR, "scene_flat.xml"))
        d = mujoco.MjData(m)
        _, gyro, grav, _, _, _ = env.frames()
        for i in range(4):
            d.qpos[:] = env.qpos()[i]
            d.qvel[:] = env.qvel()[i]
            mujoco.mj_forward(m, d)
            np.testing.assert_allclose(gyro[i], d.sensor("imu_gyro").data, atol=1e-9)
            xmat = d.site("imu").xmat.reshape(3, 3)
            np.testing.assert_allclose(grav[i], xmat.T @ np.array([0, 0, -1.0]), atol=1e-9)


class Observations(unittest.TestCase):
    def test_history_is_oldest_first_and_refilled_after_a_reset(self):
        terms = [{"name": "command", "scale": [2.0, 1.0, 1.0], "history": 3}, {"name": "depth", "scale": 1.0, "sensors": ["a"], "zones": 2, "max_range": 1.5}]
        b = ObsBuilder(terms, nj=6, batch=1)
        obs = [b.build({"command": np.array([[float(t), 0, 0]]), "depth": np.array([[-1.0, 9.0]])}) for t in range(1, 5)]
        np.testing.assert_allclose(obs[0][0, [0, 3, 6]], [2, 2, 2])  # first value fills the history
        np.testing.assert_allclose(obs[3][0, [0, 3, 6]], [4, 6, 8])  # oldest first
        np.testing.assert_allclose(obs[3][0, 9:], [1.5, 1.5])  # invalid and beyond range read max_range
        b.reset(np.array([0]))
        again = b.build({"command": np.array([[7.0, 0, 0]]), "depth": np.array([[0.5, 0.5]])})
        np.testing.assert_allclose(again[0, [0, 3, 6]], [14, 14, 14])


class Golden(unittest.TestCase):
    def test_the_fixture_is_current(self):
        from locod_train.golden import generate

        path = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "golden_obs.json")
        with open(path) as f:
            stored = json.load(f)
        fresh = json.loads(json.dumps(generate()))
        self.assertEqual(stored["spec"], fresh["spec"])
        for a, b in zip(stored["steps"], fresh["steps"]):
            np.testing.assert_allclose(a["obs"], b["obs"], atol=1e-6)
            np.testing.assert_allclose(a["depth_m"], b["depth_m"], atol=1e-9)


if __name__ == "__main__":
    unittest.main()
