//! The field configuration (config/zenoh/field-*.json5) with certificates generated here by the
//! openssl command-line tool: over TLS with mutual authentication, the operator's certificate
//! commands the robot, while a peer whose certificate the same CA signed but whose common name is
//! not "operator" can watch the telemetry and its commands have no effect.

mod teleop_rig;

use locod::control::messages::{CommandSource, Mode};
use locod::teleop::client::{Link, Outgoing};
use locod::teleop::wire::RequestedMode;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use teleop_rig::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl (Debian's openssl package)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, and certificates it signs for `robot`, `operator` and `intruder`.
fn certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=locod test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n";
    std::fs::write(dir.join("leaf.ext"), ext).unwrap();
    for name in ["robot", "operator", "intruder"] {
        let (key, csr, pem, subj) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("/CN={name}"));
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                "leaf.ext",
            ],
        );
    }
}

/// The shipped field file, pointed at `dir`'s certificates and at a free loopback port.
fn field_file(dir: &Path, name: &str, port: u16, identity: &str) -> std::path::PathBuf {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/zenoh/").to_string() + name).unwrap();
    let tls = format!("{}/", dir.display());
    let text = text
        .replace("/etc/locod/tls/", &tls)
        .replace("tls/0.0.0.0:7447", &format!("tls/127.0.0.1:{port}"))
        .replace("tls/robot.local:7447", &format!("tls/127.0.0.1:{port}"))
        .replace("operator.pem", &format!("{identity}.pem"))
        .replace("operator.key", &format!("{identity}.key"));
    let path = dir.join(format!("{identity}-{name}"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn only_the_operators_certificate_may_command() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let port = free_port();
    let mut c = example();
    let t = c.teleop.as_mut().unwrap();
    t.zenoh_config = Some(field_file(dir.path(), "field-robot.json5", port, "operator").display().to_string());
    let daemon = Daemon::start(&c);

    let client = |identity: &str| {
        let f = field_file(dir.path(), "field-operator.json5", port, identity);
        Link::connect_with(&c, zenoh::Config::from_file(f).unwrap()).unwrap()
    };
    let intruder = client("intruder");
    wait_for(&intruder, "the intruder sees the state", PATIENCE, |_| true);
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end {
        intruder.send(Outgoing::Mode(RequestedMode::StandUp)).unwrap();
        intruder.send(Outgoing::Vel([0.5, 0.0, 0.0])).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = intruder.state().unwrap();
    assert_eq!((s.mode, s.source, s.command.vx), (Mode::Passive, CommandSource::None, 0.0), "{s:?}");

    // The same messages from the operator's certificate take effect, and the daemon never saw
    // the intruder's.
    let operator = client("operator");
    wait_for(&operator, "the operator sees the state", PATIENCE, |_| true);
    operator.send(Outgoing::Mode(RequestedMode::StandUp)).unwrap();
    let end = Instant::now() + Duration::from_millis(600);
    let mut sent = 0;
    while Instant::now() < end {
        operator.send(Outgoing::Vel([0.5, 0.0, 0.0])).unwrap();
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for(&operator, "the operator's commands apply", PATIENCE, |s| {
        s.mode == Mode::StandUp && s.source == CommandSource::Teleop
    });
    let end = Instant::now() + PATIENCE;
    let d = loop {
        if let Some(d) = operator.diag().filter(|d| d.mode.accepted > 0) {
            break d;
        }
        assert!(Instant::now() < end, "no diag");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(d.mode.accepted, 1, "only the operator's mode request reached the daemon: {d:?}");
    assert!(d.vel.accepted <= sent, "only the operator's velocity commands reached the daemon: {d:?}");
    intruder.close();
    operator.close();
    daemon.stop();
}
