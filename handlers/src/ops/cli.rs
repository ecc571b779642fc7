//! `warranty ops stage | promote | rollback`: the release procedures as the workflows call them.
//! Everything comes from flags or the environment the workflow sets (`vars.*` and GitHub's own
//! `GITHUB_*`); the report is printed as JSON on stdout, the operator's message on stderr (and
//! as a workflow annotation), and the exit code is the report's.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use clap::{Args, Subcommand, ValueEnum};

use super::control::{ControlPlane, Endpoints, Target};
use super::release::{self, Context, Policy, Report, RollbackMode, Run, SystemClock};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CredentialKind {
    /// The Azure CLI session (`azure/login` with OIDC on the runner, `az login` on a laptop).
    AzureCli,
    /// The managed identity of the machine running the tool.
    ManagedIdentity,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[arg(long, env = "AZURE_SUBSCRIPTION_ID")]
    pub subscription: String,
    #[arg(long, env = "RESOURCE_GROUP")]
    pub resource_group: String,
    #[arg(long, env = "FUNCTION_APP")]
    pub function_app: String,
    /// The registry's name (`myacr`) or login server (`myacr.azurecr.io`).
    #[arg(long, env = "ACR_NAME")]
    pub registry: String,
    #[arg(long, env = "REPOSITORY", default_value = "warranty")]
    pub repository: String,
    /// Resource id of the Application Insights component.
    #[arg(long, env = "APP_INSIGHTS_ID")]
    pub app_insights_id: String,
    /// `owner/name` of the repository whose deployments and issues record releases.
    #[arg(long, env = "GITHUB_REPOSITORY")]
    pub github_repository: String,
    #[arg(long, value_enum, default_value = "azure-cli")]
    pub credential: CredentialKind,
    #[arg(long, env = "ARM_ENDPOINT", default_value = "https://management.azure.com")]
    pub arm_endpoint: String,
    /// Registry API base URL; default `https://{login server}`.
    #[arg(long, env = "REGISTRY_ENDPOINT")]
    pub registry_endpoint: Option<String>,
    #[arg(long, env = "APP_INSIGHTS_API", default_value = "https://api.applicationinsights.io")]
    pub app_insights_api: String,
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api: String,
    #[arg(long, default_value = "https")]
    pub slot_scheme: String,
    /// The workflow run (for records); built from GITHUB_SERVER_URL/REPOSITORY/RUN_ID when unset.
    #[arg(long, env = "RUN_URL")]
    pub run_url: Option<String>,
    #[arg(long, env = "GITHUB_ACTOR", default_value = "unknown")]
    pub actor: String,
    #[arg(long, env = "GITHUB_SHA", default_value = "")]
    pub workflow_sha: String,
    #[arg(long, default_value = ".github/ISSUE_TEMPLATE/post-mortem.md")]
    pub post_mortem_template: std::path::PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Resolve an immutable tag in ACR, put it on the staging slot by digest, wait for health on
    /// its revision, smoke-test it. Production is never touched.
    Stage {
        #[arg(long)]
        image_tag: String,
        /// The commit a fresh build was made from; the image's revision label must match.
        #[arg(long)]
        expected_revision: Option<String>,
        #[command(flatten)]
        args: ReleaseArgs,
    },
    /// Swap the staged image into production, verify it for the window, swap back on breach.
    Promote {
        #[arg(long)]
        image_tag: String,
        #[arg(long)]
        digest: String,
        #[arg(long)]
        revision: Option<String>,
        #[command(flatten)]
        args: ReleaseArgs,
    },
    /// Roll production back (docs/runbooks/rollback.md).
    Rollback {
        #[arg(long, value_enum)]
        mode: RollbackMode,
        /// redeploy only: an immutable tag; empty = the last stable release.
        #[arg(long, default_value = "")]
        image_tag: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        args: ReleaseArgs,
    },
}

fn context(args: &ReleaseArgs) -> Result<Context, String> {
    let credential: Arc<dyn TokenCredential> = match args.credential {
        CredentialKind::AzureCli => azure_identity::AzureCliCredential::new(None).map_err(|e| e.to_string())?,
        CredentialKind::ManagedIdentity => {
            azure_identity::ManagedIdentityCredential::new(None).map_err(|e| e.to_string())?
        }
    };
    let github_token = std::env::var("GH_TOKEN")
        .or_else(|_| std::env::var("GITHUB_TOKEN"))
        .map_err(|_| "GH_TOKEN (or GITHUB_TOKEN) must hold the workflow's token".to_owned())?;
    let registry =
        if args.registry.contains('.') { args.registry.clone() } else { format!("{}.azurecr.io", args.registry) };
    let target = Target {
        subscription: args.subscription.clone(),
        resource_group: args.resource_group.clone(),
        function_app: args.function_app.clone(),
        registry,
        repository: args.repository.clone(),
        app_insights_resource_id: args.app_insights_id.clone(),
        app_insights_app_id: String::new(),
        github_repository: args.github_repository.clone(),
    };
    let endpoints = Endpoints {
        arm: args.arm_endpoint.clone(),
        registry_api: args.registry_endpoint.clone(),
        app_insights_api: args.app_insights_api.clone(),
        github_api: args.github_api.clone(),
        slot_scheme: args.slot_scheme.clone(),
    };
    let run_url = args.run_url.clone().unwrap_or_else(|| {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        format!("{}/{}/actions/runs/{}", var("GITHUB_SERVER_URL"), var("GITHUB_REPOSITORY"), var("GITHUB_RUN_ID"))
    });
    let template = std::fs::read_to_string(&args.post_mortem_template)
        .map_err(|e| format!("{}: {e}", args.post_mortem_template.display()))?;
    let cp = ControlPlane::new(target, endpoints, credential, github_token).map_err(|e| e.to_string())?;
    Ok(Context {
        cp,
        clock: Arc::new(SystemClock),
        policy: Policy::default(),
        run: Run {
            run_url,
            actor: args.actor.clone(),
            workflow_sha: args.workflow_sha.clone(),
            post_mortem_template: template,
        },
    })
}

/// Validates what needs no network first, so a refused tag costs nothing.
fn precheck(command: &ReleaseCommand) -> Result<(), String> {
    let tag = match command {
        ReleaseCommand::Stage { image_tag, .. } | ReleaseCommand::Promote { image_tag, .. } => Some(image_tag),
        ReleaseCommand::Rollback { image_tag, .. } => Some(image_tag).filter(|t| !t.trim().is_empty()),
    };
    if let Some(t) = tag {
        super::ImageTag::parse(t).map_err(|e| format!("refused: {e}; production untouched"))?;
    }
    Ok(())
}

pub async fn run(command: ReleaseCommand) -> Result<Report, String> {
    precheck(&command)?;
    Ok(match &command {
        ReleaseCommand::Stage { image_tag, expected_revision, args } => {
            release::stage(&context(args)?, image_tag, expected_revision.as_deref()).await
        }
        ReleaseCommand::Promote { image_tag, digest, revision, args } => {
            release::promote(&context(args)?, image_tag, digest, revision.as_deref()).await
        }
        ReleaseCommand::Rollback { mode, image_tag, reason, args } => {
            release::rollback(&context(args)?, *mode, Some(image_tag.as_str()), reason).await
        }
    })
}
