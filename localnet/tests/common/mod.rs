//! Shared pieces of the multi-process tests.

pub use localnet::probe::*;

/// The stand-in gateway under its test name.
#[allow(dead_code)] // not every test file uses the stand-in
pub type TestGateway = ProbeGateway;

/// Checks a `/metrics` page with `promtool check metrics` (skipped, with a
/// note, where promtool is not installed, except under CI).
#[allow(dead_code)] // not every test file checks a page
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install promtool (Debian package prometheus)"
        );
        eprintln!("promtool not installed: skipping the promtool check");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
