//! Runs the browser suite (tests/browser/*.test.mjs: herald.js in headless Chromium,
//! driven by playwright-core) against this build's `herald` binary.
//!
//! Needs Node.js, `npm ci` in tests/browser, and Debian's chromium at
//! /usr/bin/chromium (`.ci/run` installs them). Without them the test says so
//! and passes, unless HERALD_REQUIRE_BROWSER=1 (as in CI), where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn missing(dir: &Path, chromium: &Path) -> Option<String> {
    if Command::new("node").arg("--version").output().is_err() {
        return Some("Node.js is not installed".into());
    }
    if !dir.join("node_modules/playwright-core").exists() {
        return Some(format!(
            "playwright-core is not installed (run `npm ci` in {})",
            dir.display()
        ));
    }
    if !chromium.exists() {
        return Some(format!(
            "{} is missing (apt-get install chromium)",
            chromium.display()
        ));
    }
    None
}

#[test]
fn browser_suite() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("tests/browser");
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if let Some(why) = missing(&dir, &chromium) {
        if std::env::var("HERALD_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("the browser suite cannot run: {why}");
        }
        eprintln!("SKIPPED the browser suite: {why}. `.ci/run` installs what it needs.");
        return;
    }
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no browser tests found in {}", dir.display());
    let mut child = Command::new("node")
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
    // Bounded: the suite takes about a minute; give it ten.
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the browser suite did not finish within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.success(),
        "the browser suite failed (see its report above)"
    );
}
