"""The adaptation probe on the test world model (models/build, `make test-models`) and synthetic logs."""
import json
import os
import tempfile
import unittest

import numpy as np
import torch

from locod_train import adapt_probe

MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "world_model.pt")


def logs(walk_lengths, obs_dim=27, seed=0):
    """An export's columns: per episode a StandUp segment (mode 1, 109 steps), then a Walk one."""
    rng = np.random.default_rng(seed)
    mode, episode = [], []
    for k, n in enumerate(walk_lengths):
        mode += [1] * 109 + [adapt_probe.WALK] * n
        episode += [2 * k] * 109 + [2 * k + 1] * n
    steps = len(mode)
    qd = np.zeros((steps, 2), np.float32)
    qd[:] = 0.4 / adapt_probe.WHEEL_RADIUS_M  # rims at 0.4 m/s
    valid = np.ones(steps, bool)
    valid[np.r_[np.diff(episode) != 0, True]] = False  # no transition across an episode's end
    return {
        "obs": torch.tensor(rng.normal(0, 1, (steps, obs_dim)), dtype=torch.float32),
        "act": torch.tensor(rng.uniform(-1, 1, (steps, 6)), dtype=torch.float32),
        "qd": qd,
        "mode": np.array(mode),
        "episode": np.array(episode),
        "valid": valid,
    }


@unittest.skipUnless(os.path.exists(MODEL), "needs the test models (make test-models)")
class Probe(unittest.TestCase):
    def setUp(self):
        self.m = torch.jit.load(MODEL)

    def test_cruising_and_pre_fall_steps_come_from_the_right_segments(self):
        d = logs([1000, 300, 1000])
        cruise, fall = adapt_probe.segments(d)
        walk = [np.where(d["episode"] == e)[0] for e in (1, 3, 5)]
        self.assertEqual(cruise, [i for w in walk for i in w[50:100]])
        # Only the segment that ended early (a fall) gives pre-fall steps: its 75th to 26th last.
        self.assertEqual(fall, list(walk[1][-75:-25]))

    def test_a_model_ranks_plans_exactly_as_itself_and_another_model_does_not(self):
        d = logs([400, 400])
        walk = np.where(d["mode"] == adapt_probe.WALK)[0]
        same = adapt_probe.ranking(self.m, self.m, d, walk)
        self.assertAlmostEqual(same["spearman_mean"], 1.0, places=5)
        self.assertEqual((same["elite_overlap"], same["same_best"]), (1.0, 1.0))
        # A copy whose dynamics moved scores the same plans differently.
        other = torch.jit.load(MODEL)
        with torch.no_grad():
            for name, p in other.named_parameters():
                if name.startswith("dynamics."):
                    p.add_(torch.randn_like(p) * 0.5)
        moved = adapt_probe.ranking(self.m, other, d, walk)
        self.assertLess(moved["spearman_mean"], 0.99)
        self.assertLess(moved["same_best"], 1.0)

    def test_latent_error_windows_stay_inside_valid_transitions(self):
        d = logs([40, 40])
        # Each segment's last step has no next one: a StandUp segment of 109 steps holds 109 - 16
        # windows of 16 transitions, a Walk segment of 40 holds 24.
        self.assertEqual(len(adapt_probe.windows(d["episode"], d["valid"])), 2 * 93 + 2 * 24)
        errs = adapt_probe.kstep(self.m, d)
        self.assertEqual(len(errs), adapt_probe.HORIZON)
        self.assertTrue(all(np.isfinite(errs)) and all(e > 0 for e in errs))
        # A broken transition (a fallback, a dropped record) 20 steps into the first Walk segment
        # removes the 16 windows across it and no other.
        i = np.where(d["episode"] == 1)[0][20]
        d["valid"][i] = False
        starts = adapt_probe.windows(d["episode"], d["valid"])
        self.assertFalse(any(s <= i < s + 16 for s in starts))
        self.assertEqual(len(starts), 2 * 93 + 2 * 24 - 16)

    def test_slip_pairs_each_walk_segment_with_its_episode_and_refuses_a_mismatch(self):
        d = logs([1000, 300])
        episodes = [{"seed": 1, "fell": False, "progress_m": 2.7}, {"seed": 2, "fell": True, "progress_m": 1.3}]
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"per_episode": episodes}, f)
        try:
            rows = adapt_probe.slip(d, f.name)
            self.assertEqual([r["seed"] for r in rows], [1, 2])
            self.assertAlmostEqual(rows[0]["rim_travel_m"], 0.4 * 1000 / adapt_probe.POLICY_HZ, places=3)
            self.assertAlmostEqual(rows[1]["walk_s"], 6.0)
            self.assertAlmostEqual(rows[1]["rim_speed_last_2s_mps"], 0.4, places=5)
            with open(f.name, "w") as g:
                json.dump({"per_episode": episodes[:1]}, g)
            with self.assertRaises(SystemExit):
                adapt_probe.slip(d, f.name)
        finally:
            os.unlink(f.name)


if __name__ == "__main__":
    unittest.main()
