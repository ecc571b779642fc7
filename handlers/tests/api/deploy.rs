//! The release artefacts agree with the code: the Dockerfile copies what exists and what the
//! host needs, the Bicep sets exactly the settings the binary reads (identity-based, no keys),
//! the slots keep their data apart, and the workflows never interpolate inputs into scripts.
//! No Docker engine, Azure or GitHub runs here; these read the files those would read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;
use warranty::config::Settings;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `.dockerignore` as this repository writes it: `*`, then `!` exceptions (a trailing `/`
/// admits a directory tree, `*` matches within one path segment).
fn admitted_by_dockerignore(path: &str) -> bool {
    fn matches(pattern: &str, path: &str) -> bool {
        let (p, tree) = match pattern.strip_suffix('/') {
            Some(p) => (p, true),
            None => (pattern, false),
        };
        let ps: Vec<&str> = p.split('/').collect();
        let xs: Vec<&str> = path.split('/').collect();
        if xs.len() < ps.len() || (!tree && xs.len() != ps.len()) {
            return false;
        }
        ps.iter().zip(&xs).all(|(p, x)| match p.split_once('*') {
            None => p == x,
            Some((pre, post)) => x.starts_with(pre) && x.ends_with(post) && x.len() >= pre.len() + post.len(),
        })
    }
    let mut admitted = true;
    for line in read(".dockerignore").lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        match line.strip_prefix('!') {
            Some(p) => admitted |= matches(p, path),
            None if line == "*" => admitted = false,
            None => admitted &= !matches(line, path),
        }
    }
    admitted
}

fn files_under(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p.strip_prefix(repo()).unwrap().to_string_lossy().replace("../", ""));
        }
    }
}

#[test]
fn every_file_the_dockerfile_copies_exists_and_reaches_the_build_context() {
    let dockerfile = read("function-app/Dockerfile");
    let mut copied = Vec::new();
    for line in dockerfile.lines().map(str::trim) {
        let Some(args) = line.strip_prefix("COPY ") else { continue };
        if args.starts_with("--from=") {
            continue;
        }
        let parts: Vec<&str> = args.split_whitespace().filter(|a| !a.starts_with("--")).collect();
        let (dest, sources) = parts.split_last().unwrap();
        assert!(!dest.is_empty());
        for src in sources {
            let path = repo().join(src.trim_end_matches('/'));
            assert!(path.exists(), "COPY {src}: no such file in the repository");
            let mut files = Vec::new();
            if path.is_dir() {
                files_under(&path, &mut files);
            } else {
                files.push(src.to_string());
            }
            for f in files {
                let f = f.trim_start_matches("./").to_owned();
                assert!(admitted_by_dockerignore(&f), "{f} is copied but .dockerignore keeps it out of the context");
                copied.push(f);
            }
        }
    }
    // Every function the host must load is in the image, and the binary where host.json says.
    for e in std::fs::read_dir(repo().join("function-app")).unwrap().flatten() {
        if e.path().join("function.json").exists() {
            let f = format!("function-app/{}/function.json", e.file_name().to_string_lossy());
            assert!(copied.contains(&f), "{f} is not copied into the image");
        }
    }
    assert!(copied.contains(&"function-app/host.json".to_owned()));
    let host: Value = serde_json::from_str(&read("function-app/host.json")).unwrap();
    let exe = host["customHandler"]["description"]["defaultExecutablePath"].as_str().unwrap();
    assert!(dockerfile.contains(&format!("/home/site/wwwroot/{exe}\n")), "the binary is not at {exe}");
    assert!(dockerfile.contains("AzureWebJobsScriptRoot=/home/site/wwwroot"));
    assert!(dockerfile.contains("org.opencontainers.image.revision=\"${GIT_SHA}\""));
    assert!(dockerfile.contains("ENV WARRANTY_GIT_SHA=${GIT_SHA}"), "the binary learns its revision");
    for pkg in ["tesseract-ocr-deu", "tesseract-ocr-fra", "tesseract-ocr-eng", "poppler-utils"] {
        assert!(dockerfile.contains(pkg), "the OCR runtime needs {pkg}");
    }
    // And nothing else is sent: the repository's other trees stay out.
    for outside in
        ["target/debug/warranty", "docs/benchmarks.md", "handlers/tests/corpus/ground-truth.json", ".git/HEAD"]
    {
        assert!(!admitted_by_dockerignore(outside), "{outside} would be sent to the builder");
    }
}

/// `{ name: 'X', value: … }` entries of a Bicep array named `var <list> = [`.
fn bicep_settings(bicep: &str, list: &str) -> Vec<(String, String)> {
    let start = bicep.find(&format!("var {list} = [")).unwrap_or_else(|| panic!("no `var {list}`"));
    let body = &bicep[start..start + bicep[start..].find("\n]").unwrap()];
    body.lines()
        .filter_map(|l| {
            let l = l.trim();
            let name = l.strip_prefix("{ name: '")?.split('\'').next()?.to_owned();
            let value = l.split("value: ").nth(1)?.trim_end_matches('}').trim().to_owned();
            Some((name, value))
        })
        .collect()
}

/// Environment variables the binary reads.
fn binary_settings() -> BTreeSet<String> {
    let cmd = Settings::augment_args(clap::Command::new("warranty"));
    cmd.get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).collect()
}

/// Read by the Functions host or the platform, not by the binary.
const PLATFORM: &[&str] = &[
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME",
    "WEBSITES_ENABLE_APP_SERVICE_STORAGE",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "ServiceBusConnection__credential",
    "ServiceBusConnection__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "WEBSITE_SWAP_WARMUP_PING_PATH",
    "WEBSITE_SWAP_WARMUP_PING_STATUSES",
    "KEY_VAULT_URI",
    "AzureWebJobs.ProcessInvoiceOcr.Disabled",
    "AzureWebJobs.RepublishPendingOcr.Disabled",
    "AzureWebJobs.SendExpiryReminders.Disabled",
    "DEPLOYMENT_SLOT",
    // The Functions host's id for the slot (platform.rs checks it per slot).
    "AzureFunctionsWebHost__hostid",
    // Where the host keeps its keys (decision 0024): Key Vault, with the app's identity.
    "AzureWebJobsSecretStorageType",
    "AzureWebJobsSecretStorageKeyVaultUri",
    "AzureWebJobsSecretStorageKeyVaultClientId",
    // Read by the binary's log filter (`telemetry::init`), not a `Settings` field.
    "RUST_LOG",
    // Overrides host.json's `extensions.serviceBus.maxConcurrentCalls` (the host flattens
    // host.json under `AzureFunctionsJobHost:`, HostJsonFileConfigurationSource.cs).
    "AzureFunctionsJobHost__extensions__serviceBus__maxConcurrentCalls",
];

#[test]
fn the_bicep_sets_the_settings_the_binary_reads_and_no_keys() {
    let bicep = read("infra-bicep/modules/functionapp.bicep");
    let shared = bicep_settings(&bicep, "shared");
    let production = bicep_settings(&bicep, "productionData");
    let staging = bicep_settings(&bicep, "stagingData");
    let binary = binary_settings();
    let set: BTreeSet<String> = shared.iter().chain(&production).map(|(n, _)| n.clone()).collect();
    for name in &set {
        assert!(
            binary.contains(name) || PLATFORM.contains(&name.as_str()),
            "the Bicep sets {name}, which neither the binary nor the host reads (typo?)"
        );
    }
    // What the binary needs to run on the Azure adapters with managed identity.
    for needed in [
        "AZURE_CLIENT_ID",
        "WARRANTY_PRODUCT_STORE",
        "CosmosDb__accountEndpoint",
        "WARRANTY_COSMOS_DATABASE",
        "WARRANTY_COSMOS_CONTAINER",
        "WARRANTY_INVOICE_STORE",
        "InvoiceStorage__blobServiceUri",
        "WARRANTY_BLOB_CONTAINER",
        "WARRANTY_OCR_DELIVERY",
        "WARRANTY_OCR_DISPATCHER",
        "ServiceBusConnection__fullyQualifiedNamespace",
        "WARRANTY_OCR_QUEUE",
        "WARRANTY_JWKS_URL",
        "WARRANTY_JWT_ISSUER",
        "WARRANTY_JWT_AUDIENCE",
        "WARRANTY_OCR_ENGINE",
        "WARRANTY_DOCINTEL_ENDPOINT",
    ] {
        assert!(binary.contains(needed), "the binary no longer reads {needed}");
        assert!(set.contains(needed), "the Bicep does not set {needed}");
    }
    let value = |list: &[(String, String)], n: &str| list.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(value(&shared, "WARRANTY_PRODUCT_STORE").as_deref(), Some("'cosmos'"));
    assert_eq!(value(&shared, "WARRANTY_INVOICE_STORE").as_deref(), Some("'blob'"));
    assert_eq!(value(&shared, "WARRANTY_OCR_DELIVERY").as_deref(), Some("'servicebus'"));
    assert_eq!(value(&shared, "WARRANTY_OCR_DISPATCHER").as_deref(), Some("'false'"));
    // Keys and connection strings are for local use only: never in Azure app settings.
    for secret in [
        "CosmosDb",
        "InvoiceStorage",
        "ServiceBusConnection",
        "AzureWebJobsStorage",
        "WARRANTY_DOCINTEL_KEY",
        "WARRANTY_DEV_JWT_SECRET",
    ] {
        assert!(!set.contains(secret), "{secret} holds a key; use the managed identity");
    }
    assert!(!bicep.contains("listKeys") && !bicep.contains("AccountKey"), "no key is read into the app");

    // Slot-sticky data settings: the same names on both slots, different data on staging, and
    // the staging slot's trigger and sweeper off.
    let names = |l: &[(String, String)]| l.iter().map(|(n, _)| n.clone()).collect::<BTreeSet<_>>();
    assert_eq!(names(&production), names(&staging));
    assert!(bicep.contains("appSettingNames: [for s in productionData: s.name]"), "the data settings are sticky");
    for n in [
        "WARRANTY_COSMOS_DATABASE",
        "WARRANTY_BLOB_CONTAINER",
        "WARRANTY_OCR_QUEUE",
        "WARRANTY_NOTIFICATION_HUB_NAME",
        "WARRANTY_NOTIFICATION_HUB_CONNECTION_STRING",
    ] {
        assert_ne!(value(&production, n), value(&staging, n), "{n} must differ between the slots");
    }
    for n in [
        "AzureWebJobs.ProcessInvoiceOcr.Disabled",
        "AzureWebJobs.RepublishPendingOcr.Disabled",
        "AzureWebJobs.SendExpiryReminders.Disabled",
    ] {
        assert_eq!(value(&staging, n).as_deref(), Some("'true'"), "{n}: staging never consumes");
        assert_eq!(value(&production, n).as_deref(), Some("'false'"));
    }
    // The trigger reads its queue from the sticky setting, so it follows the slot.
    let trigger: Value = serde_json::from_str(&read("function-app/ProcessInvoiceOcr/function.json")).unwrap();
    assert_eq!(trigger["bindings"][0]["queueName"], "%WARRANTY_OCR_QUEUE%");
    // The running image is a parameter, never a literal the template would put back.
    assert!(bicep.contains("linuxFxVersion: 'DOCKER|${productionImage}'"));
    assert!(bicep.contains("linuxFxVersion: 'DOCKER|${stagingImage}'"));
    assert!(!read("infra-bicep/main.bicep").contains(":latest"));
}

#[test]
fn the_bicep_containers_and_queues_are_the_ones_the_adapters_use() {
    let cosmos = read("infra-bicep/modules/cosmos.bicep");
    assert!(cosmos.contains("partitionKey: { paths: ['/userId']"));
    assert!(cosmos.contains("uniqueKeyPolicy: { uniqueKeys: [{ paths: ['/serialKey'] }] }"));
    assert!(cosmos.contains("defaultTtl: -1"), "idempotency records expire by their own ttl");
    assert!(cosmos.contains("type: 'Continuous'"), "point-in-time restore");
    assert!(cosmos.contains("disableLocalAuth: true"));
    let defaults = Settings::for_tests(PathBuf::from("/tmp"));
    assert!(cosmos.contains(&format!("name: '{}'", defaults.products.cosmos_database)));
    assert!(cosmos.contains(&format!("name: '{}'", defaults.products.cosmos_container)));
    // Every path the adapter queries is indexed.
    for path in ["/type/?", "/serialKey/?", "/sortKey/?", "/pendingOcrSince/?"] {
        assert!(cosmos.contains(path), "{path} is not indexed");
    }
    let sb = read("infra-bicep/modules/servicebus.bicep");
    assert!(sb.contains(&format!("name: '{}'", defaults.delivery.ocr_queue)));
    assert!(sb.contains("requiresDuplicateDetection: true"), "republished events are absorbed");
    assert!(sb.contains("disableLocalAuth: true"));
    let storage = read("infra-bicep/modules/storage.bicep");
    assert!(storage.contains(&format!("name: '{}'", defaults.invoices.blob_container)));
    assert!(
        storage.contains("isVersioningEnabled: true") && storage.contains("deleteRetentionPolicy: { enabled: true")
    );
    assert!(storage.contains("allowSharedKeyAccess: false"));
    let timer: Value = serde_json::from_str(&read("function-app/RepublishPendingOcr/function.json")).unwrap();
    assert_eq!(timer["bindings"][0]["type"], "timerTrigger");
    assert_eq!(timer["bindings"][0]["schedule"], "0 */5 * * * *");
    let reminders: Value = serde_json::from_str(&read("function-app/SendExpiryReminders/function.json")).unwrap();
    assert_eq!(reminders["bindings"][0]["type"], "timerTrigger");
    assert_eq!(reminders["bindings"][0]["schedule"], "0 0 * * * *", "hourly, on the hour");
}

#[test]
fn only_the_gateway_reaches_the_api_functions() {
    for e in std::fs::read_dir(repo().join("function-app")).unwrap().flatten() {
        let fj = e.path().join("function.json");
        if !fj.exists() {
            continue;
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&fj).unwrap()).unwrap();
        for b in v["bindings"].as_array().unwrap().iter().filter(|b| b["type"] == "httpTrigger") {
            let expected = if b["route"] == "health" { "anonymous" } else { "function" };
            assert_eq!(b["authLevel"], expected, "{}", fj.display());
        }
    }
    let policy = read("infra-bicep/policies/api.xml");
    assert!(policy.contains("<validate-jwt"));
    assert!(policy.contains("x-functions-key"));
}

/// Lines of `run:` blocks in a workflow (block scalars and one-liners).
fn run_script_lines(workflow: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block_indent: Option<usize> = None;
    for line in workflow.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(i) = block_indent {
            if line.trim().is_empty() || indent > i {
                out.push(line.to_owned());
                continue;
            }
            block_indent = None;
        }
        let t = line.trim_start().trim_start_matches("- ");
        if let Some(rest) = t.strip_prefix("run:") {
            let rest = rest.trim();
            if rest.starts_with('|') || rest.starts_with('>') {
                block_indent = Some(indent);
            } else {
                out.push(rest.to_owned());
            }
        }
    }
    out
}

#[test]
fn workflows_pass_inputs_through_env_and_share_one_release_lane() {
    let rollback = read(".github/workflows/rollback.yml");
    let deploy = read(".github/workflows/deploy.yml");
    for (name, wf) in
        [("rollback", &rollback), ("deploy", &deploy), ("ops-tool", &read(".github/actions/ops-tool/action.yml"))]
    {
        let script = run_script_lines(wf);
        assert!(!script.is_empty(), "{name}: the parser found its scripts");
        for l in &script {
            assert!(!l.contains("${{"), "{name}: an expression is interpolated into a script: {l}");
        }
    }
    for wf in [&rollback, &deploy] {
        assert!(wf.contains("concurrency:\n  group: production-release\n  cancel-in-progress: false"));
    }
    assert!(rollback.contains("environment: production"));
    assert!(rollback.contains("options: [swap-back, redeploy]"));
    assert!(deploy.contains("id-token: write") && deploy.contains("azure/login@v2"));
    assert!(deploy.contains("--write-enabled false"), "pushed tags are locked");
    assert!(!deploy.contains(":latest") && !deploy.contains("latest\""), "no mutable tag is pushed");
}

/// The release logic lives in `warranty ops` (tested by the drills), not in the YAML: the
/// workflows call the procedures and make no slot, registry, telemetry or GitHub call
/// themselves, and the tool comes from the cache or a build, never from an image pull.
#[test]
fn the_workflows_are_thin_calls_to_the_drilled_procedures() {
    let rollback = read(".github/workflows/rollback.yml");
    let deploy = read(".github/workflows/deploy.yml");
    let tool = read(".github/actions/ops-tool/action.yml");
    assert!(rollback.contains(
        "run: warranty ops rollback --mode \"$INPUT_MODE\" --image-tag \"$INPUT_IMAGE_TAG\" --reason \"$INPUT_REASON\""
    ));
    assert!(deploy.contains("warranty ops stage --image-tag \"$INPUT_IMAGE_TAG\""));
    assert!(deploy.contains("warranty ops stage --image-tag \"$BUILT_TAG\" --expected-revision \"$BUILT_SHA\""));
    assert!(
        deploy.contains("run: warranty ops promote --image-tag \"$TAG\" --digest \"$DIGEST\" --revision \"$REVISION\"")
    );
    for (name, wf) in [("rollback", &rollback), ("deploy", &deploy), ("ops-tool", &tool)] {
        let script = run_script_lines(wf).join("\n");
        for call in [
            "slot swap",
            "config container set",
            "app-insights query",
            "gh api",
            "gh issue",
            "curl ",
            "docker pull",
            "docker run",
        ] {
            assert!(!script.contains(call), "{name}: `{call}` belongs in warranty ops, not in the workflow");
        }
    }
    for wf in [&rollback, &deploy] {
        assert_eq!(wf.matches("uses: ./.github/actions/ops-tool").count(), if wf == &deploy { 2 } else { 1 });
    }
    assert!(
        tool.contains("actions/cache/restore@v4") && tool.contains("cargo build --release --locked --bin warranty")
    );
    // The image job caches exactly the key the action restores.
    let key = "warranty-ops-${{ runner.os }}-${{ hashFiles('Cargo.lock', 'Cargo.toml', 'handlers/Cargo.toml', 'handlers/src/**') }}";
    assert!(deploy.contains(&format!("key: {key}")) && tool.contains(&format!("key: {key}")));
    // The post-mortem template has the rows `warranty ops rollback` fills (drill 1 checks the filling).
    let template = read(".github/ISSUE_TEMPLATE/post-mortem.md");
    for row in ["Rolled back from", "Rolled back to", "Mode", "Triggered by / approved by", "Workflow run"] {
        assert!(template.contains(&format!("| {row} | <!--")), "template row {row}");
    }
}

/// `on.workflow_dispatch.inputs` of a workflow: name → (type, required, options).
fn dispatch_inputs(workflow: &str) -> BTreeMap<String, (String, bool, Vec<String>)> {
    let mut inputs = BTreeMap::new();
    let mut in_dispatch = false;
    let mut in_inputs = false;
    let mut current: Option<String> = None;
    for line in workflow.lines() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if indent <= 2 {
            in_dispatch = t == "workflow_dispatch:";
            in_inputs = false;
            continue;
        }
        if in_dispatch && indent == 4 {
            in_inputs = t == "inputs:";
            continue;
        }
        if !in_inputs {
            continue;
        }
        if indent == 6 {
            let name = t.trim_end_matches(':').to_owned();
            inputs.insert(name.clone(), ("string".to_owned(), false, Vec::new()));
            current = Some(name);
        } else if indent == 8
            && let Some(name) = &current
        {
            let entry = inputs.get_mut(name).unwrap();
            if let Some(v) = t.strip_prefix("type:") {
                entry.0 = v.trim().to_owned();
            } else if let Some(v) = t.strip_prefix("required:") {
                entry.1 = v.trim() == "true";
            } else if let Some(v) = t.strip_prefix("options:") {
                entry.2 = v.trim().trim_matches(['[', ']']).split(',').map(|o| o.trim().to_owned()).collect();
            }
        }
    }
    inputs
}

/// GitHub's check of a `workflow_dispatch` call (422 otherwise): every input given is declared,
/// every required one is given, choices are among the options, values are strings.
fn dispatch_accepted(workflow: &str, body: &Value) -> Result<(), String> {
    let declared = dispatch_inputs(workflow);
    if !body["ref"].is_string() {
        return Err("no ref".into());
    }
    let given = body["inputs"].as_object().cloned().unwrap_or_default();
    for (name, value) in &given {
        let Some((kind, _, options)) = declared.get(name) else {
            return Err(format!("Unexpected inputs provided: [\"{name}\"]"));
        };
        let v = value.as_str().ok_or_else(|| format!("{name}: not a string"))?;
        if kind == "choice" && !options.iter().any(|o| o == v) {
            return Err(format!("{name}: `{v}` is not one of {options:?}"));
        }
    }
    for (name, (_, required, _)) in &declared {
        if *required && !given.contains_key(name) {
            return Err(format!("Required input '{name}' not provided"));
        }
    }
    Ok(())
}

#[test]
fn the_seeds_dispatch_call_is_accepted_by_deploy_yml() {
    let deploy = read(".github/workflows/deploy.yml");
    // SEQ-OP-001 step 4, verbatim.
    let seed: Value = serde_json::from_str(r#"{"ref":"main","inputs":{"imageTag":"v1.2.3"}}"#).unwrap();
    assert_eq!(dispatch_accepted(&deploy, &seed), Ok(()));
    assert_eq!(dispatch_inputs(&deploy)["imageTag"], ("string".to_owned(), false, vec![]));
    // Without inputs: build from the ref, as on a push.
    assert_eq!(dispatch_accepted(&deploy, &serde_json::json!({"ref": "main"})), Ok(()));
    // The checker refuses what GitHub refuses, so its `Ok` above means something.
    assert!(dispatch_accepted(&deploy, &serde_json::json!({"ref": "main", "inputs": {"tag": "v1.2.3"}})).is_err());
    let rollback = read(".github/workflows/rollback.yml");
    assert!(dispatch_accepted(&rollback, &serde_json::json!({"ref": "main", "inputs": {"mode": "redeploy"}})).is_err());
    assert!(
        dispatch_accepted(&rollback, &serde_json::json!({"ref": "main", "inputs": {"mode": "undo", "reason": "x"}}))
            .is_err()
    );
    assert_eq!(
        dispatch_accepted(
            &rollback,
            &serde_json::json!({"ref": "main", "inputs": {"mode": "redeploy", "imageTag": "v1.2.3", "reason": "P95"}})
        ),
        Ok(())
    );
    // The tag reaches the procedure through the environment.
    assert!(deploy.contains("INPUT_IMAGE_TAG: ${{ inputs.imageTag }}"));
}

/// `docs/privacy.md` states how long each platform safety net keeps erased data; those figures
/// are the ones the Bicep sets.
#[test]
fn the_privacy_retention_table_matches_the_bicep() {
    let privacy = read("docs/privacy.md");
    for (file, setting, stated) in [
        (
            "infra-bicep/modules/storage.bicep",
            "deleteRetentionPolicy: { enabled: true, days: 30 }",
            "| Blob Storage soft delete | deleted invoices and proofs, restorable by an operator | **30 days**",
        ),
        (
            "infra-bicep/modules/storage.bicep",
            "version: { delete: { daysAfterCreationGreaterThan: 30 } }",
            "| Blob Storage versions | earlier versions of each invoice blob | **30 days**",
        ),
        ("infra-bicep/modules/storage.bicep", "restorePolicy: { enabled: true, days: 29 }", "**29 days**"),
        (
            "infra-bicep/modules/storage.bicep",
            "changeFeed: { enabled: true, retentionInDays: 30 }",
            "| Blob Storage change feed | blob names (product ids) and events | **30 days**",
        ),
        (
            "infra-bicep/modules/cosmos.bicep",
            "tier: 'Continuous30Days'",
            "| Cosmos DB continuous backup | point-in-time copies of the account (same caveat on restore) | **30 days**",
        ),
        ("infra-bicep/modules/servicebus.bicep", "defaultMessageTimeToLive: 'P14D'", "**14 days** at most"),
        ("infra-bicep/modules/monitoring.bicep", "retentionInDays: 90", "**90 days**"),
    ] {
        assert!(read(file).contains(setting), "{file} no longer sets `{setting}`: update docs/privacy.md");
        assert!(privacy.contains(stated), "docs/privacy.md does not state `{stated}`");
    }
}

/// The products container has its own autoscale throughput, set per environment; the database
/// shares none (decision 0009).
#[test]
fn the_products_container_has_its_own_autoscale_throughput_per_environment() {
    let cosmos = read("infra-bicep/modules/cosmos.bicep");
    let database = cosmos.split("resource database ").nth(1).unwrap().split("\n}\n").next().unwrap();
    assert!(!database.contains("Throughput"), "no shared database throughput: {database}");
    let products = cosmos.split("resource products ").nth(1).unwrap().split("\n}\n").next().unwrap();
    assert!(products.contains("autoscaleSettings: { maxThroughput: productsMaxThroughput }"), "{products}");
    let main = read("infra-bicep/main.bicep");
    assert!(main.contains("productsMaxThroughput: productsMaxThroughput"));
    let ceiling = |env: &str| -> u32 {
        let params = read(&format!("infra-bicep/params/{env}.bicepparam"));
        let line =
            params.lines().find(|l| l.starts_with("param productsMaxThroughput = ")).expect("set per environment");
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(ceiling("prod") >= 10_000, "production spans more than one physical partition");
    assert!(ceiling("dev") >= 1_000 && ceiling("dev") <= ceiling("prod"));
}
