//! What a robot gets: `make install` lays out a self-contained tree that runs as an unprivileged
//! user with nothing from the building user's home or environment, and whose systemd unit verifies
//! with its real paths. And the builds the tests make are the builds `make run` makes.
//!
//! Its own test binary, because `make install` makes target/release/locod the robot build for a
//! moment (cargo runs test binaries one after another; the tests here take turns).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// `make install` as a user in the shell that ran the tests would type it.
fn make_install(prefix: &Path) -> Output {
    let mut make = Command::new("make");
    common::shell_env(&mut make)
        // A make of its own, not a sub-make of `make test`.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .current_dir(MANIFEST)
        .arg("install")
        .arg(format!("PREFIX={}", prefix.display()));
    make.output().expect("run make")
}

/// The installed binary as `nobody` (when the tests run as root; else as this user), with a
/// clean environment, a HOME it cannot read, and the temporary root as its working directory.
fn as_unprivileged(root: &Path, locod: &Path, args: &[&str]) -> Output {
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o000)).unwrap();
    // SAFETY: geteuid has no preconditions.
    let root_user = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root_user {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(locod);
        c
    } else {
        Command::new(locod)
    };
    cmd.args(args).env_clear().env("HOME", &home).env("PATH", "/usr/bin:/bin").current_dir(root);
    cmd.output().expect("run the installed locod")
}

#[test]
fn make_install_gives_a_tree_that_runs_unprivileged_and_a_unit_that_verifies() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    // `nobody` must reach the tree (tempdir makes it 0700).
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let prefix = root.path().join("opt/locod");
    let out = make_install(&prefix);
    assert!(out.status.success(), "make install failed:\n{}", text(&out));

    for f in [
        "bin/locod",
        "lib/libtorch_cpu.so",
        "lib/libc10.so",
        "lib/systemd/system/locod.service",
        "lib/systemd/network/80-can.network",
        "lib/udev/rules.d/99-locod.rules",
        "share/locod/config/biwheel-hardware.toml",
        "share/locod/config/biwheel.toml",
        "share/locod/config/zenoh/field-robot.json5",
        "share/locod/models/biwheel/student.pt",
        "share/doc/locod/systemd.md",
    ] {
        assert!(prefix.join(f).is_file(), "{f} is not installed");
    }
    let locod = prefix.join("bin/locod");

    // The robot build: libtorch beside it, no MuJoCo, no simulator.
    let dynamic = Command::new("readelf").arg("-d").arg(&locod).output().expect("readelf (binutils)");
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    assert!(dynamic.contains("[$ORIGIN/../lib]"), "rpath is not $ORIGIN/../lib:\n{dynamic}");
    assert!(!dynamic.contains("mujoco"), "the robot build links MuJoCo:\n{dynamic}");

    // Unprivileged, clean environment, unreadable HOME: whatever it loads comes from the tree.
    let out = as_unprivileged(root.path(), &locod, &["--help"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\n  sim "), "the robot build has `locod sim`");
    let stand = prefix.join("share/locod/config/biwheel.toml");
    let stand = stand.to_str().unwrap();
    let out = as_unprivileged(root.path(), &locod, &["check", "--quiet", "--config", stand]);
    assert!(out.status.success() && text(&out).contains("# ok:"), "locod check failed:\n{}", text(&out));
    let out = as_unprivileged(root.path(), &locod, &["run", "--config", stand, "--duration", "2", "--goal", "stand"]);
    let log = text(&out);
    assert!(out.status.success(), "locod run failed:\n{log}");
    // (Without SCHED_FIFO on a busy machine the loop may overrun: not what this test is about.)
    assert!(log.contains("Passive -> StandUp") && log.contains("(duration elapsed)"), "{log}");

    // The learned controller the robot configuration names loads from the tree (libtorch and the
    // model), and its contract matches the configuration.
    // `check` opens what `run` would, and the field zenoh configuration names the robot's TLS
    // files under /etc/locod, which this machine has not: the copy checked here leaves them out
    // (the robot's CAN and serial devices are absent too, which `check` only warns about).
    let hardware = prefix.join("share/locod/config/biwheel-hardware.toml");
    let field: Vec<String> = std::fs::read_to_string(&hardware)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("zenoh_config") && !l.starts_with("client_zenoh_config"))
        .map(str::to_string)
        .collect();
    let hardware = prefix.join("share/locod/config/biwheel-hardware-no-tls.toml");
    std::fs::write(&hardware, field.join("\n")).unwrap();
    let out = as_unprivileged(root.path(), &locod, &["check", "--quiet", "--config", hardware.to_str().unwrap()]);
    let log = text(&out);
    assert!(out.status.success() && log.contains("# model ok:"), "locod check of the robot's configuration:\n{log}");
    assert!(!log.contains("[balance]"), "the robot's configuration balances:\n{log}");

    // The unit names the installed binary, and systemd accepts it as it is.
    let unit = prefix.join("lib/systemd/system/locod.service");
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        unit_text.contains(&format!("ExecStart={} run --config /etc/locod/robot.toml", locod.display())),
        "{unit_text}"
    );
    assert!(
        !unit_text.contains("=/opt/locod") && !unit_text.contains("file:///opt/locod"),
        "a path outside PREFIX is left:\n{unit_text}"
    );
    match Command::new("systemd-analyze").arg("verify").arg(&unit).output() {
        Err(e) => eprintln!("SKIPPED systemd-analyze verify: {e} (scripts/setup-system.sh test installs it)"),
        Ok(out) => {
            let log = text(&out);
            assert!(out.status.success() && !log.contains("locod.service:"), "systemd-analyze verify:\n{log}");
        }
    }
}

/// The environment of the process that started this test binary (`cargo test`, run from a shell
/// or by `make test`): what `make run`'s cargo also sees.
fn parent_env() -> Option<Vec<(String, String)>> {
    let raw = std::fs::read(format!("/proc/{}/environ", std::os::unix::process::parent_id())).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect(),
    )
}

/// `make test` then `make run` (and back) must not rebuild: the release build the real-time tests
/// make from inside the test suite is fresh for a cargo run from the shell that ran the tests.
#[test]
fn the_tests_release_build_is_fresh_for_the_shell_that_ran_them() {
    let _serial = serial();
    common::release_locod();
    let Some(shell) = parent_env() else {
        eprintln!("SKIPPED: cannot read the parent process's environment");
        return;
    };
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .env_clear()
        .envs(shell)
        .current_dir(MANIFEST)
        .args(["build", "--release", "--bin", "locod", "--message-format=json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rebuilt: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["fresh"] == false)
        .map(|m| m["target"]["name"].as_str().unwrap_or("?").to_string())
        .collect();
    assert!(rebuilt.is_empty(), "the shell's build rebuilt what the tests had built: {rebuilt:?}");
}
