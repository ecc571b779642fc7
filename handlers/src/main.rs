//! The `warranty` binary: `serve` (the default) and `dev-token`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use warranty::adapters::embedded::queue::SqliteOcrQueue;
use warranty::configuration::Settings;
use warranty::http::auth;
use warranty::startup::{Application, shutdown_signal};

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
    /// Print a bearer token the local server (shared-secret mode) accepts.
    DevToken {
        /// The user id to put in the token.
        #[arg(long)]
        user: String,
        /// Lifetime, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// Inspect and replay the embedded default's OCR queue (one JSON object per line).
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
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
    let db = settings.data_dir.join("warranty.sqlite3");
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::DevToken { user, ttl } => {
            if cli.settings.jwks_url.is_some() || cli.settings.jwks_file.is_some() {
                eprintln!("dev-token only works in shared-secret mode (unset WARRANTY_JWKS_URL / WARRANTY_JWKS_FILE)");
                return ExitCode::FAILURE;
            }
            match auth::dev_secret(cli.settings.dev_jwt_secret.as_deref(), &cli.settings.data_dir) {
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
        Command::Serve => {
            warranty::telemetry::init();
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(async {
                match Application::build(&cli.settings).await {
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
