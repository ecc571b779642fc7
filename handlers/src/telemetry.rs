//! Structured JSON logs, one object per line: warnings and errors on stderr, the rest on
//! stdout. The Functions host logs a worker's stdout at Information and its stderr at Warning
//! or Error (`WorkerProcess.cs`), so the split is what gives a log line its level in
//! Application Insights; host.json keeps only Warning and above from the console, unsampled, so
//! the alerts that read them see every one. `RUST_LOG` tunes the levels.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

pub fn init() {
    subscriber(EnvFilter::new("info"), std::io::stderr.with_max_level(tracing::Level::WARN).or_else(std::io::stdout));
}

/// The same log lines, all on stderr: a reader process's stdout carries its answers.
pub fn init_stderr() {
    subscriber(EnvFilter::new("warn"), std::io::stderr);
}

fn subscriber<W>(default: EnvFilter, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or(default);
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init();
}
