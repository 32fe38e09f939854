//! Points the binaries' rpath at the shared libraries they link: the libtorch that torch-sys
//! linked (the project's PyTorch wheel or a user-provided `LIBTORCH`), and with feature `sim` the
//! MuJoCo library directory (`MUJOCO_DYNAMIC_LINK_DIR`, set by .cargo/config.toml), so
//! `target/*/locod` runs without LD_LIBRARY_PATH.
//!
//! `LOCOD_RPATH` replaces that rpath: `make install` builds the robot binary with
//! `LOCOD_RPATH='$ORIGIN/../lib'`, so the installed tree finds the libtorch it carries beside it and
//! nothing in the building user's home.
//!
//! Also compiles src/policy/inference_mode.cpp (libtorch's InferenceMode, which tch does not
//! expose) and src/policy/module_attr.cpp (setting a module's string attribute, for `locod
//! finetune`) against the headers of that same libtorch.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=MUJOCO_DYNAMIC_LINK_DIR");
    println!("cargo:rerun-if-env-changed=LOCOD_RPATH");
    println!("cargo:rerun-if-changed=src/policy/inference_mode.cpp");
    println!("cargo:rerun-if-changed=src/policy/module_attr.cpp");
    let libtorch_lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys reports where libtorch is");
    match std::env::var("LOCOD_RPATH") {
        Ok(rpath) if !rpath.is_empty() => println!("cargo:rustc-link-arg=-Wl,-rpath,{rpath}"),
        _ => println!("cargo:rustc-link-arg=-Wl,-rpath,{libtorch_lib}"),
    }
    let include = std::path::Path::new(&libtorch_lib).join("../include");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .warnings(false)
        .file("src/policy/inference_mode.cpp")
        .file("src/policy/module_attr.cpp")
        .compile("locod_inference_mode");
    if std::env::var_os("CARGO_FEATURE_SIM").is_some() {
        if let Ok(dir) = std::env::var("MUJOCO_DYNAMIC_LINK_DIR") {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
}
