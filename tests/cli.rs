//! The `locod` binary as a user meets it: checking configurations, running, stopping on signals.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
#[allow(dead_code)] // each test crate uses part of it
mod test_models;

const LOCOD: &str = env!("CARGO_BIN_EXE_locod");

fn example() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml").to_string()
}

/// The example with teleop on an ephemeral port, so that daemons in parallel tests do not compete
/// for 7447.
fn run_example() -> tempfile::NamedTempFile {
    let text = std::fs::read_to_string(example()).unwrap().replace("tcp/127.0.0.1:7447", "tcp/127.0.0.1:0");
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn check_prints_the_resolved_configuration() {
    let out = Command::new(LOCOD).args(["check", "--config", &example()]).output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("control_hz = 500"));
    assert!(stdout.contains("# ok: 6 joints on 1 bus(es), control 500 Hz, policy 50 Hz; libtorch:"), "{stdout}");
}

#[test]
fn a_config_mistake_is_one_located_line_and_exit_code_2() {
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("motor = \"ak80_9\"\ncan_id = 0x02", "motor = \"ak80_10\"\ncan_id = 0x02");
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    let out = Command::new(LOCOD).args(["check", "--config"]).arg(file.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let line = text.lines().position(|l| l.contains("ak80_10")).unwrap() + 1;
    assert!(stderr.contains(&format!("{}:{line}:", file.path().display())), "{stderr}");
    assert!(stderr.contains("unknown variant `ak80_10`"), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn run_for_a_duration_stands_up_and_ends_damped() {
    let config = run_example();
    let out = Command::new(LOCOD)
        .args(["run", "--config"])
        .arg(config.path())
        .args(["--duration", "2.5", "--goal", "stand", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["final_mode"], "passive");
    assert_eq!(summary["stopped_by"], "duration elapsed");
    assert!(summary["timing"]["ticks"].as_u64().unwrap() > 1000, "{summary}");
    assert_eq!(summary["faults_raised"], 0);
    assert!(stderr.contains("mode Passive -> StandUp (requested)"), "{stderr}");
    assert!(stderr.contains("mode StandUp -> Passive (shutdown)"), "{stderr}");
}

#[test]
fn sigterm_and_sigint_damp_and_exit_cleanly_with_a_summary() {
    for (signal, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let config = run_example();
        let child = Command::new(LOCOD)
            .args(["run", "--config"])
            .arg(config.path())
            .args(["--goal", "stand"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        // SAFETY: plain kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let start = Instant::now();
        let out = child.wait_with_output().unwrap();
        assert!(start.elapsed() < Duration::from_secs(5), "took {:?} to stop", start.elapsed());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(stderr.contains("-> Passive (shutdown)"), "{name}: {stderr}");
        assert!(stderr.contains(&format!("({name}), final mode Passive")), "{name}: {stderr}");
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    let out = Command::new(LOCOD).args(["run", "--config", &example(), "--duration", "-1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(LOCOD).args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_with_a_model_runs_the_contract_checks() {
    let student = test_models::path("student.pt").unwrap();
    let out = Command::new(LOCOD).args(["check", "-q", "--config", &data("student.toml")]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("# model ok:") && stdout.contains("39 observation values in 6 terms, 6 actions"),
        "{stdout}"
    );
    // A world model where a student is configured: refused, naming the field, exit code 2.
    let wm = test_models::path("world_model.pt").unwrap();
    let out = Command::new(LOCOD)
        .args(["check", "-q", "--config", &data("student.toml"), "--model"])
        .arg(&wm)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("model contract: kind: the model is a \"world_model\""), "{stderr}");
    // The example configuration has no controller: the model is checked as what its contract says.
    let out =
        Command::new(LOCOD).args(["check", "-q", "--config", &example(), "--model"]).arg(&student).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn run_with_the_student_walks_on_the_primary_controller() {
    test_models::path("student.pt").unwrap();
    let out = Command::new(LOCOD)
        .args(["run", "--config", &data("student.toml"), "--duration", "3", "--goal", "walk", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("controller: student student.pt"), "{stderr}");
    assert!(stderr.contains("mode StandUp -> Walk (requested)"), "{stderr}");
    assert!(stderr.contains("mode Walk, controller Primary"), "{stderr}");
    assert!(!stderr.contains("controller Primary -> "), "the student should never fall back: {stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["policy_errors"], 0, "{summary}");
    assert!(summary["policy_compute"]["count"].as_u64().unwrap() > 100, "{summary}");
    assert_eq!(summary["faults_raised"], 0);
}

#[test]
fn bench_e2e_closes_the_loop_through_a_daemon_process() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sim.toml");
    let out =
        Command::new(LOCOD).args(["bench", "e2e", "--seconds", "3", "--json", "--config", config]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // About one command per control tick carried a reply's sequence number back.
    assert!(r["locod_us"]["count"].as_u64().unwrap() > 300, "{r}");
    assert!(r["reference_us"]["count"].as_u64().unwrap() > 1000, "{r}");
    assert_eq!(r["control_period_us"], 2000.0);
}

/// The MPPI benchmark end to end, not its figures: locod's plans and the served Python reference's
/// alternate, each plan is split into model and planner time, and the ratios are computed. Without
/// SCHED_FIFO and locked memory here: other tests run beside it.
#[test]
fn bench_mppi_measures_locod_and_the_python_reference_side_by_side() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mppi.toml"))
        .unwrap()
        .replace("../../models/build/", concat!(env!("CARGO_MANIFEST_DIR"), "/models/build/"))
        .replace("priority = 80\npolicy_priority = 70\n", "priority = 0\npolicy_priority = 0\nlock_memory = false\n");
    assert!(text.contains("lock_memory = false"));
    let mut config = tempfile::NamedTempFile::new().unwrap();
    config.write_all(text.as_bytes()).unwrap();
    let out = Command::new(LOCOD)
        .args(["bench", "mppi", "--plans", "30", "--json", "--config"])
        .arg(config.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    for side in [&r, &r["reference"]] {
        let plan = side.get("plan_us").unwrap_or(&side["latency_us"]);
        assert_eq!(plan["count"], 30, "{r}");
        assert_eq!(side["model_us"]["count"], 30, "{r}");
        // Model time is part of each plan.
        assert!(f(&side["model_us"]["p50"]) > 0.0 && f(&side["model_us"]["p50"]) <= f(&plan["p50"]), "{r}");
        assert!(f(&side["planner_us"]["p50"]) > 0.0, "{r}");
    }
    assert_eq!(r["rollout"], "fused");
    assert_eq!(r["scheduling"], "SCHED_OTHER", "{r}");
    assert_eq!(r["stepped_plan_us"]["count"], 30, "{r}");
    assert!(f(&r["ratio"]) > 0.0 && f(&r["ratio_bound"]) < f(&r["ratio"]), "{r}");
    // locod rolls the prior's 12 trajectories out once per plan, TD-MPC2 in each of 3 iterations.
    let want = (12 * 5 + 256 * 5 + 244 * 5 * 2) as f64 / (12 * 5 + 256 * 5 * 3) as f64;
    assert!((f(&r["flops_per_plan"]) / f(&r["reference_flops_per_plan"]) - want).abs() < 1e-9, "{r}");
    assert!(f(&r["matmul_limit_gflops"]) > 1.0, "{r}");
}

#[test]
fn replay_reproduces_what_the_student_did_in_a_logged_run() {
    let dir = tempfile::tempdir().unwrap();
    let student = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/student.toml");
    let text = std::fs::read_to_string(student)
        .unwrap()
        .replace("../../models/build/", concat!(env!("CARGO_MANIFEST_DIR"), "/models/build/"))
        + &format!("\n[log]\nenabled = true\ndir = \"{}\"\n", dir.path().join("logs").display());
    let config = dir.path().join("student.toml");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(LOCOD)
        .args(["run", "--duration", "4", "--goal", "walk", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(LOCOD)
        .args(["replay", "--json", "--config"])
        .arg(&config)
        .arg(dir.path().join("logs"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["steps"].as_u64().unwrap() > 50, "{r}");
    assert!(r["max_abs_diff"].as_f64().unwrap() < 1e-5, "{r}");
}

#[test]
fn check_opens_what_run_would_open() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let example_text = std::fs::read_to_string(example()).unwrap();
    assert!(!example_text.contains("[teleop]"));
    let with = |extra: &str| format!("{example_text}\n[teleop]\nlisten = [\"tcp/127.0.0.1:0\"]\n{extra}\n");
    let check = |config: &std::path::Path| {
        let out = Command::new(LOCOD).args(["check", "-q", "--config"]).arg(config).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // A zenoh file that is not there: `run` would fail opening teleop.
    let cfg = write("missing.toml", &with("zenoh_config = \"nowhere.json5\""));
    let (code, stderr) = check(&cfg);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("teleop.zenoh_config: zenoh configuration") && stderr.contains("nowhere.json5: no such file"),
        "{stderr}"
    );
    // The operator's file too (what `locod teleop` opens).
    let cfg = write("missing_client.toml", &with("client_zenoh_config = \"nowhere.json5\""));
    let (code, stderr) = check(&cfg);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("teleop.client_zenoh_config:"), "{stderr}");
    // A zenoh file that is not valid.
    write("broken.json5", "{ mode: \"peer\", listen: ");
    let cfg = write("broken.toml", &with("zenoh_config = \"broken.json5\""));
    let (code, stderr) = check(&cfg);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("teleop.zenoh_config: zenoh configuration") && stderr.contains("broken.json5"), "{stderr}");
    // A certificate the zenoh file names that cannot be read.
    write(
        "tls.json5",
        "{ mode: \"peer\", listen: { endpoints: [\"tls/127.0.0.1:0\"] }, transport: { link: { tls: { root_ca_certificate: \"/nonexistent/ca.pem\" } } } }",
    );
    let cfg = write("tls.toml", &with("zenoh_config = \"tls.json5\""));
    let (code, stderr) = check(&cfg);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("root_ca_certificate: /nonexistent/ca.pem"), "{stderr}");
    // A valid zenoh file passes.
    write("ok.json5", "{ mode: \"peer\", listen: { endpoints: [\"tcp/127.0.0.1:0\"] } }");
    let cfg = write("ok.toml", &with("zenoh_config = \"ok.json5\""));
    let (code, stderr) = check(&cfg);
    assert_eq!(code, Some(0), "{stderr}");
}
