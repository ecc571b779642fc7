//! `warranty ops …` as the workflows call it: the real binary, real files and stdin, exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn ops(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warranty"))
        .arg("ops")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/ops/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn stdout_json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn validate_tag_accepts_immutable_tags_and_refuses_latest() {
    let o = ops(&["validate-tag", "v1.4.0"], None);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout_json(&o), serde_json::json!({"kind": "semVer", "value": "v1.4.0"}));
    let o = ops(&["validate-tag", "latest"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("mutable"));
    assert!(o.stdout.is_empty());
}

#[test]
fn last_stable_skips_the_failed_release_and_the_running_one() {
    let o = ops(&["last-stable", "--deployments", &fixture("deployments.json")], None);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout_json(&o)["imageTag"], "v1.4.0");
    let history = std::fs::read_to_string(fixture("deployments.json")).unwrap();
    let o = ops(&["last-stable", "--deployments", "-", "--exclude-tag", "v1.4.0"], Some(&history));
    assert_eq!(o.status.code(), Some(0));
    let s = stdout_json(&o);
    assert_eq!(s["imageTag"], "9a8b7c6d5e4f30211223344556677889900aabbc");
    assert_eq!(s["digest"], format!("sha256:{}", "1".repeat(64)));
    let o = ops(&["last-stable", "--deployments", "-"], Some("[]"));
    assert_eq!(o.status.code(), Some(1));
    let o = ops(&["last-stable", "--deployments", "-"], Some("{not json"));
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn health_verdict_exit_codes_drive_the_workflow() {
    let o = ops(&["health-verdict", "--result", &fixture("appinsights-breach.json")], None);
    assert_eq!(o.status.code(), Some(1));
    let v = stdout_json(&o);
    assert_eq!(v["verdict"], "unhealthy");
    assert_eq!(v["reasons"][0], "p95 latency 734 ms > 500 ms");
    let o = ops(&["health-verdict", "--result", &fixture("appinsights-breach.json"), "--max-p95-ms", "800"], None);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    // Unreadable evidence is inconclusive, never healthy.
    let o = ops(&["health-verdict", "--result", "-"], Some("{\"error\":\"Forbidden\"}"));
    assert_eq!(o.status.code(), Some(2));
}
