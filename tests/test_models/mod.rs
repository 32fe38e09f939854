//! The small contract-conforming models of `models/make_test_models.py`, for the integration tests
//! (`mod test_models;`): where they are, built with the project's Python environment if missing.
//!
//! Not for: real models (those are configured with `[controller] model`).

use std::path::PathBuf;
use std::sync::Mutex;

/// The directory of the repository this binary was built from.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn dir() -> PathBuf {
    repo().join("models/build")
}

static BUILD: Mutex<()> = Mutex::new(());

/// The path of test model `name` (e.g. "student.pt"), building all of them first if it is
/// missing (`make models` does the same; this makes `cargo test` work on its own).
pub fn path(name: &str) -> Result<PathBuf, String> {
    let p = dir().join(name);
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if p.is_file() {
        return Ok(p);
    }
    let python = [repo().join(".venv/bin/python"), PathBuf::from("python3")]
        .into_iter()
        .find(|p| p.is_file() || p.components().count() == 1)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let out = std::process::Command::new(&python)
        .arg(repo().join("models/make_test_models.py"))
        .arg("--out")
        .arg(dir())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() || !p.is_file() {
        return Err(format!(
            "models/make_test_models.py failed (run `make models`): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(p)
}
