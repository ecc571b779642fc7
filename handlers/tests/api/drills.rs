//! Release drills: every release path of `deploy.yml` and `rollback.yml` run end to end — the
//! same `warranty::ops::release` procedures the workflow steps call — against a simulated
//! Azure + GitHub control plane (see `sim.rs`: no subscription, registry or GitHub is reachable
//! here, so loopback servers play their documented REST contracts; the apps behind the slots
//! are the real `warranty` binary). Each drill asserts the end state, what was recorded
//! (deployment statuses, release annotation and event, the BR-002 post-mortem) and the
//! simulated time against the runbook's target. Run them with `cargo test --test api drills::`;
//! `-- --nocapture` prints each drill's timings.

mod sim;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use sim::{BROKEN_START, ControlPlaneSim, GOOD, REPOSITORY, SLOW, SimClock, image_ref, revision_of};
use warranty::ops::control::{ControlPlane, Endpoints, Target};
use warranty::ops::release::{self, Context, Outcome, Policy, Report, RollbackMode, Run};

/// An Entra ID token as the Azure CLI would hand it out; the simulation accepts `sim-token*`.
#[derive(Debug)]
struct StaticToken(&'static str);

#[async_trait::async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            Secret::new(self.0),
            azure_core::time::OffsetDateTime::now_utc() + Duration::from_secs(3600),
        ))
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap()
}

/// A workflow run's context: the procedures see only the simulation's endpoints.
fn context(sim: &ControlPlaneSim, caller: &'static str) -> Context {
    let target = Target {
        subscription: sim::SUB.into(),
        resource_group: sim::RG.into(),
        function_app: sim::APP.into(),
        registry: sim::REGISTRY.into(),
        repository: REPOSITORY.into(),
        app_insights_resource_id: sim::ai_component(),
        app_insights_app_id: String::new(),
        github_repository: sim::GITHUB_REPO.into(),
    };
    let endpoints = Endpoints {
        arm: sim.url.clone(),
        registry_api: Some(sim.url.clone()),
        app_insights_api: sim.url.clone(),
        github_api: sim.url.clone(),
        slot_scheme: "http".into(),
    };
    let cp = ControlPlane::new(target, endpoints, Arc::new(StaticToken(caller)), "gh-token".into()).unwrap();
    Context {
        cp,
        clock: sim.clock.clone(),
        policy: Policy::default(),
        run: Run {
            run_url: "https://github.com/contoso/warranty/actions/runs/4242".into(),
            actor: "oncall-ana".into(),
            workflow_sha: revision_of("main-head"),
            post_mortem_template: read(".github/ISSUE_TEMPLATE/post-mortem.md"),
        },
    }
}

/// The state most drills start from: v1.1.0 and v1.2.0 were good releases, v1.3.0 went out an
/// hour ago (verified at the time) and now breaches; v1.2.0 is still warm in staging.
async fn bad_release_in_production() -> (ControlPlaneSim, BTreeMap<&'static str, String>) {
    let sim = ControlPlaneSim::start(SimClock::new()).await;
    let mut d = BTreeMap::new();
    d.insert("v1.1.0", sim.push(REPOSITORY, "v1.1.0", GOOD));
    d.insert("v1.2.0", sim.push(REPOSITORY, "v1.2.0", GOOD));
    d.insert("v1.3.0", sim.push(REPOSITORY, "v1.3.0", SLOW));
    sim.seed_deployment("v1.1.0", 72, &[("in_progress", 0), ("success", 14), ("inactive", 24 * 60)]);
    sim.seed_deployment("v1.2.0", 48, &[("in_progress", 0), ("success", 14), ("inactive", 47 * 60)]);
    sim.seed_deployment("v1.3.0", 1, &[("in_progress", 0), ("success", 14)]);
    sim.seed_slot(true, &d["v1.3.0"]).await;
    sim.seed_slot(false, &d["v1.2.0"]).await;
    (sim, d)
}

fn minutes(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 60_000.0
}

/// When a step first happened, counted from the procedure's start.
fn at_step(report: &Report, step: &str) -> chrono::Duration {
    let s = report.steps.iter().find(|s| s.step == step).unwrap_or_else(|| panic!("no `{step}` step: {report:#?}"));
    s.at - report.started_at
}

fn show(drill: &str, report: &Report) {
    eprintln!(
        "{drill}: {:?} in {:.1} min simulated (verified after {}): {}",
        report.outcome,
        minutes(report.finished_at - report.started_at),
        report.time_to_verified().map_or("-".into(), |t| format!("{:.1} min", minutes(t))),
        report.message
    );
    for s in &report.steps {
        eprintln!("    +{:>5.1} min  {:<13} {}", minutes(s.at - report.started_at), s.step, s.detail);
    }
}

async fn production_revision(sim: &ControlPlaneSim) -> String {
    let health = sim.slot_health(true).await.expect("production answers");
    health["revision"].as_str().unwrap().to_owned()
}

/// Drill 1: a bad release, swapped back. Target: verified within 5 minutes of the trigger.
#[tokio::test]
async fn drill_1_swap_back_after_a_bad_release() {
    let (sim, d) = bad_release_in_production().await;
    let bad = sim.deployment_by_tag("v1.3.0")[0];
    let report = release::rollback(
        &context(&sim, "sim-token-rollback"),
        RollbackMode::SwapBack,
        Some(""),
        "P95 alert 14:00, INC-7",
    )
    .await;
    show("drill 1 (swap-back)", &report);
    assert_eq!(report.outcome, Outcome::Verified, "{}", report.message);
    assert_eq!(report.exit_code(), 0);
    assert!(minutes(report.time_to_verified().unwrap()) <= 5.0, "verified within 5 minutes");
    // Production serves v1.2.0 (real request to the app), the bad release waits in staging.
    assert_eq!(sim.slot_image(true), Some(image_ref(&d["v1.2.0"])));
    assert_eq!(sim.slot_image(false), Some(image_ref(&d["v1.3.0"])));
    assert_eq!(production_revision(&sim).await, revision_of("v1.2.0"));
    // Recorded: the bad release failed, the rollback deployment succeeded.
    assert_eq!(sim.states(bad).last().map(String::as_str), Some("failure"));
    let rb = report.deployment_id.unwrap();
    assert_eq!(sim.states(rb), ["success"]);
    let w = sim.world.lock().unwrap();
    let record = w.deployments.iter().find(|x| x["id"] == rb).unwrap();
    assert_eq!(record["payload"]["imageTag"], "v1.2.0");
    assert_eq!(record["payload"]["rollback"], true);
    assert!(w.annotations.iter().any(|a| a["AnnotationName"] == "warranty v1.2.0 (swap-back)"));
    let event = &w.events[0]["data"]["baseData"];
    assert_eq!((event["name"].as_str(), event["properties"]["mode"].as_str()), (Some("Release"), Some("swap-back")));
    // BR-002: the post-mortem, facts filled in.
    assert_eq!(w.issues.len(), 1);
    let issue = &w.issues[0];
    assert_eq!(issue["labels"], serde_json::json!(["post-mortem", "incident"]));
    assert!(issue["title"].as_str().unwrap().starts_with("Post-mortem: production rollback to v1.2.0"));
    let body = issue["body"].as_str().unwrap();
    assert!(body.starts_with("Reason given: P95 alert 14:00, INC-7"), "{body}");
    assert!(body.contains(&format!("| Rolled back from | `v1.3.0` (`{}`) |", image_ref(&d["v1.3.0"]))), "{body}");
    assert!(body.contains(&format!("| Rolled back to | `v1.2.0` (`{}`) |", image_ref(&d["v1.2.0"]))));
    assert!(body.contains("| Mode | swap-back (verified) |"));
    assert!(body.contains("| Triggered by / approved by | @oncall-ana |"));
    assert!(body.contains("| Workflow run | https://github.com/contoso/warranty/actions/runs/4242 |"));
    assert!(body.contains("- Rollback complete (health verified): 2026-11-27T"));
    assert!(!body.contains("about: Blameless"), "front matter dropped");
}

/// Drill 2: the seed's call — deploy.yml with the previous stable `imageTag`: no build, the tag
/// staged by digest, checked, swapped in and verified for the full window.
#[tokio::test]
async fn drill_2_deploy_yml_with_the_previous_stable_image_tag() {
    let (sim, d) = bad_release_in_production().await;
    // Since the bad release, staging received something else: no swap-back possible.
    let other = sim.push(REPOSITORY, "v1.3.1", GOOD);
    sim.seed_slot(false, &other).await;
    let ctx = context(&sim, "sim-token-deploy");
    let staged = release::stage(&ctx, "v1.2.0", None).await;
    show("drill 2 (deploy.yml imageTag=v1.2.0: stage)", &staged);
    assert_eq!(staged.outcome, Outcome::Staged, "{}", staged.message);
    assert_eq!(staged.digest.as_deref(), Some(d["v1.2.0"].as_str()));
    assert_eq!(staged.revision, Some(revision_of("v1.2.0")));
    assert_eq!(sim.slot_image(true), Some(image_ref(&d["v1.3.0"])), "staging only");
    let promoted =
        release::promote(&ctx, "v1.2.0", staged.digest.as_deref().unwrap(), staged.revision.as_deref()).await;
    show("drill 2 (deploy.yml imageTag=v1.2.0: promote)", &promoted);
    assert_eq!(promoted.outcome, Outcome::Verified, "{}", promoted.message);
    let restored = (staged.finished_at - staged.started_at) + at_step(&promoted, "swap");
    let verified = (staged.finished_at - staged.started_at) + promoted.time_to_verified().unwrap();
    eprintln!(
        "drill 2: production restored after {:.1} min, verified after {:.1} min",
        minutes(restored),
        minutes(verified)
    );
    assert!(minutes(restored) <= 5.0, "the good release serves within 5 minutes");
    assert!(minutes(verified) >= 10.0 && minutes(verified) <= 15.0, "then the 10-minute window");
    assert_eq!(production_revision(&sim).await, revision_of("v1.2.0"));
    let id = promoted.deployment_id.unwrap();
    assert_eq!(sim.states(id), ["in_progress", "success"]);
    let w = sim.world.lock().unwrap();
    let record = w.deployments.iter().find(|x| x["id"] == id).unwrap();
    assert_eq!(record["payload"]["imageTag"], "v1.2.0");
    assert_eq!(record["payload"]["digest"], d["v1.2.0"].as_str());
    assert_eq!(record["ref"], revision_of("v1.2.0").as_str(), "the record names the image's commit");
    assert!(w.annotations.iter().any(|a| a["AnnotationName"] == "warranty v1.2.0 (deploy)"));
    assert_eq!(w.queries.len(), 10, "ten one-minute samples");
    assert!(w.queries.iter().all(|q| q.contains("timestamp > datetime(2026-11-27T")), "samples start at the swap");
}

/// Drill 3: redeploy with an empty tag → the last stable release, skipping the one a previous
/// rollback marked failed.
#[tokio::test]
async fn drill_3_redeploy_with_an_empty_tag_takes_the_last_stable_release() {
    let sim = ControlPlaneSim::start(SimClock::new()).await;
    let v110 = sim.push(REPOSITORY, "v1.1.0", GOOD);
    sim.push(REPOSITORY, "v1.2.0", SLOW);
    let v130 = sim.push(REPOSITORY, "v1.3.0", SLOW);
    sim.seed_deployment("v1.1.0", 72, &[("success", 14), ("inactive", 24 * 60)]);
    // v1.2.0 was verified, later rolled back: not stable.
    sim.seed_deployment("v1.2.0", 48, &[("success", 14), ("failure", 20 * 60)]);
    sim.seed_deployment("v1.3.0", 1, &[("success", 14)]);
    sim.seed_slot(true, &v130).await;
    sim.seed_slot(false, &v130).await;
    let report = release::rollback(
        &context(&sim, "sim-token-rollback"),
        RollbackMode::Redeploy,
        Some(""),
        "errors after v1.3.0",
    )
    .await;
    show("drill 3 (redeploy, empty tag)", &report);
    assert_eq!(report.outcome, Outcome::Verified, "{}", report.message);
    assert_eq!(report.image_tag.as_deref(), Some("v1.1.0"));
    assert!(report.steps.iter().any(|s| s.step == "last-stable" && s.detail.starts_with("v1.1.0")));
    assert_eq!(sim.slot_image(true), Some(image_ref(&v110)));
    assert_eq!(production_revision(&sim).await, revision_of("v1.1.0"));
    assert!(minutes(report.time_to_verified().unwrap()) <= 10.0, "runbook target: verified within 10 minutes");
    let w = sim.world.lock().unwrap();
    assert!(w.issues[0]["body"].as_str().unwrap().contains("| Mode | redeploy (verified) |"));
}

/// Drill 4: tags that must never reach production: mutable, unknown, another repository's.
#[tokio::test]
async fn drill_4_mutable_unknown_and_foreign_tags_are_refused_with_production_untouched() {
    let (sim, d) = bad_release_in_production().await;
    // v2.0.0 exists, but in another repository of the same registry.
    sim.push("warranty-legacy", "v2.0.0", GOOD);
    let ctx = context(&sim, "sim-token-deploy");
    let cases = [
        ("latest", "mutable tag"),
        ("v1", "mutable tag"),
        ("v9.9.9", "is not in warrantyacr.azurecr.io"),
        ("v2.0.0", "is not in warrantyacr.azurecr.io"),
        ("warranty-legacy:v2.0.0", "not an image tag"),
        ("$(curl evil)", "not an image tag"),
    ];
    for (tag, why) in cases {
        let staged = release::stage(&ctx, tag, None).await;
        assert_eq!(staged.outcome, Outcome::Refused, "deploy {tag}: {}", staged.message);
        assert!(
            staged.message.contains(why) && staged.message.ends_with("production untouched"),
            "{tag}: {}",
            staged.message
        );
        let rolled = release::rollback(&ctx, RollbackMode::Redeploy, Some(tag), "drill").await;
        assert_eq!(rolled.outcome, Outcome::Refused, "rollback {tag}: {}", rolled.message);
        assert_eq!(rolled.exit_code(), 1);
    }
    show("drill 4 (unknown tag)", &release::stage(&ctx, "v9.9.9", None).await);
    assert!(sim.mutations().is_empty(), "no slot changed: {:?}", sim.mutations());
    assert_eq!(sim.slot_image(true), Some(image_ref(&d["v1.3.0"])));
    let w = sim.world.lock().unwrap();
    assert!(w.issues.is_empty() && w.annotations.is_empty(), "nothing rolled back, nothing to record");
    assert_eq!(w.deployments.len(), 3);
}

/// Drill 5: the target never becomes healthy on staging → production untouched, escalate.
#[tokio::test]
async fn drill_5_staging_never_healthy_leaves_production_untouched() {
    let (sim, d) = bad_release_in_production().await;
    sim.push(REPOSITORY, "v1.4.0", BROKEN_START);
    let ctx = context(&sim, "sim-token-deploy");
    let staged = release::stage(&ctx, "v1.4.0", None).await;
    show("drill 5 (deploy: staging never healthy)", &staged);
    assert_eq!(staged.outcome, Outcome::StagingUnhealthy);
    assert!(
        staged.message.contains("production untouched") && staged.message.contains("Escalate"),
        "{}",
        staged.message
    );
    let waited = minutes(staged.finished_at - staged.started_at);
    assert!((10.0..12.0).contains(&waited), "gave staging the runbook's 10 minutes: {waited:.1}");
    let rolled = release::rollback(&ctx, RollbackMode::Redeploy, Some("v1.4.0"), "drill").await;
    assert_eq!(rolled.outcome, Outcome::StagingUnhealthy);
    assert!(rolled.message.contains("Escalate: redeploy the next older stable tag"), "{}", rolled.message);
    assert_eq!(sim.slot_image(true), Some(image_ref(&d["v1.3.0"])));
    assert_eq!(production_revision(&sim).await, revision_of("v1.3.0"));
    assert!(sim.mutations().iter().all(|m| m.what.starts_with("staging →")), "{:?}", sim.mutations());
    assert!(sim.world.lock().unwrap().issues.is_empty(), "no rollback happened: no post-mortem");
}

/// Drill 6: still breaching after the rollback (a dependency outage, not the release) → the
/// runbook's escalation path; the release rolled away from is not blamed.
#[tokio::test]
async fn drill_6_still_breaching_after_the_rollback_escalates() {
    let (sim, d) = bad_release_in_production().await;
    sim.world.lock().unwrap().outage = true;
    let bad = sim.deployment_by_tag("v1.3.0")[0];
    let report =
        release::rollback(&context(&sim, "sim-token-rollback"), RollbackMode::SwapBack, None, "failure-rate alert")
            .await;
    show("drill 6 (still breaching)", &report);
    assert_eq!(report.outcome, Outcome::StillBreaching);
    assert_eq!(report.exit_code(), 1);
    assert!(report.message.contains("service owner → platform lead → incident commander"), "{}", report.message);
    assert_eq!(report.verified_at, None);
    assert_eq!(sim.slot_image(true), Some(image_ref(&d["v1.2.0"])), "the rollback itself happened");
    assert_eq!(
        sim.states(bad).last().map(String::as_str),
        Some("success"),
        "not marked failed: not shown to be the cause"
    );
    assert_eq!(sim.states(report.deployment_id.unwrap()), ["failure"]);
    let w = sim.world.lock().unwrap();
    assert!(w.issues[0]["body"].as_str().unwrap().contains("| Mode | swap-back (still-breaching) |"));
}

/// Drill 7: a deploy whose verification window breaches the SLO is swapped back automatically.
#[tokio::test]
async fn drill_7_a_breaching_deploy_is_swapped_back_automatically() {
    let sim = ControlPlaneSim::start(SimClock::new()).await;
    let v120 = sim.push(REPOSITORY, "v1.2.0", GOOD);
    sim.push(REPOSITORY, "v1.3.0", SLOW);
    let prev = sim.seed_deployment("v1.2.0", 48, &[("success", 14)]);
    sim.seed_slot(true, &v120).await;
    let ctx = context(&sim, "sim-token-deploy");
    let staged = release::stage(&ctx, "v1.3.0", Some(&revision_of("v1.3.0"))).await;
    assert_eq!(staged.outcome, Outcome::Staged, "healthy and smoke-tested: the breach shows only under traffic");
    let report = release::promote(&ctx, "v1.3.0", staged.digest.as_deref().unwrap(), staged.revision.as_deref()).await;
    show("drill 7 (deploy breaches → auto swap-back)", &report);
    assert_eq!(report.outcome, Outcome::SwappedBack, "{}", report.message);
    assert!(report.message.contains("p95 latency 1450 ms > 500 ms"), "{}", report.message);
    let back = at_step(&report, "swap-back") - at_step(&report, "swap");
    eprintln!("drill 7: swapped back {:.1} min after the swap", minutes(back));
    assert!(minutes(back) <= 5.0, "the first breaching sample triggers the swap-back");
    assert_eq!(sim.slot_image(true), Some(image_ref(&v120)));
    assert_eq!(production_revision(&sim).await, revision_of("v1.2.0"));
    assert_eq!(sim.states(report.deployment_id.unwrap()), ["in_progress", "failure"]);
    assert_eq!(sim.states(prev), ["success"], "the previous release was never succeeded: still the stable one");
    let w = sim.world.lock().unwrap();
    let names: Vec<&str> = w.annotations.iter().map(|a| a["AnnotationName"].as_str().unwrap()).collect();
    assert_eq!(names, ["warranty v1.3.0 (deploy)", "warranty v1.3.0 (auto-swap-back)"]);
}

/// `concurrency.group` of a workflow, read from its YAML.
fn concurrency_group(workflow: &str) -> String {
    let text = read(workflow);
    let block = text.split("\nconcurrency:\n").nth(1).unwrap_or_else(|| panic!("{workflow}: no concurrency block"));
    let mut group = None;
    let mut cancel = None;
    for line in block.lines().take_while(|l| l.starts_with("  ")) {
        if let Some(g) = line.trim().strip_prefix("group:") {
            group = Some(g.trim().to_owned());
        }
        if let Some(c) = line.trim().strip_prefix("cancel-in-progress:") {
            cancel = Some(c.trim().to_owned());
        }
    }
    assert_eq!(cancel.as_deref(), Some("false"), "{workflow}: a queued release must wait, not cancel one midway");
    group.unwrap()
}

/// GitHub's concurrency groups, as the drills need them: one run at a time per group.
#[derive(Default)]
struct Lanes(std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Lanes {
    fn lane(&self, group: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.0.lock().unwrap().entry(group.to_owned()).or_default().clone()
    }
}

/// Drill 8: a deploy and a rollback started together. The workflows' shared concurrency group
/// makes the second wait: the slot changes do not interleave and both runs succeed.
#[tokio::test]
async fn drill_8_a_deploy_and_a_rollback_started_together_do_not_interleave() {
    let sim = ControlPlaneSim::start(SimClock::new()).await;
    let v120 = sim.push(REPOSITORY, "v1.2.0", GOOD);
    let v140 = sim.push(REPOSITORY, "v1.4.0", GOOD);
    sim.seed_deployment("v1.2.0", 48, &[("success", 14)]);
    sim.seed_slot(true, &v120).await;
    let lanes = Lanes::default();
    let (deploy_lane, rollback_lane) = (
        lanes.lane(&concurrency_group(".github/workflows/deploy.yml")),
        lanes.lane(&concurrency_group(".github/workflows/rollback.yml")),
    );
    let deploy_ctx = context(&sim, "sim-token-deploy");
    let rollback_ctx = context(&sim, "sim-token-rollback");
    let deploy = async {
        let _run = deploy_lane.lock().await;
        let staged = release::stage(&deploy_ctx, "v1.4.0", None).await;
        assert_eq!(staged.outcome, Outcome::Staged, "{}", staged.message);
        release::promote(&deploy_ctx, "v1.4.0", staged.digest.as_deref().unwrap(), staged.revision.as_deref()).await
    };
    let rollback = async {
        // Triggered a moment later, while the deploy runs.
        tokio::task::yield_now().await;
        let _run = rollback_lane.lock().await;
        release::rollback(&rollback_ctx, RollbackMode::Redeploy, Some(""), "alert during a deploy").await
    };
    let (deployed, rolled) = tokio::join!(deploy, rollback);
    show("drill 8 (deploy, queued first)", &deployed);
    show("drill 8 (rollback, queued second)", &rolled);
    assert_eq!(deployed.outcome, Outcome::Verified, "{}", deployed.message);
    assert_eq!(rolled.outcome, Outcome::Verified, "{}", rolled.message);
    assert!(rolled.started_at >= deployed.finished_at, "the rollback waited for the deploy");
    // No interleaving: every slot change of one run precedes every change of the other.
    let callers: Vec<String> = sim.mutations().iter().map(|m| m.caller.clone()).collect();
    let first_rollback = callers.iter().position(|c| c == "sim-token-rollback").unwrap();
    assert!(callers[..first_rollback].iter().all(|c| c == "sim-token-deploy"));
    assert!(callers[first_rollback..].iter().all(|c| c == "sim-token-rollback"), "{callers:?}");
    let changes = sim.mutations();
    assert!(changes[first_rollback].at >= changes[first_rollback - 1].at);
    // The rollback went from v1.4.0 (deployed and verified meanwhile) to the release before it.
    assert_eq!(rolled.image_tag.as_deref(), Some("v1.2.0"));
    assert_eq!(sim.slot_image(true), Some(image_ref(&v120)));
    assert_eq!(sim.slot_image(false), Some(image_ref(&v140)));
}

/// Drill 8, the guard: a run that finds the slots changed under it (another release started
/// outside the concurrency group, from a shell) stops before touching production.
#[tokio::test]
async fn drill_8b_a_release_that_finds_the_slots_changed_stops_before_production() {
    let (sim, d) = bad_release_in_production().await;
    sim.push(REPOSITORY, "v1.4.0", GOOD);
    let deploy_ctx = context(&sim, "sim-token-deploy");
    let staged = release::stage(&deploy_ctx, "v1.4.0", None).await;
    assert_eq!(staged.outcome, Outcome::Staged);
    // Between the deploy's jobs, an operator's rollback redeploys v1.2.0 through staging.
    let rolled =
        release::rollback(&context(&sim, "sim-token-rollback"), RollbackMode::Redeploy, Some("v1.2.0"), "manual").await;
    assert_eq!(rolled.outcome, Outcome::Verified, "{}", rolled.message);
    let production = sim.slot_image(true);
    let promoted =
        release::promote(&deploy_ctx, "v1.4.0", staged.digest.as_deref().unwrap(), staged.revision.as_deref()).await;
    show("drill 8b (promote after the slots changed)", &promoted);
    assert_eq!(promoted.outcome, Outcome::Conflict, "{}", promoted.message);
    assert!(promoted.message.contains("another release changed the slots"));
    assert_eq!(sim.slot_image(true), production, "production untouched by the stale run");
    assert_eq!(production, Some(image_ref(&d["v1.2.0"])));
    assert!(promoted.deployment_id.is_none(), "nothing recorded for a run that did nothing");
}

/// Transient control-plane errors (ARM throttling, a GitHub 502) are retried after
/// `Retry-After`, not turned into a failed release.
#[tokio::test]
async fn throttled_control_plane_calls_are_retried() {
    let (sim, d) = bad_release_in_production().await;
    sim.world.lock().unwrap().fail_next =
        vec![("/slotsswap".into(), 429), ("/deployments".into(), 502), ("/config/web".into(), 503)];
    let report = release::rollback(&context(&sim, "sim-token-rollback"), RollbackMode::SwapBack, None, "drill").await;
    assert_eq!(report.outcome, Outcome::Verified, "{}", report.message);
    assert_eq!(sim.slot_image(true), Some(image_ref(&d["v1.2.0"])));
    assert!(sim.world.lock().unwrap().fail_next.is_empty(), "every scripted failure was hit");
}

/// The binary as the workflow step calls it: a refused tag exits 1 with the reason, before any
/// network call (the endpoints here lead nowhere).
#[test]
fn the_ops_binary_refuses_a_mutable_tag_before_any_call() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warranty"))
        .args(["ops", "stage", "--image-tag", "latest"])
        .env("AZURE_SUBSCRIPTION_ID", "s")
        .env("RESOURCE_GROUP", "rg")
        .env("FUNCTION_APP", "app")
        .env("ACR_NAME", "acr")
        .env("APP_INSIGHTS_ID", "/x")
        .env("GITHUB_REPOSITORY", "o/r")
        .env("ARM_ENDPOINT", "http://127.0.0.1:9")
        .env("GH_TOKEN", "t")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`latest` is a mutable tag") && stderr.contains("production untouched"), "{stderr}");
    assert!(out.stdout.is_empty());
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_warranty"))
        .args(["ops", "rollback", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("swap-back") && help.contains("redeploy") && help.contains("--image-tag"), "{help}");
}
