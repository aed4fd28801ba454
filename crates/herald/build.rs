//! One setting for the tests: `HERALD_SKIP_BROWSER=1` at build time marks the
//! browser suite (tests/browser.rs) ignored, so that `cargo test` reports it as
//! ignored rather than passed on a machine without Chromium.

fn main() {
    println!("cargo::rerun-if-env-changed=HERALD_SKIP_BROWSER");
    println!("cargo::rustc-check-cfg=cfg(herald_skip_browser)");
    if std::env::var("HERALD_SKIP_BROWSER").is_ok_and(|v| v == "1") {
        println!("cargo::rustc-cfg=herald_skip_browser");
    }
}
