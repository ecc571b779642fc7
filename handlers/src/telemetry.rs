//! Structured JSON logs, one object per line: warnings and errors on stderr, the rest on
//! stdout. The Functions host logs a worker's stdout at Information and its stderr at Warning
//! or Error (`WorkerProcess.cs`), so the split is what gives a log line its level in
//! Application Insights; host.json keeps only Warning and above from the console, unsampled, so
//! the alerts that read them see every one. `RUST_LOG` tunes the levels.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr.with_max_level(tracing::Level::WARN).or_else(std::io::stdout))
        .try_init();
}

/// The same log lines, all on stderr: a reader process's stdout carries its answers.
pub fn init_stderr() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
