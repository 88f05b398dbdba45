//! Builds `ct2/shim.cpp` (the C interface to CTranslate2's Whisper) into `libcalls_ct2.so`, next to the
//! `libctranslate2` of the PyPI wheel that `ct2/fetch.sh` unpacks (into `$CALLS_CT2_DIR`, by default
//! `$CARGO_TARGET_DIR/ctranslate2`). The crate loads that library at run time (`src/ct2/ffi.rs`), so everything else
//! builds and runs without it: when the download or the compiler fails, the build warns and only the
//! CTranslate2 engine is unavailable.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=ct2/shim.cpp");
    println!("cargo:rerun-if-changed=ct2/fetch.sh");
    println!("cargo:rerun-if-env-changed=CALLS_CT2_DIR");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target"));
    let dir = std::env::var_os("CALLS_CT2_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("ctranslate2"));
    let lib = dir.join("lib");
    println!("cargo:rustc-env=CALLS_CT2_BUILD_LIB_DIR={}", lib.display());
    if let Err(reason) = build(&manifest, &dir) {
        println!("cargo:warning=the CTranslate2 engine is not built: {reason}");
    }
}

fn build(manifest: &Path, dir: &Path) -> Result<(), String> {
    let shim = manifest.join("ct2/shim.cpp");
    let header = dir.join("include/ctranslate2/models/whisper.h");
    if !header.is_file() || !dir.join("lib/libctranslate2.so").exists() {
        let status = Command::new("sh")
            .arg(manifest.join("ct2/fetch.sh"))
            .arg(dir)
            .status()
            .map_err(|e| format!("cannot run ct2/fetch.sh: {e}"))?;
        if !status.success() {
            return Err(format!("ct2/fetch.sh {} failed ({status})", dir.display()));
        }
    }
    let out = dir.join("lib/libcalls_ct2.so");
    let newer = |a: &Path, b: &Path| {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        matches!((modified(a), modified(b)), (Some(a), Some(b)) if a > b)
    };
    if out.is_file() && newer(&out, &shim) {
        return Ok(());
    }
    let compiler = cc::Build::new().cpp(true).get_compiler();
    let status = Command::new(compiler.path())
        .args(["-std=c++17", "-O2", "-fPIC", "-shared", "-o"])
        .arg(&out)
        .arg(&shim)
        .arg("-I")
        .arg(dir.join("include"))
        .arg("-L")
        .arg(dir.join("lib"))
        .arg("-lctranslate2")
        // The shim finds libctranslate2 (and it its libgomp) in its own directory, wherever that is.
        .arg("-Wl,-rpath,$ORIGIN")
        .status()
        .map_err(|e| format!("cannot run {}: {e}", compiler.path().display()))?;
    if !status.success() {
        return Err(format!("compiling ct2/shim.cpp failed ({status})"));
    }
    Ok(())
}
