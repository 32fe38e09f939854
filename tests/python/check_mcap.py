"""Reads a locod MCAP log with the Python `mcap` reader and `mcap-ros2-support` decoder and
prints what it saw as JSON (named fields, counts, metadata; a shadow model's steps, if any)."""

import json
import sys

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

with open(sys.argv[1], "rb") as f:
    reader = make_reader(f, decoder_factories=[DecoderFactory()])
    meta = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
    ticks, shadow = [], []
    for schema_, channel_, message, decoded in reader.iter_decoded_messages():
        if channel_.topic == "/locod/shadow":
            shadow.append((schema_.name, decoded))
        else:
            schema, channel = schema_, channel_
            ticks.append(decoded)
    first = ticks[0]
    out = {
        "schema": schema.name,
        "encoding": schema.encoding,
        "topic": channel.topic,
        "count": len(ticks),
        "ticks": [t.tick for t in ticks],
        "modes": sorted({t.mode for t in ticks}),
        "n_joint_q": len(first.joint_q_rad),
        "fields": sorted(k for k in first.__slots__) if hasattr(first, "__slots__") else sorted(vars(first)),
        "first_quat": list(first.est_quat_wxyz),
        "last_cmd_kp": list(ticks[-1].cmd_kp),
        "metadata": {k: {kk: vv for kk, vv in v.items() if kk != "config"} for k, v in meta.items()},
        "shadow_schemas": sorted({name for name, _ in shadow}),
        "shadow": [{"policy_t_ns": s.policy_t_ns, "policy_action": list(s.policy_action)} for _, s in shadow],
    }
    print(json.dumps(out))
