//! Hot reload end to end: the daemon (in-memory robot, the test student walking, teleop on a free
//! loopback port, logging on) as its own process, reloaded by SIGHUP, by `cmd/reload` and by
//! `cmd/controller` (the other kind) over a real zenoh session; a broken model is refused and the
//! running one keeps walking; each log file names the model that acted in it.

mod teleop_rig;
#[allow(dead_code)] // each test crate uses part of it
mod test_models;

use locod::config::Config;
use locod::control::messages::{ControllerLevel, Mode};
use locod::teleop::client::Link;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use teleop_rig::{free_port, wait_for};
use zenoh::Wait;

const LOCOD: &str = env!("CARGO_BIN_EXE_locod");
const PATIENCE: Duration = Duration::from_secs(60);

/// tests/data/student.toml with its model copied to `dir` (so that the test can break it), the
/// test world model as a selectable MPPI controller ("planner"), teleop on a free port and
/// logging into `dir/logs`.
fn config(dir: &Path) -> PathBuf {
    let model = dir.join("student.pt");
    std::fs::copy(test_models::path("student.pt").unwrap(), &model).unwrap();
    let wm = test_models::path("world_model.pt").unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/student.toml"))
        .unwrap()
        .replace("model = \"../../models/build/student.pt\"", &format!("model = {:?}", model.display().to_string()));
    // The test world model as a second controller an operator may select.
    let text = format!(
        "{text}\n[[controller.choices]]\nname = \"planner\"\nkind = \"mppi\"\nmodel = {:?}\n\n[mppi]\nseed = 1\n",
        wm.display().to_string()
    );
    assert!(text.contains(&model.display().to_string()), "the test config names its model");
    let text = format!(
        "{text}\n[teleop]\nlisten = [\"tcp/127.0.0.1:{}\"]\n\n[log]\nenabled = true\ndir = {:?}\n",
        free_port(),
        dir.join("logs").display().to_string()
    );
    let path = dir.join("robot.toml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Running {
    child: Option<Child>,
    stderr: PathBuf,
}

impl Running {
    fn start(config: &Path, dir: &Path) -> Running {
        let stderr = dir.join("stderr.txt");
        let child = Command::new(LOCOD)
            .args(["run", "--goal", "walk", "--json", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Running { child: Some(child), stderr }
    }

    fn journal(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until the journal holds `n` lines containing `text`.
    fn wait_journal(&self, text: &str, n: usize) -> String {
        let end = Instant::now() + PATIENCE;
        loop {
            let j = self.journal();
            if j.matches(text).count() >= n {
                return j;
            }
            assert!(Instant::now() < end, "no {n} x {text:?} in the journal:\n{j}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        // SAFETY: plain kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// SIGINT, then the run's output.
    fn stop(mut self) -> std::process::Output {
        self.signal(libc::SIGINT);
        self.child.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
    }
}

fn sha256(path: &Path) -> String {
    locod::types::provenance::sha256_file(path).unwrap()
}

#[test]
fn sighup_cmd_reload_and_cmd_controller_switch_models_between_periods_and_a_broken_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = config(dir.path());
    let cfg = Config::load(&cfg_path).unwrap();
    let model = dir.path().join("student.pt");
    let first = sha256(&model);
    let wm = test_models::path("world_model.pt").unwrap();
    // `check` checks the selectable controller against its own kind.
    let out = Command::new(LOCOD).args(["check", "-q", "--config"]).arg(&cfg_path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("# controller \"planner\" ok:") && stdout.contains("world_model for"), "{stdout}");
    let daemon = Running::start(&cfg_path, dir.path());
    let link = Link::connect(&cfg).unwrap();
    let walking = |s: &locod::teleop::wire::StateMsg| s.mode == Mode::Walk && s.level == ControllerLevel::Primary;
    wait_for(&link, "walking on the student", PATIENCE, walking);

    // SIGHUP: the configured file again, through every check and the warm-up, then a switch.
    daemon.signal(libc::SIGHUP);
    let j = daemon.wait_journal("controller: switched to", 1);
    assert!(j.contains("controller: reload (SIGHUP): default: student"), "{j}");

    // A broken file: refused with the loader's reason, and the student walks on.
    std::fs::write(&model, b"not a TorchScript archive").unwrap();
    daemon.signal(libc::SIGHUP);
    let j = daemon.wait_journal("refused, the running model keeps acting", 1);
    assert!(j.contains(&format!("reload (SIGHUP) of {} refused", model.display())), "{j}");
    std::thread::sleep(Duration::from_millis(500));
    wait_for(&link, "still walking on the student after the refusal", PATIENCE, walking);
    assert_eq!(daemon.journal().matches("controller: switched to").count(), 1);

    // cmd/reload over zenoh names another model (the recurrent student, same contract); `diag`
    // reports the outcome to the operator.
    let gru = test_models::path("student_gru.pt").unwrap();
    let raw = locod::teleop::session::open_blocking(
        locod::teleop::session::zenoh_config(&cfg, locod::teleop::session::Role::Operator).unwrap(),
    )
    .unwrap();
    let key = link.keys().reload.clone();
    let publisher = raw.declare_publisher(key).wait().unwrap();
    std::thread::sleep(Duration::from_millis(300)); // the daemon's subscription is known
    let reports: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let _diag = {
        let reports = reports.clone();
        raw.declare_subscriber(link.keys().diag.clone())
            .callback(move |s| {
                let d: locod::teleop::wire::DiagMsg = serde_json::from_slice(&s.payload().to_bytes()).unwrap();
                reports.lock().unwrap().extend(d.reloads.into_iter().map(|r| format!("{}: {}", r.status, r.message)));
            })
            .wait()
            .unwrap()
    };
    publisher.put(format!("{{\"model\": {:?}}}", gru.display().to_string())).wait().unwrap();
    let j = daemon.wait_journal("controller: switched to", 2);
    assert!(j.contains("controller: reload (cmd/reload): default: student (recurrent)"), "{j}");
    wait_for(&link, "walking on the recurrent student", PATIENCE, walking);
    let end = Instant::now() + PATIENCE;
    while !reports.lock().unwrap().iter().any(|r| r.starts_with("switched:") && r.contains("student_gru.pt")) {
        assert!(Instant::now() < end, "diag never reported the switch: {:?}", reports.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    // A malformed request is counted and never reaches the reload thread.
    publisher.put("{\"model\": 3}").wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(daemon.journal().matches("controller: reload (cmd/reload)").count(), 1);

    // A model outside the configured models' directories ([controller] reload_dirs' default):
    // refused before it is opened, even by way of `..`.
    let elsewhere = tempfile::tempdir().unwrap();
    let stray = elsewhere.path().join("student.pt");
    std::fs::copy(test_models::path("student.pt").unwrap(), &stray).unwrap();
    let sneaky = dir.path().join("..").join(stray.strip_prefix(std::env::temp_dir()).unwrap_or(&stray));
    for named in [&stray, &sneaky] {
        publisher.put(format!("{{\"model\": {:?}}}", named.display().to_string())).wait().unwrap();
    }
    let j = daemon.wait_journal("reload_dirs: ", 2);
    assert!(j.contains("it is outside the directories a reload may name a model in"), "{j}");
    assert_eq!(j.matches("controller: switched to").count(), 2, "{j}");

    // cmd/controller selects the configured MPPI controller (the other kind), then back: the
    // default controller's file is read again (repaired first), and `state` names the kind.
    let select = raw.declare_publisher(link.keys().controller.clone()).wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    select.put("{\"name\": \"nope\"}").wait().unwrap();
    let j = daemon.wait_journal("no controller \"nope\" is configured; expected one of: default, planner", 1);
    assert_eq!(j.matches("controller: switched to").count(), 2, "{j}");
    select.put("{\"name\": \"planner\"}").wait().unwrap();
    let j = daemon.wait_journal("controller: switched to", 3);
    assert!(j.contains("controller: switched to planner (mppi: "), "{j}");
    wait_for(&link, "walking on the planner", PATIENCE, |s| s.mode == Mode::Walk && s.controller == "mppi");
    std::fs::copy(test_models::path("student.pt").unwrap(), &model).unwrap();
    select.put("{\"name\": \"default\"}").wait().unwrap();
    let j = daemon.wait_journal("controller: switched to", 4);
    assert!(j.contains("controller: switched to default (student: "), "{j}");
    wait_for(&link, "walking on the student again", PATIENCE, |s| s.controller == "student" && walking(s));
    drop(select);
    drop(publisher);
    raw.close().wait().unwrap();
    link.close();

    let out = daemon.stop();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["final_mode"], "passive", "{summary}");

    // The logs: files before the first switch name the first model, later ones the recurrent
    // student, the world model, then the first model again; none names the refused file's
    // contents.
    let files = locod::log::read::log_files(&dir.path().join("logs")).unwrap();
    let shas: Vec<String> = files
        .iter()
        .map(|f| locod::log::read::read_file(f).unwrap().metadata["model.controller.sha256"].clone())
        .collect();
    let mut seen: Vec<&String> = shas.iter().collect();
    seen.dedup();
    assert_eq!(seen, [&first, &sha256(&gru), &sha256(&wm), &first], "{files:?}");
}
