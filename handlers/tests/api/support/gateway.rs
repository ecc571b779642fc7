//! A model of API Management in front of the Functions host, and of the access tokens Entra ID
//! issues, written from their documentation (docs/decisions/0024-the-way-in.md cites each page).
//! Neither can run here.
//!
//! - **URLs**: an API's public URL is the gateway URL + the API's `path` + an operation's URL
//!   template; a request is forwarded to the backend's base URL + the operation's path + the
//!   query (the API path is dropped: the set-backend-service example maps
//!   `/api/partners/15?version=…` to `http://contoso.com/api/10.4/partners/15?version=…`).
//!   Operation templates are the OpenAPI document's `paths` keys; a request that matches no
//!   operation is answered 404 by the gateway. At import the first HTTPS `servers` URL becomes
//!   the API's service URL, unless `serviceUrl` is given; `set-backend-service backend-id`
//!   replaces it with the backend entity's URL.
//! - **Policies** run in document order. The model knows each element the policy uses
//!   (`base`, `choose`/`when`/`otherwise`, `return-response`, `validate-jwt`,
//!   `rate-limit-by-key`, `set-header`, `set-backend-service`) and each expression by its text;
//!   an unknown one panics, so the policy cannot grow a rule the model does not check.
//!   `context.Variables` is a read-only dictionary: an indexer read of a variable not set on this
//!   request's path throws, and an exception in an expression is a runtime error that the caller
//!   sees as a 500 (policy-expressions and error-handling pages). `validate-jwt` sets its
//!   `output-token-variable-name` only when a token validated.
//! - **Tokens** (access-token claims reference): a v2.0 token has `iss`
//!   `https://login.microsoftonline.com/{tenant}/v2.0`, `aud` the API's client id, `ver` "2.0",
//!   `azp`; a v1.0 token has `iss` `https://sts.windows.net/{tenant}/`, `aud` the App ID URI or
//!   the client id (what the client asked for), `ver` "1.0", `appid`. Both carry `oid`, `tid`,
//!   `sub`, `scp`, `iat`, `nbf`, `exp`, and are RS256-signed with a key from the tenant's key set.
//!
//! Where the model differs from the real thing: one gateway instance and one API; rate-limit
//! counters are exact and never renewed within a test (the real v2 tiers use a token bucket and
//! are "never completely accurate"); `validate-jwt` reads the key set from the test's JWKS
//! rather than the OpenID configuration URL (which it records); named values are given, not read
//! from Key Vault; the client side speaks HTTP/1.1 to the model (HTTP/2 framing is modelled by
//! the `Content-Length` rule it enforces); no subscriptions, products, caching or logging.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use serde_json::{Value, json};
use warp::Filter;
use warp::http::{HeaderMap, Method, Response};

use super::host::{FUNCTION_KEY, template_matches};

pub fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---- the Bicep the deployment evaluates ------------------------------------------------------

/// A Bicep value the model evaluates.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Int(i64),
    List(Vec<String>),
}

impl Val {
    pub fn str(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Int(i) => i.to_string(),
            Val::List(l) => panic!("a list where a string is wanted: {l:?}"),
        }
    }
    pub fn list(&self) -> Vec<String> {
        match self {
            Val::List(l) => l.clone(),
            other => panic!("not a list: {other:?}"),
        }
    }
}

/// The expression of `var <name> = …` in a Bicep file (one line).
pub fn bicep_var(text: &str, name: &str) -> String {
    let key = format!("var {name} = ");
    let i = text.find(&key).unwrap_or_else(|| panic!("no `var {name}`"));
    text[i + key.len()..].lines().next().unwrap().trim().to_owned()
}

/// Splits `args` at top-level occurrences of `sep` (outside quotes, brackets and parentheses).
fn split_top(args: &str, sep: &str) -> Vec<String> {
    let (mut parts, mut depth, mut quoted, mut start) = (Vec::new(), 0i32, false, 0);
    let bytes = args.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        match c {
            '\'' => quoted = !quoted,
            '(' | '[' | '{' if !quoted => depth += 1,
            ')' | ']' | '}' if !quoted => depth -= 1,
            _ if !quoted && depth == 0 && args[i..].starts_with(sep) => {
                parts.push(args[start..i].to_owned());
                i += sep.len();
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(args[start..].to_owned());
    parts
}

/// Evaluates the Bicep expressions the deployment's names, URLs and token rules are made of:
/// string interpolation, names, integers, `a == b ? x : y`, `[x, y]`, `last(split(s, 'c'))`,
/// `join(list, 'sep')`, `max(a, b)`, `take`, `toLower`, `replace`. Anything else panics.
pub fn eval(expr: &str, vars: &BTreeMap<String, Val>) -> Val {
    let e = expr.trim();
    let ternary = split_top(e, " ? ");
    if ternary.len() == 2 {
        let branches = split_top(&ternary[1], " : ");
        assert_eq!(branches.len(), 2, "a ternary I read: {e}");
        let cond = split_top(&ternary[0], " == ");
        let truth = if cond.len() == 2 {
            eval(&cond[0], vars) == eval(&cond[1], vars)
        } else {
            eval(&ternary[0], vars) == Val::Str("true".into())
        };
        return eval(if truth { &branches[0] } else { &branches[1] }, vars);
    }
    if let Some(inner) = e.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        let mut out = String::new();
        let mut rest = inner;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let end = rest[i..].find('}').unwrap() + i;
            out.push_str(&eval(&rest[i + 2..end], vars).str());
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        return Val::Str(out);
    }
    if let Some(inner) = e.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return Val::List(split_top(inner, ",").iter().map(|p| eval(p, vars).str()).collect());
    }
    if let Ok(i) = e.parse::<i64>() {
        return Val::Int(i);
    }
    if let Some(v) = vars.get(e) {
        return v.clone();
    }
    let open = e.find('(').unwrap_or_else(|| panic!("not an expression I read: {e}"));
    let (func, args) = (&e[..open], split_top(&e[open + 1..e.len() - 1], ","));
    match func {
        "last" => {
            let inner = args[0].trim();
            let split = inner.strip_prefix("split(").and_then(|r| r.strip_suffix(')')).expect("last(split(…))");
            let parts = split_top(split, ",");
            let (s, sep) = (eval(&parts[0], vars).str(), eval(&parts[1], vars).str());
            Val::Str(s.rsplit(sep.as_str()).next().unwrap().to_owned())
        }
        "join" => Val::Str(eval(&args[0], vars).list().join(&eval(&args[1], vars).str())),
        "take" => Val::Str(eval(&args[0], vars).str().chars().take(args[1].trim().parse().unwrap()).collect()),
        "toLower" => Val::Str(eval(&args[0], vars).str().to_lowercase()),
        "replace" => {
            Val::Str(eval(&args[0], vars).str().replace(&eval(&args[1], vars).str(), &eval(&args[2], vars).str()))
        }
        "max" => {
            let n = |a: &str| match eval(a, vars) {
                Val::Int(i) => i,
                other => panic!("max of {other:?}"),
            };
            Val::Int(n(&args[0]).max(n(&args[1])))
        }
        other => panic!("Bicep function {other} is not read here"),
    }
}

/// `environment().authentication.loginEndpoint` in the public cloud.
pub const LOGIN: &str = "https://login.microsoftonline.com/";

/// The app registration the tokens are for (any tenant and client id: GUIDs).
#[derive(Debug, Clone)]
pub struct Registration {
    pub tenant: String,
    pub client_id: String,
    pub app_id_uri: String,
    pub version: i64,
}

impl Registration {
    pub fn new(version: i64) -> Self {
        Self {
            tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            client_id: "3f2504e0-4f89-11d3-9a0c-0305e82c3301".into(),
            app_id_uri: "api://warranty".into(),
            version,
        }
    }
}

/// What main.bicep derives from the registration: the issuer, the audiences, the gateway's
/// OpenID configuration URL and the app's key-set URL.
#[derive(Debug, Clone)]
pub struct TokenRules {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub metadata_url: String,
    pub keys_url: String,
}

pub fn token_rules(reg: &Registration) -> TokenRules {
    let main = read("infra-bicep/main.bicep");
    let mut vars = BTreeMap::new();
    vars.insert("environment().authentication.loginEndpoint".to_owned(), Val::Str(LOGIN.into()));
    vars.insert("tenantId".to_owned(), Val::Str(reg.tenant.clone()));
    vars.insert("apiClientId".to_owned(), Val::Str(reg.client_id.clone()));
    vars.insert("apiAppIdUri".to_owned(), Val::Str(reg.app_id_uri.clone()));
    vars.insert("accessTokenVersion".to_owned(), Val::Int(reg.version));
    let v = |name: &str| eval(&bicep_var(&main, name), &vars);
    TokenRules {
        issuer: v("tokenIssuer").str(),
        audiences: v("tokenAudiences").list(),
        metadata_url: v("tokenMetadataUrl").str(),
        keys_url: v("tokenKeysUrl").str(),
    }
}

/// The deployment's URLs for one gateway and one function app host name.
#[derive(Debug, Clone)]
pub struct Urls {
    /// `https://<gateway>.azure-api.net/api`
    pub public_base: String,
    /// The API's path at the gateway.
    pub api_path: String,
    /// The backend entity's URL (and the API's `serviceUrl`).
    pub backend: String,
}

pub fn deployment_urls(gateway_host: &str, app_host: &str) -> Urls {
    let main = read("infra-bicep/main.bicep");
    let apim = read("infra-bicep/modules/apim.bicep");
    let mut vars = BTreeMap::new();
    vars.insert("gatewayName".to_owned(), Val::Str(gateway_host.trim_end_matches(".azure-api.net").to_owned()));
    let public_base = eval(&bicep_var(&main, "publicBaseUrl"), &vars).str();
    vars.insert("publicBaseUrl".to_owned(), Val::Str(public_base.clone()));
    vars.insert("functionAppHostName".to_owned(), Val::Str(app_host.to_owned()));
    let api_path = eval(&bicep_var(&apim, "apiPath"), &vars).str();
    vars.insert("apiPath".to_owned(), Val::Str(api_path.clone()));
    let backend = eval(&bicep_var(&apim, "backendUrl"), &vars).str();
    Urls { public_base, api_path, backend }
}

/// The default of `param <name> int = N` in main.bicep.
pub fn main_default(name: &str) -> i64 {
    let main = read("infra-bicep/main.bicep");
    let key = format!("param {name} int = ");
    let i = main.find(&key).unwrap_or_else(|| panic!("no default for {name}"));
    main[i + key.len()..].lines().next().unwrap().trim().parse().unwrap()
}

/// The Service Bus trigger's concurrency per instance that functionapp.bicep sets as an app
/// setting (`ocrCallsPerInstance`), for a Document Intelligence rate and an instance ceiling.
pub fn ocr_calls_per_instance(analyze_tps: i64, maximum_instances: i64) -> usize {
    let app = read("infra-bicep/modules/functionapp.bicep");
    assert_eq!(
        bicep_var(&app, "ocrCallsPerInstance"),
        "max(1, min(2, (docIntelAnalyzeTps * 2) / maximumInstances))",
        "the formula evaluated here"
    );
    assert!(app.contains(
        "{ name: 'AzureFunctionsJobHost__extensions__serviceBus__maxConcurrentCalls', value: string(ocrCallsPerInstance) }"
    ));
    ((analyze_tps * 2) / maximum_instances).clamp(1, 2) as usize
}

// ---- the operations ----------------------------------------------------------------------------

/// One operation of the imported document.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: String,
    /// The URL template (the document's `paths` key).
    pub template: String,
    /// `security: []`: no token.
    pub public: bool,
}

pub fn operations() -> Vec<Operation> {
    let doc: Value = serde_json::from_str(&read("docs/openapi.json")).unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let public = op.get("security").is_some_and(|s| s.as_array().is_some_and(Vec::is_empty));
            out.push(Operation { method: method.to_uppercase(), template: path.clone(), public });
        }
    }
    out
}

/// `template` with each `{param}` given a sample value.
pub fn concrete(template: &str) -> String {
    let re = regex::Regex::new(r"\{[^}]+\}").unwrap();
    re.replace_all(template, "p1").into_owned()
}

/// The operation a request path (after the API path) and method select, as the gateway
/// matches them: literal segments, `{param}` one segment, `{param}.ics` a segment with that end.
pub fn select<'a>(ops: &'a [Operation], method: &str, path: &str) -> Option<&'a Operation> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    ops.iter().find(|op| {
        let template: Vec<String> = op.template.trim_start_matches('/').split('/').map(str::to_owned).collect();
        op.method == method && template_matches(&template, &segments)
    })
}

// ---- the policy --------------------------------------------------------------------------------

/// The values the policy's placeholders take, as apim.bicep fills them.
pub struct PolicyValues {
    pub rules: TokenRules,
    pub user_rate: u32,
    pub public_rate: u32,
}

/// policies/api.xml with apim.bicep's replacements applied (the test checks that apim.bicep
/// replaces exactly these placeholders).
pub fn render_policy(values: &PolicyValues) -> String {
    let audiences: String = values.rules.audiences.iter().map(|a| format!("<audience>{a}</audience>")).collect();
    read("infra-bicep/policies/api.xml")
        .replace("__OPENID_CONFIG__", &values.rules.metadata_url)
        .replace("__AUDIENCES__", &audiences)
        .replace("__ISSUERS__", &format!("<issuer>{}</issuer>", values.rules.issuer))
        .replace("__USER_RATE_LIMIT__", &values.user_rate.to_string())
        .replace("__PUBLIC_RATE_LIMIT__", &values.public_rate.to_string())
        .replace("__BACKEND_ID__", "warranty-functions")
}

/// The placeholders apim.bicep fills in.
pub const PLACEHOLDERS: &[&str] = &[
    "__OPENID_CONFIG__",
    "__AUDIENCES__",
    "__ISSUERS__",
    "__USER_RATE_LIMIT__",
    "__PUBLIC_RATE_LIMIT__",
    "__BACKEND_ID__",
];

/// A request as the policy sees it.
pub struct PolicyRequest<'a> {
    pub method: &'a str,
    pub headers: &'a HeaderMap,
    pub ip: &'a str,
    pub operation: &'a Operation,
}

/// What running the inbound section gave.
#[derive(Debug)]
pub enum Outcome {
    /// Forwarded, with the headers the policy set and the backend it chose.
    Forward { set_headers: Vec<(String, String)>, backend_id: Option<String> },
    /// Answered by the gateway.
    Respond { status: u16, body: String },
    /// An expression failed: the caller gets a 500.
    ExpressionFailed(String),
}

impl Outcome {
    /// The status the caller sees (200 for a request the gateway forwards).
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Forward { .. } => 200,
            Outcome::Respond { status, .. } => *status,
            Outcome::ExpressionFailed(_) => 500,
        }
    }
}

/// The key set the model's `validate-jwt` verifies signatures with, and the named values.
pub struct GatewayState {
    pub policy: String,
    pub keys: Vec<Value>,
    pub named: HashMap<String, String>,
    pub counters: Mutex<HashMap<String, u32>>,
}

impl GatewayState {
    pub fn new(policy: String, keys: Vec<Value>) -> Self {
        let named = HashMap::from([("function-key".to_owned(), FUNCTION_KEY.to_owned())]);
        Self { policy, keys, named, counters: Mutex::new(HashMap::new()) }
    }

    /// Runs `<inbound>` for one request.
    pub fn inbound(&self, req: &PolicyRequest) -> Outcome {
        let doc = roxmltree::Document::parse(&self.policy).expect("the policy is XML");
        let inbound = doc.root_element().children().find(|n| n.has_tag_name("inbound")).expect("<inbound>");
        let mut run = Run { vars: HashMap::new(), set_headers: Vec::new(), backend_id: None };
        match self.block(inbound, req, &mut run) {
            Ok(Some(outcome)) => outcome,
            Ok(None) => Outcome::Forward { set_headers: run.set_headers, backend_id: run.backend_id },
            Err(e) => Outcome::ExpressionFailed(e),
        }
    }

    fn block(&self, node: roxmltree::Node, req: &PolicyRequest, run: &mut Run) -> Result<Option<Outcome>, String> {
        for child in node.children().filter(|n| n.is_element()) {
            if let Some(outcome) = self.element(child, req, run)? {
                return Ok(Some(outcome));
            }
        }
        Ok(None)
    }

    fn element(&self, el: roxmltree::Node, req: &PolicyRequest, run: &mut Run) -> Result<Option<Outcome>, String> {
        match el.tag_name().name() {
            "base" => Ok(None),
            "choose" => {
                for branch in el.children().filter(|n| n.is_element()) {
                    let taken = match branch.tag_name().name() {
                        "when" => condition(branch.attribute("condition").expect("a condition"), req, run)?,
                        "otherwise" => true,
                        other => panic!("<{other}> in <choose>"),
                    };
                    if taken {
                        return self.block(branch, req, run);
                    }
                }
                Ok(None)
            }
            "return-response" => {
                let status = el
                    .descendants()
                    .find(|n| n.has_tag_name("set-status"))
                    .and_then(|n| n.attribute("code"))
                    .expect("set-status")
                    .parse()
                    .unwrap();
                let body = el.descendants().find(|n| n.has_tag_name("set-body")).and_then(|n| n.text()).unwrap_or("");
                Ok(Some(Outcome::Respond { status, body: body.to_owned() }))
            }
            "validate-jwt" => {
                let code: u16 = el.attribute("failed-validation-httpcode").unwrap_or("401").parse().unwrap();
                let list = |parent: &str, child: &str| -> Vec<String> {
                    el.children()
                        .find(|n| n.has_tag_name(parent))
                        .map(|p| {
                            p.children()
                                .filter(|n| n.has_tag_name(child))
                                .filter_map(|n| n.text())
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let header = el.attribute("header-name").expect("header-name");
                let token = req
                    .headers
                    .get(header.to_ascii_lowercase().as_str())
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "));
                match token.map(|t| validate(t, &self.keys, &list("issuers", "issuer"), &list("audiences", "audience")))
                {
                    Some(Ok(claims)) => {
                        if let Some(var) = el.attribute("output-token-variable-name") {
                            run.vars.insert(var.to_owned(), claims);
                        }
                        Ok(None)
                    }
                    _ => Ok(Some(Outcome::Respond {
                        status: code,
                        body: el.attribute("failed-validation-error-message").unwrap_or_default().to_owned(),
                    })),
                }
            }
            "rate-limit-by-key" => {
                let calls: u32 = el.attribute("calls").unwrap().parse().expect("calls is a number");
                let key = expression(el.attribute("counter-key").expect("counter-key"), req, run)?;
                let mut counters = self.counters.lock().unwrap();
                let n = counters.entry(key).or_insert(0);
                *n += 1;
                if *n > calls {
                    return Ok(Some(Outcome::Respond { status: 429, body: "Rate limit is exceeded".into() }));
                }
                Ok(None)
            }
            "set-header" => {
                let name = el.attribute("name").unwrap().to_owned();
                let value = el.children().find(|n| n.has_tag_name("value")).and_then(|n| n.text()).unwrap_or("");
                let value = match value.strip_prefix("{{").and_then(|v| v.strip_suffix("}}")) {
                    Some(named) => self.named.get(named).unwrap_or_else(|| panic!("no named value {named}")).clone(),
                    None => value.to_owned(),
                };
                run.set_headers.push((name, value));
                Ok(None)
            }
            "set-backend-service" => {
                run.backend_id = Some(el.attribute("backend-id").expect("backend-id").to_owned());
                Ok(None)
            }
            other => panic!("the model does not know <{other}>"),
        }
    }
}

struct Run {
    vars: HashMap<String, Value>,
    set_headers: Vec<(String, String)>,
    backend_id: Option<String>,
}

/// A `when` condition, by its text.
fn condition(text: &str, req: &PolicyRequest, _run: &Run) -> Result<bool, String> {
    let h = req.headers;
    let has = |name: &str| h.contains_key(name.to_ascii_lowercase().as_str());
    let get = |name: &str| h.get(name.to_ascii_lowercase().as_str()).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let length_rule = r#"@{ var m = context.Request.Method; var h = context.Request.Headers; return !h.ContainsKey("Content-Length") && (m == "POST" || m == "PUT" || m == "PATCH" || h.GetValueOrDefault("Transfer-Encoding", "").ToLowerInvariant().Contains("chunked")); }"#;
    let size_rule = r#"@(context.Request.Headers.GetValueOrDefault("Content-Length", "0").AsInteger() > 10551296)"#;
    if text == length_rule {
        let m = req.method;
        let chunked = get("Transfer-Encoding").unwrap_or_default().to_lowercase().contains("chunked");
        return Ok(!has("Content-Length") && (m == "POST" || m == "PUT" || m == "PATCH" || chunked));
    }
    if text == size_rule {
        let n: i64 =
            get("Content-Length").unwrap_or_else(|| "0".into()).parse().map_err(|e| format!("AsInteger: {e}"))?;
        return Ok(n > 10_551_296);
    }
    let public =
        regex::Regex::new(r#"^@\(new \[\] \{ (.*) \}\.Contains\(context\.Operation\.UrlTemplate\)\)$"#).unwrap();
    if let Some(c) = public.captures(text) {
        let list: Vec<String> = c[1].split(", ").map(|s| s.trim_matches('"').to_owned()).collect();
        return Ok(list.contains(&req.operation.template));
    }
    panic!("the model does not know the condition {text}")
}

/// The public operations the policy's condition lists.
pub fn public_templates_in(policy: &str) -> Vec<String> {
    let re = regex::Regex::new(r#"new \[\] \{ (.*?) \}\.Contains\(context\.Operation\.UrlTemplate\)"#).unwrap();
    let text = policy.replace("&quot;", "\"");
    let c = re.captures(&text).expect("the public-operation condition");
    c[1].split(", ").map(|s| s.trim_matches('"').to_owned()).collect()
}

/// An attribute expression, by its text.
fn expression(text: &str, req: &PolicyRequest, run: &Run) -> Result<String, String> {
    match text {
        "@(context.Request.IpAddress)" => Ok(req.ip.to_owned()),
        r#"@(((Jwt)context.Variables["jwt"]).Claims.GetValueOrDefault("oid", context.Request.IpAddress))"# => {
            let jwt = run.vars.get("jwt").ok_or("KeyNotFoundException: context.Variables[\"jwt\"]")?;
            Ok(jwt["oid"].as_str().map(str::to_owned).unwrap_or_else(|| req.ip.to_owned()))
        }
        other => panic!("the model does not know the expression {other}"),
    }
}

/// validate-jwt: an RS256 signature by a key of the set, `exp` present and not passed, `nbf`
/// passed, `iss` one of `issuers`, `aud` one of `audiences` (each value tried until one matches).
fn validate(token: &str, keys: &[Value], issuers: &[String], audiences: &[String]) -> Result<Value, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, s] = parts.as_slice() else { return Err("not a JWS".into()) };
    let header: Value =
        serde_json::from_slice(&B64.decode(h).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let claims: Value =
        serde_json::from_slice(&B64.decode(c).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" {
        return Err("unsigned or unexpected algorithm".into());
    }
    let key = keys.iter().find(|k| k["kid"] == header["kid"]).ok_or("unknown kid")?;
    let n = B64.decode(key["n"].as_str().unwrap()).unwrap();
    let e = B64.decode(key["e"].as_str().unwrap()).unwrap();
    let public = signature::RsaPublicKeyComponents { n: &n, e: &e };
    let sig = B64.decode(s).map_err(|e| e.to_string())?;
    public
        .verify(&signature::RSA_PKCS1_2048_8192_SHA256, format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| "bad signature")?;
    let now = chrono::Utc::now().timestamp();
    if claims["exp"].as_i64().is_none_or(|exp| exp < now) || claims["nbf"].as_i64().is_some_and(|nbf| nbf > now) {
        return Err("expired or not yet valid".into());
    }
    if !claims["iss"].as_str().is_some_and(|i| issuers.iter().any(|x| x == i)) {
        return Err("issuer".into());
    }
    if !claims["aud"].as_str().is_some_and(|a| audiences.iter().any(|x| x == a)) {
        return Err("audience".into());
    }
    Ok(claims)
}

// ---- Entra ID's tokens ---------------------------------------------------------------------------

/// The tenant's signing key (RSA, as Entra ID's keys are).
pub struct TenantKey {
    kid: String,
    pair: signature::RsaKeyPair,
}

impl TenantKey {
    pub fn new() -> Self {
        let pair = signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        Self { kid: "entra-test-kid".into(), pair }
    }

    /// The key as the tenant's JWKS lists it.
    pub fn jwk(&self) -> Value {
        let public = self.pair.public_key();
        json!({
            "kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
            "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
            "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
        })
    }

    /// An access token shaped as Entra ID issues it for `reg`'s API to user `oid`, in `version`'s
    /// shape; `aud` is what the client asked for (a v1.0 token may name the App ID URI).
    pub fn access_token(&self, reg: &Registration, version: i64, aud: &str, oid: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "aud": aud, "iat": now, "nbf": now, "exp": now + 3600,
            "oid": oid, "sub": format!("pairwise-{oid}"), "tid": reg.tenant, "scp": "Warranty.ReadWrite",
            "name": "Test User",
        });
        let extra = if version == 2 {
            json!({"iss": format!("{LOGIN}{}/v2.0", reg.tenant), "ver": "2.0", "azp": "0d1f8a43-5c1e-4d5e-9d0b-1a2b3c4d5e6f", "azpacr": "0"})
        } else {
            json!({"iss": format!("https://sts.windows.net/{}/", reg.tenant), "ver": "1.0", "appid": "0d1f8a43-5c1e-4d5e-9d0b-1a2b3c4d5e6f", "appidacr": "0", "unique_name": "user@example.com"})
        };
        claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": self.kid, "x5t": self.kid});
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
        format!("{input}.{}", B64.encode(sig))
    }
}

impl Default for TenantKey {
    fn default() -> Self {
        Self::new()
    }
}

// ---- the gateway, running ------------------------------------------------------------------------

/// The model as a server on loopback: `http://127.0.0.1:{port}/{apiPath}/…` plays
/// `https://<gateway>/{apiPath}/…`; what passes the policy is forwarded to `backend` (the
/// harness's address followed by the host's route prefix) + the operation's path + the query.
pub struct Gateway {
    pub base: String,
    pub state: Arc<GatewayState>,
    /// (method, path forwarded, status) of every request forwarded.
    pub forwarded: Arc<Mutex<Vec<(String, String, u16)>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Gateway {
    /// The gateway on `port` (a test that needs the address before the app starts picks it).
    pub async fn start_on(port: u16, state: GatewayState, api_path: &str, backend: &str) -> Self {
        let state = Arc::new(state);
        let forwarded = Arc::new(Mutex::new(Vec::new()));
        let ops = Arc::new(operations());
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let (api_path, backend) = (format!("/{api_path}"), backend.trim_end_matches('/').to_owned());
        let (st, fw) = (state.clone(), forwarded.clone());
        let route = super::whole_request().then(
            move |method: Method, path: warp::path::FullPath, query: String, headers: HeaderMap, body: Bytes| {
                let (st, fw, ops, client) = (st.clone(), fw.clone(), ops.clone(), client.clone());
                let (api_path, backend) = (api_path.clone(), backend.clone());
                async move {
                    let plain =
                        |status: u16, body: String| Response::builder().status(status).body(Bytes::from(body)).unwrap();
                    let Some(rest) = path.as_str().strip_prefix(&api_path).filter(|r| r.starts_with('/')) else {
                        return plain(404, "no API at this path".into());
                    };
                    let Some(op) = select(&ops, method.as_str(), rest) else {
                        return plain(404, "OperationNotFound".into());
                    };
                    let req =
                        PolicyRequest { method: method.as_str(), headers: &headers, ip: "203.0.113.7", operation: op };
                    let (set_headers, backend_id) = match st.inbound(&req) {
                        Outcome::Forward { set_headers, backend_id } => (set_headers, backend_id),
                        Outcome::Respond { status, body } => return plain(status, body),
                        Outcome::ExpressionFailed(e) => return plain(500, e),
                    };
                    assert_eq!(backend_id.as_deref(), Some("warranty-functions"), "the policy names the backend");
                    let url =
                        if query.is_empty() { format!("{backend}{rest}") } else { format!("{backend}{rest}?{query}") };
                    let mut out = client.request(method.clone(), &url);
                    for (name, value) in &headers {
                        if !matches!(name.as_str(), "host" | "connection") {
                            out = out.header(name, value);
                        }
                    }
                    for (name, value) in set_headers {
                        out = out.header(name, value);
                    }
                    if !body.is_empty() {
                        out = out.body(body);
                    }
                    let resp = match out.send().await {
                        Ok(r) => r,
                        Err(e) => return plain(502, e.to_string()),
                    };
                    let status = resp.status().as_u16();
                    fw.lock().unwrap().push((method.to_string(), rest.to_owned(), status));
                    let mut answer = Response::builder().status(status);
                    for (name, value) in resp.headers() {
                        if !matches!(name.as_str(), "transfer-encoding" | "connection" | "content-length") {
                            answer = answer.header(name, value);
                        }
                    }
                    answer.body(resp.bytes().await.unwrap_or_default()).unwrap()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("the gateway's port");
        let stop = super::serve_listener(listener, route);
        Self { base: format!("http://127.0.0.1:{port}"), state, forwarded, _stop: stop }
    }
}

/// Writes `keys` as a JWKS file (the app reads its key set from it: `WARRANTY_JWKS_FILE`).
pub fn jwks_file(dir: &std::path::Path, keys: &[Value]) -> std::path::PathBuf {
    let path = dir.join("tenant-keys.json");
    std::fs::write(&path, json!({ "keys": keys }).to_string()).unwrap();
    path
}
