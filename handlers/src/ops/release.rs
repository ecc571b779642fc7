//! The release procedures `deploy.yml` and `rollback.yml` run, as code the drills run too:
//!
//! - [`stage`]: an immutable tag → its digest in ACR (a missing tag fails before anything
//!   changes) → the staging slot by digest → health on that revision → smoke test.
//! - [`promote`]: deployment record → swap preview (production settings on staging, healthy) →
//!   swap → release event → verification window against the SLO, swapped back on breach →
//!   deployment status.
//! - [`rollback`]: `swap-back` (the previous release, still warm in staging) or `redeploy` (a
//!   given immutable tag, or the last stable release from the deployment record, staged and
//!   checked first) → swap → verification → release event → deployment record → post-mortem
//!   issue (BR-002).
//!
//! Every procedure returns a [`Report`] (outcome, message for the operator, timed steps) rather
//! than failing half-way: the workflow prints it and exits with [`Report::exit_code`]. Before
//! each slot change it re-reads the slots and stops if another run changed them (the workflows
//! share one concurrency group; this guards runs started outside it, from a shell).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};

pub use super::clock::{Clock, SystemClock};
use super::control::{ControlError, ControlPlane, Slot};
use super::{HealthLimits, HealthVerdict, ImageTag, health_verdict, last_stable};

/// How long to wait and what to judge by; the defaults are the runbook's.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Staging health: probes and the pause between them (60 × 10 s = 10 minutes).
    pub health_attempts: u32,
    pub health_interval: Duration,
    /// One-minute samples after a deploy's swap (the verification window) and after a rollback.
    pub deploy_samples: u32,
    pub rollback_samples: u32,
    pub sample_interval: Duration,
    pub limits: HealthLimits,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            health_attempts: 60,
            health_interval: Duration::from_secs(10),
            deploy_samples: 10,
            rollback_samples: 2,
            sample_interval: Duration::from_secs(60),
            limits: HealthLimits { max_p95_ms: 500.0, max_failure_rate: 0.05, min_requests: 20 },
        }
    }
}

/// Who runs the procedure and where it is logged (for the records it writes).
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub run_url: String,
    pub actor: String,
    /// The commit the workflow runs at (deployment ref when an image's revision is unknown).
    pub workflow_sha: String,
    /// `.github/ISSUE_TEMPLATE/post-mortem.md`, read by the caller.
    pub post_mortem_template: String,
}

pub struct Context {
    pub cp: ControlPlane,
    pub clock: Arc<dyn Clock>,
    pub policy: Policy,
    pub run: Run,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// `stage`: the image runs healthy on staging and passed the smoke test.
    Staged,
    /// Production runs the target and passed verification.
    Verified,
    /// A deploy breached the SLO in its verification window and was swapped back.
    SwappedBack,
    /// Input refused before anything changed.
    Refused,
    /// The target never became healthy on staging; production untouched.
    StagingUnhealthy,
    /// Another run changed the slots; this one stopped before touching production.
    Conflict,
    /// Rolled back, and production still breaches: escalate.
    StillBreaching,
    /// A control-plane call failed; the message says what and what state production is in.
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub at: DateTime<Utc>,
    pub step: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub procedure: String,
    pub outcome: Outcome,
    pub message: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// When production was verified on the target (rollback: the time-to-verified the runbook
    /// targets is `verified_at - started_at`).
    pub verified_at: Option<DateTime<Utc>>,
    pub image_tag: Option<String>,
    pub digest: Option<String>,
    pub image: Option<String>,
    pub revision: Option<String>,
    pub production_before: Option<String>,
    pub production_after: Option<String>,
    pub deployment_id: Option<u64>,
    pub post_mortem_issue: Option<u64>,
    pub steps: Vec<Step>,
}

impl Report {
    fn new(procedure: &str, now: DateTime<Utc>) -> Self {
        Self {
            procedure: procedure.into(),
            outcome: Outcome::Failed,
            message: String::new(),
            started_at: now,
            finished_at: now,
            verified_at: None,
            image_tag: None,
            digest: None,
            image: None,
            revision: None,
            production_before: None,
            production_after: None,
            deployment_id: None,
            post_mortem_issue: None,
            steps: Vec::new(),
        }
    }

    /// 0 when the procedure reached its goal, 1 otherwise (the message says what to do).
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            Outcome::Staged | Outcome::Verified => 0,
            _ => 1,
        }
    }

    pub fn time_to_verified(&self) -> Option<chrono::Duration> {
        self.verified_at.map(|v| v - self.started_at)
    }
}

/// A procedure's journal: its report plus the clock.
struct Journal<'a> {
    ctx: &'a Context,
    report: Report,
}

/// Stops a procedure with an outcome and a message.
struct Stop(Outcome, String);

impl From<ControlError> for Stop {
    fn from(e: ControlError) -> Self {
        Stop(Outcome::Failed, e.to_string())
    }
}

impl<'a> Journal<'a> {
    fn new(ctx: &'a Context, procedure: &str) -> Self {
        Self { ctx, report: Report::new(procedure, ctx.clock.now()) }
    }
    fn clock(&self) -> &dyn Clock {
        self.ctx.clock.as_ref()
    }
    fn step(&mut self, step: &str, detail: impl Into<String>) {
        let detail = detail.into();
        tracing::info!(step, %detail, "release");
        self.report.steps.push(Step { at: self.ctx.clock.now(), step: step.into(), detail });
    }
    fn finish(mut self, outcome: Outcome, message: String) -> Report {
        self.report.outcome = outcome;
        self.report.message = message;
        self.report.finished_at = self.ctx.clock.now();
        self.report
    }
}

const UNTOUCHED: &str = "production untouched";

fn refused(msg: impl std::fmt::Display) -> Stop {
    Stop(Outcome::Refused, format!("refused: {msg}; {UNTOUCHED}"))
}

/// A tag given by the operator or the pipeline → the image by digest, with its revision.
async fn resolve_tag(j: &mut Journal<'_>, raw: &str) -> Result<(ImageTag, String, Option<String>), Stop> {
    let tag = ImageTag::parse(raw).map_err(refused)?;
    j.report.image_tag = Some(tag.as_str().to_owned());
    let cp = &j.ctx.cp;
    let (digest, revision) = match &tag {
        ImageTag::Digest(d) => (d.clone(), None),
        t => match cp.resolve(j.clock(), t.as_str()).await? {
            Some(r) => (r.digest, r.revision),
            None => {
                return Err(refused(format!(
                    "{}:{} is not in {} (no such tag in this repository)",
                    cp.target.repository,
                    t.as_str(),
                    cp.target.registry
                )));
            }
        },
    };
    j.step("resolve", format!("{} → {digest} (revision {})", tag.as_str(), revision.as_deref().unwrap_or("?")));
    j.report.digest = Some(digest.clone());
    j.report.image = Some(cp.image_ref(&digest));
    j.report.revision = revision.clone();
    Ok((tag, digest, revision))
}

/// Probes `/api/health` on a slot until it answers 200 (and, when known, runs `revision`).
async fn wait_healthy(j: &mut Journal<'_>, slot: Slot, revision: Option<&str>, attempts: u32) -> Result<(), String> {
    let mut last = String::from("no answer");
    let url = j.ctx.cp.slot_url(j.clock(), slot).await.map_err(|e| e.to_string())?;
    for attempt in 1..=attempts {
        match j.ctx.cp.probe(&format!("{url}/api/health"), None, Method::GET).await {
            Ok((200, body)) => {
                let running = body.get("revision").and_then(Value::as_str).unwrap_or("");
                match revision {
                    Some(r) if running != r => last = format!("healthy but runs revision {running}, not {r}"),
                    _ => {
                        j.step("health", format!("{} healthy on revision {running} (probe {attempt})", slot.name()));
                        return Ok(());
                    }
                }
            }
            Ok((status, _)) => last = format!("/api/health answered {status}"),
            Err(e) => last = e.to_string(),
        }
        if attempt < attempts {
            j.clock().sleep(j.ctx.policy.health_interval).await;
        }
    }
    Err(last)
}

/// What a user's first requests need: the catalogue, and a registration refused without a
/// token as problem+json (so the app runs with authentication on).
async fn smoke_test(j: &mut Journal<'_>, slot: Slot) -> Result<(), String> {
    let cp = &j.ctx.cp;
    let url = cp.slot_url(j.clock(), slot).await.map_err(|e| e.to_string())?;
    let key = cp.function_key(j.clock(), slot).await.map_err(|e| e.to_string())?;
    let (status, body) =
        cp.probe(&format!("{url}/api/brands"), Some(&key), Method::GET).await.map_err(|e| e.to_string())?;
    let brands = body.get("brands").and_then(Value::as_array).map_or(0, Vec::len);
    if status != 200 || brands == 0 {
        return Err(format!("GET /api/brands answered {status} with {brands} brands"));
    }
    let (status, body) =
        cp.probe(&format!("{url}/api/products"), Some(&key), Method::POST).await.map_err(|e| e.to_string())?;
    if status != 401 || body.get("code").and_then(Value::as_str) != Some("unauthorized") {
        return Err(format!("an unauthenticated registration answered {status} {body}, not 401 unauthorized"));
    }
    j.step("smoke-test", format!("{} slot: {brands} brands; unauthenticated registration → 401", slot.name()));
    Ok(())
}

/// The verification query: production requests since `since` (the swap).
pub fn verification_query(since: DateTime<Utc>) -> String {
    format!(
        "requests | where timestamp > datetime({}) | where cloud_RoleName !endswith \"staging\" \
         | summarize total = count(), failed = countif(toint(resultCode) >= 500), p95 = percentile(duration, 95)",
        since.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

enum Verification {
    Verified { conclusive: u32 },
    Breach(String),
}

/// `samples` one-minute samples of production since `since`; the first breach ends it.
async fn verify(j: &mut Journal<'_>, since: DateTime<Utc>, samples: u32) -> Result<Verification, ControlError> {
    let mut conclusive = 0;
    for i in 1..=samples {
        j.clock().sleep(j.ctx.policy.sample_interval).await;
        let result = j.ctx.cp.query(j.clock(), &verification_query(since)).await?;
        let verdict = health_verdict(&result, &j.ctx.policy.limits)
            .unwrap_or_else(|e| HealthVerdict::Inconclusive { requests: 0, reason: e.to_string() });
        match verdict {
            HealthVerdict::Healthy { requests, failure_rate, p95_ms } => {
                conclusive += 1;
                j.step(
                    "verify",
                    format!(
                        "sample {i}/{samples}: healthy ({requests} requests, {:.2} % failed, p95 {p95_ms:.0} ms)",
                        failure_rate * 100.0
                    ),
                );
            }
            HealthVerdict::Unhealthy { reasons, requests, .. } => {
                let why = reasons.join("; ");
                j.step("verify", format!("sample {i}/{samples}: breach ({requests} requests): {why}"));
                return Ok(Verification::Breach(why));
            }
            HealthVerdict::Inconclusive { reason, .. } => {
                j.step("verify", format!("sample {i}/{samples}: inconclusive: {reason}"))
            }
        }
    }
    Ok(Verification::Verified { conclusive })
}

/// Stops when a slot does not run what this run expects: another release got there first.
async fn guard(j: &mut Journal<'_>, slot: Slot, expected: Option<&str>) -> Result<(), Stop> {
    let now = j.ctx.cp.slot_image(j.clock(), slot).await?;
    if now.as_deref() != expected {
        return Err(Stop(
            Outcome::Conflict,
            format!(
                "the {} slot runs {} where this run expected {}: another release changed the slots; stopped \
                 before touching production (releases share the concurrency group production-release)",
                slot.name(),
                now.as_deref().unwrap_or("nothing"),
                expected.unwrap_or("nothing")
            ),
        ));
    }
    Ok(())
}

async fn release_event(j: &mut Journal<'_>, mode: &str) {
    let mut props = serde_json::Map::new();
    props.insert("imageTag".into(), json!(j.report.image_tag.clone().unwrap_or_else(|| "unknown".into())));
    props.insert("digest".into(), json!(j.report.digest.clone().unwrap_or_default()));
    props.insert("mode".into(), json!(mode));
    props.insert("runUrl".into(), json!(j.ctx.run.run_url));
    props.insert("actor".into(), json!(j.ctx.run.actor));
    let at = j.ctx.clock.now();
    // The record is not worth failing a release over: a missing marker is logged and reported.
    match j.ctx.cp.release_event(j.clock(), at, &props).await {
        Ok(()) => j.step("release-event", format!("annotation + Release event ({mode})")),
        Err(e) => j.step("release-event", format!("not written: {e}")),
    }
}

/// Stage an immutable tag on the staging slot. `expected_revision`: the commit a fresh build
/// was made from; an image whose revision label differs is refused.
pub async fn stage(ctx: &Context, tag: &str, expected_revision: Option<&str>) -> Report {
    let mut j = Journal::new(ctx, "stage");
    match stage_steps(&mut j, tag, expected_revision).await {
        Ok(()) => {
            let msg = format!(
                "{} ({}) runs healthy on staging and passed the smoke test",
                j.report.image_tag.clone().unwrap_or_default(),
                j.report.digest.clone().unwrap_or_default()
            );
            j.finish(Outcome::Staged, msg)
        }
        Err(Stop(o, m)) => j.finish(o, m),
    }
}

async fn stage_steps(j: &mut Journal<'_>, tag: &str, expected_revision: Option<&str>) -> Result<(), Stop> {
    let (_, digest, revision) = resolve_tag(j, tag).await?;
    if let (Some(label), Some(expected)) = (revision.as_deref(), expected_revision)
        && label != expected
    {
        return Err(refused(format!(
            "the image's revision label is {label}, not the commit {expected} that was built"
        )));
    }
    let revision = revision.or_else(|| expected_revision.map(str::to_owned));
    j.report.revision = revision.clone();
    let image = j.ctx.cp.image_ref(&digest);
    j.report.production_before = j.ctx.cp.slot_image(j.clock(), Slot::Production).await?;
    j.ctx.cp.set_slot_image(j.clock(), Slot::Staging, &image).await?;
    j.step("stage", format!("staging slot → {image}"));
    if let Err(last) = wait_healthy(j, Slot::Staging, revision.as_deref(), j.ctx.policy.health_attempts).await {
        return Err(Stop(
            Outcome::StagingUnhealthy,
            format!(
                "staging never became healthy on {} ({last}); {UNTOUCHED}. Escalate: look at the staging slot's \
                 logs; for a rollback try the next older stable tag, then page the service owner (runbook: When the rollback fails)",
                revision.as_deref().unwrap_or(&image)
            ),
        ));
    }
    if let Err(why) = smoke_test(j, Slot::Staging).await {
        return Err(Stop(Outcome::StagingUnhealthy, format!("smoke test failed on staging: {why}; {UNTOUCHED}")));
    }
    Ok(())
}

/// Swap a staged release into production and watch it; swap back on breach.
pub async fn promote(ctx: &Context, tag: &str, digest: &str, revision: Option<&str>) -> Report {
    let mut j = Journal::new(ctx, "promote");
    j.report.image_tag = Some(tag.to_owned());
    j.report.digest = Some(digest.to_owned());
    j.report.image = Some(ctx.cp.image_ref(digest));
    j.report.revision = revision.map(str::to_owned);
    let result = promote_steps(&mut j).await;
    let (outcome, message) = match result {
        Ok((o, m)) => (o, m),
        Err(Stop(o, m)) => (o, m),
    };
    if let Some(id) = j.report.deployment_id {
        let state = if outcome == Outcome::Verified { "success" } else { "failure" };
        let run_url = ctx.run.run_url.clone();
        match ctx.cp.deployment_status(j.clock(), id, state, &message, Some(&run_url)).await {
            Ok(()) => j.step("record", format!("deployment {id}: {state}")),
            Err(e) => j.step("record", format!("deployment {id} not updated: {e}")),
        }
    }
    j.report.production_after = ctx.cp.slot_image(j.clock(), Slot::Production).await.ok().flatten();
    j.finish(outcome, message)
}

async fn promote_steps(j: &mut Journal<'_>) -> Result<(Outcome, String), Stop> {
    let image = j.report.image.clone().unwrap_or_default();
    let tag = j.report.image_tag.clone().unwrap_or_default();
    let digest = j.report.digest.clone().unwrap_or_default();
    ImageTag::parse(&tag).map_err(refused)?;
    guard(j, Slot::Staging, Some(&image)).await?;
    let before = j.ctx.cp.slot_image(j.clock(), Slot::Production).await?;
    j.report.production_before = before.clone();
    let git_ref = j.report.revision.clone().unwrap_or_else(|| j.ctx.run.workflow_sha.clone());
    let id = j
        .ctx
        .cp
        .create_deployment(
            j.clock(),
            &git_ref,
            &format!("warranty {tag}"),
            json!({ "imageTag": tag, "digest": digest }),
        )
        .await?;
    j.report.deployment_id = Some(id);
    j.ctx
        .cp
        .deployment_status(j.clock(), id, "in_progress", "swapping into production", Some(&j.ctx.run.run_url))
        .await?;
    j.step("record", format!("deployment {id}: in_progress"));

    j.ctx.cp.apply_slot_config(j.clock()).await?;
    j.step("swap-preview", "production settings applied to staging");
    if let Err(last) = wait_healthy(j, Slot::Staging, None, j.ctx.policy.health_attempts / 2).await {
        j.ctx.cp.reset_slot_config(j.clock()).await?;
        return Err(Stop(
            Outcome::StagingUnhealthy,
            format!("unhealthy with production settings ({last}); swap cancelled, {UNTOUCHED}"),
        ));
    }
    guard(j, Slot::Production, before.as_deref()).await?;
    j.ctx.cp.swap(j.clock()).await?;
    let swapped_at = j.ctx.clock.now();
    j.step("swap", format!("production → {image}"));
    release_event(j, "deploy").await;

    match verify(j, swapped_at, j.ctx.policy.deploy_samples).await? {
        Verification::Verified { conclusive } => {
            j.report.verified_at = Some(j.ctx.clock.now());
            let note = if conclusive == 0 { " (no conclusive sample: too little traffic)" } else { "" };
            Ok((Outcome::Verified, format!("{tag} verified in production{note}")))
        }
        Verification::Breach(why) => {
            // Swap back only what this run put there.
            guard(j, Slot::Production, Some(&image)).await?;
            j.ctx.cp.swap(j.clock()).await?;
            j.step("swap-back", format!("production → {}", before.as_deref().unwrap_or("?")));
            release_event(j, "auto-swap-back").await;
            Ok((
                Outcome::SwappedBack,
                format!("{tag} breached the SLO after the swap ({why}); swapped back automatically"),
            ))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RollbackMode {
    SwapBack,
    Redeploy,
}

impl RollbackMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::SwapBack => "swap-back",
            Self::Redeploy => "redeploy",
        }
    }
}

/// Roll production back; opens the post-mortem when production was changed.
pub async fn rollback(ctx: &Context, mode: RollbackMode, tag: Option<&str>, reason: &str) -> Report {
    let mut j = Journal::new(ctx, &format!("rollback ({})", mode.name()));
    let mut facts = RollbackFacts::default();
    let result = rollback_steps(&mut j, mode, tag, &mut facts).await;
    let (outcome, message) = match result {
        Ok((o, m)) => (o, m),
        Err(Stop(o, m)) => (o, m),
    };
    if facts.swapped {
        release_event(&mut j, mode.name()).await;
        record_rollback(&mut j, mode, outcome, &message, &facts).await;
        post_mortem(&mut j, mode, outcome, reason, &facts).await;
    }
    j.report.production_after = ctx.cp.slot_image(j.clock(), Slot::Production).await.ok().flatten();
    j.finish(outcome, message)
}

#[derive(Default)]
struct RollbackFacts {
    swapped: bool,
    running_tag: Option<String>,
    running_deployment: Option<u64>,
}

async fn rollback_steps(
    j: &mut Journal<'_>,
    mode: RollbackMode,
    tag: Option<&str>,
    facts: &mut RollbackFacts,
) -> Result<(Outcome, String), Stop> {
    let cp = &j.ctx.cp;
    let production = cp.slot_image(j.clock(), Slot::Production).await?;
    let staging = cp.slot_image(j.clock(), Slot::Staging).await?;
    let history = cp.deployments(j.clock(), "production").await?;
    j.report.production_before = production.clone();
    let by_image = |image: Option<&str>| {
        let image = image?;
        history
            .iter()
            .find(|d| d.payload.get("digest").and_then(Value::as_str).is_some_and(|digest| image.ends_with(digest)))
    };
    let running = by_image(production.as_deref());
    facts.running_tag = running.and_then(|d| d.payload.get("imageTag")?.as_str().map(str::to_owned));
    facts.running_deployment = running.map(|d| d.id);
    j.step(
        "current",
        format!(
            "production {} ({}), staging {}",
            production.as_deref().unwrap_or("nothing"),
            facts.running_tag.as_deref().unwrap_or("untracked"),
            staging.as_deref().unwrap_or("nothing")
        ),
    );

    let (target, revision) = match mode {
        RollbackMode::SwapBack => {
            if tag.is_some_and(|t| !t.trim().is_empty()) {
                return Err(refused("swap-back takes no imageTag (it swaps back to what staging holds); use redeploy"));
            }
            let Some(staging) = staging.clone() else {
                return Err(refused("the staging slot holds no image to swap back to; use redeploy"));
            };
            let record = by_image(Some(&staging));
            j.report.image_tag = record.and_then(|d| d.payload.get("imageTag")?.as_str().map(str::to_owned));
            j.report.digest = staging.split_once('@').map(|(_, d)| d.to_owned());
            j.report.image = Some(staging.clone());
            (staging, None)
        }
        RollbackMode::Redeploy => {
            let tag = match tag.map(str::trim).filter(|t| !t.is_empty()) {
                Some(t) => t.to_owned(),
                None => {
                    let stable = last_stable(&history, "production", facts.running_tag.as_deref()).ok_or_else(|| {
                        refused("no stable production release in the deployment record other than the running one; give imageTag")
                    })?;
                    j.step("last-stable", format!("{} (deployment {})", stable.image_tag, stable.deployment_id));
                    stable.image_tag
                }
            };
            let (_, digest, revision) = resolve_tag(j, &tag).await?;
            (j.ctx.cp.image_ref(&digest), revision)
        }
    };
    if production.as_deref() == Some(target.as_str()) {
        return Err(refused(format!("production already runs {target}")));
    }
    if mode == RollbackMode::Redeploy {
        guard(j, Slot::Staging, staging.as_deref()).await?;
        j.ctx.cp.set_slot_image(j.clock(), Slot::Staging, &target).await?;
        j.step("stage", format!("staging slot → {target}"));
        if let Err(last) = wait_healthy(j, Slot::Staging, revision.as_deref(), j.ctx.policy.health_attempts).await {
            return Err(Stop(
                Outcome::StagingUnhealthy,
                format!(
                    "the target never became healthy on staging ({last}); {UNTOUCHED}. Escalate: redeploy the next \
                     older stable tag (imageTag), then page the service owner (runbook: When the rollback fails)"
                ),
            ));
        }
        if let Err(why) = smoke_test(j, Slot::Staging).await {
            return Err(Stop(Outcome::StagingUnhealthy, format!("smoke test failed on staging: {why}; {UNTOUCHED}")));
        }
    }
    guard(j, Slot::Production, production.as_deref()).await?;
    guard(j, Slot::Staging, Some(&target)).await?;
    j.ctx.cp.swap(j.clock()).await?;
    facts.swapped = true;
    let swapped_at = j.ctx.clock.now();
    j.step("swap", format!("production → {target}"));

    if let Err(last) = wait_healthy(j, Slot::Production, revision.as_deref(), 12).await {
        return Ok((
            Outcome::StillBreaching,
            format!(
                "production does not answer healthy after the rollback ({last}): escalate now (runbook: When the rollback fails)"
            ),
        ));
    }
    match verify(j, swapped_at, j.ctx.policy.rollback_samples).await? {
        Verification::Verified { .. } => {
            j.report.verified_at = Some(j.ctx.clock.now());
            Ok((
                Outcome::Verified,
                format!(
                    "rolled back to {} ({}); production verified",
                    j.report.image_tag.as_deref().unwrap_or("?"),
                    target
                ),
            ))
        }
        Verification::Breach(why) => Ok((
            Outcome::StillBreaching,
            format!(
                "still breaching after the rollback ({why}): the cause is not (only) the release. Escalate: service \
                 owner → platform lead → incident commander; do not roll back further without a cause \
                 (runbook: When the rollback fails)"
            ),
        )),
    }
}

async fn record_rollback(
    j: &mut Journal<'_>,
    mode: RollbackMode,
    outcome: Outcome,
    message: &str,
    facts: &RollbackFacts,
) {
    let cp = &j.ctx.cp;
    let clock = j.ctx.clock.clone();
    let run_url = j.ctx.run.run_url.clone();
    // The release rolled away from is not stable any more: later rollbacks skip it.
    if outcome == Outcome::Verified
        && let Some(id) = facts.running_deployment
    {
        match cp.deployment_status(clock.as_ref(), id, "failure", "rolled back", Some(&run_url)).await {
            Ok(()) => j.step(
                "record",
                format!("deployment {id} ({}): failure (rolled back)", facts.running_tag.as_deref().unwrap_or("?")),
            ),
            Err(e) => j.step("record", format!("deployment {id} not marked failed: {e}")),
        }
    }
    let tag = j.report.image_tag.clone().unwrap_or_else(|| "unknown".into());
    let payload = json!({ "imageTag": tag, "digest": j.report.digest.clone().unwrap_or_default(), "rollback": true });
    let git_ref = j.report.revision.clone().unwrap_or_else(|| j.ctx.run.workflow_sha.clone());
    let state = if outcome == Outcome::Verified { "success" } else { "failure" };
    let created =
        cp.create_deployment(clock.as_ref(), &git_ref, &format!("rollback ({}) to {tag}", mode.name()), payload).await;
    match created {
        Ok(id) => {
            j.report.deployment_id = Some(id);
            match cp.deployment_status(clock.as_ref(), id, state, message, Some(&run_url)).await {
                Ok(()) => j.step("record", format!("deployment {id} ({tag}): {state}")),
                Err(e) => j.step("record", format!("deployment {id} status not set: {e}")),
            }
        }
        Err(e) => j.step("record", format!("rollback not recorded: {e}")),
    }
}

/// The post-mortem template (BR-002) with its facts table filled in.
pub fn post_mortem_body(template: &str, facts: &[(&str, String)], reason: &str, timeline: &[(&str, String)]) -> String {
    let mut fm = 0;
    let mut body = String::new();
    for line in template.lines() {
        if fm < 2 && line.trim() == "---" {
            fm += 1;
            continue;
        }
        if fm == 1 {
            continue;
        }
        let mut line = line.to_owned();
        for (row, value) in facts {
            if line.starts_with(&format!("| {row} |")) {
                line = format!("| {row} | {value} |");
            }
        }
        for (entry, value) in timeline {
            if line == format!("- {entry}:") {
                line = format!("- {entry}: {value}");
            }
        }
        body.push_str(&line);
        body.push('\n');
    }
    format!("Reason given: {reason}\n\n{}", body.trim_start())
}

async fn post_mortem(j: &mut Journal<'_>, mode: RollbackMode, outcome: Outcome, reason: &str, facts: &RollbackFacts) {
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let r = &j.report;
    let outcome_name =
        serde_json::to_value(outcome).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let facts_rows = [
        (
            "Rolled back from",
            format!(
                "`{}` (`{}`)",
                facts.running_tag.as_deref().unwrap_or("untracked"),
                r.production_before.as_deref().unwrap_or("?")
            ),
        ),
        (
            "Rolled back to",
            format!("`{}` (`{}`)", r.image_tag.as_deref().unwrap_or("unknown"), r.image.as_deref().unwrap_or("?")),
        ),
        ("Mode", format!("{} ({outcome_name})", mode.name())),
        ("Triggered by / approved by", format!("@{}", j.ctx.run.actor)),
        ("Workflow run", j.ctx.run.run_url.clone()),
    ];
    let mut timeline = vec![("Rollback triggered", fmt(r.started_at))];
    if let Some(v) = r.verified_at {
        timeline.push(("Rollback complete (health verified)", fmt(v)));
    }
    let body = post_mortem_body(&j.ctx.run.post_mortem_template, &facts_rows, reason, &timeline);
    let title = format!(
        "Post-mortem: production rollback to {} ({})",
        r.image_tag.as_deref().unwrap_or("unknown"),
        r.started_at.format("%Y-%m-%d")
    );
    let clock = j.ctx.clock.clone();
    match j.ctx.cp.create_issue(clock.as_ref(), &title, &body, &["post-mortem", "incident"]).await {
        Ok(n) => {
            j.report.post_mortem_issue = Some(n);
            j.step("post-mortem", format!("issue #{n}"));
        }
        Err(e) => j.step("post-mortem", format!("not opened: {e}; open it by hand from the template")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_post_mortem_fills_the_facts_and_drops_the_front_matter() {
        let template = "---\nname: x\nlabels: a\n---\n\n## Facts\n\n| | |\n| --- | --- |\n| Mode | <!-- swap-back / redeploy --> |\n| Alert that fired | <!-- --> |\n\n- Rollback triggered:\n- Acknowledged:\n";
        let body = post_mortem_body(
            template,
            &[("Mode", "swap-back (verified)".into())],
            "P95 alert",
            &[("Rollback triggered", "2026-11-27T10:00:00Z".into())],
        );
        assert!(body.starts_with("Reason given: P95 alert\n\n## Facts"), "{body}");
        assert!(body.contains("| Mode | swap-back (verified) |"));
        assert!(body.contains("| Alert that fired | <!-- --> |"), "rows without a fact stay for the author");
        assert!(body.contains("- Rollback triggered: 2026-11-27T10:00:00Z\n- Acknowledged:\n"));
        assert!(!body.contains("name: x"));
    }

    #[test]
    fn the_verification_query_starts_at_the_swap() {
        let q = verification_query("2026-11-27T10:00:05.250Z".parse().unwrap());
        assert!(q.contains("timestamp > datetime(2026-11-27T10:00:05Z)"), "{q}");
        assert!(q.contains("total = count()") && q.contains("p95 = percentile(duration, 95)"));
    }
}
