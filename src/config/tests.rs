//! Configuration tests: the shipped examples load, and every kind of mistake names file, line and key.

use super::*;

fn example() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml")).unwrap()
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("robot.toml"))
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn the_example_loads_and_round_trips() {
    let c = parse(&example()).unwrap();
    assert_eq!(c.robot.name, "biwheel");
    assert_eq!(c.joints.len(), 6);
    assert_eq!(c.joint_index("right_wheel"), Some(5));
    assert_eq!(c.joints[2].mode, JointMode::Velocity);
    // The printed configuration is itself a valid configuration with the same content.
    let again = parse(&c.to_toml()).unwrap();
    assert_eq!(again.joints, c.joints);
    assert_eq!(again.rate, c.rate);
    assert_eq!(again.safety, c.safety);
}

#[test]
fn defaults_fill_omitted_sections() {
    let minimal = "[robot]\nname = \"r\"\n[[bus]]\nname = \"b\"\nkind = \"mem\"\n[[joint]]\nname = \"j\"\nbus = \"b\"\nmotor = \"ak60_6\"\ncan_id = 1\npos_min_rad = -1.0\npos_max_rad = 1.0\nvel_max_radps = 10.0\ntorque_max_nm = 5.0\nstand_kp = 10.0\nstand_kd = 0.5\ndamping_kd = 1.0\n[imu]\nkind = \"mem\"\n";
    let c = parse(minimal).unwrap();
    assert_eq!(c.rate.control_hz, 500);
    assert_eq!(c.rate.policy_hz, 50);
    assert_eq!(c.joints[0].direction, 1);
    assert_eq!(c.safety, Safety::default());
}

#[test]
fn an_unknown_key_names_its_line() {
    let text = example().replace("tilt_limit_deg = 45.0", "tilt_limt_deg = 45.0");
    let e = err(&text);
    let line = text.lines().position(|l| l.starts_with("tilt_limt_deg")).unwrap() + 1;
    assert!(e.starts_with(&format!("robot.toml:{line}:")), "{e}");
    assert!(e.contains("unknown field `tilt_limt_deg`"), "{e}");
}

#[test]
fn a_wrong_type_names_its_line() {
    let text = example().replace("control_hz = 500", "control_hz = \"fast\"");
    let e = err(&text);
    let line = text.lines().position(|l| l.starts_with("control_hz")).unwrap() + 1;
    assert!(e.starts_with(&format!("robot.toml:{line}:")), "{e}");
}

#[test]
fn a_joint_on_an_undefined_bus_is_located() {
    let text = example().replacen(
        "bus = \"can0\"\nmotor = \"ak80_9\"\ncan_id = 0x02",
        "bus = \"can1\"\nmotor = \"ak80_9\"\ncan_id = 0x02",
        1,
    );
    let e = err(&text);
    let line = text.lines().position(|l| l == "bus = \"can1\"").unwrap() + 1;
    assert_eq!(e, format!("robot.toml:{line}:1: joint[1].bus: bus \"can1\" is not defined; expected one of: can0"));
}

#[test]
fn unordered_limits_are_refused() {
    let text = example().replacen("pos_min_rad = -0.5", "pos_min_rad = 2.0", 1);
    let e = err(&text);
    assert!(e.contains("joint[0].pos_max_rad: expected pos_min_rad < pos_max_rad"), "{e}");
}

#[test]
fn rates_must_divide() {
    let e = err(&example().replace("policy_hz = 50", "policy_hz = 30"));
    assert!(e.contains("loop.policy_hz: policy_hz 30 must divide control_hz 500"), "{e}");
}

#[test]
fn duplicate_can_ids_and_bad_directions_are_refused() {
    let e = err(&example().replace("can_id = 0x02", "can_id = 0x01"));
    assert!(e.contains("joint[1].can_id: CAN id 0x1 is used twice on bus \"can0\""), "{e}");
    let e = err(&example().replacen("direction = 1\n", "direction = 2\n", 1));
    assert!(e.contains("joint[0].direction: expected 1 or -1, got 2"), "{e}");
}

#[test]
fn a_position_joint_needs_limits_and_a_default_inside_them() {
    let e = err(&example().replacen("default_pos_rad = 0.6", "default_pos_rad = 3.0", 1));
    assert!(e.contains("joint[0].default_pos_rad: 3 is outside the joint's limits"), "{e}");
    let e = err(&example().replacen("pos_min_rad = -0.5\n", "", 1));
    assert!(e.contains("joint[0].pos_min_rad: a position joint needs"), "{e}");
}

#[test]
fn timeouts_shorter_than_a_period_are_refused() {
    let e = err(&example().replace("imu_timeout_ms = 20.0", "imu_timeout_ms = 1.0"));
    assert!(e.contains("safety.imu_timeout_ms: 1 ms is shorter than one control period (2 ms)"), "{e}");
}

#[test]
fn policy_priority_must_be_below_control() {
    let e = err(&example().replace("policy_priority = 70", "policy_priority = 90"));
    assert!(e.contains("loop.policy_priority: the policy thread must run below"), "{e}");
}

#[test]
fn syntax_errors_and_missing_files_are_errors_not_panics() {
    let e = err("[robot\nname = 1");
    assert!(e.starts_with("robot.toml:1:"), "{e}");
    let e = Config::load(Path::new("/nonexistent/x.toml")).unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/x.toml: "), "{e}");
}

#[test]
fn log_section_defaults_and_located_mistakes() {
    let c = parse(&example()).unwrap();
    assert!(!c.log.enabled);
    assert_eq!(c.log.compression, LogCompression::Zstd);
    let text = example().replace("fsync_interval_ms = 500.0", "fsync_interval_ms = 5000.0");
    let e = err(&text);
    let line = text.lines().position(|l| l.starts_with("fsync_interval_ms")).unwrap() + 1;
    assert!(e.starts_with(&format!("robot.toml:{line}:")), "{e}");
    assert!(e.contains("log.fsync_interval_ms: expected at most 1000 ms"), "{e}");
    let e = err(&example().replace("quota_mb = 4096.0", "quota_mb = -1.0"));
    assert!(e.contains("log.quota_mb: expected a positive finite number, got -1"), "{e}");
    let e = err(&example().replace("compression = \"zstd\"", "compression = \"gzip\""));
    assert!(e.contains("unknown variant `gzip`"), "{e}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = parse(&text);
    }

    #[test]
    fn mutated_examples_never_panic(cut in 0usize..4000, insert in "[=\\[\\]\"a-z0-9 .\n-]{0,12}") {
        let mut text = example();
        let at = cut.min(text.len());
        if text.is_char_boundary(at) {
            text.insert_str(at, &insert);
        }
        let _ = parse(&text);
    }
}

#[test]
fn teleop_is_optional_and_its_mistakes_are_located() {
    // config/sim.toml has the commented [teleop] section; the in-memory example has none.
    assert_eq!(parse(&example()).unwrap().teleop, None);
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sim.toml")).unwrap();
    let c = parse(&text).unwrap();
    assert_eq!(c.teleop_prefix(), "locod/biwheel");
    assert_eq!(c.teleop.as_ref().unwrap().listen, ["tcp/127.0.0.1:7447"]);
    let start = text.find("[teleop]").unwrap();
    let end = start + text[start..].find("\n[").unwrap();
    let without = parse(&format!("{}{}", &text[..start], &text[end..])).unwrap();
    assert_eq!(without.teleop, None);
    // An empty prefix means locod/<robot name>.
    let c = parse(&text.replace("prefix = \"locod/biwheel\"", "prefix = \"\"")).unwrap();
    assert_eq!(c.teleop_prefix(), "locod/biwheel");

    let line_of = |t: &str, key: &str| t.lines().position(|l| l.starts_with(key)).unwrap() + 1;
    for (from, to, key, says) in [
        ("prefix = \"locod/biwheel\"", "prefix = \"locod/*\"", "prefix", "no wildcards"),
        ("listen = [\"tcp/127.0.0.1:7447\"]", "listen = [\"udp/1.2.3.4\"]", "listen", "tcp/<address>:<port>"),
        ("state_hz = 20.0", "state_hz = 600.0", "state_hz", "at most control_hz (500)"),
        ("max_payload_bytes = 1024", "max_payload_bytes = 10", "max_payload_bytes", "64..=65536"),
        ("send_hz = 20.0", "send_hz = 5.0", "send_hz", "at least two sends must fit"),
        ("ros_cmd_vel_key = \"cmd_vel\"", "ros_cmd_vel_key = \"a//b\"", "ros_cmd_vel_key", "key expression"),
    ] {
        let bad = text.replace(from, to);
        let e = err(&bad);
        let line = line_of(&bad, key);
        assert!(e.starts_with(&format!("robot.toml:{line}:")), "{e}");
        assert!(e.contains(&format!("teleop.{key}")) && e.contains(says), "{e}");
    }
    let e = err(&text.replace("key_hold_ms = 600.0", "key_hold_mss = 600.0"));
    assert!(e.contains("unknown field `key_hold_mss`"), "{e}");
}

#[test]
fn a_learned_controller_needs_a_model_and_a_valid_device() {
    let e = err(&example().replace("kind = \"none\"", "kind = \"student\""));
    assert!(e.contains("controller.kind: kind = \"student\" needs a TorchScript file: set controller.model"), "{e}");
    let text = example().replace("kind = \"none\"", "kind = \"mppi\"\nmodel = \"wm.pt\"\ndevice = \"gpu0\"");
    let e = err(&text);
    let line = text.lines().position(|l| l.starts_with("device = ")).unwrap() + 1;
    assert_eq!(
        e,
        format!("robot.toml:{line}:1: controller.device: expected \"cpu\", \"cuda\" or \"cuda:N\", got \"gpu0\"")
    );
    let e = err(&example().replace("kind = \"none\"", "kind = \"none\"\nthreads = 0"));
    assert!(e.contains("controller.threads: expected 1..=256 threads, got 0"), "{e}");
}

#[test]
fn model_paths_resolve_against_the_configuration_file() {
    let text = example().replace("kind = \"none\"", "kind = \"student\"\nmodel = \"models/s.pt\"\ndevice = \"cuda:1\"");
    let c = Config::parse(&text, Path::new("/etc/locod/robot.toml")).unwrap();
    assert_eq!(c.model_path(), Some(PathBuf::from("/etc/locod/models/s.pt")));
    assert_eq!(c.controller.kind, ControllerKind::Student);
    let text = text.replace("models/s.pt", "/opt/m.pt");
    let c = Config::parse(&text, Path::new("robot.toml")).unwrap();
    assert_eq!(c.model_path(), Some(PathBuf::from("/opt/m.pt")));
}

#[test]
fn mppi_overrides_are_checked_and_located() {
    let base = example() + "\n[mppi]\nsamples = 128\nbudget_ms = 8.0\n";
    let c = parse(&base).unwrap();
    assert_eq!((c.mppi.samples, c.mppi.horizon), (Some(128), None));
    assert_eq!(c.mppi.budget_ms(&c.rate), 8.0);
    assert_eq!(Mppi::default().budget_ms(&c.rate), 10.0); // half the 20 ms policy period
    let e = err(&(example() + "\n[mppi]\nsamples = 16\nelites = 32\n"));
    assert!(e.contains("mppi.elites: 32 elites of 16 samples"), "{e}");
    let text = example() + "\n[mppi]\nbudget_ms = 25.0\n";
    let e = err(&text);
    let line = text.lines().position(|l| l.starts_with("budget_ms")).unwrap() + 1;
    assert!(e.starts_with(&format!("robot.toml:{line}:1: mppi.budget_ms: 25 ms leaves no time")), "{e}");
    let e = err(&(example() + "\n[mppi]\ngamma = 1.5\n"));
    assert!(e.contains("mppi.gamma: expected 0 < gamma <= 1"), "{e}");
    let e = err(&(example() + "\n[mppi]\nhorizon = 5\nsample = 3\n"));
    assert!(e.contains("unknown field `sample`"), "{e}");
}

/// One bad configuration: the edit to the example (`from` → `to`, first occurrence) and what the
/// error must say. Every error also starts with the file, line and column.
struct Bad {
    from: &'static str,
    to: String,
    says: &'static str,
}

fn bad(from: &'static str, to: impl Into<String>, says: &'static str) -> Bad {
    Bad { from, to: to.into(), says }
}

#[test]
fn bad_configurations_are_refused_naming_file_line_column_and_key() {
    let cases = [
        // Arrays of the wrong length (serde alone keeps the first elements of a longer one).
        bad(
            "max_vel = [1.0, 0.5, 1.5]",
            "max_vel = [1.0, 0.5, 1.5, 2.0]",
            "command.max_vel: expected 3 numbers, got 4",
        ),
        bad("max_vel = [1.0, 0.5, 1.5]", "max_vel = [1.0, 0.5]", "command.max_vel: expected 3 numbers, got 2"),
        bad("max_accel = [2.0, 2.0, 4.0]", "max_accel = [2.0, 2.0, 4.0, 8.0]", "command.max_accel: expected 3 numbers"),
        bad(
            "mounting_rpy_deg = [0.0, 0.0, 0.0]",
            "mounting_rpy_deg = [0.0, 0.0, 0.0, 0.0]",
            "imu.mounting_rpy_deg: expected 3",
        ),
        bad(
            "mounting_rpy_deg = [0.0, 0.0, 0.0]",
            "filter_gains = [1.0, 0.01, 0.5]",
            "imu.filter_gains: expected 2 numbers, got 3",
        ),
        // Robot names go into file names and zenoh keys.
        bad("name = \"biwheel\"", "name = \"../../escape\"", "robot.name: \"../../escape\" contains '.'"),
        bad("name = \"biwheel\"", "name = \"a/b\"", "robot.name: \"a/b\" contains '/'"),
        bad("name = \"biwheel\"", "name = \"two words\"", "robot.name: \"two words\" contains ' '"),
        bad("name = \"biwheel\"", "name = \"\"", "robot.name: expected a robot name"),
        bad(
            "name = \"biwheel\"",
            format!("name = \"{}\"", "x".repeat(10 << 20)),
            "robot.name: expected at most 64 characters",
        ),
        // Gains beyond the motor's MIT-mode ranges (ak80_9: kp 0..500, kd 0..5).
        bad(
            "stand_kp = 40.0",
            "stand_kp = 900.0",
            "joint[0].stand_kp: 900 is beyond what a ak80_9 can be commanded (kp 0..500",
        ),
        bad(
            "stand_kd = 1.0",
            "stand_kd = 7.0",
            "joint[0].stand_kd: 7 is beyond what a ak80_9 can be commanded (kd 0..5",
        ),
        bad("damping_kd = 1.5", "damping_kd = 5.5", "joint[0].damping_kd: 5.5 is beyond"),
        // Type errors and duplicate keys name the key.
        bad(
            "control_hz = 500",
            "control_hz = \"fast\"",
            "loop.control_hz: invalid type: string \"fast\", expected u32",
        ),
        bad("can_id = 0x02", "can_id = \"two\"", "joint[1].can_id: invalid type: string \"two\""),
        bad("max_vel = [1.0, 0.5, 1.5]", "max_vel = [1.0, \"x\", 1.5]", "command.max_vel"),
        bad("name = \"biwheel\"", "name = \"biwheel\"\nname = \"again\"", "robot.name: duplicate key"),
        bad("can_id = 0x02", "can_id = 0x02\ncan_id = 0x07", "joint[1].can_id: duplicate key"),
        bad("[robot]", "[robot]\nname = \"x\"\n[robot]", "robot: duplicate key"),
    ];
    let example = example();
    for Bad { from, to, says } in &cases {
        assert!(example.contains(from), "{from:?} is not in the example");
        let text = example.replacen(from, to, 1);
        let e = match parse(&text) {
            Ok(_) => panic!("accepted: {from:?} -> {to:.80?}"),
            Err(e) => e,
        };
        let shown = e.to_string();
        let shown = &shown[..shown.len().min(400)];
        assert!(e.line_col.is_some() && shown.starts_with("robot.toml:"), "no line and column: {shown}");
        assert!(e.key.is_some(), "no key: {shown}");
        assert!(shown.contains(says), "{from:?} -> {to:.80?}\n  said: {shown}\n  want: {says}");
    }
}

#[test]
fn degrade_limits_default_by_robot_kind_and_are_validated() {
    // The in-memory stand has no [balance]: faults damp as before, but a stale depth sensor only
    // stops a terrain-reading policy walking.
    let c = parse(&example()).unwrap();
    let l = c.degrade_limits();
    assert_eq!((l.imu_stale_ms, l.deadline_overruns_ms, l.motor_silent_ms, l.depth_stale_ms), (0.0, 0.0, 0.0, 5000.0));
    // A robot that balances on wheels falls when damped: it degrades by default.
    let sim = Config::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sim.toml"))).unwrap();
    let l = sim.degrade_limits();
    assert!(l.imu_stale_ms > 0.0 && l.deadline_overruns_ms > 0.0 && l.motor_silent_ms > 0.0, "{l:?}");
    // Set keys win over the kind's defaults, and round-trip.
    let c = parse(&(example() + "\n[safety.degrade]\nimu_stale_ms = 80.0\n")).unwrap();
    assert_eq!(c.degrade_limits().imu_stale_ms, 80.0);
    assert_eq!(parse(&c.to_toml()).unwrap().safety, c.safety);
    let e = err(&(example() + "\n[safety.degrade]\ndepth_stale_ms = -1.0\n"));
    assert!(e.contains("safety.degrade.depth_stale_ms: expected a finite number >= 0, got -1"), "{e}");
    let e = err(&(example() + "\n[safety.degrade]\ntilt_ms = 100.0\n"));
    assert!(e.contains("tilt_ms"), "{e}");
}

#[test]
fn reload_dirs_default_to_the_configured_models_directories() {
    let learned = example().replace("kind = \"none\"", "kind = \"student\"\nmodel = \"models/s.pt\"");
    let choice = "\n[[controller.choices]]\nname = \"p\"\nkind = \"mppi\"\nmodel = \"/opt/wm/m.pt\"\n";
    let c = parse(&format!("{learned}{choice}")).unwrap();
    assert_eq!(c.reload_dirs(), [PathBuf::from("/opt/wm"), PathBuf::from("models")]);
    let set = learned
        .replace("model = \"models/s.pt\"", "model = \"models/s.pt\"\nreload_dirs = [\"/var/lib/locod\", \"x\"]");
    let c = parse(&set).unwrap();
    assert_eq!(c.reload_dirs(), [PathBuf::from("/var/lib/locod"), PathBuf::from("x")]);
    assert_eq!(parse(&c.to_toml()).unwrap().controller.reload_dirs, c.controller.reload_dirs);
    assert!(parse(&example()).unwrap().reload_dirs().is_empty(), "no model, nothing to reload from");
}

#[test]
fn controller_choices_and_the_shadow_are_checked_and_located() {
    let learned = example().replace("kind = \"none\"", "kind = \"student\"\nmodel = \"s.pt\"");
    let choice = |name: &str, kind: &str| {
        format!("\n[[controller.choices]]\nname = \"{name}\"\nkind = \"{kind}\"\nmodel = \"m.pt\"\n")
    };
    let c = parse(&format!("{learned}{}", choice("planner", "mppi"))).unwrap();
    let planner = c.with_controller("planner").unwrap();
    assert_eq!(
        (planner.controller.kind, planner.controller.model),
        (ControllerKind::Mppi, Some(PathBuf::from("m.pt")))
    );
    assert_eq!(c.with_controller("default").unwrap().controller.kind, ControllerKind::Student);
    assert!(c.with_controller("nope").is_none());
    for (text, says) in [
        (format!("{learned}{}", choice("default", "mppi")), "controller.choices[0].name: \"default\" is taken"),
        (
            format!("{learned}{}{}", choice("a", "mppi"), choice("a", "student")),
            "controller.choices[1].name: \"a\" is taken",
        ),
        (format!("{learned}{}", choice("../x", "mppi")), "controller.choices[0].name: \"../x\": expected 1 to 64"),
        (
            format!("{learned}{}", choice("b", "balance")),
            "controller.choices[0].kind: a selectable controller is learned",
        ),
        (
            format!("{}{}", example(), choice("b", "mppi")),
            "controller.choices: choices are selected on the policy thread",
        ),
        (
            learned.replace("model = \"s.pt\"", "model = \"s.pt\"\nshadow = \"c.pt\""),
            "controller.shadow: the shadow's steps are only logged",
        ),
        (
            example().replace("kind = \"none\"", "kind = \"none\"\nshadow = \"c.pt\""),
            "controller.shadow: a shadow runs beside a learned controller",
        ),
    ] {
        let e = err(&text);
        assert!(e.contains(says), "{e}\nexpected: {says}");
    }
}

#[test]
fn leveling_mistakes_name_the_key() {
    let sim = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sim.toml")).unwrap();
    let joints = "level_joints = [\"left_hip\", \"right_hip\"]";
    assert!(sim.contains(joints));
    let c = parse(&sim).unwrap();
    let b = c.balance.as_ref().unwrap();
    assert_eq!((b.level_joints.len(), b.k_level), (2, 0.1));
    for (from, to, expected) in [
        (
            joints,
            "level_joints = [\"left_hip\", \"left_wheel\"]",
            "balance.level_joints[1]: joint \"left_wheel\" must hold a position",
        ),
        (
            joints,
            "level_joints = [\"left_hip\", \"left_hip\"]",
            "balance.level_joints[1]: joint \"left_hip\" is listed twice",
        ),
        (joints, "level_joints = [\"hip\"]", "balance.level_joints[0]: joint \"hip\" is not defined"),
        (joints, "level_joints = []", "balance.k_level: leveling needs both level_joints and a non-zero k_level"),
        ("k_level = 0.1", "k_level = 0.0", "balance.level_joints: leveling needs both"),
        ("k_level = 0.1", "k_level = 50.0", "balance.k_level: expected a finite rate within ±5 rad/s per rad, got 50"),
        ("level_max_rad = 0.3", "level_max_rad = 0.0", "balance.level_max_rad: expected an angle in (0, 1] rad, got 0"),
    ] {
        let e = err(&sim.replace(from, to));
        assert!(e.contains(expected), "{to}: {e}");
    }
}
