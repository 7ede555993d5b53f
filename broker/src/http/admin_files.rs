//! Which files of a built dashboard directory are served.
//!
//! Shared by the build script, which embeds them into the binary, and by
//! [`AdminAssets`](super::AdminAssets), which reads a directory at start, so both serve the
//! same set. Plain `std` only: `broker/build.rs` includes this file as a module.

use std::path::{Path, PathBuf};

/// Where `scripts/build-admin-ui` writes the dashboard, relative to the workspace: the build
/// script embeds it from there, and a broker without one built in reads it from there
/// relative to its working directory (so a broker started from the repository finds it).
pub const BUILD_OUTPUT_DIR: &str = "target/admin-ui/dist";

/// The servable files directly in `dir` as (name, path), sorted by name: regular files (or
/// links to them) whose names are UTF-8 and do not start with a dot, so the build's `.stamp`
/// stays out. Subdirectories are skipped: `/admin/{file}` names a single path segment.
pub fn list(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        files.push((name.to_owned(), path));
    }
    files.sort();
    Ok(files)
}
