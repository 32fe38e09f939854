//! The shipped systemd unit passes `systemd-analyze verify` (with ExecStart pointed at the built
//! binary); a broken copy does not, so the check is known to bite.

use std::path::Path;
use std::process::Command;

fn verify(unit_text: &str) -> Option<(bool, String)> {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("locod.service");
    std::fs::write(&unit, unit_text).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&unit).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.success() && !text.contains("locod.service:"), text))
}

fn shipped_unit() -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/locod.service")).unwrap();
    text.replace("/opt/locod/bin/locod", env!("CARGO_BIN_EXE_locod"))
}

#[test]
fn the_unit_verifies() {
    let Some((ok, text)) = verify(&shipped_unit()) else {
        eprintln!("systemd-analyze is not installed: skipped (make test installs it)");
        return;
    };
    assert!(ok, "systemd-analyze verify complained:\n{text}");
}

#[test]
fn a_broken_unit_is_caught() {
    let broken = shipped_unit().replace("Type=notify", "Type=notifyy");
    if let Some((ok, text)) = verify(&broken) {
        assert!(!ok, "a bad Type= passed verification:\n{text}");
    }
}

#[test]
fn the_unit_keeps_its_real_time_promises() {
    let unit = shipped_unit();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "LimitRTPRIO=",
        "LimitMEMLOCK=infinity",
        "CPUAffinity=",
        "ReadWritePaths=",
        "DeviceAllow=",
    ] {
        assert!(unit.contains(line), "missing {line}");
    }
    let directives: Vec<&str> = unit.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    assert!(!directives.iter().any(|l| l.starts_with("RestrictRealtime")), "RestrictRealtime= would forbid SCHED_FIFO");
}
