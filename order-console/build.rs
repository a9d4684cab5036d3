//! Vendors the front-end pieces installed from the npm registry (`web/package.json`, pinned by
//! `web/package-lock.json`, installed by `scripts/dev install` with `npm ci`) into the binary,
//! so that the console is one file with nothing to install beside it.
//!
//! Without them (npm never ran), the console still builds and works: pages and tables are
//! server-rendered, and the charts say that the chart library is missing. The browser tests
//! require the charts, so `scripts/check` catches a build without them.

use std::path::{Path, PathBuf};

/// (file in node_modules, name it is served under)
const VENDORED: &[(&str, &str)] = &[
    ("uplot/dist/uPlot.iife.min.js", "uPlot.iife.min.js"),
    ("uplot/dist/uPlot.min.css", "uPlot.min.css"),
    ("uplot/LICENSE", "uPlot.LICENSE.txt"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let modules = manifest.join("web").join("node_modules");
    println!("cargo:rerun-if-changed=web/package-lock.json");
    let pinned = pinned_version(&manifest.join("web").join("package.json"));
    let installed = pinned_version_installed(&modules.join("uplot").join("package.json"));
    let mut complete = installed.is_some() && installed == pinned;
    for (source, name) in VENDORED {
        let path = modules.join(source);
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = std::fs::read(&path).unwrap_or_else(|_| {
            complete = false;
            Vec::new()
        });
        if let Err(error) = std::fs::write(out.join(name), bytes) {
            panic!("cannot write {}: {error}", out.join(name).display());
        }
    }
    if !complete {
        println!(
            "cargo:warning=order-console: the chart library (uplot {}) is not installed in web/node_modules; charts are disabled. Run scripts/dev install.",
            pinned.as_deref().unwrap_or("?")
        );
    }
    std::fs::write(
        out.join("vendored.rs"),
        format!(
            "/// Whether the npm pieces were vendored at build time.\npub const CHARTS: bool = {complete};\n/// The uPlot version vendored.\npub const UPLOT_VERSION: &str = {:?};\n",
            installed.unwrap_or_default()
        ),
    )
    .unwrap_or_else(|error| panic!("cannot write vendored.rs: {error}"));
}

/// `"uplot": "1.6.32"` from web/package.json.
fn pinned_version(package: &Path) -> Option<String> {
    let text = std::fs::read_to_string(package).ok()?;
    let after = text.split("\"uplot\"").nth(1)?;
    let quoted = after.split('"').nth(1)?;
    Some(quoted.to_owned())
}

/// `"version": "1.6.32"` from node_modules/uplot/package.json.
fn pinned_version_installed(package: &Path) -> Option<String> {
    let text = std::fs::read_to_string(package).ok()?;
    let after = text.split("\"version\"").nth(1)?;
    let quoted = after.split('"').nth(1)?;
    Some(quoted.to_owned())
}
