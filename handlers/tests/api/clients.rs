//! Clients generated from `docs/openapi.json` by the generators app teams use, each run as a new
//! user would run it (no generator options that the document needs), against the real server
//! on a real port:
//! - `@redocly/cli` lints the document with `tools/clients/redocly.yaml`: no error, no warning;
//! - `openapi-python-client` and `openapi-typescript` + `openapi-fetch` (type-checked by `tsc`)
//!   run the whole journey (`tools/clients/journey.{py,ts}`) through generated code only;
//! - `openapi-generator` makes `kotlin` and `swift5` clients with no warning about the document.
//!
//! The tools are pinned in `tools/clients/` and installed by `tools/clients/install` (which
//! `./tools/test` runs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn kit() -> PathBuf {
    repo().join("tools/clients")
}

fn document() -> PathBuf {
    repo().join("docs/openapi.json")
}

/// A tool of the kit, or a clear failure saying how to install it.
fn tool(relative: &str) -> PathBuf {
    let path = kit().join(relative);
    assert!(path.exists(), "{} is missing: run tools/clients/install (./tools/test does)", path.display());
    path
}

/// Runs `cmd` in the kit with the kit's Python tools on PATH; fails with its output unless it
/// succeeds. Returns stdout + stderr.
fn run(cmd: &mut Command) -> String {
    let path = format!("{}:{}", kit().join(".venv/bin").display(), std::env::var("PATH").unwrap_or_default());
    let Output { status, stdout, stderr } =
        cmd.current_dir(kit()).env("PATH", path).output().unwrap_or_else(|e| panic!("{cmd:?} cannot run: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    assert!(status.success(), "{cmd:?} failed ({status}):\n{text}");
    text
}

/// The journey's environment: a server of its own, a user of its own, the PDF to upload.
/// Its invoices are read as in production (the outbox delivers them), so the invoice-first part
/// of the journey sees its intake read. `WARRANTY_INTAKE_INVOICE` lists an HP laptop with its
/// serial number.
async fn journey_env(user: &str) -> (TestApp, Vec<(&'static str, String)>) {
    let app = spawn_with(|s| s.delivery.ocr_dispatcher = true).await;
    let intake_invoice = app.dir.path().join("intake-invoice.pdf");
    std::fs::write(
        &intake_invoice,
        text_pdf(&[
            "Elektro Schmidt GmbH",
            "Invoice date 2026-03-15",
            "HP EliteBook 840 G9 1299.00 EUR",
            "S/N: 5CD1234XYZ",
            "Total 1299.00 EUR",
        ]),
    )
    .unwrap();
    let env = vec![
        // The document's server is the API's base (`…/api`); its paths are relative to it.
        ("WARRANTY_BASE_URL", format!("{}/api", app.base)),
        ("WARRANTY_TOKEN", token(user)),
        ("WARRANTY_INVOICE", repo().join("handlers/tests/fixtures/invoice.pdf").display().to_string()),
        ("WARRANTY_INTAKE_INVOICE", intake_invoice.display().to_string()),
    ];
    (app, env)
}

/// What the server holds after a journey: four products for the user, one of them edited
/// with a service request, one registered from an intake.
async fn assert_journey_stored(app: &TestApp, user: &str) {
    let page: serde_json::Value = app.get(user, "/api/products?limit=100").await.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "four registrations stored: {page}");
    let from_intake: Vec<_> = items.iter().filter(|c| c["intakeId"].is_string()).collect();
    assert_eq!(from_intake.len(), 1, "{page}");
    assert_eq!((&from_intake[0]["brand"], &from_intake[0]["serialNumber"]), (&"HP".into(), &"5CD1234XYZ".into()));
    let edited: Vec<_> = items.iter().filter(|c| c["notes"] == "Gift for Sam").collect();
    assert_eq!(edited.len(), 1);
    assert_eq!(edited[0]["serviceRequestCount"], 1);
    assert_eq!(edited[0]["invoice"]["sha256"], sha256_hex(&fixture("invoice.pdf")));
}

#[test]
fn the_document_passes_the_linter_with_no_warning() {
    let out = run(Command::new(tool("node_modules/.bin/redocly"))
        .args(["lint", "--config", "redocly.yaml", "--format", "stylish"])
        .arg(document()));
    assert!(out.contains("valid"), "{out}");
    assert!(!out.to_lowercase().contains("warning ") && !out.contains(" error "), "the linter reported:\n{out}");
}

#[tokio::test]
async fn a_generated_python_client_runs_the_whole_journey() {
    let out_dir = tempfile::tempdir().unwrap();
    let generated = run(Command::new(tool(".venv/bin/openapi-python-client"))
        .args(["generate", "--meta", "none", "--path"])
        .arg(document())
        .arg("--output-path")
        .arg(out_dir.path().join("warranty_api")));
    assert!(!generated.contains("Warning"), "the generator warned:\n{generated}");

    let (app, env) = journey_env("journey-python").await;
    let mut cmd = Command::new(tool(".venv/bin/python"));
    cmd.arg("journey.py").arg(out_dir.path()).envs(env);
    let out = tokio::task::spawn_blocking(move || run(&mut cmd)).await.unwrap();
    assert!(
        out.contains("python journey: 3 registered, 2 pages, edit, service request, download, refusal, intake: ok"),
        "{out}"
    );
    assert_journey_stored(&app, "journey-python").await;
}

#[tokio::test]
async fn a_generated_typescript_client_type_checks_and_runs_the_whole_journey() {
    // Generated into the kit (gitignored), where `tsc` and Node resolve `openapi-fetch`.
    run(Command::new("node").arg(tool("generate-ts.mjs")).arg(document()).arg("generated/ts/schema.ts"));
    run(Command::new(tool("node_modules/.bin/tsc")).args(["-p", "tsconfig.json"]));

    let (app, env) = journey_env("journey-typescript").await;
    let mut cmd = Command::new("node");
    cmd.arg("generated/ts/out/journey.js").envs(env);
    let out = tokio::task::spawn_blocking(move || run(&mut cmd)).await.unwrap();
    assert!(
        out.contains("typescript journey: 3 registered, 2 pages, edit, service request, download, refusal, intake: ok"),
        "{out}"
    );
    assert_journey_stored(&app, "journey-typescript").await;
}

/// Notices openapi-generator prints about itself, whatever the document: its OpenAPI 3.1
/// support is marked beta, and `swift5` is marked deprecated in favour of `swift6`.
const GENERATOR_NOTICES: &[&str] = &["OpenAPI 3.1 support is still in beta", "deprecated"];

#[test]
fn openapi_generator_makes_kotlin_and_swift_clients_without_warnings_about_the_document() {
    for (generator, api, problem, code_field) in [
        (
            "kotlin",
            "src/main/kotlin/org/openapitools/client/apis/InvoicesApi.kt",
            "src/main/kotlin/org/openapitools/client/models/Problem.kt",
            "val code: kotlin.String",
        ),
        (
            "swift5",
            "OpenAPIClient/Classes/OpenAPIs/APIs/InvoicesAPI.swift",
            "OpenAPIClient/Classes/OpenAPIs/Models/Problem.swift",
            "public var code: String",
        ),
    ] {
        let out_dir = tempfile::tempdir().unwrap();
        let out = run(Command::new(tool(".venv/bin/openapi-generator-cli"))
            .args(["generate", "-g", generator, "-i"])
            .arg(document())
            .arg("-o")
            .arg(out_dir.path()));
        let warnings: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .filter(|l| !GENERATOR_NOTICES.iter().any(|n| l.contains(n)))
            .collect();
        assert!(warnings.is_empty(), "{generator}: warnings about the document:\n{}", warnings.join("\n"));
        // One API class per tag, and the error code an open string.
        assert!(out_dir.path().join(api).exists(), "{generator}: no {api}");
        let problem = std::fs::read_to_string(out_dir.path().join(problem)).unwrap();
        assert!(problem.contains(code_field), "{generator}: Problem.code is not a plain string:\n{problem}");
    }
}
