//! Joint calibration: a small TOML file of measured offsets, written by `locod motors zero` and
//! referenced from `[robot] calibration`. Its values replace the joints' configured `offset_rad`.
//!
//! ```toml
//! [offset_rad]
//! left_hip = 0.1234    # joint angle at which the motor reads zero
//! ```

use super::error::{line_col, locate, Seg};
use super::{Config, ConfigError};
use std::path::{Path, PathBuf};

/// The calibration file `config` refers to, if any.
pub fn path(config: &Config) -> Option<PathBuf> {
    config.robot.calibration.as_deref().map(|p| config.resolve(p))
}

fn error(file: &Path, text: &str, segs: &[Seg], key: &str, message: String) -> ConfigError {
    ConfigError { file: file.to_path_buf(), line_col: locate(text, segs), key: Some(key.into()), message }
}

/// Applies the calibration file's offsets to `config`. A missing file changes nothing.
pub fn apply(config: &mut Config) -> Result<(), ConfigError> {
    let Some(file) = path(config) else { return Ok(()) };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ConfigError::io(&file, &e)),
    };
    let doc: toml::Table = toml::from_str(&text).map_err(|e| ConfigError {
        file: file.clone(),
        line_col: e.span().map(|s| line_col(&text, s.start)),
        key: e.span().and_then(|s| super::error::key_at(&text, s)),
        message: e.message().trim().to_string(),
    })?;
    if let Some(key) = doc.keys().find(|k| *k != "offset_rad") {
        return Err(ConfigError {
            file: file.clone(),
            line_col: text.find(key.as_str()).map(|at| line_col(&text, at)),
            key: Some(key.clone()),
            message: "unknown key; a calibration file has only an [offset_rad] table".into(),
        });
    }
    let Some(offsets) = doc.get("offset_rad") else { return Ok(()) };
    let Some(offsets) = offsets.as_table() else {
        return Err(error(&file, &text, &[Seg::Key("offset_rad")], "offset_rad", "expected a table".into()));
    };
    for (name, value) in offsets {
        let key = format!("offset_rad.{name}");
        let Some(i) = config.joint_index(name) else {
            let names: Vec<&str> = config.joints.iter().map(|j| j.name.as_str()).collect();
            return Err(ConfigError {
                file: file.clone(),
                line_col: toml_edit::Document::parse(text.as_str())
                    .ok()
                    .and_then(|d| d.as_item().get("offset_rad")?.as_table_like()?.get_key_value(name)?.0.span())
                    .map(|s| line_col(&text, s.start)),
                key: Some(key),
                message: format!("no joint named {name:?}; expected one of: {}", names.join(", ")),
            });
        };
        let v = value.as_float().or(value.as_integer().map(|i| i as f64));
        match v {
            Some(v) if v.is_finite() => config.joints[i].offset_rad = v,
            _ => {
                return Err(ConfigError {
                    file: file.clone(),
                    line_col: None,
                    key: Some(key),
                    message: format!("expected a finite angle in radians, got {value}"),
                })
            }
        }
    }
    Ok(())
}

/// Writes `offset` for `joint` into the calibration file, keeping its other entries and comments.
/// The file is replaced atomically (written beside it, then renamed).
pub(crate) fn write_offset(file: &Path, joint: &str, offset: f64) -> Result<(), String> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::from(
            "# Joint calibration written by `locod motors zero`: the joint angle (rad) at which each\n# motor reads zero. Referenced from [robot] calibration in the robot's configuration.\n",
        ),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{}: {e}", file.display()))?;
    if !doc.contains_table("offset_rad") {
        doc["offset_rad"] = toml_edit::table();
    }
    doc["offset_rad"][joint] = toml_edit::value(offset);
    let tmp = file.with_extension("toml.tmp");
    std::fs::write(&tmp, doc.to_string()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, file).map_err(|e| format!("{}: {e}", file.display()))
}
