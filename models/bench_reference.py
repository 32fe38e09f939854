#!/usr/bin/env python3
"""Python references for `locod bench policy` and `locod bench mppi`, run in the same benchmark run.

    bench_reference.py policy --model student.pt --threads 1 --iters 2000 [--period-ms 20 --periodic 250]
    bench_reference.py mppi --model world_model.pt --threads 1 --plans 300 [--period-ms 20] [--stepped] [planner settings]
    bench_reference.py mppi --model world_model.pt ... --serve     (locod's benchmark drives it over stdin)

`policy`: the TorchScript student called from Python (`torch.jit.load`, `torch.no_grad()`), batch 1: back to back,
then (with --period-ms) once per period, as a Python deployment loop at the policy rate calls it.
`mppi`: TD-MPC2's `_plan` written out in PyTorch against the same TorchScript world model, with the same
settings as locod's planner: prior trajectories from `pi` (the first exact, the rest with `min_std` noise),
warm start shifted by one step, std reset to `max_std`, elites weighted by exp(temperature * (V - Vmax)),
the first action of the mean. The model's fused `rollout` is used when it exports one (unless --stepped),
else `reward`/`next`/`value` are stepped, as TD-MPC2's `_estimate_value` does.

Prints one JSON object: latencies in microseconds (p50, p99), and for mppi the time of one plan spent inside
the model's methods and the planner's own time (the rest), and the matrix-product FLOPs of one plan as counted
by torch.profiler.
"""

import argparse
import json
import sys
import time

import torch


def percentiles(samples_s):
    xs = sorted(samples_s)
    pick = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))] * 1e6  # noqa: E731
    return {"count": len(xs), "p50": pick(0.5), "p99": pick(0.99), "max": xs[-1] * 1e6}


def bench_policy(args):
    m = torch.jit.load(args.model)
    m.eval()
    spec = json.loads(m.locod_spec())
    o = obs_dim(spec)
    obs = torch.zeros(1, o)
    state = torch.zeros(spec["recurrent"]["state"]) if spec.get("recurrent") else None

    @torch.no_grad()
    def forward(i):
        nonlocal state
        obs[0, 0] = i * 1e-3
        t0 = time.perf_counter()
        if state is None:
            out = m(obs)
        else:
            out, state = m(obs, state)
        out[0, 0].item()
        return time.perf_counter() - t0

    times = [forward(i) for i in range(args.warmup + args.iters)][args.warmup :]
    r = {"forward_us": percentiles(times), "obs_dim": o}
    if args.period_ms > 0:
        # As a deployment loop at the policy rate: sleep to each deadline, then the forward; its own time, and
        # from the deadline to the action (the loop's wake-up latency included, as in locod's figure).
        period_s, start = args.period_ms * 1e-3, time.perf_counter()
        periodic, latency = [], []
        for k in range(1, args.periodic + 1):
            deadline = start + k * period_s
            time.sleep(max(0.0, deadline - time.perf_counter()))
            periodic.append(forward(k))
            latency.append(time.perf_counter() - deadline)
        r["periodic_us"] = percentiles(periodic)
        r["periodic_latency_us"] = percentiles(latency)
        r["period_ms"] = args.period_ms
    return r


class Timed:
    """The model with the time spent inside its methods added up (what no planner can avoid)."""

    def __init__(self, m):
        self.m, self.spent = m, 0.0

    def __getattr__(self, name):
        method = getattr(self.m, name)

        def call(*args):
            t0 = time.perf_counter()
            out = method(*args)
            self.spent += time.perf_counter() - t0
            return out

        return call


def plan(m, obs, prev_mean, s, use_rollout):
    H, N, P, K, A = s["horizon"], s["samples"], s["prior_samples"], s["elites"], s["action_dim"]
    c, gamma, temp = s["clip"], s["gamma"], s["temperature"]
    min_std, max_std = s["min_std"], s["max_std"]
    z = m.encode(obs)
    L = z.shape[1]
    actions = torch.empty(N, H, A)
    if P > 0:
        zp = z.expand(P, L)
        for t in range(H):
            a = m.pi(zp)
            a = torch.cat([a[:1], a[1:] + min_std * torch.randn(P - 1, A)]).clamp(-c, c)
            actions[:P, t] = a
            if t < H - 1:
                zp = m.next(zp, a)
    mean = torch.zeros(H, A)
    mean[:-1] = prev_mean[1:]
    std = torch.full((H, A), max_std)
    zn = z.expand(N, L)
    for _ in range(s["iterations"]):
        actions[P:] = (mean.unsqueeze(0) + std.unsqueeze(0) * torch.randn(N - P, H, A)).clamp(-c, c)
        if use_rollout:
            value = m.rollout(zn, actions, gamma)
        else:
            g, discount, _z = 0, 1.0, zn
            for t in range(H):
                r = m.reward(_z, actions[:, t])
                _z = m.next(_z, actions[:, t])
                g = g + discount * r
                discount *= gamma
            value = g + discount * m.value(_z)
        value = value.nan_to_num(0)
        elite_idxs = torch.topk(value, K, dim=0).indices
        elite_value, elite_actions = value[elite_idxs], actions[elite_idxs]
        max_value = elite_value.max(0).values
        score = torch.exp(temp * (elite_value - max_value))
        score = score / score.sum(0)
        mean = (score[:, None, None] * elite_actions).sum(0) / (score.sum(0) + 1e-9)
        std = (
            ((score[:, None, None] * (elite_actions - mean.unsqueeze(0)) ** 2).sum(0) / (score.sum(0) + 1e-9))
            .sqrt()
            .clamp(min_std, max_std)
        )
    prev_mean.copy_(mean)
    return mean[0].clamp(-c, c)


class MppiBench:
    """The world model, the planner's settings and state, and blocks of timed plans."""

    def __init__(self, args):
        m = torch.jit.load(args.model)
        m.eval()
        spec = json.loads(m.locod_spec())
        s = dict(spec["planner"])
        for k in ["horizon", "samples", "elites", "iterations", "prior_samples"]:
            if getattr(args, k) is not None:
                s[k] = getattr(args, k)
        for k in ["temperature", "min_std", "max_std", "gamma"]:
            if getattr(args, k) is not None:
                s[k] = getattr(args, k)
        s["action_dim"] = spec["action"]["dim"]
        s["clip"] = spec["action"]["clip"]
        if not hasattr(m, "pi"):
            s["prior_samples"] = 0  # no prior to roll out, as in locod
        self.m, self.timed, self.s = m, Timed(m), s
        self.use_rollout = hasattr(m, "rollout") and not args.stepped
        self.obs = torch.zeros(1, obs_dim(spec))
        self.prev_mean = torch.zeros(s["horizon"], s["action_dim"])
        self.period_s = args.period_ms * 1e-3
        self.i = 0
        torch.manual_seed(0)
        self.block(args.warmup)

    @torch.no_grad()
    def block(self, plans):
        """Times `plans` plans, one per period (as locod plans, and as a real-time thread must to stay clear of
        the kernel's real-time throttling). Returns seconds per plan: whole, inside the model, the rest."""
        times, model_times, own_times = [], [], []
        start = time.monotonic()
        for k in range(plans):
            time.sleep(max(0.0, start + k * self.period_s - time.monotonic()))
            self.obs[0, 0] = (self.i % 10) * 1e-2
            self.i += 1
            self.timed.spent = 0.0
            t0 = time.perf_counter()
            plan(self.timed, self.obs, self.prev_mean, self.s, self.use_rollout)
            t1 = time.perf_counter()
            times.append(t1 - t0)
            model_times.append(self.timed.spent)
            own_times.append(t1 - t0 - self.timed.spent)
        return times, model_times, own_times

    @torch.no_grad()
    def flops(self):
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            plan(self.m, self.obs, self.prev_mean, self.s, self.use_rollout)
        return sum(e.flops for e in prof.events() if e.flops)


def bench_mppi(args):
    b = MppiBench(args)
    times, model_times, own_times = b.block(args.plans)
    return {
        "plan_us": percentiles(times),
        "model_us": percentiles(model_times),
        "planner_us": percentiles(own_times),
        "flops_per_plan": b.flops(),
        "fused_rollout": b.use_rollout,
        "settings": b.s,
    }


def serve_mppi(args):
    """For locod's benchmark, which interleaves its own blocks of plans with these so that both see the same
    machine: prints a JSON line when ready, then answers each line on stdin, `plan N` with the N plans' times in
    microseconds and `flops` with the matrix-product FLOPs of one plan, until stdin closes."""
    b = MppiBench(args)
    print(json.dumps({"ready": True, "fused_rollout": b.use_rollout, "settings": b.s}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[:1] == ["plan"]:
            times, model_times, own_times = b.block(int(cmd[1]))
            us = lambda xs: [x * 1e6 for x in xs]  # noqa: E731
            out = {"plan_us": us(times), "model_us": us(model_times), "planner_us": us(own_times)}
        elif cmd[:1] == ["flops"]:
            out = {"flops_per_plan": b.flops()}
        else:
            out = {"error": f"unknown command {line.strip()!r}"}
        print(json.dumps(out), flush=True)


def obs_dim(spec):
    """The observation width the contract's terms add up to."""
    a = spec["action"]["dim"]
    dims = {"base_ang_vel": 3, "projected_gravity": 3, "command": 3}
    o = 0
    for t in spec["obs"]:
        d = dims.get(t["name"], a)
        if t["name"] == "height_scan":
            d = t["rows"] * t["cols"]
        elif t["name"] == "depth":
            d = len(t["sensors"]) * t["zones"]
        o += d * t.get("history", 1)
    return o


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    for name in ["policy", "mppi"]:
        q = sub.add_parser(name)
        q.add_argument("--model", required=True)
        q.add_argument("--threads", type=int, default=1)
        q.add_argument("--warmup", type=int, default=50)
        q.add_argument("--mlockall", action="store_true", help="lock the process's memory, as locod does")
        q.add_argument("--period-ms", type=float, default=0.0, help="start a forward or plan every PERIOD_MS")
        if name == "policy":
            q.add_argument("--iters", type=int, default=2000)
            q.add_argument("--periodic", type=int, default=250, help="forwards once per period (with --period-ms)")
        else:
            q.add_argument("--plans", type=int, default=300)
            q.add_argument("--stepped", action="store_true")
            q.add_argument("--serve", action="store_true", help="answer `plan N` / `flops` lines on stdin")
            for k in ["horizon", "samples", "elites", "iterations", "prior_samples"]:
                q.add_argument("--" + k.replace("_", "-"), dest=k, type=int)
            for k in ["temperature", "min_std", "max_std", "gamma"]:
                q.add_argument("--" + k.replace("_", "-"), dest=k, type=float)
    args = p.parse_args()
    if args.mlockall:
        import ctypes

        MCL_CURRENT, MCL_FUTURE = 1, 2
        if ctypes.CDLL(None, use_errno=True).mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
            raise SystemExit(f"mlockall: errno {ctypes.get_errno()}")
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if args.what == "mppi" and args.serve:
        serve_mppi(args)
        return
    r = bench_policy(args) if args.what == "policy" else bench_mppi(args)
    r["threads"] = torch.get_num_threads()
    r["torch"] = torch.__version__
    print(json.dumps(r))


if __name__ == "__main__":
    main()
