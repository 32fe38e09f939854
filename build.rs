//! Points the binaries' rpath at the libtorch that torch-sys linked, so `target/*/locod` runs
//! without LD_LIBRARY_PATH, whether libtorch came from the project's PyTorch wheel or from a
//! user-provided `LIBTORCH`.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
