"""An independent teleop client: eclipse-zenoh (Python) asks the robot to stand up, drives it
forward, and prints the first `state` that shows both, as JSON. Usage: teleop_client.py ENDPOINT PREFIX"""
import json
import sys
import threading
import time

import zenoh

endpoint, prefix = sys.argv[1], sys.argv[2]
conf = zenoh.Config()
conf.insert_json5("mode", '"peer"')
conf.insert_json5("connect/endpoints", json.dumps([endpoint]))
conf.insert_json5("listen/endpoints", "[]")
conf.insert_json5("scouting/multicast/enabled", "false")

found = threading.Event()
result = {}


def on_state(sample):
    state = json.loads(sample.payload.to_bytes())
    if state["mode"] == "stand_up" and state["source"] == "teleop" and not found.is_set():
        result.update(state)
        found.set()


with zenoh.open(conf) as session:
    session.declare_subscriber(f"{prefix}/state", on_state)
    vel = session.declare_publisher(f"{prefix}/cmd/vel")
    time.sleep(0.3)
    session.put(f"{prefix}/cmd/mode", json.dumps({"mode": "stand_up"}))
    deadline = time.monotonic() + 15
    while not found.is_set() and time.monotonic() < deadline:
        vel.put(json.dumps({"vx": 0.3, "vy": 0.0, "wz": 0.0}))
        time.sleep(0.05)
    if not found.is_set():
        sys.exit("no state with mode stand_up and source teleop")
    print(json.dumps(result))
