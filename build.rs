//! Points the binaries' rpath at the shared libraries they link: the libtorch that torch-sys
//! linked (the project's PyTorch wheel or a user-provided `LIBTORCH`), and with feature `sim` the
//! MuJoCo library directory (`MUJOCO_DYNAMIC_LINK_DIR`, set by .cargo/config.toml), so
//! `target/*/locod` runs without LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=MUJOCO_DYNAMIC_LINK_DIR");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    if std::env::var_os("CARGO_FEATURE_SIM").is_some() {
        if let Ok(dir) = std::env::var("MUJOCO_DYNAMIC_LINK_DIR") {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
}
