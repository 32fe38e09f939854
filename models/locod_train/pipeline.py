"""`make models`: the whole training pipeline for biwheel, rerunnable and resumable.

Stages, each skipped when its output is complete and resumed from its checkpoint when not:
teacher (PPO) -> DynaWM student and plain student (DAgger from the teacher) -> world model (data
from the teacher and its earlier checkpoints with noise bursts, then training) -> export (models/
biwheel/*.pt with model cards and curves) -> evaluation (the teacher in the Python environment;
the exported models through the daemon, `locod eval`, when the binary is built).

Every stage runs as its own process, under `torchrun` when --nproc > 1 (gloo on CPU, nccl with
--device cuda). A log of everything goes to <runs>/pipeline.log.

`--smoke`: tiny networks and one or two iterations of every stage into a temporary directory, with
2 processes: the whole pipeline in a minute or two, for `make test`.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.dirname(HERE)
ROOT = os.path.dirname(MODELS)

FULL = {
    "teacher_iterations": 1600,  # 1000 from scratch climbed no stairs; 1600 climbed them all (models/README)
    "envs": 256,
    "student_iterations": 300,
    "wm": [],
    "eval_episodes": 20,
    "eval_seconds": 60.0,
}
SMOKE = {
    "teacher_iterations": 2,
    "envs": 16,
    "student_iterations": 2,
    "wm": ["--smoke"],
    "eval_episodes": 2,
    "eval_seconds": 2.0,
}


class Pipeline:
    def __init__(self, runs: str, out: str, nproc: int, device: str, seed: int, settings: dict, log):
        self.runs, self.out, self.nproc, self.device, self.seed, self.s, self.log = runs, out, nproc, device, seed, settings, log
        os.makedirs(runs, exist_ok=True)
        os.makedirs(out, exist_ok=True)

    def say(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, file=sys.stderr, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def run(self, module: str, *args: str, distributed: bool = True) -> None:
        if distributed and self.nproc > 1:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={self.nproc}", "-m", module, *args]
        else:
            cmd = [sys.executable, "-m", module, *args]
        self.say("$ " + " ".join(shlex.quote(c) for c in cmd))
        t0 = time.time()
        env = dict(os.environ, PYTHONPATH=MODELS + os.pathsep + os.environ.get("PYTHONPATH", ""))
        p = subprocess.run(cmd, cwd=MODELS, env=env, stdout=self.log, stderr=None)
        if p.returncode != 0:
            raise SystemExit(f"pipeline: {module} failed with exit status {p.returncode}; see {self.log.name}")
        self.say(f"  done in {time.time() - t0:.0f}s")

    def teacher(self) -> str:
        run = os.path.join(self.runs, "teacher")
        self.run("locod_train.teacher", "--dir", run, "--iterations", str(self.s["teacher_iterations"]), "--envs", str(self.s["envs"]), "--seed", str(self.seed), "--device", self.device)
        return os.path.join(run, "ckpt.pt")

    def student(self, variant: str, teacher: str) -> str:
        run = os.path.join(self.runs, f"student_{variant}")
        self.run("locod_train.student", "--variant", variant, "--teacher", teacher, "--dir", run, "--iterations", str(self.s["student_iterations"]), "--envs", str(self.s["envs"]), "--seed", str(self.seed), "--device", self.device)
        return os.path.join(run, "ckpt.pt")

    def world_model(self, teacher_run: str) -> str | None:
        try:
            import locod_train.world_model  # noqa: F401
        except ImportError:
            self.say("world model: locod_train.world_model is not there yet; skipped")
            return None
        run = os.path.join(self.runs, "world_model")
        out = os.path.join(self.out, "world_model.pt")
        self.run("locod_train.world_model", "all", "--teacher-run", teacher_run, "--dir", run, "--out", out, "--seed", str(self.seed), "--device", self.device, *self.s["wm"])
        self.world_model_card(run, out)
        return out

    def world_model_card(self, run: str, out: str) -> None:
        import hashlib

        from .cards import plot_curves, write_card
        from .contract import obs_dim

        with open(os.path.join(run, "export.json")) as f:
            ex = json.load(f)
        collect = {}
        if os.path.exists(os.path.join(run, "collect.json")):
            with open(os.path.join(run, "collect.json")) as f:
                collect = json.load(f)
        with open(out, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        png = os.path.join(self.out, "world_model_training.png")
        plot_curves(run, ["train_total", "val_consistency", "val_persist", "val_reward", "val_value", "val_bc", "val_latent_std"], png, "world model: SimDist losses", x="step")
        import torch

        spec = json.loads(torch.jit.load(out).locod_spec())
        extra = (
            f"{ex['parameters']:,} parameters, {ex['dynamics_parameters']:,} of them `dynamics.*` (the only part `locod finetune` "
            f"will train). Export check: fused rollout vs stepped next/reward/value, max relative error {ex['check_max_rel_err']:.1e}. "
            f"`rollout` at N = {ex['samples']}, H = {ex['horizon']} in Python, one thread: p50 {ex['rollout_p50_ms']:.2f} ms; "
            f"{ex['iterations']} rollouts (a plan's model time): p50 {ex['plan_rollouts_p50_ms']:.2f} ms.\n\n"
            f"Data: {json.dumps(collect, sort_keys=True)[:600]}"
        )
        write_card(
            os.path.join(self.out, "world_model.md"),
            "world_model",
            "The SimDist world model: encoder over the deployable observation, latent dynamics (`dynamics.*`), reward and value heads "
            "(value regressed on the teacher's privileged critic) and a policy prior cloned from the teacher's clean actions, then "
            "refined by DAgger on its own visited states (the `prior` stage: encoder and everything else frozen), with a "
            "fused `rollout` and planner defaults. Planned by locod's MPPI (`config/sim-mppi.toml`).",
            "make models  (python -m locod_train.pipeline; stage: python -m locod_train.world_model all)",
            self.seed,
            "the teacher and its earlier checkpoints driving the training environment with bursts of action noise (locod_train/world_model.py)",
            [png],
            spec,
            {"path": out, "sha256": digest, "obs_dim": obs_dim(spec["obs"], len(spec["joints"]))},
            extra,
        )

    def export(self, variant: str, ckpt: str, name: str) -> dict:
        from .cards import plot_curves, write_card
        from .export import export_student

        out = os.path.join(self.out, f"{name}.pt")
        info = export_student(ckpt, out)
        run = os.path.dirname(ckpt)
        png = os.path.join(self.out, f"{name}_training.png")
        plot_curves(run, ["distill", "onpolicy_action_error", "wm_latent", "wm_terrain", "fall_rate", "level_step", "level_stairs"], png, f"{name}: DAgger from the teacher")
        teacher_png = os.path.join(self.out, "teacher_training.png")
        plot_curves(os.path.join(self.runs, "teacher"), ["return", "episode_s", "fall_rate", "level_step", "level_stairs", "r_track_vx", "std"], teacher_png, "teacher: PPO", x="steps")
        summary = {
            "dynawm": "The DynaWM student: proprioception history, command and the two ToF sensors' zones in, joint targets out. Distilled from the privileged PPO teacher with DAgger, with a world-model auxiliary loss (next latent against a momentum target encoder, next privileged terrain features) on its representation.",
            "plain": "The plain student (baseline): the DynaWM student's architecture, data schedule and seed, distillation loss only.",
        }[variant]
        write_card(
            os.path.join(self.out, f"{name}.md"),
            name,
            summary,
            "make models  (python -m locod_train.pipeline)",
            self.seed,
            f"on-policy DAgger rollouts in the training environment ({self.s['envs']} robots x 24 steps per iteration, {self.s['student_iterations']} iterations), labelled by the teacher {os.path.relpath(ckpt, ROOT) if ckpt.startswith(ROOT) else ckpt}",
            [png, teacher_png],
            info["spec"],
            info,
        )
        self.say(f"export: {out} ({info['sha256'][:12]})")
        return info

    def export_teacher(self, teacher: str, evaluation: dict | None) -> None:
        """The teacher's weights (no optimiser state) and its card: it is not a deployable model
        (privileged observations), but the world model's data and any retraining start from it."""
        import hashlib

        import torch

        from .cards import plot_curves

        ck = torch.load(teacher, map_location="cpu", weights_only=False)
        out = os.path.join(self.out, "teacher.pt")
        torch.save({k: ck[k] for k in ("model", "obs_dim", "act_dim", "iteration", "levels")}, out)
        with open(out, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        png = os.path.join(self.out, "teacher_training.png")
        plot_curves(os.path.join(self.runs, "teacher"), ["return", "episode_s", "fall_rate", "level_step", "level_stairs", "r_track_vx", "std"], png, "teacher: PPO", x="steps")
        rows = ""
        for scene, r in (evaluation or {}).items():
            rows += f"| {scene} | {r['episodes']} x {r['seconds']:.0f} s | {r['falls']} | {r['success_rate']:.2f} | {r['tracking_rms_mps']['mean']:.3f} | {r['jerk_mean']['mean']:.3f} | {r['progress_m']['mean']:.2f} |\n"
        text = f"""# teacher

The privileged PPO teacher (`locod_train/teacher.py`): true base velocity, terrain heights around
the robot and the randomised parameters in, joint targets out. Not deployable (locod cannot build
its observation); it labels the students' states and drives the world model's data.

| | |
| --- | --- |
| file | `teacher.pt` (state dict: actor, critic, normaliser; `locod_train.teacher.load_teacher`) |
| sha256 | `{digest}` |
| command | `make models` (stage teacher: `python -m locod_train.teacher --dir models/runs/teacher --iterations {ck['iteration']} --envs {self.s['envs']} --seed {self.seed}`) |
| seed | {self.seed} |
| data | {ck['iteration']} PPO iterations x {self.s['envs']} robots x 24 steps = {ck['iteration'] * self.s['envs'] * 24:,} policy steps, terrain curriculum flat / step / stairs, domain randomisation (models/README.md) |

![teacher_training.png](teacher_training.png)

Evaluated in the Python environment (`python -m locod_train.evaluate --teacher`; nominal robot,
no noise, seeds from {1000 + self.seed}):

| scene | episodes | falls | success | vx RMS (m/s) | jerk mean | progress (m) |
| --- | --- | --- | --- | --- | --- | --- |
{rows}"""
        with open(os.path.join(self.out, "teacher.md"), "w") as f:
            f.write(text)
        self.say(f"export: {out} ({digest[:12]})")

    def evaluate_teacher(self, teacher: str) -> dict:
        from .evaluate import evaluate
        from .teacher import load_teacher

        t = load_teacher(teacher)
        res = {}
        for scene in ("flat", "step", "slope", "stairs"):
            commands = "random" if scene == "flat" else "forward"
            r = evaluate(t.act_mean, scene, self.s["eval_episodes"], self.s["eval_seconds"] if scene == "flat" else min(self.s["eval_seconds"], 20.0), 1000 + self.seed, commands, privileged=True)
            res[scene] = r["summary"]
            self.say(f"teacher on {scene}: falls {r['summary']['falls']}/{r['summary']['episodes']} success {r['summary']['success_rate']:.2f} vx rms {r['summary']['tracking_rms_mps']['mean']:.3f}")
        return res


# What `locod eval` measures for the table: (config, label), and (scene, commands, seconds).
DAEMON_CONFIGS = [("sim-student.toml", "DynaWM student"), ("sim-student-plain.toml", "plain student"), ("sim-mppi.toml", "MPPI + world model")]
DAEMON_SCENES = [("flat", "random", 60.0), ("step", "forward", 20.0), ("slope", "forward", 20.0), ("stairs", "forward", 20.0)]


def evaluate_daemon(pl: Pipeline, locod: str, episodes: int, seed: int) -> dict:
    """The exported models through the daemon itself: `locod eval` in lock-step, ground truth from
    the simulator. Seeds start at 2000 + seed: nothing was tuned on them."""
    out = {}
    for config, label in DAEMON_CONFIGS:
        path = os.path.join(ROOT, "config", config)
        if not os.path.exists(path):
            pl.say(f"locod eval: {config} does not exist; skipped")
            continue
        for scene, commands, seconds in DAEMON_SCENES:
            seconds = min(seconds, pl.s["eval_seconds"])
            cmd = [locod, "eval", "--config", path, "--scene", scene, "--commands", commands, "--episodes", str(episodes), "--seconds", str(seconds), "--seed", str(2000 + seed), "--json"]
            pl.say("$ " + " ".join(cmd))
            p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if p.returncode != 0:
                pl.say(f"  failed ({p.returncode}): {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ''}")
                continue
            r = json.loads(p.stdout)
            out.setdefault(config, {"label": label})[scene] = r
            pl.say(f"  {label} on {scene}: falls {r['falls']}/{r['episodes']} success {r['success_rate']:.2f} vx rms {r['tracking_rms_mps']['mean']:.3f}")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny, fast, into a temporary directory")
    p.add_argument("--runs", default=None, help="checkpoints and logs (default models/runs, or a temporary directory with --smoke)")
    p.add_argument("--out", default=None, help="exported models (default models/biwheel)")
    p.add_argument("--nproc", type=int, default=None, help="processes per stage (torchrun); default 1, 2 with --smoke")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stages", default="teacher,students,world_model,export,evaluate")
    a = p.parse_args(argv)
    settings = SMOKE if a.smoke else FULL
    temporary = a.smoke and a.runs is None
    if temporary:
        import tempfile

        a.runs = tempfile.mkdtemp(prefix="locod-smoke-")
    runs = os.path.abspath(a.runs or os.path.join(MODELS, "runs"))
    out = os.path.abspath(a.out or (os.path.join(runs, "export") if a.smoke else os.path.join(MODELS, "biwheel")))
    nproc = a.nproc or (2 if a.smoke else 1)
    stages = set(a.stages.split(","))
    os.makedirs(runs, exist_ok=True)
    t0 = time.time()
    with open(os.path.join(runs, "pipeline.log"), "a") as log:
        pl = Pipeline(runs, out, nproc, a.device, a.seed, settings, log)
        pl.say(f"pipeline: runs {runs}, models {out}, {nproc} process(es), device {a.device}, {'smoke' if a.smoke else 'full'}")
        teacher = os.path.join(runs, "teacher", "ckpt.pt")
        if "teacher" in stages:
            teacher = pl.teacher()
        ckpts = {}
        if "students" in stages:
            for variant in ("dynawm", "plain"):
                ckpts[variant] = pl.student(variant, teacher)
        else:
            ckpts = {v: os.path.join(runs, f"student_{v}", "ckpt.pt") for v in ("dynawm", "plain")}
        if "world_model" in stages:
            pl.world_model(os.path.join(runs, "teacher"))
        results = {}
        if "export" in stages:
            results["student"] = pl.export("dynawm", ckpts["dynawm"], "student")
            results["student_plain"] = pl.export("plain", ckpts["plain"], "student_plain")
        if "evaluate" in stages:
            results["teacher_eval"] = pl.evaluate_teacher(teacher)
            with open(os.path.join(out, "eval_teacher.json"), "w") as f:
                json.dump(results["teacher_eval"], f, indent=1, sort_keys=True)
            locod = os.environ.get("LOCOD", os.path.join(ROOT, "target", "release", "locod"))
            if a.smoke:
                pl.say("locod eval: not in the smoke configuration (the daemon's own tests run it)")
            elif os.path.exists(locod):
                daemon = evaluate_daemon(pl, locod, settings["eval_episodes"], a.seed)
                with open(os.path.join(out, "eval.json"), "w") as f:
                    json.dump({"teacher_python": results["teacher_eval"], "daemon": daemon}, f, indent=1, sort_keys=True)
            else:
                pl.say(f"locod eval: {locod} is not built (make build); the daemon's evaluation is skipped")
        if "export" in stages:
            pl.export_teacher(teacher, results.get("teacher_eval"))
        pl.say(f"pipeline: finished in {time.time() - t0:.0f}s")
    if temporary:
        import shutil

        shutil.rmtree(runs, ignore_errors=True)


if __name__ == "__main__":
    main()
