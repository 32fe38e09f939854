//! Contract refusals: one test per check, each naming the field.

use super::*;
use serde_json::json;

fn config() -> Config {
    Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/biwheel.toml"))).unwrap()
}

fn joint(name: &str, pos: f64, mode: &str) -> Value {
    json!({"name": name, "default_pos": pos, "mode": mode, "action_scale": 0.25, "kp": 40.0, "kd": 1.0})
}

/// A valid student contract for config/biwheel.toml.
pub(crate) fn spec() -> Value {
    json!({
        "contract": 1, "kind": "policy", "robot": "biwheel", "control_hz": 50,
        "joints": [joint("left_hip", 0.6, "position"), joint("left_knee", -1.2, "position"),
                   joint("left_wheel", 0.0, "velocity"), joint("right_hip", 0.6, "position"),
                   joint("right_knee", -1.2, "position"), joint("right_wheel", 0.0, "velocity")],
        "obs": [{"name": "base_ang_vel", "scale": 0.25}, {"name": "projected_gravity", "scale": 1.0},
                {"name": "command", "scale": [2.0, 2.0, 0.25]}, {"name": "joint_pos", "scale": 1.0},
                {"name": "joint_vel", "scale": 0.05, "history": 3}, {"name": "last_action", "scale": 1.0}],
        "action": {"dim": 6, "clip": 1.0}
    })
}

fn wm_spec() -> Value {
    let mut s = spec();
    s["kind"] = json!("world_model");
    s["latent_dim"] = json!(64);
    s["planner"] = json!({"horizon": 5, "samples": 256, "elites": 32, "iterations": 3, "temperature": 0.5,
                          "min_std": 0.05, "max_std": 2.0, "prior_samples": 12, "gamma": 0.99});
    s
}

fn parse_err(v: Value) -> ContractError {
    Contract::parse(&v.to_string()).unwrap_err()
}

fn config_err(v: Value, kind: ModelKind, sensors: &[String]) -> ContractError {
    Contract::parse(&v.to_string()).unwrap().check_config(&config(), kind, sensors).unwrap_err()
}

#[test]
fn a_valid_contract_parses_with_its_dimensions() {
    let c = Contract::parse(&spec().to_string()).unwrap();
    assert_eq!(c.obs_dim(), 3 + 3 + 3 + 6 + 18 + 6);
    assert_eq!(c.obs[2].scale, vec![2.0, 2.0, 0.25]);
    assert_eq!(c.obs[4].scale, vec![0.05; 6]);
    assert_eq!(c.joints[2].mode, JointMode::Velocity);
    assert_eq!(c.check_config(&config(), ModelKind::Policy, &[]).unwrap(), Vec::<String>::new());
    let w = Contract::parse(&wm_spec().to_string()).unwrap();
    assert_eq!(w.planner.unwrap().prior_samples, 12);
}

#[test]
fn the_planner_centre_is_last_plan_unless_the_model_says_prior() {
    use crate::config::PlanCentre;
    assert_eq!(Contract::parse(&wm_spec().to_string()).unwrap().planner.unwrap().centre, PlanCentre::LastPlan);
    let mut s = wm_spec();
    s["planner"]["centre"] = json!("prior");
    assert_eq!(Contract::parse(&s.to_string()).unwrap().planner.unwrap().centre, PlanCentre::Prior);
    s["planner"]["centre"] = json!("middle");
    let e = parse_err(s.clone());
    assert_eq!(e.field, "planner.centre");
    assert!(e.message.contains("expected \"last_plan\" or \"prior\""), "{e}");
    s["planner"]["centre"] = json!("prior");
    s["planner"]["prior_samples"] = json!(0);
    let e = parse_err(s);
    assert_eq!(e.field, "planner.centre");
    assert!(e.message.contains("needs prior_samples >= 1"), "{e}");
}

#[test]
fn the_contract_version_must_be_1() {
    let mut s = spec();
    s["contract"] = json!(2);
    let e = parse_err(s);
    assert_eq!(e.field, "contract");
    assert!(e.message.contains("reads contract version 1, the model has 2"), "{e}");
}

#[test]
fn the_kind_must_match_the_configured_controller() {
    let e = config_err(spec(), ModelKind::WorldModel, &[]);
    assert_eq!(e.field, "kind");
    assert!(e.to_string().contains("the model is a \"policy\", the configured controller needs a \"world_model\""));
    let mut s = spec();
    s["kind"] = json!("critic");
    assert_eq!(parse_err(s).field, "kind");
}

#[test]
fn every_joint_must_exist_in_the_configuration() {
    let mut s = spec();
    s["joints"][4]["name"] = json!("right_ankle");
    let e = config_err(s, ModelKind::Policy, &[]);
    assert_eq!(e.field, "joints[4].name");
    assert!(e.message.contains("joint \"right_ankle\" is not in the configuration"), "{e}");
}

#[test]
fn every_configured_joint_needs_an_action_and_the_same_mode() {
    let mut s = spec();
    s["joints"].as_array_mut().unwrap().pop();
    s["action"]["dim"] = json!(5);
    let e = config_err(s, ModelKind::Policy, &[]);
    assert_eq!(e.field, "joints");
    assert!(e.message.contains("\"right_wheel\" has no action"), "{e}");
    let mut s = spec();
    s["joints"][2]["mode"] = json!("position");
    assert_eq!(config_err(s, ModelKind::Policy, &[]).field, "joints[2].mode");
}

#[test]
fn the_action_dimension_must_equal_the_number_of_joints() {
    let mut s = spec();
    s["action"]["dim"] = json!(12);
    let e = parse_err(s);
    assert_eq!(e.field, "action.dim");
    assert!(e.message.contains("is 12, but `joints` lists 6 joints"), "{e}");
}

#[test]
fn every_term_must_be_known() {
    let mut s = spec();
    s["obs"][3]["name"] = json!("foot_contact");
    let e = parse_err(s);
    assert_eq!(e.field, "obs[3].name");
    assert!(e.message.contains("unknown observation term \"foot_contact\""), "{e}");
    let mut s = spec();
    s["obs"][0]["rows"] = json!(3);
    assert_eq!(parse_err(s).field, "obs[0].rows");
}

#[test]
fn scales_clips_and_history_are_checked() {
    let mut s = spec();
    s["obs"][2]["scale"] = json!([1.0, 2.0]);
    let e = parse_err(s);
    assert_eq!(e.field, "obs[2].scale");
    assert!(e.message.contains("a list of 2 scales for a term of dimension 3"), "{e}");
    let mut s = spec();
    s["obs"][0]["clip"] = json!([1.0, -1.0]);
    assert_eq!(parse_err(s).field, "obs[0].clip");
    let mut s = spec();
    s["obs"][4]["history"] = json!(0);
    assert_eq!(parse_err(s).field, "obs[4].history");
    let mut s = spec();
    s["obs"][0]["scale"] = json!("big");
    assert_eq!(parse_err(s).field, "obs[0].scale");
}

#[test]
fn the_training_rate_must_be_the_policy_rate() {
    let mut s = spec();
    s["control_hz"] = json!(100);
    let e = config_err(s, ModelKind::Policy, &[]);
    assert_eq!(e.field, "control_hz");
    assert!(e.message.contains("trained at 100 Hz, [loop] policy_hz is 50"), "{e}");
}

#[test]
fn a_robot_name_mismatch_is_a_warning() {
    let mut s = spec();
    s["robot"] = json!("other");
    let w = Contract::parse(&s.to_string()).unwrap().check_config(&config(), ModelKind::Policy, &[]).unwrap();
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("robot: the model was trained for \"other\""), "{w:?}");
}

#[test]
fn terrain_terms_are_refused_without_depth_sensors() {
    let mut s = spec();
    s["obs"].as_array_mut().unwrap().push(json!({"name": "height_scan", "scale": 1.0, "rows": 11, "cols": 7,
        "resolution": 0.1, "center": [0.3, 0.0], "offset": 0.4, "fill": 0.0}));
    let e = config_err(s.clone(), ModelKind::Policy, &[]);
    assert_eq!(e.field, "obs[6].name");
    assert!(e.message.contains("this configuration has no depth sensors"), "{e}");
    assert!(Contract::parse(&s.to_string())
        .unwrap()
        .check_config(&config(), ModelKind::Policy, &["front".into()])
        .is_ok());

    let mut s = spec();
    s["obs"].as_array_mut().unwrap().push(json!({"name": "depth", "scale": 1.0, "sensors": ["front", "rear"],
        "zones": 16, "max_range": 2.0}));
    let e = config_err(s.clone(), ModelKind::Policy, &[]);
    assert_eq!(e.field, "obs[6].sensors[0]");
    assert!(e.message.contains("this configuration has no depth sensors"), "{e}");
    let e = config_err(s, ModelKind::Policy, &["front".into()]);
    assert_eq!(e.field, "obs[6].sensors[1]");
    assert!(e.message.contains("\"rear\" is not configured; configured: front"), "{e}");
}

#[test]
fn height_and_depth_terms_have_their_dimensions() {
    let mut s = spec();
    s["obs"] = json!([{"name": "height_scan", "scale": 1.0, "rows": 11, "cols": 7, "resolution": 0.1,
                       "center": [0.3, 0.0], "offset": 0.4, "fill": 0.0},
                      {"name": "depth", "scale": 0.5, "sensors": ["a", "b"], "zones": 16, "max_range": 2.0}]);
    let c = Contract::parse(&s.to_string()).unwrap();
    assert_eq!(c.obs_dim(), 77 + 32);
    let mut s2 = s.clone();
    s2["obs"][0].as_object_mut().unwrap().remove("fill");
    assert_eq!(parse_err(s2).field, "obs[0].fill");
    s["obs"][0]["rows"] = json!(40);
    s["obs"][0]["cols"] = json!(40);
    let e = parse_err(s);
    assert_eq!(e.field, "obs");
    assert!(e.message.contains("1632 values; locod records at most 1024"), "{e}");
}

#[test]
fn world_models_need_a_latent_and_sane_planner_defaults() {
    let mut s = wm_spec();
    s.as_object_mut().unwrap().remove("latent_dim");
    assert_eq!(parse_err(s).field, "latent_dim");
    let mut s = wm_spec();
    s["planner"]["elites"] = json!(300);
    assert_eq!(parse_err(s).field, "planner.elites");
    let mut s = wm_spec();
    s["planner"]["gamma"] = json!(1.5);
    assert_eq!(parse_err(s).field, "planner.gamma");
    let mut s = wm_spec();
    s["planner"]["min_std"] = json!(3.0);
    assert_eq!(parse_err(s).field, "planner.min_std");
    let mut s = wm_spec();
    s["planner"].as_object_mut().unwrap().remove("horizon");
    assert_eq!(parse_err(s).field, "planner.horizon");
}

#[test]
fn malformed_json_and_missing_fields_are_errors() {
    assert_eq!(Contract::parse("{not json").unwrap_err().field, "locod_spec()");
    assert_eq!(Contract::parse("[]").unwrap_err().field, "locod_spec()");
    let mut s = spec();
    s["joints"][1].as_object_mut().unwrap().remove("kd");
    let e = parse_err(s);
    assert_eq!(e.to_string(), "model contract: joints[1].kd: missing");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
    #[test]
    fn arbitrary_specs_never_panic(text in "\\PC{0,300}") {
        let _ = Contract::parse(&text);
    }

    #[test]
    fn mutated_specs_never_panic(cut in 0usize..1200, insert in "[\\[\\]{}\":,a-z0-9 .-]{0,10}") {
        let mut text = spec().to_string();
        let at = cut.min(text.len());
        if text.is_char_boundary(at) {
            text.insert_str(at, &insert);
        }
        if let Ok(c) = Contract::parse(&text) {
            let _ = c.check_config(&config(), ModelKind::Policy, &[]);
        }
    }
}
