//! The `warranty` binary: `serve` (the default), `dev-token`, `queue …` and `ops …` (the
//! release decisions the deploy and rollback workflows call).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use warranty::adapters::embedded::queue::SqliteOcrQueue;
use warranty::config::Settings;
use warranty::host::{Application, shutdown_signal};
use warranty::inbound::auth;

#[derive(Parser)]
#[command(name = "warranty", version, about = "Warranty registration backend (Azure Functions custom handler)")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// A reader process: reads uploaded documents from stdin, answers on stdout. Started by the
    /// service (decision 0025), not by hand.
    #[command(hide = true)]
    ReadWorker,
    /// Print a bearer token the local server (shared-secret mode) accepts.
    DevToken {
        /// The user id to put in the token.
        #[arg(long)]
        user: String,
        /// Lifetime, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// Support staff: one user's data — the same code paths as `GET /api/me/export` and
    /// `DELETE /api/me`, on the store these settings name.
    Users {
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Inspect and replay the embedded default's OCR queue (one JSON object per line).
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Measure the invoice reader on documents with known truth: a folder with a
    /// `ground-truth.jsonl` (docs/benchmarks.md). Prints per-kind tables; `--json` writes every
    /// document's result.
    OcrEval {
        /// The folder holding `ground-truth.jsonl` and the documents it names.
        corpus: std::path::PathBuf,
        /// Also read each PDF with its XML ignored (`+text-layer`) and as a scan (`+scan`).
        #[arg(long)]
        derive: bool,
        /// Only kinds whose name contains this (repeatable).
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// At most this many documents per kind.
        #[arg(long)]
        limit: Option<usize>,
        /// Documents read at once.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Write the full report (summary and per-document results) here.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Keep Tesseract's raw output here between runs (development only).
        #[arg(long)]
        cache: Option<std::path::PathBuf>,
        /// Print the lines read from documents whose file name contains this (to stderr).
        #[arg(long)]
        show: Option<String>,
    },
    /// Measure invoice-first proposals (brand, model, serial, date) on documents with known
    /// products: a folder with a `proposals-truth.jsonl`, and/or a corpus's hybrid e-invoice PDFs
    /// (`--einvoices`, products from their XML). docs/benchmarks.md, issue 29.
    ProposalsEval {
        /// The folder holding `proposals-truth.jsonl` and the documents it names.
        folder: Option<std::path::PathBuf>,
        /// A corpus with a `ground-truth.jsonl` whose `einvoice-pdf` documents are scored.
        #[arg(long)]
        einvoices: Option<std::path::PathBuf>,
        /// Documents read at once.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Print the proposals and lines of documents whose file name contains this (to stderr).
        #[arg(long)]
        show: Option<String>,
    },
    /// Release decisions for the deploy and rollback workflows.
    Ops {
        #[command(subcommand)]
        action: OpsAction,
    },
}

#[derive(Subcommand)]
enum OpsAction {
    /// Checks that an image tag is immutable (40-hex git SHA, v1.2.3, sha256 digest); prints its
    /// kind as JSON. Exit 1 and the reason on stderr otherwise.
    ValidateTag { tag: String },
    /// Prints the last stable production release (JSON) from the deployment history the
    /// workflow collected (a JSON array of deployments, each with its `statuses`). Exit 1 if none.
    LastStable {
        /// File with the history, or `-` for stdin.
        #[arg(long)]
        deployments: String,
        #[arg(long, default_value = "production")]
        environment: String,
        /// The tag running now (the one being rolled back), never the answer.
        #[arg(long)]
        exclude_tag: Option<String>,
    },
    /// Judges production from an Application Insights query result (columns total, failed,
    /// p95): prints the verdict as JSON; exit 0 healthy, 1 unhealthy, 2 inconclusive.
    HealthVerdict {
        /// File with the `az monitor app-insights query` output, or `-` for stdin.
        #[arg(long)]
        result: String,
        #[arg(long, default_value_t = 500.0)]
        max_p95_ms: f64,
        #[arg(long, default_value_t = 0.05)]
        max_failure_rate: f64,
        #[arg(long, default_value_t = 20)]
        min_requests: u64,
    },
    #[command(flatten)]
    Release(Box<warranty::ops::cli::ReleaseCommand>),
}

/// Runs a release procedure: the report as JSON on stdout, the operator's message on stderr
/// (a workflow annotation under GitHub Actions), the outcome and image in `$GITHUB_OUTPUT`.
fn release_command(command: warranty::ops::cli::ReleaseCommand) -> ExitCode {
    warranty::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(warranty::ops::cli::run(command)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    let actions = std::env::var_os("GITHUB_ACTIONS").is_some();
    let level = if report.exit_code() == 0 { "notice" } else { "error" };
    if actions {
        eprintln!("::{level}::{}", report.message);
    } else {
        eprintln!("{}", report.message);
    }
    if let Some(path) = std::env::var_os("GITHUB_OUTPUT") {
        let outcome = serde_json::to_value(report.outcome).ok().and_then(|v| v.as_str().map(str::to_owned));
        let mut lines = format!("outcome={}\n", outcome.unwrap_or_default());
        for (k, v) in [
            ("tag", &report.image_tag),
            ("digest", &report.digest),
            ("image", &report.image),
            ("revision", &report.revision),
        ] {
            if let Some(v) = v {
                lines.push_str(&format!("{k}={v}\n"));
            }
        }
        use std::io::Write;
        let written =
            std::fs::OpenOptions::new().append(true).open(&path).and_then(|mut f| f.write_all(lines.as_bytes()));
        if let Err(e) = written {
            eprintln!("cannot write $GITHUB_OUTPUT: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::from(report.exit_code())
}

fn read_json(source: &str) -> Result<serde_json::Value, String> {
    let text = if source == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("stdin: {e}"))?
    } else {
        std::fs::read_to_string(source).map_err(|e| format!("{source}: {e}"))?
    };
    serde_json::from_str(&text).map_err(|e| format!("{source}: not JSON: {e}"))
}

fn ops_command(action: OpsAction) -> ExitCode {
    use warranty::ops;
    let fail = |msg: String| {
        eprintln!("{msg}");
        ExitCode::FAILURE
    };
    match action {
        OpsAction::Release(command) => release_command(*command),
        OpsAction::ValidateTag { tag } => match ops::ImageTag::parse(&tag) {
            Ok(t) => {
                println!("{}", serde_json::to_string(&t).expect("json"));
                ExitCode::SUCCESS
            }
            Err(e) => fail(e.to_string()),
        },
        OpsAction::LastStable { deployments, environment, exclude_tag } => {
            let history: Vec<ops::Deployment> =
                match read_json(&deployments).and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string())) {
                    Ok(h) => h,
                    Err(e) => return fail(format!("deployment history: {e}")),
                };
            match ops::last_stable(&history, &environment, exclude_tag.as_deref()) {
                Some(s) => {
                    println!("{}", serde_json::to_string(&s).expect("json"));
                    ExitCode::SUCCESS
                }
                None => fail(format!("no stable {environment} release in {} deployments", history.len())),
            }
        }
        OpsAction::HealthVerdict { result, max_p95_ms, max_failure_rate, min_requests } => {
            let limits = ops::HealthLimits { max_p95_ms, max_failure_rate, min_requests };
            match read_json(&result).and_then(|v| ops::health_verdict(&v, &limits).map_err(|e| e.to_string())) {
                Ok(v) => {
                    println!("{}", serde_json::to_string(&v).expect("json"));
                    ExitCode::from(v.exit_code())
                }
                // Unreadable evidence is not evidence of health.
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

#[derive(Subcommand)]
enum UsersAction {
    /// Writes the user's archive (ZIP) to standard output: `warranty users export --user ID > file.zip`.
    Export {
        #[arg(long)]
        user: String,
    },
    /// Erases everything of the user, on every store (cannot be undone).
    Erase {
        #[arg(long)]
        user: String,
    },
}

fn users_command(settings: &Settings, action: UsersAction) -> ExitCode {
    use std::io::Write;
    let mut settings = settings.clone();
    // Never the serving port: a server may be running on it.
    settings.server.port = 0;
    settings.reminders.reminder_sweep_secs = 0;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        let app = match Application::build(&settings).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let services = app.services();
        match action {
            UsersAction::Export { user } => {
                let user = warranty::domain::UserId(user);
                let (tx, mut rx) = tokio::sync::mpsc::channel(4);
                let whole = warranty::application::privacy::ExportPart::whole();
                let task =
                    tokio::spawn(
                        async move { warranty::application::privacy::export(&services, &user, &whole, tx).await },
                    );
                let mut out = std::io::stdout().lock();
                while let Some(chunk) = rx.recv().await {
                    match chunk {
                        Ok(bytes) if out.write_all(&bytes).is_ok() => {}
                        _ => return ExitCode::FAILURE,
                    }
                }
                let _ = out.flush();
                match task.await {
                    Ok(Ok(bytes)) => {
                        eprintln!("exported {bytes} bytes");
                        ExitCode::SUCCESS
                    }
                    Ok(Err(e)) => {
                        eprintln!("export failed: {e}");
                        ExitCode::FAILURE
                    }
                    Err(e) => {
                        eprintln!("export failed: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            UsersAction::Erase { user } => {
                let user = warranty::domain::UserId(user);
                let result = async {
                    warranty::application::privacy::begin_erasure(&services, &user).await?;
                    warranty::application::privacy::continue_erasure(&services, &user, None).await
                }
                .await;
                match result {
                    Ok(true) => {
                        eprintln!("erased");
                        ExitCode::SUCCESS
                    }
                    Ok(false) => {
                        eprintln!("erasure not finished; run again to resume");
                        ExitCode::FAILURE
                    }
                    Err(e) => {
                        eprintln!("erasure stopped ({e}); run again to resume");
                        ExitCode::FAILURE
                    }
                }
            }
        }
    })
}

#[derive(Subcommand)]
enum QueueAction {
    /// Messages waiting or in flight.
    List,
    /// Messages that exhausted their deliveries, with the reason.
    DeadLetters,
    /// Moves a dead-lettered message back to the queue with a fresh delivery count.
    Requeue {
        /// The message id (`{productId}:invoice:{version}`).
        message_id: String,
    },
}

fn queue_command(settings: &Settings, action: QueueAction) -> ExitCode {
    let db = settings.server.data_dir.join("warranty.sqlite3");
    if !db.exists() {
        eprintln!("no database at {} (set WARRANTY_DATA_DIR)", db.display());
        return ExitCode::FAILURE;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        let queue = match SqliteOcrQueue::open(&db) {
            Ok(q) => q,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let result = match action {
            QueueAction::List => queue.list().await.map(|rows| {
                rows.iter().for_each(|r| println!("{}", serde_json::to_string(r).expect("json")));
                true
            }),
            QueueAction::DeadLetters => queue.dead_letters().await.map(|rows| {
                rows.iter().for_each(|r| println!("{}", serde_json::to_string(r).expect("json")));
                true
            }),
            QueueAction::Requeue { message_id } => queue.requeue(&message_id).await.inspect(|moved| {
                if *moved {
                    println!("requeued {message_id}");
                } else {
                    eprintln!("{message_id} is not in the dead-letter table");
                }
            }),
        };
        match result {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn ocr_eval_command(
    settings: &Settings,
    opts: warranty::ocr_eval::EvalOptions,
    json: Option<std::path::PathBuf>,
    cache: Option<std::path::PathBuf>,
) -> ExitCode {
    use warranty::ocr_eval;
    let Some((readers, scratch)) = eval_readers(settings, cache) else {
        return ExitCode::FAILURE;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let result = rt.block_on(ocr_eval::run(readers, &opts));
    let _ = std::fs::remove_dir_all(&scratch);
    match result {
        Ok(docs) => {
            let summary = ocr_eval::summarise(&docs);
            println!("{}", ocr_eval::render(&summary));
            println!("reproduce: {command}");
            if let Some(path) = json
                && let Err(e) = ocr_eval::write_json(&path, &summary, &docs)
            {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The readers an evaluation runs (those the service runs, from the settings) and their scratch
/// directory; `None` after saying why not.
fn eval_readers(
    settings: &Settings,
    cache: Option<std::path::PathBuf>,
) -> Option<(std::sync::Arc<warranty::adapters::ocr::InvoiceReaders>, std::path::PathBuf)> {
    let scratch = match tempfile_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("scratch directory: {e}");
            return None;
        }
    };
    let identity = warranty::adapters::azure::identity::Identity::new(&settings.identity);
    match warranty::adapters::ocr::InvoiceReaders::from_settings(&settings.ocr, &identity, &scratch, cache) {
        Ok(r) => Some((std::sync::Arc::new(r), scratch)),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

fn proposals_eval_command(settings: &Settings, opts: warranty::proposals_eval::ProposalsEvalOptions) -> ExitCode {
    use warranty::proposals_eval;
    if opts.folder.is_none() && opts.einvoices.is_none() {
        eprintln!("name a folder with a proposals-truth.jsonl, --einvoices CORPUS, or both");
        return ExitCode::FAILURE;
    }
    let catalog = match warranty::domain::BrandCatalog::bundled(settings.server.default_warranty_months) {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some((readers, scratch)) = eval_readers(settings, None) else {
        return ExitCode::FAILURE;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let result = rt.block_on(proposals_eval::run(readers, catalog, &opts));
    let _ = std::fs::remove_dir_all(&scratch);
    match result {
        Ok(results) => {
            println!("{}", proposals_eval::render(&results));
            for r in results.iter().filter(|r| r.failed.is_some()) {
                println!("failed: {} ({})", r.name, r.failed.as_deref().unwrap_or_default());
            }
            // The misses, for whoever improves the rules (stderr: the report stays a table).
            for r in &results {
                for m in &r.misses {
                    eprintln!("{} ({}): {m}", r.name, r.kind);
                }
            }
            println!("reproduce: {}", std::env::args().collect::<Vec<_>>().join(" "));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("warranty-ocr-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 30m, 1h or 7d"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit {unit:?}; use s, m, h or d")),
    };
    if secs == 0 || secs > 90 * 86_400 {
        return Err("the lifetime must be between 1 s and 90 days".into());
    }
    Ok(Duration::from_secs(secs))
}

/// `warranty read-worker`: confined first (before any thread), then the readers.
fn read_worker(settings: &Settings) -> ExitCode {
    use warranty::adapters::ocr::worker;
    let scratch =
        std::env::var_os("WARRANTY_READER_SCRATCH").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let limits: worker::WorkerLimits =
        match std::env::var("WARRANTY_READER_LIMITS").ok().and_then(|l| serde_json::from_str(&l).ok()) {
            Some(l) => l,
            None => {
                eprintln!("read-worker: started without its limits (WARRANTY_READER_LIMITS); the service starts it");
                return ExitCode::FAILURE;
            }
        };
    // Readable beside the system's folders: the models, and the folders of the tools the
    // settings name.
    let mut read_only = vec![settings.ocr.ocr_models_dir.clone()];
    for tool in [&settings.ocr.tesseract_path, &settings.ocr.pdftoppm_path] {
        if let Some(folder) = tool.parent().filter(|p| p.is_absolute()) {
            read_only.push(folder.to_owned());
        }
    }
    worker::run_worker(limits, &scratch, &read_only, || {
        warranty::telemetry::init_stderr();
        let identity = warranty::adapters::azure::identity::Identity::new(&settings.identity);
        warranty::adapters::ocr::InvoiceReaders::from_settings(&settings.ocr, &identity, &scratch, None)
            .map_err(|e| e.to_string())
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::ReadWorker => read_worker(&cli.settings),
        Command::DevToken { user, ttl } => {
            if cli.settings.auth.jwks_url.is_some() || cli.settings.auth.jwks_file.is_some() {
                eprintln!("dev-token only works in shared-secret mode (unset WARRANTY_JWKS_URL / WARRANTY_JWKS_FILE)");
                return ExitCode::FAILURE;
            }
            match auth::dev_secret(
                cli.settings.auth.dev_jwt_secret.as_ref().map(warranty::config::Secret::expose),
                &cli.settings.server.data_dir,
            ) {
                Ok(secret) => {
                    println!("{}", auth::dev_token(&secret, &user, ttl));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cannot read or create the dev secret: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Queue { action } => queue_command(&cli.settings, action),
        Command::Users { action } => users_command(&cli.settings, action),
        Command::Ops { action } => ops_command(action),
        Command::OcrEval { corpus, derive, kinds, limit, jobs, json, cache, show } => {
            let opts = warranty::ocr_eval::EvalOptions {
                corpus,
                derive,
                kinds,
                limit,
                jobs,
                date_tolerance_days: cli.settings.ocr.ocr_date_tolerance_days,
                show,
            };
            ocr_eval_command(&cli.settings, opts, json, cache)
        }
        Command::ProposalsEval { folder, einvoices, jobs, show } => {
            let opts = warranty::proposals_eval::ProposalsEvalOptions { folder, einvoices, jobs, show };
            proposals_eval_command(&cli.settings, opts)
        }
        Command::Serve => {
            warranty::telemetry::init();
            warranty::host::return_large_buffers_to_os();
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(async {
                // Bind first, connect after: the Functions host waits for `GET /` to answer.
                match Application::bind(&cli.settings) {
                    Ok(app) => {
                        app.run_until(shutdown_signal()).await;
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "startup failed");
                        ExitCode::FAILURE
                    }
                }
            })
        }
    }
}
