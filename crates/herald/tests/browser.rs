//! Runs the browser suite (tests/browser/*.test.mjs: herald.js in headless Chromium,
//! driven by playwright-core) against this build's `herald` binary.
//!
//! It needs Node.js, the suite's Node modules and Debian's chromium at
//! /usr/bin/chromium (or `CHROMIUM`). The modules are installed here (`npm ci` in
//! tests/browser) when missing; a missing Node.js or Chromium fails the test with
//! the reason, since a suite that did not run must never count as passed. To leave
//! it out on purpose, build with `HERALD_SKIP_BROWSER=1` (README): the test is then
//! reported as ignored, not as passed.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `npm ci` may take.
const NPM_CI_LIMIT: Duration = Duration::from_secs(300);
/// How long the suite may take (it takes a few minutes).
const SUITE_LIMIT: Duration = Duration::from_secs(900);

/// Waits for `child` at most `limit`; kills it and panics with `what` past it.
fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Makes sure the suite can run: Node.js, its modules (installed when missing),
/// Chromium. Panics with what is missing and how to get it.
fn prepare(dir: &Path, chromium: &Path) {
    let skip = "or build with HERALD_SKIP_BROWSER=1 to leave the browser suite out (README)";
    if Command::new("node").arg("--version").output().is_err() {
        panic!("the browser suite cannot run: Node.js is not installed (apt-get install nodejs npm), {skip}");
    }
    if !dir.join("node_modules/playwright-core").exists() {
        eprintln!(
            "installing the browser suite's Node modules: npm ci in {}",
            dir.display()
        );
        let child = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("the browser suite cannot run: npm does not start ({e}), {skip}"));
        let status = wait_bounded(child, NPM_CI_LIMIT, "npm ci");
        assert!(
            status.success(),
            "the browser suite cannot run: `npm ci` in {} failed ({status}), {skip}",
            dir.display()
        );
    }
    if !chromium.exists() {
        panic!(
            "the browser suite cannot run: {} is missing (apt-get install chromium, or point CHROMIUM at one), {skip}",
            chromium.display()
        );
    }
}

#[test]
#[cfg_attr(herald_skip_browser, ignore = "built with HERALD_SKIP_BROWSER=1")]
fn browser_suite() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("tests/browser");
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    prepare(&dir, &chromium);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no browser tests found in {}", dir.display());
    let child = Command::new("node")
        .arg("--test")
        .arg("--test-concurrency=1")
        .arg("--test-reporter=spec")
        // A handle left open by a test (a socket, a timer) must not hang the suite
        // after every test has passed or failed; nor may one test hang forever.
        .arg("--test-force-exit")
        .arg("--test-timeout=120000")
        .args(&files)
        .current_dir(&dir)
        .env("HERALD_BIN", env!("CARGO_BIN_EXE_herald"))
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node starts");
    let status = wait_bounded(child, SUITE_LIMIT, "the browser suite");
    assert!(
        status.success(),
        "the browser suite failed (see its report above)"
    );
}
