//! The service as it ships: inside the Functions host, in its container image, on two slots.
//!
//! The host, Service Bus and the image registry cannot run here. The journeys go through
//! `support/host.rs`, a stand-in written from the host's source (its doc comment cites the
//! files and lists where it differs), in front of the real handler; Service Bus is the loopback
//! namespace of `support/servicebus.rs`. The image, slot and timeout checks read the files the
//! deployment uses. Sources for every rule: docs/decisions/0019-host-conformance.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---- the image ------------------------------------------------------------------------------

/// `FROM` lines of the Dockerfile: (image reference, the comment lines just above it).
fn dockerfile_stages(dockerfile: &str) -> Vec<(String, String, String)> {
    let mut stages = Vec::new();
    let mut comments = String::new();
    let mut current: Option<(String, String, String)> = None;
    for line in dockerfile.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("FROM ") {
            if let Some(s) = current.take() {
                stages.push(s);
            }
            let image = rest.split_whitespace().next().unwrap().to_owned();
            current = Some((image, std::mem::take(&mut comments), String::new()));
        } else if let Some(c) = t.strip_prefix('#') {
            comments.push_str(c);
            comments.push('\n');
        } else if let Some((_, _, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
            comments.clear();
        }
    }
    stages.extend(current);
    stages
}

/// `name=version-glob` pins of the `apt-get install` commands in a stage's body.
fn apt_pins(body: &str) -> Vec<(String, String)> {
    let joined = body.replace("\\\n", " ");
    joined
        .lines()
        .filter(|l| l.contains("apt-get install"))
        .flat_map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|w| w.split_once('=').map(|(n, v)| (n.to_owned(), v.to_owned())))
        .filter(|(n, _)| !n.starts_with('-') && !n.contains('$'))
        .collect()
}

fn os_codename() -> String {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    os.lines().find_map(|l| l.strip_prefix("VERSION_CODENAME=")).unwrap_or_default().trim_matches('"').to_owned()
}

/// The build stage names its Debian release in its tag; the runtime stage is the pinned host
/// image whose release is recorded (with its source) in function-app/base-image.json. Both must
/// be the same release (a binary linked against a newer glibc does not start on an older one),
/// every apt pin must have a candidate in that release (checked with apt on this machine, which
/// must run that release), and the host image must not be a retired one.
#[test]
fn the_image_builds_and_runs_on_one_supported_debian_release() {
    let dockerfile = read("function-app/Dockerfile");
    let base: Value = serde_json::from_str(&read("function-app/base-image.json")).unwrap();
    let stages = dockerfile_stages(&dockerfile);
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage: {stages:?}");
    let (build_image, _, build_body) = &stages[0];
    let (runtime_image, runtime_comment, runtime_body) = &stages[1];

    // The build stage's release, from its tag (rust:<version>-<codename>).
    let build_release = build_image.rsplit('-').next().unwrap().to_owned();
    assert!(
        ["bookworm", "trixie", "bullseye"].contains(&build_release.as_str()),
        "the build image {build_image} names no Debian release"
    );

    // The runtime stage: the recorded image, pinned by digest, with its tag in the comment.
    let rt = &base["runtime"];
    let (reference, digest) = runtime_image.split_once('@').expect("the runtime base is pinned by digest");
    // `repository:tag@digest`: the tag stays written so an automated update can follow it.
    let (repository, written_tag) = reference.rsplit_once(':').expect("the tag is written before the digest");
    assert_eq!(repository, rt["repository"].as_str().unwrap());
    assert_eq!(digest, rt["digest"].as_str().unwrap());
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    let tag = rt["tag"].as_str().unwrap();
    assert_eq!(written_tag, tag);
    assert!(runtime_comment.contains(&format!("tag: {tag}")), "the FROM comment names the tag {tag}");
    assert_eq!(
        rt["debian"].as_str().unwrap(),
        build_release,
        "build stage on {build_release}, runtime image {repository}:{tag} on {}",
        rt["debian"]
    );
    assert!(rt["osSource"].as_str().is_some_and(|s| s.contains(&build_release)), "the release has a source");

    // Not a retired host, and its stack still in support today.
    let reference = format!("{repository}:{tag}");
    for retired in base["retired"].as_array().unwrap() {
        let prefix = retired["prefix"].as_str().unwrap();
        let tag_prefix = retired["tagPrefix"].as_str().unwrap_or("");
        assert!(
            !(reference.starts_with(prefix) && tag.starts_with(tag_prefix)),
            "{reference} is a retired host: {}",
            retired["why"]
        );
    }
    assert!(
        !(dockerfile.contains("azure-functions/dotnet:") || dockerfile.contains("azure-functions/base:")),
        "an in-process .NET host"
    );
    let ends = chrono::NaiveDate::parse_from_str(rt["supportEnds"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    assert!(ends > chrono::Utc::now().date_naive(), "{reference}'s stack left support on {ends}: move the base image");
    assert!(rt["supportSource"].as_str().unwrap().starts_with("https://learn.microsoft.com/"));

    // Every apt pin has a candidate in that release.
    assert_eq!(
        os_codename(),
        build_release,
        "the apt check runs on the image's release; this machine is {}",
        os_codename()
    );
    let mut checked = 0;
    for (name, glob) in apt_pins(build_body).into_iter().chain(apt_pins(runtime_body)) {
        let out = std::process::Command::new("apt-cache").args(["madison", &name]).output().expect("apt-cache runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let versions: Vec<&str> = text.lines().filter_map(|l| l.split('|').nth(1)).map(str::trim).collect();
        assert!(!versions.is_empty(), "apt knows no {name} (run apt-get update)");
        let prefix = glob.trim_end_matches('*');
        assert!(
            versions.iter().any(|v| v.starts_with(prefix)),
            "{name}={glob} has no candidate on {build_release}: {versions:?}"
        );
        checked += 1;
    }
    assert!(checked >= 6, "the OCR packages and cmake are pinned ({checked} pins)");
}

#[test]
fn the_deploy_workflow_builds_and_runs_the_image_before_pushing_it() {
    let deploy = read(".github/workflows/deploy.yml");
    let build = deploy.find("docker build").expect("deploy.yml builds the image");
    let check = deploy.find("tools/check-image").expect("deploy.yml runs the image");
    let push = deploy.find("docker push").expect("pushes the image");
    assert!(build < check && check < push, "build, then run, then push");
    let script = read("tools/check-image");
    for needed in [
        "--entrypoint /home/site/wwwroot/warranty \"$image\" --version",
        "--entrypoint tesseract \"$image\" --version",
        "/etc/os-release",
        "function-app/base-image.json",
        "/api/health",
    ] {
        assert!(script.contains(needed), "tools/check-image does not run {needed}");
    }
}

// ---- the slots ------------------------------------------------------------------------------

/// The Bicep expressions the names are made of, evaluated as `support::gateway::eval` does.
fn bicep_eval(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let vars = vars.iter().map(|(k, v)| (k.clone(), crate::support::gateway::Val::Str(v.clone()))).collect();
    crate::support::gateway::eval(expr, &vars).str()
}

/// The host id the Functions host uses: `AzureFunctionsWebHost__hostid` when set, else the
/// site name with `-{slot}` for a slot that is not production, lowercased, cut to 32
/// characters, trailing dashes trimmed (`Host/ScriptHostIdProvider.cs:73-80,105-114`,
/// `Environment/EnvironmentExtensions.cs:385-391`).
fn host_id(site: &str, slot: &str, explicit: Option<&str>) -> String {
    if let Some(id) = explicit {
        return id.to_owned();
    }
    let name = if slot == "production" { site.to_owned() } else { format!("{site}-{slot}") }.to_lowercase();
    name.chars().take(32).collect::<String>().trim_end_matches('-').to_owned()
}

/// What the host accepts as an explicit id: 1–32 lowercase letters, digits and single dashes,
/// not at either end.
fn valid_host_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
        && !id.contains("--")
}

#[test]
fn each_slot_has_its_own_host_id() {
    let main = read("infra-bicep/main.bicep");
    let app = read("infra-bicep/modules/functionapp.bicep");
    let expr = |text: &str, start: &str| -> String {
        let i = text.find(start).unwrap_or_else(|| panic!("no `{start}`"));
        text[i + start.len()..].lines().next().unwrap().trim().to_owned()
    };
    let base_name = expr(&main, "var baseName = ");
    let site = expr(&app, "resource app 'Microsoft.Web/sites@2023-12-01' = {\n  name: ");
    let stem = expr(&app, "var hostIdStem = ");
    let max_prefix: usize = {
        let i = main.find("param namePrefix string").unwrap();
        let before = &main[..i];
        let j = before.rfind("@maxLength(").unwrap();
        before[j + 11..].split(')').next().unwrap().parse().unwrap()
    };
    let envs: Vec<String> = {
        let i = main.find("param environmentName string").unwrap();
        let before = &main[..i];
        let j = before.rfind("@allowed([").unwrap();
        before[j + 10..].split(']').next().unwrap().split(',').map(|s| s.trim().trim_matches('\'').to_owned()).collect()
    };
    let settings = |list: &str| -> Option<String> {
        let i = app.find(&format!("var {list} = [")).unwrap();
        let body = &app[i..i + app[i..].find("\n]").unwrap()];
        body.lines()
            .find(|l| l.contains("name: 'AzureFunctionsWebHost__hostid'"))
            .map(|l| l.split("value: ").nth(1).unwrap().trim_end_matches('}').trim().to_owned())
    };
    let (prod_expr, staging_expr) = (settings("productionData"), settings("stagingData"));
    let mut collided_by_default = false;
    for prefix in ["warranty".to_owned(), "w".repeat(max_prefix)] {
        for env in &envs {
            let mut vars = BTreeMap::new();
            vars.insert("namePrefix".to_owned(), prefix.clone());
            vars.insert("environmentName".to_owned(), env.clone());
            // uniqueString(): 13 lowercase letters and digits.
            vars.insert("suffix".to_owned(), "u7x2k9q4m1z0a".to_owned());
            vars.insert("baseName".to_owned(), bicep_eval(&base_name, &vars));
            vars.insert("hostIdStem".to_owned(), bicep_eval(&stem, &vars));
            let site_name = bicep_eval(&site, &vars);
            collided_by_default |= host_id(&site_name, "production", None) == host_id(&site_name, "staging", None);
            let prod = prod_expr.as_ref().map(|e| bicep_eval(e, &vars));
            let staging = staging_expr.as_ref().map(|e| bicep_eval(e, &vars));
            let (p, s) = (
                host_id(&site_name, "production", prod.as_deref()),
                host_id(&site_name, "staging", staging.as_deref()),
            );
            assert_ne!(p, s, "{site_name}: production and staging share host id {p}");
            for id in [&p, &s] {
                assert!(valid_host_id(id), "{id:?} is not a host id the host accepts");
            }
        }
    }
    // The reason the setting exists: without it the longest names collide.
    assert!(collided_by_default, "the default ids never collide; the explicit setting may be dropped");
    let sticky = app.contains("appSettingNames: [for s in productionData: s.name]");
    assert!(sticky && prod_expr.is_some(), "the host id is a sticky (slot) setting");
}

#[test]
fn the_host_id_rule_matches_the_hosts_own_examples() {
    // ScriptHostIdProviderTests: long names are cut to 32 and a trailing dash is dropped.
    assert_eq!(host_id("TEST-FUNCTIONS--", "production", None), "test-functions");
    assert_eq!(host_id("test-functions-XXX-YYYY-ZZZZ-12345", "production", None), "test-functions-xxx-yyyy-zzzz-123");
    assert_eq!(host_id("warranty-prod-func-u7x2k9q4m1z0a", "staging", None), "warranty-prod-func-u7x2k9q4m1z0a");
}

// ---- the timeouts ---------------------------------------------------------------------------

fn iso_minutes(d: &str) -> Duration {
    let m: u64 = d.trim_start_matches("PT").trim_end_matches('M').parse().expect("PT<n>M");
    Duration::from_secs(m * 60)
}

/// Past `functionTimeout` the host restarts the handler process and everything in flight there
/// fails; the message lock must be renewed for as long as a function may run; the OCR deadline
/// (every engine and page together) ends well inside the function's time, and one engine
/// process inside the deadline.
#[test]
fn function_timeout_lock_renewal_and_ocr_budget_fit_together() {
    let host = host_json();
    let function_timeout = timespan(host["functionTimeout"].as_str().expect("functionTimeout is set"));
    let renewal = timespan(host["extensions"]["serviceBus"]["maxAutoLockRenewalDuration"].as_str().unwrap());
    let sb = read("infra-bicep/modules/servicebus.bicep");
    let lock = iso_minutes(sb.split("lockDuration: '").nth(1).unwrap().split('\'').next().unwrap());
    let defaults = warranty::config::Settings::for_tests(std::env::temp_dir());
    let deadline = Duration::from_secs(defaults.ocr.ocr_deadline_secs);
    let one_process = Duration::from_secs(defaults.ocr.ocr_timeout_secs);
    // Reads and writes around the reading (product, invoice, result), each bounded by the
    // stores' own timeouts, get a minute.
    let margin = Duration::from_secs(60);
    assert!(deadline + margin <= function_timeout, "OCR deadline {deadline:?} + {margin:?} > {function_timeout:?}");
    assert!(one_process <= deadline, "one OCR process ({one_process:?}) may outlast the deadline ({deadline:?})");
    assert!(renewal >= function_timeout, "the lock ({renewal:?} of renewal) expires before the function may end");
    assert!(lock <= renewal && lock >= Duration::from_secs(60), "queue lock {lock:?}");
    // A Premium/Dedicated host allows any functionTimeout; Consumption at most 10 minutes
    // (`Config/ScriptJobHostOptionsSetup.cs:19-21`). Stay inside both.
    assert!(function_timeout <= Duration::from_secs(600));
}

// ---- through the host -----------------------------------------------------------------------

fn through(host: &FunctionsHost, method: reqwest::Method, path: &str, user: &str) -> reqwest::RequestBuilder {
    host.client()
        .request(method, format!("{}{path}", host.base))
        .header("x-functions-key", FUNCTION_KEY)
        .bearer_auth(token(user))
}

/// A registration through the host, multipart with its length (what the host forwards).
async fn register_through(host: &FunctionsHost, user: &str, form: Form) -> reqwest::Response {
    let (ct, body) = form.finish();
    through(host, reqwest::Method::POST, "/api/products", user)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The seed journeys on the Azure backend, every request through the host: registration with
/// its invoice, the OCR message from Service Bus, an edit, a service request, the reminders
/// timer, the export (held whole by the host, as forwarding does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_journeys_run_through_the_host_on_azure() {
    let app = BACKEND.scope(Backend::Azure, spawn_with(|_| {})).await;
    let host = FunctionsHost::in_front_of(app.port).await;
    app.bus.as_ref().unwrap().start_delivering(app.port);

    // Registration, multipart with a Content-Length (what the host forwards).
    let form = Form::registration("Apple", "MacBook Air", "C02XK0ABJGH5", "2026-03-15", &fixture("invoice.pdf"));
    let resp = register_through(&host, "alice", form).await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let card: Value = resp.json().await.unwrap();
    let id = card["id"].as_str().unwrap().to_owned();

    // OCR: Service Bus → host → /ProcessInvoiceOcr, once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let card = loop {
        let card: Value =
            through(&host, reqwest::Method::GET, &location, "alice").send().await.unwrap().json().await.unwrap();
        if card["ocr"]["status"] == "completed" {
            break card;
        }
        assert!(Instant::now() < deadline, "OCR never completed: {card}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(card["ocr"]["engine"], "pdf-text");
    let bus = app.bus.as_ref().unwrap().snapshot();
    assert_eq!(bus.completed, vec![format!("{id}:invoice:1")]);
    assert!(bus.dead_letters.is_empty());

    // Routes match without regard to case, as the host's do.
    let upper = through(&host, reqwest::Method::GET, &location.replace("/api/products", "/API/Products"), "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(upper.status(), 200);

    // An edit with If-Match.
    let etag = through(&host, reqwest::Method::GET, &location, "alice").send().await.unwrap().headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let resp = through(&host, reqwest::Method::PATCH, &location, "alice")
        .header("if-match", etag)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"model":"MacBook Air 13"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    // A service request.
    let resp = through(&host, reqwest::Method::POST, &format!("{location}/service-requests"), "alice")
        .json(&json!({"description": "The screen flickers."}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());

    // The reminders timer, invoked as the host does.
    let (status, body) = host.tick("SendExpiryReminders").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["ReturnValue"]["products"].is_number(), "{body}");
    assert_eq!(body["Outputs"], json!({}));

    // The export: the host reads it whole, then answers.
    let resp = through(&host, reqwest::Method::GET, "/api/me/export", "alice").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/zip");
    let zip = resp.bytes().await.unwrap();
    assert_eq!(&zip[..4], b"PK\x03\x04");
    assert!(zip.windows(13).any(|w| w == b"products.json"));

    // The host's own refusals: no key, no function.
    let resp =
        host.client().get(format!("{}/api/products", host.base)).bearer_auth(token("alice")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = through(&host, reqwest::Method::GET, "/api/nothing-here", "alice").send().await.unwrap();
    assert_eq!(resp.status(), 404);
}

/// A chunked upload never reaches the handler through the host (the host copies a body only
/// with a Content-Length, and then cannot send the chunked request at all: a bare 500), so the
/// gateway refuses it with 411 (infra-bicep/policies/api.xml) and the handler does the same on
/// its own port; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_is_refused_with_411_and_never_stored() {
    let app = spawn_app().await;
    let host = FunctionsHost::in_front_of(app.port).await;
    let (ct, body) =
        Form::registration("Apple", "MacBook Air", "C02XK0ABJGH5", "2026-03-15", &fixture("invoice.pdf")).finish();
    let chunked = |base: &str| {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(512).map(|c| Ok(c.to_vec())).collect();
        host.client()
            .post(format!("{base}/api/products"))
            .header("x-functions-key", FUNCTION_KEY)
            .bearer_auth(token("alice"))
            .header("content-type", &ct)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
    };
    let through_host = chunked(&host.base).send().await.unwrap();
    assert_eq!(through_host.status(), 500, "what the host does with it");
    let (status, problem) = problem(chunked(&app.base).send().await.unwrap()).await;
    assert_eq!(status, 411, "{problem}");
    assert_eq!(problem["code"], "length_required");
    let policy = read("infra-bicep/policies/api.xml");
    assert!(policy.contains(r#"<set-status code="411""#) && policy.contains("Transfer-Encoding"));
    assert!(policy.contains(r#""code":"length_required""#));
    assert_eq!(app.product_count().await, 0);
    assert!(app.invoice_files().is_empty());
    // The same upload with its length goes through.
    let resp = host
        .client()
        .post(format!("{}/api/products", host.base))
        .header("x-functions-key", FUNCTION_KEY)
        .bearer_auth(token("alice"))
        .header("content-type", &ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

/// 100 OCR messages are delivered while the product store is down for two minutes. Each
/// failed reading completes its delivery and comes back later as a scheduled copy, so none is
/// abandoned, none dead-letters, and every card is read within a minute of recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_minute_store_outage_dead_letters_no_ocr_message() {
    let app = BACKEND.scope(Backend::Azure, spawn_with(|_| {})).await;
    let bus = app.bus.as_ref().unwrap();
    let pdf = fixture("invoice.pdf");
    let mut locations = Vec::new();
    for i in 0..100 {
        // One user each, so that every invoice matches its registration and reads `completed`.
        let user = format!("outage{i}");
        let resp =
            app.post_form(&user, Form::registration("Apple", "MacBook Air", "C02XK0ABJGH5", "2026-03-15", &pdf)).await;
        assert_eq!(resp.status(), 201);
        locations.push((user, resp.headers()["location"].to_str().unwrap().to_owned()));
    }
    assert_eq!(bus.snapshot().accepted.len(), 100);

    app.start_product_store_outage();
    let outage = Instant::now();
    bus.start_delivering(app.port);
    // The outage lasts two minutes of wall-clock time: the scenario, not a wait for a result.
    let outage_secs = std::env::var("WARRANTY_TEST_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    tokio::time::sleep(Duration::from_secs(outage_secs)).await;
    app.end_product_store_outage();
    let recovered = Instant::now();
    let during = bus.snapshot();
    assert!(during.deliveries.len() >= 100, "every message was delivered during the outage");
    assert!(!during.scheduled.is_empty(), "failed readings were put back as scheduled copies");

    let mut pending = locations.clone();
    while !pending.is_empty() {
        if recovered.elapsed() >= Duration::from_secs(60) {
            let ns = bus.snapshot();
            let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
            for (_, _, s) in &ns.deliveries {
                *statuses.entry(*s).or_default() += 1;
            }
            let card: Value = app.get(&pending[0].0, &pending[0].1).await.json().await.unwrap();
            panic!(
                "{} cards unread a minute after recovery; deliveries by status {statuses:?}, {} scheduled, {} completed, refused {:?}; a card: {}",
                pending.len(),
                ns.scheduled.len(),
                ns.completed.len(),
                ns.refused,
                card["ocr"]
            );
        }
        let mut still = Vec::new();
        for (user, location) in pending {
            let card: Value = app.get(&user, &location).await.json().await.unwrap();
            if card["ocr"]["status"] != "completed" {
                still.push((user, location));
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let after = bus.snapshot();
    assert!(after.dead_letters.is_empty(), "dead-lettered: {:?}", after.dead_letters.len());
    // No delivery was ever abandoned: every invocation answered 2xx, so every delivery count is 1.
    assert!(after.deliveries.iter().all(|(_, count, status)| *count == 1 && *status == 200), "{:?}", after.deliveries);
    let originals = after.completed.iter().filter(|id| !id.contains("~r")).count();
    assert_eq!(originals, 100);
    eprintln!(
        "outage {:?}: {} deliveries, {} scheduled copies, all read {:?} after recovery",
        recovered - outage,
        after.deliveries.len(),
        after.scheduled.len(),
        recovered.elapsed()
    );
}

/// Past the give-up time a failure is answered 503: the host abandons the message and Service
/// Bus dead-letters it after MaxDeliveryCount deliveries, where an operator sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_give_up_time_a_failing_message_dead_letters_as_before() {
    let app = BACKEND.scope(Backend::Azure, spawn_with(|s| s.delivery.ocr_requeue_for_hours = 0)).await;
    let bus = app.bus.as_ref().unwrap();
    let resp = app
        .post_form(
            "alice",
            Form::registration("Apple", "MacBook Air", "C02XK0ABJGH5", "2026-03-15", &fixture("invoice.pdf")),
        )
        .await;
    assert_eq!(resp.status(), 201);
    app.start_product_store_outage();
    bus.start_delivering(app.port);
    eventually("the message is dead-lettered", || !bus.snapshot().dead_letters.is_empty()).await;
    app.end_product_store_outage();
    let ns = bus.snapshot();
    let counts: Vec<u32> = ns.deliveries.iter().map(|(_, c, _)| *c).collect();
    assert_eq!(counts, (1..=10).collect::<Vec<_>>());
    assert!(ns.deliveries.iter().all(|(_, _, s)| *s == 503));
    assert!(ns.scheduled.is_empty());
}

/// A black-hole store: accepts connections and says nothing until switched on, then relays to
/// `target`.
async fn switchable_relay(target: std::net::SocketAddr) -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let on = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = on.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else { return };
            if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                // Unanswered, as a firewalled or starting store.
                held.push(inbound);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (port, on)
}

/// The binary behind the host with its invoice store unreachable: `/` answers at once (the host
/// would otherwise restart it), health says 503 with each store's state, API requests get 503
/// with Retry-After; once the store appears the same process becomes ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_answers_before_its_stores_and_becomes_ready_without_a_restart() {
    let azurite: std::net::SocketAddr = {
        let url = url_host_port(azurite());
        tokio::net::lookup_host(url).await.unwrap().next().unwrap()
    };
    let (relay, on) = switchable_relay(azurite).await;
    let dir = tempfile::tempdir().unwrap();
    use warranty::adapters::azure::blob::sas::{DEV_ACCOUNT, DEV_KEY};
    let blob = format!(
        "AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};BlobEndpoint=http://127.0.0.1:{relay}/devstoreaccount1"
    );
    let host = FunctionsHost::with_binary(&[
        ("WARRANTY_DATA_DIR", dir.path().display().to_string()),
        ("WARRANTY_DEV_JWT_SECRET", SECRET.to_owned()),
        ("WARRANTY_INVOICE_STORE", "blob".to_owned()),
        ("InvoiceStorage", blob),
        ("WARRANTY_BLOB_CONTAINER", format!("t{}", uuid::Uuid::new_v4().simple())),
        ("RUST_LOG", "warn".to_owned()),
    ])
    .await;
    let log = host.log();
    assert_eq!(log.starts.len(), 1);
    assert!(log.restarts.is_empty());
    eprintln!("first answer on / {:?} after spawning", log.starts[0]);
    let pid = host.worker_pid().unwrap();
    let worker = format!("http://127.0.0.1:{}", host.worker_port());
    let client = reqwest::Client::new();

    let health = client.get(format!("{worker}/api/health")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    assert_eq!(health.headers()["retry-after"], "5");
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["status"], "starting", "{body}");
    assert_eq!(body["checks"]["productStore"]["status"], "up", "{body}");
    assert!(["connecting", "down"].contains(&body["checks"]["invoiceStore"]["status"].as_str().unwrap()), "{body}");
    // Through the host as well, and an API request is refused without storing anything.
    let resp = through(&host, reqwest::Method::GET, "/api/products", "alice").send().await.unwrap();
    assert_eq!(resp.headers()["retry-after"], "5");
    let (status, problem) = problem(resp).await;
    assert_eq!((status, problem["code"].as_str().unwrap()), (503, "service_starting"));

    on.store(true, std::sync::atomic::Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let resp = client.get(format!("{worker}/api/health")).send().await.unwrap();
        if resp.status() == 200 {
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["checks"]["invoiceStore"]["status"], "up");
            break;
        }
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(host.worker_pid(), Some(pid), "the same process, not a restart");
    let form = Form::registration("Apple", "MacBook Air", "C02XK0ABJGH5", "2026-03-15", &fixture("invoice.pdf"));
    let resp = register_through(&host, "alice", form).await;
    assert_eq!(resp.status(), 201);
    assert!(host.log().restarts.is_empty());
}

fn url_host_port(endpoint: &str) -> String {
    endpoint.trim_start_matches("http://").split('/').next().unwrap().to_owned()
}

/// An OCR message that arrives before the stores answer is put back for later, not failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ocr_message_before_the_stores_answer_is_put_back() {
    let bus = service_bus(vec![]).await;
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = warranty::config::Settings::for_tests(dir.path().to_owned());
    settings.ocr.reader_exe = Some(PathBuf::from(env!("CARGO_BIN_EXE_warranty")));
    settings.delivery.ocr_delivery = warranty::config::OcrDeliveryKind::Servicebus;
    settings.delivery.servicebus_connection_string = Some(bus.connection_string().into());
    settings.invoices.invoice_store = warranty::config::InvoiceStoreKind::Blob;
    use warranty::adapters::azure::blob::sas::{DEV_ACCOUNT, DEV_KEY};
    settings.invoices.blob_connection_string = Some(
        format!(
            "AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};BlobEndpoint=http://{}/devstoreaccount1",
            black_hole.local_addr().unwrap()
        )
        .into(),
    );
    let app = warranty::host::Application::bind(&settings).expect("binds without the stores");
    let port = app.port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let event = serde_json::to_value(sample_event()).unwrap();
    let payload = service_bus_invocation("ProcessInvoiceOcr", "m1", 1, &event);
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/ProcessInvoiceOcr"))
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "completed, not abandoned");
    let ns = bus.snapshot();
    let copy = format!("{}~r1", event["messageId"].as_str().unwrap());
    let (broker, body) = &ns.accepted[&copy];
    assert_eq!(body["requeued"], 1);
    assert!(body["failingSince"].is_string());
    let at = ns.scheduled.iter().find(|(id, _)| *id == copy).expect("scheduled").1;
    let delay = (at - chrono::Utc::now()).num_milliseconds();
    assert!((2_000..=7_000).contains(&delay), "first copy in 5 s ± 20 %: {delay} ms ({broker})");
    drop(tx);
    drop(black_hole);
}

/// An invocation past functionTimeout: the host restarts the handler process (every request in
/// flight there fails); the new process serves, and the message, failed, comes back and is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_past_function_timeout_restarts_the_handler() {
    let dir = tempfile::tempdir().unwrap();
    let host = FunctionsHost::with_binary(&[
        ("WARRANTY_DATA_DIR", dir.path().display().to_string()),
        ("WARRANTY_DEV_JWT_SECRET", SECRET.to_owned()),
        // The harness delivers the OCR message, as the host would from Service Bus.
        ("WARRANTY_OCR_DISPATCHER", "false".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ])
    .await;
    // `/` answers before the stores do; the app is ready when its health says so.
    wait_until_ready(host.client(), &format!("http://127.0.0.1:{}", host.worker_port())).await;
    let form = Form::registration("Apple", "MacBook Air", "C02XK0ABJGH5", "2026-03-15", &fixture("invoice.png"));
    let resp = register_through(&host, "alice", form).await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let event: Value = {
        let db = rusqlite::Connection::open(dir.path().join("warranty.sqlite3")).unwrap();
        let body: String = db.query_row("SELECT body FROM ocr_queue", [], |r| r.get(0)).unwrap();
        serde_json::from_str(&body).unwrap()
    };
    let id = event["messageId"].as_str().unwrap().to_owned();
    let pid = host.worker_pid().unwrap();

    // Tesseract alone takes longer than this.
    host.set_function_timeout(Duration::from_millis(50));
    let (status, _) =
        host.invoke("ProcessInvoiceOcr", &service_bus_invocation("ProcessInvoiceOcr", &id, 1, &event)).await;
    assert_eq!(status, 500, "the invocation failed");
    let log = host.log();
    assert_eq!(log.restarts, vec!["ProcessInvoiceOcr passed functionTimeout".to_owned()]);
    assert_eq!(log.starts.len(), 2);
    assert_ne!(host.worker_pid(), Some(pid), "a new process");
    let health = reqwest::get(format!("http://127.0.0.1:{}/api/health", host.worker_port())).await.unwrap();
    assert_eq!(health.status(), 200);

    // Redelivered (delivery count 2) with the configured time: read.
    host.set_function_timeout(timespan(host_json()["functionTimeout"].as_str().unwrap()));
    let (status, body) =
        host.invoke("ProcessInvoiceOcr", &service_bus_invocation("ProcessInvoiceOcr", &id, 2, &event)).await;
    assert_eq!(status, 200, "{body}");
    let card: Value =
        through(&host, reqwest::Method::GET, &location, "alice").send().await.unwrap().json().await.unwrap();
    assert!(["completed", "needs_review", "failed"].contains(&card["ocr"]["status"].as_str().unwrap()), "{card}");
    assert_ne!(card["ocr"]["failureReason"], "ocr_deadline_exceeded");
}

/// The host holds each forwarded answer whole, so the export comes in parts of at most
/// `WARRANTY_EXPORT_PART_MIB` of files, each linked from the one before: followed through the
/// host, the parts hold every invoice once, the first part every record, and each is a whole ZIP
/// (checked with Python's zipfile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_comes_through_the_host_in_bounded_linked_parts() {
    let app = BACKEND.scope(Backend::Azure, spawn_with(|s| s.server.export_part_mib = 1)).await;
    let host = FunctionsHost::in_front_of(app.port).await;
    // Three 700 kB invoices: one product per 1 MiB part.
    let mut pdf = b"%PDF-1.7\n%".to_vec();
    pdf.resize(700_000, b'x');
    let mut ids = Vec::new();
    for i in 0..3 {
        let form = Form::registration("Apple", "MacBook Air", &format!("C02PART0000{i}"), "2026-03-15", &pdf);
        let resp = register_through(&host, "alice", form).await;
        assert_eq!(resp.status(), 201);
        ids.push(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let dir = tempfile::tempdir().unwrap();
    let mut next = Some("/api/me/export".to_owned());
    let mut parts: Vec<Value> = Vec::new();
    while let Some(path) = next.take() {
        let resp = through(&host, reqwest::Method::GET, &path, "alice").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-export-part"], (parts.len() + 1).to_string().as_str());
        next = resp.headers().get("link").map(|l| {
            let l = l.to_str().unwrap();
            assert!(l.ends_with(r#">; rel="next""#), "{l}");
            l.trim_start_matches('<').split('>').next().unwrap().to_owned()
        });
        let zip = resp.bytes().await.unwrap();
        assert!(zip.len() < 1024 * 1024 + 64 * 1024, "a part holds at most its budget: {}", zip.len());
        let file = dir.path().join(format!("part{}.zip", parts.len() + 1));
        std::fs::write(&file, &zip).unwrap();
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, json, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(json.dumps(sorted(z.namelist())))",
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        parts.push(serde_json::from_slice(&out.stdout).unwrap());
        assert!(parts.len() <= 3, "more parts than products");
    }
    assert_eq!(parts.len(), 3, "{parts:?}");
    for name in ["README.txt", "products.json", "products.csv", "notifications.json", "settings.json"] {
        assert!(parts[0].as_array().unwrap().iter().any(|n| n == name), "part 1 lacks {name}");
        assert!(!parts[1].as_array().unwrap().iter().any(|n| n == name && name != "README.txt"));
    }
    let invoices: Vec<String> = parts
        .iter()
        .flat_map(|p| p.as_array().unwrap().iter().filter_map(|n| n.as_str()).filter(|n| n.starts_with("invoices/")))
        .map(str::to_owned)
        .collect();
    assert_eq!(invoices.len(), 3, "{invoices:?}");
    for id in &ids {
        assert_eq!(invoices.iter().filter(|n| n.contains(id.as_str())).count(), 1, "{id} once");
    }
    // A token this service did not issue.
    let resp =
        through(&host, reqwest::Method::GET, "/api/me/export?continuationToken=bm9wZQ", "alice").send().await.unwrap();
    let (status, p) = problem(resp).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (400, "continuation_token_invalid"));
}

/// A handler that cannot start (here: a setting it refuses, so it exits at once) is started three
/// times, then the host gives up, as the host's dispatcher does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_cannot_start_stops_the_host_after_three_tries() {
    let dir = tempfile::tempdir().unwrap();
    let (host, started) = FunctionsHost::try_with_binary(&[
        ("WARRANTY_DATA_DIR", dir.path().display().to_string()),
        ("WARRANTY_DEFAULT_MONTHS", "0".to_owned()),
    ])
    .await;
    let err = started.expect_err("never starts");
    assert!(err.contains("Shutting down Functions Host"), "{err}");
    let log = host.log();
    assert!(log.stopped);
    assert!(log.starts.is_empty());
    // Three error events: two restarts, and the third stops the host.
    assert_eq!(log.errors.len(), 3, "{:?}", log.errors);
    assert_eq!(log.restarts.len(), 2, "{:?}", log.restarts);
    assert!(log.errors.iter().all(|r| r.contains("exited")), "{:?}", log.errors);
}

/// The host's worker lifecycle as its source has it (`support/host.rs` cites the lines): a
/// crash after a successful start is an error event and a restart on the same port; the
/// routes ignore one trailing slash; an exit with code 0 is not restarted, and the app is then
/// down until something else restarts it; the front end ends a request at its limit without a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_restarts_a_crash_on_the_same_port_and_not_a_clean_exit() {
    let dir = tempfile::tempdir().unwrap();
    let host = FunctionsHost::with_binary(&[
        ("WARRANTY_DATA_DIR", dir.path().display().to_string()),
        ("WARRANTY_DEV_JWT_SECRET", SECRET.to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ])
    .await;
    let port = host.worker_port();
    let worker = format!("http://127.0.0.1:{port}");
    wait_until_ready(host.client(), &worker).await;
    let list = |path: &'static str| through(&host, reqwest::Method::GET, path, "alice").send();
    assert_eq!(list("/api/products/").await.unwrap().status(), 200, "a trailing slash matches the route");

    // A crash (killed by a signal) after start: an error event, a restart, the same port.
    let pid = host.worker_pid().unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    host.worker_exit_seen(0).await;
    eventually("the worker is started again", || host.log().starts.len() == 2).await;
    let log = host.log();
    assert_eq!(log.errors.len(), 1, "{:?}", log.errors);
    assert!(!log.stopped);
    assert_eq!(host.worker_port(), port, "the host's port is chosen once");
    assert_ne!(host.worker_pid(), Some(pid));
    wait_until_ready(host.client(), &worker).await;
    assert_eq!(list("/api/products").await.unwrap().status(), 200);

    // The front end's limit: a handler that does not answer in time (stopped, so it cannot)
    // costs the client a 500; nothing is restarted, and the handler answers once it runs again.
    let pid = host.worker_pid().unwrap();
    host.set_front_end_limit(Duration::from_millis(300));
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let status = list("/api/products").await.unwrap().status();
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    assert_eq!(status, 500);
    host.set_front_end_limit(FRONT_END_LIMIT);
    assert_eq!(host.log().restarts.len(), 1);
    assert_eq!(list("/api/products").await.unwrap().status(), 200);

    // A clean exit (SIGTERM: the handler shuts down gracefully, code 0): not restarted.
    let pid = host.worker_pid().unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    host.worker_exit_seen(1).await;
    let log = host.log();
    assert_eq!((log.clean_exits, log.errors.len(), log.starts.len()), (1, 1, 2), "{log:?}");
    assert_eq!(list("/api/products").await.unwrap().status(), 500, "nobody listens on the worker's port");
}

/// A Service Bus invocation as the host builds it: the body JSON-encoded twice in `Data`, the
/// body's top-level properties merged into `Metadata` over the trigger's own without regard to
/// case (`MessageId` then holds the body's id), sent chunked. The handler reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_bus_invocation_shaped_as_the_host_sends_it_is_read() {
    let app = spawn_with(|s| s.delivery.ocr_dispatcher = false).await;
    let resp = app
        .post_form(
            "alice",
            Form::registration("Apple", "MacBook Air", "C02XK0ABJGH5", "2026-03-15", &fixture("invoice.pdf")),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let card: Value = resp.json().await.unwrap();
    let event = app.ocr_event_for(card["id"].as_str().unwrap()).await;
    let payload = service_bus_invocation("ProcessInvoiceOcr", "broker-id~r1", 1, &event);
    let once: String = serde_json::from_str(payload["Data"]["message"].as_str().unwrap()).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&once).unwrap(), event, "two encodings");
    assert_eq!(payload["Metadata"]["MessageId"], serde_json::to_string(event["messageId"].as_str().unwrap()).unwrap());
    assert_eq!(payload["Metadata"]["productId"], serde_json::to_string(event["productId"].as_str().unwrap()).unwrap());
    let resp =
        invocation_request(&reqwest::Client::new(), app.port, "ProcessInvoiceOcr", &payload).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let read = final_ocr(&app, "alice", &format!("/api/products/{}", card["id"].as_str().unwrap())).await;
    assert_ne!(read["status"], "queued", "{read}");
}

/// OCR as production wires it: the binary behind the host harness publishes with its managed
/// identity (the App Service identity endpoint on loopback) to a namespace that, like the
/// production one (`disableLocalAuth`), takes only Entra tokens, and whose trigger runs as many
/// invocations at once as the app setting the Bicep computes for production, not host.json's.
/// A SAS is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocr_goes_through_service_bus_with_the_managed_identity_and_the_app_setting_concurrency() {
    use crate::support::gateway::{main_default, ocr_calls_per_instance};
    let identity = IdentityEndpoint::start().await;
    let concurrency = ocr_calls_per_instance(main_default("docIntelAnalyzeTps"), main_default("maximumInstances"));
    assert!(concurrency < host_json()["extensions"]["serviceBus"]["maxConcurrentCalls"].as_u64().unwrap() as usize);
    let bus = service_bus_for_identity(&identity, concurrency).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("WARRANTY_DATA_DIR", dir.path().display().to_string()),
        ("WARRANTY_DEV_JWT_SECRET", SECRET.to_owned()),
        ("WARRANTY_OCR_DELIVERY", "servicebus".to_owned()),
        // On the embedded store the outbox's relay sends the events (to Service Bus here); the
        // namespace's trigger delivers them.
        ("WARRANTY_OCR_DISPATCHER", "true".to_owned()),
        ("ServiceBusConnection__fullyQualifiedNamespace", bus.endpoint.clone()),
        ("AZURE_CLIENT_ID", "6a1f0c3e-0000-4000-8000-user-assigned".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    env.extend(identity.env());
    let host = FunctionsHost::with_binary(&env).await;
    wait_until_ready(host.client(), &format!("http://127.0.0.1:{}", host.worker_port())).await;
    bus.start_delivering(host.worker_port());

    let mut locations = Vec::new();
    for (i, serial) in ["C02XK0ABJGH5", "C02XK0ABJGH6", "C02XK0ABJGH7"].iter().enumerate() {
        let form = Form::registration("Apple", "MacBook Air", serial, "2026-03-15", &fixture("invoice.pdf"));
        let resp = register_through(&host, &format!("user{i}"), form).await;
        assert_eq!(resp.status(), 201);
        locations.push((format!("user{i}"), resp.headers()["location"].to_str().unwrap().to_owned()));
    }
    eventually("the three readings are completed", || bus.snapshot().completed.len() == 3).await;
    let ns = bus.snapshot();
    assert!(ns.refused.is_empty(), "{:?}", ns.refused);
    assert!(ns.dead_letters.is_empty());
    assert_eq!(ns.max_in_flight, concurrency, "the app setting's concurrency, not host.json's");
    let tokens = identity.issued.lock().unwrap().clone();
    assert!(tokens.values().all(|(resource, client)| resource == "https://servicebus.azure.net"
        && client.as_deref() == Some("6a1f0c3e-0000-4000-8000-user-assigned")));
    for (user, location) in &locations {
        let card: Value =
            through(&host, reqwest::Method::GET, location, user).send().await.unwrap().json().await.unwrap();
        assert_ne!(card["ocr"]["status"], "queued", "{card}");
    }

    // A shared access signature is refused, as `disableLocalAuth` refuses it.
    let sas =
        warranty::adapters::azure::servicebus::SasKey::parse(&warranty::config::Secret::new(bus.connection_string()))
            .unwrap();
    let resource_uri =
        warranty::adapters::azure::servicebus::ServiceBusPublisher::resource_uri(&bus.endpoint, "invoice-ocr");
    let publisher = warranty::adapters::azure::servicebus::ServiceBusPublisher::new(
        &bus.endpoint,
        "invoice-ocr",
        warranty::adapters::azure::servicebus::ServiceBusAuth::Sas { key: sas, resource_uri },
    );
    assert!(publisher.publish(&sample_event(), None).await.is_err());
    assert_eq!(bus.snapshot().refused.len(), 1);
}
