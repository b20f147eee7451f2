//! Embeds `assets/` and hls.js (from the npm lockfile) into the binary: writes a table of
//! `(path, content type, etag, bytes)` to `OUT_DIR/assets.rs`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=assets");
    println!("cargo:rerun-if-changed=package-lock.json");
    println!("cargo:rerun-if-changed=node_modules/hls.js/package.json");

    let hls = root.join("node_modules/hls.js/dist/hls.min.js");
    if !hls.exists() {
        npm_ci(&root);
    }
    let hls_out = out.join("hls.min.js");
    std::fs::copy(&hls, &hls_out)
        .unwrap_or_else(|e| panic!("copying {} failed: {e}", hls.display()));

    let mut files = Vec::new();
    collect(&root.join("assets"), "", &mut files);
    files.push(("vendor/hls.min.js".to_string(), hls_out));
    files.sort();

    let mut table = String::from("&[\n");
    for (path, file) in &files {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let _ = writeln!(
            table,
            "    ({path:?}, {ct:?}, \"\\\"{tag:016x}\\\"\", include_bytes!({file:?})),",
            ct = content_type(path),
            tag = fnv1a(&bytes),
            file = file.display().to_string(),
        );
    }
    table.push(']');
    std::fs::write(out.join("assets.rs"), table).expect("writing assets.rs");
}

/// Installs the locked npm packages (hls.js) when `node_modules` is missing.
fn npm_ci(root: &Path) {
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(root)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("`npm ci` in {} failed ({s})", root.display()),
        Err(e) => panic!(
            "onair-web needs npm to fetch hls.js from web/package-lock.json ({e}); \
             install Node.js and npm (Debian: apt-get install nodejs npm) or run scripts/serve"
        ),
    }
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let rel = format!("{prefix}{name}");
        if path.is_dir() {
            collect(&path, &format!("{rel}/"), out);
        } else {
            out.push((rel, path));
        }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "webmanifest" => "application/json",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Content hash for ETags (FNV-1a; no dependency needed, collisions only cost a cache miss).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
