//! What the binary knows about its own build: version and git revision.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the binary was built from (`WARRANTY_GIT_SHA` at build time; the container
/// build sets it), so a deployment can check that the slot runs what it deployed.
pub const REVISION: &str = match option_env!("WARRANTY_GIT_SHA") {
    Some(sha) => sha,
    None => "dev",
};

/// The revision `/api/health` reports: [`REVISION`] for a release build. A development build
/// (built without `WARRANTY_GIT_SHA`) may be told one with `WARRANTY_DEV_REVISION`, which the
/// release drills use to run one binary as several images; a release build ignores it.
pub fn revision() -> &'static str {
    static REVISION_SHOWN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    REVISION_SHOWN.get_or_init(|| match option_env!("WARRANTY_GIT_SHA") {
        Some(sha) => sha.to_owned(),
        None => {
            std::env::var("WARRANTY_DEV_REVISION").ok().filter(|r| !r.is_empty()).unwrap_or_else(|| REVISION.to_owned())
        }
    })
}
