//! Release decisions the deploy and rollback workflows make, as tested code instead of inline
//! shell (`warranty ops …`):
//! - which image tags are immutable (and so deployable),
//! - which release is the last stable one, from the GitHub deployment history,
//! - whether production is healthy, from an Application Insights query result.

pub mod cli;
pub mod clock;
pub mod control;
pub mod release;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A tag that always names the same image: a full git commit SHA, a semantic version, or a
/// digest. Floating tags (`latest`, `stable`, `v1`, `1.2`) are refused: they move, so a
/// rollback to them is not a rollback to a known build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "camelCase")]
pub enum ImageTag {
    GitSha(String),
    SemVer(String),
    Digest(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("empty image tag")]
    Empty,
    #[error("`{0}` is a mutable tag; use a git SHA (40 hex) or a full semantic version (v1.2.3)")]
    Mutable(String),
    #[error("`{0}` is not an image tag this pipeline produces (40-hex git SHA, v1.2.3, or sha256:<64 hex>)")]
    Unrecognised(String),
}

const MUTABLE: &[&str] = &["latest", "stable", "main", "master", "prod", "production", "staging", "dev", "edge"];

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `MAJOR.MINOR.PATCH` with optional `-prerelease` and `+build`, numbers without leading zeros
/// (semver.org 2.0.0), optionally prefixed with `v`. Docker tags cannot hold `+`, so build
/// metadata is refused.
fn is_semver(s: &str) -> bool {
    let s = s.strip_prefix('v').unwrap_or(s);
    let (core, pre) = match s.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (s, None),
    };
    let nums: Vec<&str> = core.split('.').collect();
    let numeric = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0'));
    if nums.len() != 3 || !nums.iter().all(|n| numeric(n)) {
        return false;
    }
    match pre {
        None => true,
        Some(p) => p.split('.').all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')),
    }
}

impl ImageTag {
    pub fn parse(raw: &str) -> Result<Self, TagError> {
        let tag = raw.trim();
        if tag.is_empty() {
            return Err(TagError::Empty);
        }
        if MUTABLE.contains(&tag.to_ascii_lowercase().as_str()) {
            return Err(TagError::Mutable(tag.to_owned()));
        }
        if let Some(hex) = tag.strip_prefix("sha256:") {
            return if is_hex(hex, 64) {
                Ok(Self::Digest(tag.to_owned()))
            } else {
                Err(TagError::Unrecognised(tag.to_owned()))
            };
        }
        if is_hex(tag, 40) {
            return Ok(Self::GitSha(tag.to_owned()));
        }
        if is_semver(tag) {
            return Ok(Self::SemVer(tag.to_owned()));
        }
        // `v1`, `1.2`, `v2.3`: floating version tags, moved by every patch release.
        let floating = tag.strip_prefix('v').unwrap_or(tag);
        if !floating.is_empty()
            && floating.split('.').count() < 3
            && floating.split('.').all(|n| n.parse::<u64>().is_ok())
        {
            return Err(TagError::Mutable(tag.to_owned()));
        }
        Err(TagError::Unrecognised(tag.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::GitSha(s) | Self::SemVer(s) | Self::Digest(s) => s,
        }
    }
}

/// One GitHub deployment with its statuses, as the workflow collects them
/// (`GET /repos/{o}/{r}/deployments?environment=production`, then each `statuses_url`).
#[derive(Debug, Clone, Deserialize)]
pub struct Deployment {
    pub id: u64,
    pub sha: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub environment: String,
    /// What `deploy.yml` records: `{"imageTag": "...", "digest": "sha256:..."}`.
    #[serde(default)]
    pub payload: serde_json::Value,
    #[serde(default)]
    pub statuses: Vec<DeploymentStatus>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentStatus {
    pub state: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StableRelease {
    pub deployment_id: u64,
    pub image_tag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub sha: String,
    pub deployed_at: DateTime<Utc>,
}

/// The newest production deployment that was verified healthy (`success`) and never failed
/// afterwards (`failure` or `error`: the deploy's verification or a rollback marked it bad),
/// other than `exclude` (the tag now running, the one being rolled back). `inactive` — set by
/// GitHub when a newer deployment succeeds — does not disqualify: it is what a stable
/// predecessor looks like. Deployments without a valid immutable tag in their payload are
/// skipped.
pub fn last_stable(deployments: &[Deployment], environment: &str, exclude: Option<&str>) -> Option<StableRelease> {
    let mut candidates: Vec<&Deployment> = deployments
        .iter()
        .filter(|d| d.environment.is_empty() || d.environment == environment)
        .filter(|d| {
            let mut statuses: Vec<&DeploymentStatus> = d.statuses.iter().collect();
            statuses.sort_by_key(|s| s.created_at);
            let succeeded = statuses.iter().position(|s| s.state == "success");
            let failed_after = |i: usize| statuses[i..].iter().any(|s| matches!(s.state.as_str(), "failure" | "error"));
            succeeded.is_some_and(|i| !failed_after(i))
        })
        .collect();
    candidates.sort_by_key(|d| std::cmp::Reverse((d.created_at, d.id)));
    candidates.into_iter().find_map(|d| {
        let tag = d.payload.get("imageTag")?.as_str()?;
        let tag = ImageTag::parse(tag).ok()?;
        if exclude == Some(tag.as_str()) {
            return None;
        }
        Some(StableRelease {
            deployment_id: d.id,
            image_tag: tag.as_str().to_owned(),
            digest: d.payload.get("digest").and_then(|v| v.as_str()).map(str::to_owned),
            sha: d.sha.clone(),
            deployed_at: d.created_at,
        })
    })
}

/// Limits of a healthy production, from the SLO: p95 latency and the share of failed requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthLimits {
    pub max_p95_ms: f64,
    pub max_failure_rate: f64,
    /// Fewer requests than this say nothing either way.
    pub min_requests: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "camelCase")]
pub enum HealthVerdict {
    Healthy { requests: u64, failure_rate: f64, p95_ms: f64 },
    Unhealthy { requests: u64, failure_rate: f64, p95_ms: f64, reasons: Vec<String> },
    Inconclusive { requests: u64, reason: String },
}

impl HealthVerdict {
    /// Process exit code for the workflow: 0 healthy, 1 unhealthy, 2 inconclusive.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Healthy { .. } => 0,
            Self::Unhealthy { .. } => 1,
            Self::Inconclusive { .. } => 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unreadable query result: {0}")]
pub struct QueryResultError(String);

/// Reads the result of the verification query (`az monitor app-insights query` JSON:
/// `{"tables":[{"columns":[{"name":..}],"rows":[[..]]}]}`) with columns `total`, `failed` and
/// `p95` (milliseconds), and judges it against `limits`.
pub fn health_verdict(result: &serde_json::Value, limits: &HealthLimits) -> Result<HealthVerdict, QueryResultError> {
    let table = result
        .get("tables")
        .and_then(|t| t.as_array())
        .and_then(|t| t.first())
        .ok_or_else(|| QueryResultError("no `tables[0]`".into()))?;
    let columns: Vec<&str> = table
        .get("columns")
        .and_then(|c| c.as_array())
        .ok_or_else(|| QueryResultError("no `columns`".into()))?
        .iter()
        .map(|c| c.get("name").and_then(|n| n.as_str()).unwrap_or(""))
        .collect();
    let rows = table.get("rows").and_then(|r| r.as_array()).ok_or_else(|| QueryResultError("no `rows`".into()))?;
    let Some(row) = rows.first().and_then(|r| r.as_array()) else {
        return Ok(HealthVerdict::Inconclusive { requests: 0, reason: "no requests in the window".into() });
    };
    let cell = |name: &str| -> Result<Option<f64>, QueryResultError> {
        let i =
            columns.iter().position(|c| *c == name).ok_or_else(|| QueryResultError(format!("no column `{name}`")))?;
        Ok(row.get(i).and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))))
    };
    let total = cell("total")?.unwrap_or(0.0).max(0.0) as u64;
    let failed = cell("failed")?.unwrap_or(0.0).max(0.0);
    let p95 = cell("p95")?;
    if total < limits.min_requests {
        return Ok(HealthVerdict::Inconclusive {
            requests: total,
            reason: format!("{total} requests, fewer than the {} needed to judge", limits.min_requests),
        });
    }
    let p95_ms = p95.ok_or_else(|| QueryResultError("`p95` is empty although there were requests".into()))?;
    let failure_rate = failed / total as f64;
    let mut reasons = Vec::new();
    if p95_ms > limits.max_p95_ms {
        reasons.push(format!("p95 latency {p95_ms:.0} ms > {:.0} ms", limits.max_p95_ms));
    }
    if failure_rate > limits.max_failure_rate {
        reasons.push(format!("failure rate {:.2} % > {:.2} %", failure_rate * 100.0, limits.max_failure_rate * 100.0));
    }
    Ok(if reasons.is_empty() {
        HealthVerdict::Healthy { requests: total, failure_rate, p95_ms }
    } else {
        HealthVerdict::Unhealthy { requests: total, failure_rate, p95_ms, reasons }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA: &str = "4f1c2b9a0d3e5f60718293a4b5c6d7e8f9012345";

    #[test]
    fn immutable_tags_are_accepted_and_mutable_ones_refused() {
        assert_eq!(ImageTag::parse(SHA), Ok(ImageTag::GitSha(SHA.into())));
        assert_eq!(ImageTag::parse(" v1.2.3 "), Ok(ImageTag::SemVer("v1.2.3".into())));
        assert_eq!(ImageTag::parse("1.10.0-rc.1"), Ok(ImageTag::SemVer("1.10.0-rc.1".into())));
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(ImageTag::parse(&digest), Ok(ImageTag::Digest(digest.clone())));
        for mutable in ["latest", "LATEST", "stable", "main", "v1", "1.2", "v2.3"] {
            assert!(matches!(ImageTag::parse(mutable), Err(TagError::Mutable(_))), "{mutable}");
        }
        for bad in
            ["4f1c2b9", &SHA.to_uppercase(), "v1.02.3", "1.2.3+build", "1.2.3-", "sha256:abc", "$(rm -rf /)", "a b"]
        {
            assert!(matches!(ImageTag::parse(bad), Err(TagError::Unrecognised(_))), "{bad}");
        }
        assert_eq!(ImageTag::parse("  "), Err(TagError::Empty));
    }

    fn deployment(id: u64, tag: &str, at: &str, states: &[(&str, &str)]) -> Deployment {
        serde_json::from_value(json!({
            "id": id, "sha": format!("{id:040}"), "created_at": at, "environment": "production",
            "payload": { "imageTag": tag, "digest": format!("sha256:{}", "b".repeat(64)) },
            "statuses": states.iter().map(|(s, t)| json!({"state": s, "created_at": t})).collect::<Vec<_>>()
        }))
        .unwrap()
    }

    #[test]
    fn the_last_stable_release_is_the_newest_verified_one_not_failed_since() {
        let history = vec![
            deployment(
                1,
                "v1.0.0",
                "2026-11-01T10:00:00Z",
                &[("success", "2026-11-01T10:20:00Z"), ("inactive", "2026-11-05T10:20:00Z")],
            ),
            deployment(
                2,
                "v1.1.0",
                "2026-11-05T10:00:00Z",
                &[("success", "2026-11-05T10:20:00Z"), ("inactive", "2026-11-09T10:00:00Z")],
            ),
            // Verified, then marked failed by a rollback.
            deployment(
                3,
                "v1.2.0",
                "2026-11-09T10:00:00Z",
                &[("success", "2026-11-09T10:20:00Z"), ("failure", "2026-11-09T11:00:00Z")],
            ),
            // Never verified.
            deployment(4, "v1.3.0", "2026-11-10T10:00:00Z", &[("in_progress", "2026-11-10T10:01:00Z")]),
            // A mutable tag in the payload is never a rollback target.
            deployment(5, "latest", "2026-11-11T10:00:00Z", &[("success", "2026-11-11T10:20:00Z")]),
        ];
        let s = last_stable(&history, "production", None).unwrap();
        assert_eq!((s.deployment_id, s.image_tag.as_str()), (2, "v1.1.0"));
        // Rolling back away from v1.1.0 itself goes one further back.
        let s = last_stable(&history, "production", Some("v1.1.0")).unwrap();
        assert_eq!(s.image_tag, "v1.0.0");
        assert_eq!(last_stable(&history, "staging", None), None);
        assert_eq!(last_stable(&[], "production", None), None);
    }

    fn result(total: Value, failed: Value, p95: Value) -> Value {
        json!({"tables":[{"name":"PrimaryResult","columns":[
            {"name":"total","type":"long"},{"name":"failed","type":"long"},{"name":"p95","type":"real"}],
            "rows":[[total, failed, p95]]}]})
    }
    use serde_json::Value;

    const LIMITS: HealthLimits = HealthLimits { max_p95_ms: 500.0, max_failure_rate: 0.05, min_requests: 20 };

    #[test]
    fn the_health_verdict_follows_the_slo() {
        let v = health_verdict(&result(json!(1000), json!(10), json!(180.5)), &LIMITS).unwrap();
        assert!(matches!(v, HealthVerdict::Healthy { requests: 1000, .. }), "{v:?}");
        assert_eq!(v.exit_code(), 0);
        let v = health_verdict(&result(json!(1000), json!(10), json!(812.0)), &LIMITS).unwrap();
        let HealthVerdict::Unhealthy { reasons, .. } = &v else { panic!("{v:?}") };
        assert_eq!(reasons, &vec!["p95 latency 812 ms > 500 ms".to_owned()]);
        assert_eq!(v.exit_code(), 1);
        let v = health_verdict(&result(json!(200), json!(11), json!(90.0)), &LIMITS).unwrap();
        let HealthVerdict::Unhealthy { reasons, .. } = &v else { panic!("{v:?}") };
        assert_eq!(reasons, &vec!["failure rate 5.50 % > 5.00 %".to_owned()]);
        // Exactly at the limit is still healthy; strings (some CLIs print longs as strings) are read.
        let v = health_verdict(&result(json!("100"), json!("5"), json!("500")), &LIMITS).unwrap();
        assert!(matches!(v, HealthVerdict::Healthy { .. }), "{v:?}");
        let v = health_verdict(&result(json!(3), json!(3), json!(null)), &LIMITS).unwrap();
        assert_eq!(v.exit_code(), 2, "too few requests to judge: {v:?}");
        let empty = json!({"tables":[{"columns":[{"name":"total"},{"name":"failed"},{"name":"p95"}],"rows":[]}]});
        assert_eq!(health_verdict(&empty, &LIMITS).unwrap().exit_code(), 2);
        assert!(health_verdict(&json!({"error": "forbidden"}), &LIMITS).is_err());
        let missing = json!({"tables":[{"columns":[{"name":"total"}],"rows":[[50]]}]});
        assert!(health_verdict(&missing, &LIMITS).is_err());
    }
}
