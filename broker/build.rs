//! Builds the admin dashboard into the binary when it has been built.
//!
//! `scripts/build-admin-ui` writes the dashboard to `target/admin-ui/dist` in the workspace.
//! When that directory exists at build time, its files (see `src/http/admin_files.rs`) are
//! embedded, so a copied binary serves `/admin/` from any working directory. This writes
//! `$OUT_DIR/admin_ui.rs` with `EMBEDDED_ADMIN_UI`, a table of (file name, bytes) that is
//! empty without a built dashboard.

#[path = "src/http/admin_files.rs"]
mod admin_files;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dist = manifest_dir.join("..").join(admin_files::BUILD_OUTPUT_DIR);
    watch(&dist);
    let files = if dist.is_dir() {
        admin_files::list(&dist).unwrap_or_else(|err| {
            println!(
                "cargo::warning=cannot read {}: {err}; the admin dashboard is not embedded",
                dist.display()
            );
            Vec::new()
        })
    } else {
        Vec::new()
    };
    let mut table = format!(
        "/// The admin dashboard built into this binary: (file name, contents), sorted by name;\n\
         /// empty when `{}` did not exist at build time.\n\
         pub static EMBEDDED_ADMIN_UI: &[(&str, &[u8])] = &[\n",
        admin_files::BUILD_OUTPUT_DIR
    );
    for (name, path) in &files {
        let path = path.canonicalize().unwrap_or_else(|_| path.clone());
        let _ = writeln!(
            table,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
        );
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("admin_ui.rs");
    if let Err(err) = std::fs::write(&out, table) {
        // Without the table the crate does not compile; say why.
        panic!("cannot write {}: {err}", out.display());
    }
}

/// Reruns this script when the dashboard is rebuilt (Cargo scans a watched directory's files)
/// or first appears. A watched path that does not exist would rerun it, and rebuild the crate,
/// on every build; so without `dist` the script watches its parent, created empty if need be,
/// which changes when `scripts/build-admin-ui` creates `dist` in it.
fn watch(dist: &Path) {
    println!("cargo::rerun-if-changed=build.rs");
    let parent = dist.parent().unwrap_or(dist);
    if dist.is_dir() {
        println!("cargo::rerun-if-changed={}", dist.display());
    } else if std::fs::create_dir_all(parent).is_ok() {
        println!("cargo::rerun-if-changed={}", parent.display());
    } else {
        println!(
            "cargo::warning=cannot create {}: a dashboard built later is embedded only after `cargo clean -p ringcast`",
            parent.display()
        );
    }
}
