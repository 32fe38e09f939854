"""Reads a `locod export` back with pyarrow (LeRobot layout) or numpy and checks counts, shapes
and pairing against the expectations given as JSON in argv[2]. Exit status 0 = all good."""

import json
import sys
from pathlib import Path

import numpy as np

root = Path(sys.argv[1])
want = json.loads(sys.argv[2])
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))
import locod_dataset  # noqa: E402

if (root / "meta" / "info.json").exists():
    import pyarrow.parquet as pq

    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0", info["codebase_version"]
    assert info["fps"] == want["fps"], info["fps"]
    assert info["total_frames"] == want["frames"], (info["total_frames"], want)
    assert info["total_episodes"] == want["episodes"], (info["total_episodes"], want)
    table = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")
    assert table.num_rows == want["frames"], table.num_rows
    for name, feature in info["features"].items():
        assert name in table.column_names, name
    eps = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pydict()
    assert sum(eps["length"]) == want["frames"], eps["length"]
    tasks = pq.read_table(root / "meta" / "tasks.parquet").to_pydict()
    assert tasks["task"] == ["locomotion"], tasks
    stats = json.loads((root / "meta" / "stats.json").read_text())
    assert len(stats["observation.state"]["mean"]) == want["state_dim"]
    state = np.stack(table.column("observation.state").to_numpy(zero_copy_only=False))
    nxt = np.stack(table.column("next.observation.state").to_numpy(zero_copy_only=False))
    cols = {c: table.column(c).to_numpy() for c in ("next.valid", "next.done", "episode_index", "frame_index", "mode", "t_ns")}
else:
    meta = json.loads((root / "meta.json").read_text())
    assert meta["total_frames"] == want["frames"]
    state = np.load(root / "observation.state.npy")
    nxt = np.load(root / "next.observation.state.npy")
    cols = {c: np.load(root / f"{c}.npy") for c in ("next.valid", "next.done", "episode_index", "frame_index", "mode", "t_ns")}

assert state.shape == (want["frames"], want["state_dim"]), state.shape
assert nxt.shape == state.shape, nxt.shape
valid = cols["next.valid"].astype(bool)
assert int(valid.sum()) == want["valid_pairs"], (int(valid.sum()), want)
idx = np.nonzero(valid)[0]
# Pairing: next state is the following row's state, in the same episode and mode, one period on.
assert np.array_equal(nxt[idx], state[idx + 1])
assert np.all(cols["episode_index"][idx] == cols["episode_index"][idx + 1])
assert np.all(cols["mode"][idx] == cols["mode"][idx + 1])
period_ns = 1e9 / want["fps"]
gaps = cols["t_ns"][idx + 1] - cols["t_ns"][idx]
assert np.all(gaps < 1.5 * period_ns), gaps.max()
# Never across an episode boundary: the last frame of each episode is done and unpaired.
last = np.nonzero(cols["next.done"])[0]
assert len(last) == want["episodes"], last
assert not valid[last].any()
for k in want.get("unpaired_frames", []):
    assert not valid[k], k

t = locod_dataset.load_transitions(root)
assert t["state"].shape == (want["valid_pairs"], want["state_dim"]), t["state"].shape
assert t["action"].shape[0] == want["valid_pairs"]
ds = locod_dataset.TransitionDataset(root)
assert len(ds) == want["valid_pairs"]
item = ds[0]
assert tuple(item["next_state"].shape) == (want["state_dim"],)
print("export ok:", want)
