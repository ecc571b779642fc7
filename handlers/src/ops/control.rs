//! The control planes a release talks to, by their documented REST contracts:
//! - Azure Resource Manager, `Microsoft.Web/sites` (slot container image in `config/web`,
//!   `defaultHostName`, `host/default/listkeys`, `applySlotConfig` / `resetSlotConfig`,
//!   `slotsswap` as a long-running operation) and the Application Insights component
//!   (connection string, `Annotations`);
//! - Azure Container Registry's registry API (`/oauth2/exchange`, `/oauth2/token`,
//!   `/v2/{repository}/manifests/{tag}`, the image config blob for its revision label);
//! - the Application Insights query API (`/v1/apps/{appId}/query`) and ingestion (`/v2.1/track`);
//! - GitHub REST (deployments, deployment statuses, issues).
//!
//! Azure calls carry Entra ID tokens from a `TokenCredential` (the Azure CLI session that
//! `azure/login` opened on the runner, or a managed identity); GitHub calls carry the workflow's
//! token. Every endpoint's base URL is configurable, so the same code runs against the
//! simulated control plane of the drills.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::clock::Clock;
use super::{Deployment, DeploymentStatus};

const WEB_API: &str = "2024-04-01";
const ANNOTATIONS_API: &str = "2015-05-01";
const COMPONENT_API: &str = "2020-02-02";
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Production,
    Staging,
}

impl Slot {
    pub fn name(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Staging => "staging",
        }
    }
}

/// What is being released where.
#[derive(Debug, Clone)]
pub struct Target {
    pub subscription: String,
    pub resource_group: String,
    pub function_app: String,
    /// The registry's login server, as image references name it (`myacr.azurecr.io`).
    pub registry: String,
    pub repository: String,
    /// Application Insights: the component's resource id (annotations, connection string) and
    /// its application id for the query API (empty = read from the component).
    pub app_insights_resource_id: String,
    pub app_insights_app_id: String,
    /// `owner/name`.
    pub github_repository: String,
}

/// Base URLs. Production uses the defaults; the drills point all of them at a loopback server.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub arm: String,
    /// Registry API base; `None` = `https://{registry}`.
    pub registry_api: Option<String>,
    pub app_insights_api: String,
    pub github_api: String,
    /// Scheme of the slots' `defaultHostName` (https in Azure).
    pub slot_scheme: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            arm: "https://management.azure.com".into(),
            registry_api: None,
            app_insights_api: "https://api.applicationinsights.io".into(),
            github_api: "https://api.github.com".into(),
            slot_scheme: "https".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{what}: HTTP {status}: {detail}")]
    Status { what: String, status: u16, detail: String },
    #[error("{what}: {detail}")]
    Transport { what: String, detail: String },
    #[error("{what}: no access token: {detail}")]
    Token { what: String, detail: String },
    #[error("{what}: unexpected answer: {detail}")]
    Answer { what: String, detail: String },
}

impl ControlError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An image in the registry, resolved from a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    pub tag: String,
    pub digest: String,
    /// `org.opencontainers.image.revision` of the image config: the git SHA it was built from.
    pub revision: Option<String>,
}

pub struct ControlPlane {
    http: reqwest::Client,
    credential: Arc<dyn TokenCredential>,
    github_token: String,
    pub target: Target,
    pub endpoints: Endpoints,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane").field("target", &self.target).field("endpoints", &self.endpoints).finish()
    }
}

fn trimmed(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(300).collect()
}

impl ControlPlane {
    pub fn new(
        target: Target,
        endpoints: Endpoints,
        credential: Arc<dyn TokenCredential>,
        github_token: String,
    ) -> Result<Self, ControlError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("warranty-ops/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ControlError::Transport { what: "http client".into(), detail: e.to_string() })?;
        Ok(Self { http, credential, github_token, target, endpoints })
    }

    /// The image reference a slot is given: by digest, never by tag.
    pub fn image_ref(&self, digest: &str) -> String {
        format!("{}/{}@{}", self.target.registry, self.target.repository, digest)
    }

    async fn token(&self, scope: &str, what: &str) -> Result<String, ControlError> {
        let t = self
            .credential
            .get_token(&[scope], None)
            .await
            .map_err(|e| ControlError::Token { what: what.into(), detail: e.to_string() })?;
        Ok(t.token.secret().to_owned())
    }

    /// One JSON request; 429 and 5xx are retried (3 attempts, honouring `Retry-After`).
    async fn send(
        &self,
        clock: &dyn Clock,
        what: &str,
        method: Method,
        url: &str,
        auth: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Value), ControlError> {
        let transport = |e: reqwest::Error| ControlError::Transport { what: what.into(), detail: e.to_string() };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.http.request(method.clone(), url).header("authorization", auth);
            if let Some(b) = body {
                req = req.json(b);
            }
            if url.starts_with(&self.endpoints.github_api) {
                req = req.header("accept", "application/vnd.github+json").header("x-github-api-version", "2022-11-28");
            }
            let resp = req.send().await.map_err(transport)?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let text = resp.text().await.map_err(transport)?;
            if (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) && attempt < 3 {
                let wait = retry_after(&headers).unwrap_or(Duration::from_secs(5 * attempt));
                clock.sleep(wait.min(Duration::from_secs(60))).await;
                continue;
            }
            if !status.is_success() {
                return Err(ControlError::Status {
                    what: what.into(),
                    status: status.as_u16(),
                    detail: trimmed(&text),
                });
            }
            let value = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text)
                    .map_err(|e| ControlError::Answer { what: what.into(), detail: format!("not JSON: {e}") })?
            };
            return Ok((status, headers, value));
        }
    }

    async fn arm(
        &self,
        clock: &dyn Clock,
        what: &str,
        method: Method,
        path: &str,
        api: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Value), ControlError> {
        let token = self.token("https://management.azure.com/.default", what).await?;
        let url = format!("{}{path}?api-version={api}", self.endpoints.arm.trim_end_matches('/'));
        self.send(clock, what, method, &url, &format!("Bearer {token}"), body).await
    }

    fn site(&self, slot: Slot) -> String {
        let t = &self.target;
        let site = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Web/sites/{}",
            t.subscription, t.resource_group, t.function_app
        );
        match slot {
            Slot::Production => site,
            Slot::Staging => format!("{site}/slots/staging"),
        }
    }

    /// The container image a slot runs (`linuxFxVersion` = `DOCKER|<image>`).
    pub async fn slot_image(&self, clock: &dyn Clock, slot: Slot) -> Result<Option<String>, ControlError> {
        let what = format!("read the {} slot's image", slot.name());
        let path = format!("{}/config/web", self.site(slot));
        let (_, _, v) = self.arm(clock, &what, Method::GET, &path, WEB_API, None).await?;
        Ok(v.pointer("/properties/linuxFxVersion")
            .and_then(Value::as_str)
            .and_then(|s| s.strip_prefix("DOCKER|"))
            .filter(|s| !s.is_empty())
            .map(str::to_owned))
    }

    pub async fn set_slot_image(&self, clock: &dyn Clock, slot: Slot, image: &str) -> Result<(), ControlError> {
        let what = format!("point the {} slot at {image}", slot.name());
        let path = format!("{}/config/web", self.site(slot));
        let body = json!({ "properties": { "linuxFxVersion": format!("DOCKER|{image}") } });
        self.arm(clock, &what, Method::PATCH, &path, WEB_API, Some(&body)).await?;
        Ok(())
    }

    /// `{scheme}://{defaultHostName}` of a slot.
    pub async fn slot_url(&self, clock: &dyn Clock, slot: Slot) -> Result<String, ControlError> {
        let what = format!("read the {} slot's host name", slot.name());
        let (_, _, v) = self.arm(clock, &what, Method::GET, &self.site(slot), WEB_API, None).await?;
        let host = v
            .pointer("/properties/defaultHostName")
            .and_then(Value::as_str)
            .ok_or_else(|| ControlError::Answer { what, detail: "no properties.defaultHostName".into() })?;
        Ok(format!("{}://{host}", self.endpoints.slot_scheme))
    }

    /// The slot's default function key (the API functions are `authLevel: function`).
    pub async fn function_key(&self, clock: &dyn Clock, slot: Slot) -> Result<String, ControlError> {
        let what = format!("read the {} slot's function key", slot.name());
        let path = format!("{}/host/default/listkeys", self.site(slot));
        let (_, _, v) = self.arm(clock, &what, Method::POST, &path, WEB_API, None).await?;
        v.pointer("/functionKeys/default")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ControlError::Answer { what, detail: "no functionKeys.default".into() })
    }

    /// Swap with preview, phase one: production's settings applied to the staging slot.
    pub async fn apply_slot_config(&self, clock: &dyn Clock) -> Result<(), ControlError> {
        let path = format!("{}/applySlotConfig", self.site(Slot::Staging));
        let body = json!({ "targetSlot": "production", "preserveVnet": true });
        self.arm(clock, "apply production settings to staging", Method::POST, &path, WEB_API, Some(&body)).await?;
        Ok(())
    }

    pub async fn reset_slot_config(&self, clock: &dyn Clock) -> Result<(), ControlError> {
        let path = format!("{}/resetSlotConfig", self.site(Slot::Staging));
        self.arm(clock, "cancel the swap preview", Method::POST, &path, WEB_API, None).await?;
        Ok(())
    }

    /// Swaps staging and production and waits for the long-running operation (`202` +
    /// `Location`, polled after `Retry-After`) to finish.
    pub async fn swap(&self, clock: &dyn Clock) -> Result<(), ControlError> {
        let what = "swap staging and production";
        let path = format!("{}/slotsswap", self.site(Slot::Staging));
        let body = json!({ "targetSlot": "production", "preserveVnet": true });
        let (status, headers, _) = self.arm(clock, what, Method::POST, &path, WEB_API, Some(&body)).await?;
        if status != StatusCode::ACCEPTED {
            return Ok(());
        }
        let location = headers
            .get("location")
            .or_else(|| headers.get("azure-asyncoperation"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| ControlError::Answer { what: what.into(), detail: "202 without Location".into() })?;
        let deadline = clock.now() + chrono::Duration::minutes(15);
        let mut wait = retry_after(&headers).unwrap_or(Duration::from_secs(10));
        loop {
            clock.sleep(wait).await;
            let token = self.token("https://management.azure.com/.default", what).await?;
            let (status, headers, v) =
                self.send(clock, what, Method::GET, &location, &format!("Bearer {token}"), None).await?;
            let state = v.get("status").and_then(Value::as_str).unwrap_or("");
            if status == StatusCode::OK && !matches!(state, "InProgress" | "Running") {
                if matches!(state, "Failed" | "Canceled") {
                    return Err(ControlError::Answer { what: what.into(), detail: format!("operation {state}") });
                }
                return Ok(());
            }
            if clock.now() > deadline {
                return Err(ControlError::Answer { what: what.into(), detail: "not finished after 15 minutes".into() });
            }
            wait = retry_after(&headers).unwrap_or(Duration::from_secs(10));
        }
    }

    fn registry_api(&self) -> String {
        self.endpoints
            .registry_api
            .clone()
            .unwrap_or_else(|| format!("https://{}", self.target.registry))
            .trim_end_matches('/')
            .to_owned()
    }

    /// A registry access token for pulling `repository` metadata: the Entra ID token exchanged
    /// for a refresh token, then for a repository-scoped access token (ACR's OAuth2 flow).
    async fn registry_token(&self, what: &str) -> Result<String, ControlError> {
        let aad = self.token("https://containerregistry.azure.net/.default", what).await?;
        let base = self.registry_api();
        let transport = |e: reqwest::Error| ControlError::Transport { what: what.into(), detail: e.to_string() };
        let form = |resp: reqwest::Response| async move {
            let status = resp.status();
            let text = resp.text().await.map_err(transport)?;
            if !status.is_success() {
                return Err(ControlError::Status {
                    what: what.into(),
                    status: status.as_u16(),
                    detail: trimmed(&text),
                });
            }
            serde_json::from_str::<Value>(&text)
                .map_err(|e| ControlError::Answer { what: what.into(), detail: format!("not JSON: {e}") })
        };
        let registry = self.target.registry.as_str();
        let exchange = self
            .http
            .post(format!("{base}/oauth2/exchange"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(urlencoded(&[("grant_type", "access_token"), ("service", registry), ("access_token", aad.as_str())]))
            .send()
            .await
            .map_err(transport)?;
        let refresh = form(exchange).await?;
        let refresh = refresh.get("refresh_token").and_then(Value::as_str).unwrap_or_default().to_owned();
        let scope = format!("repository:{}:pull", self.target.repository);
        let token = self
            .http
            .post(format!("{base}/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(urlencoded(&[
                ("grant_type", "refresh_token"),
                ("service", registry),
                ("scope", scope.as_str()),
                ("refresh_token", refresh.as_str()),
            ]))
            .send()
            .await
            .map_err(transport)?;
        let token = form(token).await?;
        token
            .get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ControlError::Answer { what: what.into(), detail: "no access_token".into() })
    }

    /// Resolves `repository:tag` to its digest (`Docker-Content-Digest`) and reads the image's
    /// revision label. `Ok(None)` when the registry does not have the tag in this repository.
    pub async fn resolve(&self, clock: &dyn Clock, tag: &str) -> Result<Option<ResolvedImage>, ControlError> {
        let what = format!("resolve {}:{tag} in {}", self.target.repository, self.target.registry);
        let token = self.registry_token(&what).await?;
        let base = self.registry_api();
        let repo = &self.target.repository;
        let transport = |e: reqwest::Error| ControlError::Transport { what: what.clone(), detail: e.to_string() };
        let resp = self
            .http
            .get(format!("{base}/v2/{repo}/manifests/{tag}"))
            .bearer_auth(&token)
            .header("accept", MANIFEST_TYPES)
            .send()
            .await
            .map_err(transport)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let status = resp.status();
        let digest = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = resp.text().await.map_err(transport)?;
        if !status.is_success() {
            return Err(ControlError::Status { what, status: status.as_u16(), detail: trimmed(&text) });
        }
        let digest = digest
            .filter(|d| d.starts_with("sha256:"))
            .ok_or_else(|| ControlError::Answer { what: what.clone(), detail: "no Docker-Content-Digest".into() })?;
        let manifest: Value = serde_json::from_str(&text)
            .map_err(|e| ControlError::Answer { what: what.clone(), detail: format!("manifest not JSON: {e}") })?;
        let revision = match manifest.pointer("/config/digest").and_then(Value::as_str) {
            Some(config) => {
                let _ = clock;
                let resp = self
                    .http
                    .get(format!("{base}/v2/{repo}/blobs/{config}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .map_err(transport)?;
                let config: Value = resp.json().await.unwrap_or(Value::Null);
                config
                    .pointer("/config/Labels/org.opencontainers.image.revision")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }
            // A multi-platform index: the revision is read from the deployed image at health time.
            None => None,
        };
        Ok(Some(ResolvedImage { tag: tag.to_owned(), digest, revision }))
    }

    /// Runs a KQL query against the Application Insights application.
    pub async fn query(&self, clock: &dyn Clock, kql: &str) -> Result<Value, ControlError> {
        let what = "query Application Insights";
        let app_id = if self.target.app_insights_app_id.is_empty() {
            let (_, _, c) =
                self.arm(clock, what, Method::GET, &self.target.app_insights_resource_id, COMPONENT_API, None).await?;
            c.pointer("/properties/AppId")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ControlError::Answer { what: what.into(), detail: "no properties.AppId".into() })?
        } else {
            self.target.app_insights_app_id.clone()
        };
        let token = self.token("https://api.applicationinsights.io/.default", what).await?;
        let url = format!("{}/v1/apps/{app_id}/query", self.endpoints.app_insights_api.trim_end_matches('/'));
        let (_, _, v) = self
            .send(clock, what, Method::POST, &url, &format!("Bearer {token}"), Some(&json!({ "query": kql })))
            .await?;
        Ok(v)
    }

    /// Marks a release in Application Insights: a release annotation (ARM `Annotations`) and a
    /// `Release` custom event through the ingestion endpoint, which the workbook overlays.
    pub async fn release_event(
        &self,
        clock: &dyn Clock,
        at: DateTime<Utc>,
        properties: &serde_json::Map<String, Value>,
    ) -> Result<(), ControlError> {
        let tag = properties.get("imageTag").and_then(Value::as_str).unwrap_or("?");
        let mode = properties.get("mode").and_then(Value::as_str).unwrap_or("?");
        let time = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let annotation = json!([{
            "Id": uuid::Uuid::new_v4().to_string(),
            "AnnotationName": format!("warranty {tag} ({mode})"),
            "EventTime": time,
            "Category": "Deployment",
            "Properties": Value::Object(properties.clone()).to_string(),
        }]);
        let component = &self.target.app_insights_resource_id;
        self.arm(
            clock,
            "write the release annotation",
            Method::PUT,
            &format!("{component}/Annotations"),
            ANNOTATIONS_API,
            Some(&annotation),
        )
        .await?;
        let (_, _, c) = self
            .arm(clock, "read the Application Insights component", Method::GET, component, COMPONENT_API, None)
            .await?;
        let cs = c.pointer("/properties/ConnectionString").and_then(Value::as_str).unwrap_or_default();
        let part = |key: &str| {
            cs.split(';').find_map(|kv| kv.split_once('=').filter(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
        };
        let (Some(ikey), Some(ingest)) = (part("InstrumentationKey"), part("IngestionEndpoint")) else {
            return Err(ControlError::Answer {
                what: "read the Application Insights component".into(),
                detail: "no InstrumentationKey/IngestionEndpoint in its connection string".into(),
            });
        };
        let what = "send the Release event";
        let token = self.token("https://monitor.azure.com/.default", what).await?;
        let event = json!([{
            "name": "Microsoft.ApplicationInsights.Event",
            "time": time,
            "iKey": ikey,
            "data": { "baseType": "EventData", "baseData": { "ver": 2, "name": "Release", "properties": properties } }
        }]);
        let url = format!("{}/v2.1/track", ingest.trim_end_matches('/'));
        self.send(clock, what, Method::POST, &url, &format!("Bearer {token}"), Some(&event)).await?;
        Ok(())
    }

    fn github(&self, path: &str) -> (String, String) {
        (
            format!(
                "{}/repos/{}{path}",
                self.endpoints.github_api.trim_end_matches('/'),
                self.target.github_repository
            ),
            format!("Bearer {}", self.github_token),
        )
    }

    /// Production deployments, newest first (up to 50), each with its statuses.
    pub async fn deployments(&self, clock: &dyn Clock, environment: &str) -> Result<Vec<Deployment>, ControlError> {
        let what = "list the GitHub deployments";
        let (url, auth) = self.github(&format!("/deployments?environment={environment}&per_page=50"));
        let (_, _, list) = self.send(clock, what, Method::GET, &url, &auth, None).await?;
        let mut out = Vec::new();
        for d in list.as_array().into_iter().flatten() {
            let mut d: Deployment = serde_json::from_value(d.clone())
                .map_err(|e| ControlError::Answer { what: what.into(), detail: e.to_string() })?;
            let (url, auth) = self.github(&format!("/deployments/{}/statuses?per_page=100", d.id));
            let (_, _, statuses) = self.send(clock, what, Method::GET, &url, &auth, None).await?;
            d.statuses = serde_json::from_value::<Vec<DeploymentStatus>>(statuses)
                .map_err(|e| ControlError::Answer { what: what.into(), detail: e.to_string() })?;
            out.push(d);
        }
        Ok(out)
    }

    pub async fn create_deployment(
        &self,
        clock: &dyn Clock,
        git_ref: &str,
        description: &str,
        payload: Value,
    ) -> Result<u64, ControlError> {
        let what = "record the GitHub deployment";
        let (url, auth) = self.github("/deployments");
        let body = json!({
            "ref": git_ref, "environment": "production", "auto_merge": false, "required_contexts": [],
            "production_environment": true, "description": description, "payload": payload,
        });
        let (_, _, v) = self.send(clock, what, Method::POST, &url, &auth, Some(&body)).await?;
        v.get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| ControlError::Answer { what: what.into(), detail: "no id".into() })
    }

    pub async fn deployment_status(
        &self,
        clock: &dyn Clock,
        id: u64,
        state: &str,
        description: &str,
        log_url: Option<&str>,
    ) -> Result<(), ControlError> {
        let (url, auth) = self.github(&format!("/deployments/{id}/statuses"));
        let mut body = json!({ "state": state, "description": description.chars().take(140).collect::<String>() });
        if let Some(l) = log_url {
            body["log_url"] = json!(l);
        }
        self.send(clock, "set the GitHub deployment status", Method::POST, &url, &auth, Some(&body)).await?;
        Ok(())
    }

    pub async fn create_issue(
        &self,
        clock: &dyn Clock,
        title: &str,
        body: &str,
        labels: &[&str],
    ) -> Result<u64, ControlError> {
        let what = "open the post-mortem issue";
        let (url, auth) = self.github("/issues");
        let (_, _, v) = self
            .send(
                clock,
                what,
                Method::POST,
                &url,
                &auth,
                Some(&json!({ "title": title, "body": body, "labels": labels })),
            )
            .await?;
        v.get("number")
            .and_then(Value::as_u64)
            .ok_or_else(|| ControlError::Answer { what: what.into(), detail: "no number".into() })
    }

    /// A plain GET on a slot's public URL (health, smoke test).
    pub async fn probe(
        &self,
        url: &str,
        function_key: Option<&str>,
        method: Method,
    ) -> Result<(u16, Value), ControlError> {
        let mut req = self.http.request(method, url).timeout(Duration::from_secs(20));
        if let Some(k) = function_key {
            req = req.header("x-functions-key", k);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ControlError::Transport { what: format!("GET {url}"), detail: e.to_string() })?;
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }
}

fn urlencoded(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}
