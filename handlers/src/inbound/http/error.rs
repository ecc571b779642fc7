//! Every error the API returns, mapped to RFC 9457 problem details in one place.
//!
//! Each variant documents its status. The body always carries a stable machine `code` (listed
//! in `docs/openapi.json` and the README), a human `detail`, the `requestId` to quote to
//! support, and for validation failures one entry per offending field. Internal causes are
//! logged, never sent.

use bytes::Bytes;
use serde::Serialize;
use warp::http::{HeaderValue, Response, StatusCode, header};

use crate::application::Error;
use crate::domain::{FieldError, ProductId};
use crate::inbound::auth::AuthError;

#[derive(Debug)]
pub enum ApiError {
    /// 422: one or more fields are missing or invalid.
    Validation(Vec<FieldError>),
    /// 413: the invoice is 10 MiB or larger (or the request body is far too big to hold one).
    InvoiceTooLarge,
    /// 415: the invoice is not a PDF, JPEG or PNG by its content.
    InvoiceTypeUnsupported,
    /// 415: the request body is not of the type the endpoint takes (`expected`).
    ContentTypeUnsupported { expected: &'static str, got: String },
    /// 400: a malformed request (broken multipart, bad query parameter, bad header).
    BadRequest { code: &'static str, detail: String },
    /// 401: no token, or a token we do not accept. `token_present` selects the challenge.
    Unauthorized { token_present: bool },
    /// 404: no such resource for this caller (other users' products included).
    NotFound,
    /// 405: the path exists but not with this method.
    MethodNotAllowed { allow: &'static str },
    /// 409: this user already registered this brand + serial number.
    AlreadyRegistered { existing: Option<ProductId> },
    /// 422: an `Idempotency-Key` reused with a different request.
    IdempotencyKeyReused,
    /// 428: a change needs `If-Match` with the card's `ETag`.
    PreconditionRequired,
    /// 412: the `If-Match` entity tag is not the current one: the product changed since.
    PreconditionFailed,
    /// 409: brand, model, serial number and purchase date are fixed after the first service
    /// request (REQ-3.2).
    ProductLocked { fields: Vec<&'static str> },
    /// 409: a product with service requests cannot be deleted.
    HasServiceRequests,
    /// 409: a coverage a service request relied on keeps its kind, start and duration (and stays).
    CoverageLocked { fields: Vec<&'static str> },
    /// 409: the product has the most coverages allowed.
    CoverageLimit,
    /// 409: a product keeps at least one coverage.
    LastCoverage,
    /// 503: a backend is unavailable; the client may retry.
    Unavailable { code: &'static str },
    /// 411: a body without `Content-Length` (chunked). The Functions host forwards a request's
    /// body only when it has a `Content-Length`, so a chunked upload would arrive empty.
    LengthRequired,
    /// 501: push notifications need a notification hub, and none is configured.
    PushNotConfigured,
    /// 428: erasing one's data needs the confirmation phrase in the body.
    ConfirmationRequired,
    /// 507: a store has no space left; nothing was stored. Retrying helps once space is freed.
    StorageFull,
    /// 409: the intake's invoice is still being read; retry after `Retry-After`.
    IntakeReading,
    /// 422: the intake's invoice could not be read (the reasons are listed).
    IntakeFailed { reasons: Vec<String> },
    /// 410: the intake was used up (`used`) or is past its lifetime.
    IntakeGone { used: bool },
    /// 500: a bug. Logged with the request id.
    Internal,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
    instance: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldProblem<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    existing_product_id: Option<ProductId>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    failure_reasons: &'a [String],
}

#[derive(Serialize)]
struct FieldProblem<'a> {
    field: &'a str,
    code: &'a str,
    detail: &'a str,
}

/// Base of the problem `type` URIs; each code has its own.
pub const PROBLEM_TYPE_BASE: &str = "https://warranty.example.com/problems/";

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InvoiceTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InvoiceTypeUnsupported | Self::ContentTypeUnsupported { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PreconditionRequired | Self::ConfirmationRequired => StatusCode::PRECONDITION_REQUIRED,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::ProductLocked { .. }
            | Self::HasServiceRequests
            | Self::CoverageLocked { .. }
            | Self::CoverageLimit
            | Self::LastCoverage => StatusCode::CONFLICT,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::AlreadyRegistered { .. } => StatusCode::CONFLICT,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::LengthRequired => StatusCode::LENGTH_REQUIRED,
            Self::PushNotConfigured => StatusCode::NOT_IMPLEMENTED,
            Self::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            Self::IntakeReading => StatusCode::CONFLICT,
            Self::IntakeFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::IntakeGone { .. } => StatusCode::GONE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code of this error (for validation: the first field's).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(errors) => errors.first().map(|e| e.code).unwrap_or("validation_failed"),
            Self::InvoiceTooLarge => "invoice_too_large",
            Self::InvoiceTypeUnsupported => "invoice_type_unsupported",
            Self::ContentTypeUnsupported { .. } => "content_type_unsupported",
            Self::PreconditionRequired => "precondition_required",
            Self::PreconditionFailed => "precondition_failed",
            Self::ProductLocked { .. } => "product_locked",
            Self::HasServiceRequests => "product_has_service_requests",
            Self::CoverageLocked { .. } => "coverage_locked",
            Self::CoverageLimit => "coverage_limit_reached",
            Self::LastCoverage => "coverage_last",
            Self::BadRequest { code, .. } => code,
            Self::Unauthorized { .. } => "unauthorized",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::AlreadyRegistered { .. } => "product_already_registered",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::Unavailable { code } => code,
            Self::LengthRequired => "length_required",
            Self::PushNotConfigured => "push_not_configured",
            Self::ConfirmationRequired => "confirmation_required",
            Self::StorageFull => "storage_full",
            Self::IntakeReading => "intake_reading",
            Self::IntakeFailed { .. } => "intake_failed",
            Self::IntakeGone { used: true } => "intake_used",
            Self::IntakeGone { used: false } => "intake_expired",
            Self::Internal => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::Validation(_) => "The registration is not valid",
            Self::InvoiceTooLarge => "The invoice is too large",
            Self::InvoiceTypeUnsupported => "The invoice is not a PDF, JPEG or PNG file",
            Self::ContentTypeUnsupported { .. } => "Unsupported request content type",
            Self::PreconditionRequired => "If-Match required",
            Self::PreconditionFailed => "The product changed",
            Self::ProductLocked { .. } => "The product is locked",
            Self::HasServiceRequests => "The product has service requests",
            Self::CoverageLocked { .. } => "The coverage is locked",
            Self::CoverageLimit => "Too many coverages",
            Self::LastCoverage => "The last coverage stays",
            Self::BadRequest { .. } => "Malformed request",
            Self::Unauthorized { .. } => "Authentication required",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed { .. } => "Method not allowed",
            Self::AlreadyRegistered { .. } => "Product already registered",
            Self::IdempotencyKeyReused => "Idempotency key reused",
            Self::Unavailable { .. } => "Service temporarily unavailable",
            Self::LengthRequired => "Content-Length required",
            Self::PushNotConfigured => "Push notifications are not available",
            Self::ConfirmationRequired => "Confirmation required",
            Self::StorageFull => "No storage space left",
            Self::IntakeReading => "The invoice is still being read",
            Self::IntakeFailed { .. } => "The invoice could not be read",
            Self::IntakeGone { used: true } => "The intake was used",
            Self::IntakeGone { used: false } => "The intake expired",
            Self::Internal => "Internal error",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Validation(errors) => match errors.as_slice() {
                [one] => one.detail.clone(),
                many => format!("{} fields are invalid", many.len()),
            },
            Self::InvoiceTooLarge => "The invoice must be smaller than 10 MiB (10485760 bytes).".into(),
            Self::InvoiceTypeUnsupported => {
                "The invoice must be a PDF, JPEG or PNG file; its content was recognised as none of them.".into()
            }
            Self::ContentTypeUnsupported { expected, got } => format!("Send {expected}; got {got:?}."),
            Self::PreconditionRequired => {
                "Send If-Match with the ETag of the card you edit (GET it first); `*` is not accepted.".into()
            }
            Self::PreconditionFailed => "The product changed since you read it. GET it again and retry.".into(),
            Self::ProductLocked { fields } => format!(
                "A service request exists: {} can no longer change. Notes stay editable.",
                fields.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
            ),
            Self::HasServiceRequests => "A product with service requests is kept for its warranty history.".into(),
            Self::CoverageLocked { fields } => format!(
                "A service request relied on this coverage: {} can no longer change, and it cannot be removed. Provider and reference stay editable.",
                fields.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
            ),
            Self::CoverageLimit => {
                format!("A product has at most {} coverages.", crate::domain::coverage::MAX_COVERAGES)
            }
            Self::LastCoverage => "A product keeps at least one coverage: edit it instead.".into(),
            Self::BadRequest { detail, .. } => detail.clone(),
            Self::Unauthorized { token_present: false } => "Send a bearer token in the Authorization header.".into(),
            Self::Unauthorized { token_present: true } => "The bearer token is invalid or expired.".into(),
            Self::NotFound => "There is nothing here for you.".into(),
            Self::MethodNotAllowed { allow } => format!("Allowed methods: {allow}."),
            Self::AlreadyRegistered { .. } => {
                "You have already registered a product of this brand with this serial number.".into()
            }
            Self::IdempotencyKeyReused => {
                "This Idempotency-Key was already used for a different registration; use a new key.".into()
            }
            Self::Unavailable { code: "push_unavailable" } => {
                "The push service is unavailable. Retry later; the device was not registered.".into()
            }
            Self::Unavailable { code: "service_starting" } => {
                "The service is starting and not yet connected to its stores. Retry shortly; nothing was stored.".into()
            }
            Self::Unavailable { .. } => "A storage backend is unavailable. Retry later; nothing was stored.".into(),
            Self::LengthRequired => {
                "Send the body with a Content-Length header (not chunked): the platform forwards only bodies of known length. Nothing was stored.".into()
            }
            Self::PushNotConfigured => {
                "This deployment has no push service; reminders reach you in the in-app feed and by webhook.".into()
            }
            Self::ConfirmationRequired => {
                "Erasing your data cannot be undone: send {\"confirm\": \"delete my data\"} as the JSON body. Nothing was erased."
                    .into()
            }
            Self::StorageFull => {
                "The service has no storage space left. Nothing was stored; retry later (the operators are alerted)."
                    .into()
            }
            Self::IntakeReading => {
                "The invoice of this intake is still being read. Retry after the time in Retry-After.".into()
            }
            Self::IntakeFailed { reasons } => format!(
                "The invoice of this intake could not be read ({}). Register with the invoice file instead.",
                reasons.join(", ")
            ),
            Self::IntakeGone { used: true } => {
                "As many products were registered from this intake as its invoice lists.".into()
            }
            Self::IntakeGone { used: false } => {
                "This intake is past its 24 hours and its invoice was removed. Upload the invoice again.".into()
            }
            Self::Internal => "Something went wrong on our side. Quote the request id to support.".into(),
        }
    }

    /// The problem+json response. `instance` is the request path.
    pub fn to_response(&self, instance: &str, request_id: &str) -> Response<Bytes> {
        let status = self.status();
        let code = self.code();
        let errors = match self {
            Self::Validation(errors) => {
                errors.iter().map(|e| FieldProblem { field: e.field, code: e.code, detail: &e.detail }).collect()
            }
            _ => Vec::new(),
        };
        let problem = Problem {
            kind: format!("{PROBLEM_TYPE_BASE}{code}"),
            title: self.title(),
            status: status.as_u16(),
            detail: self.detail(),
            code,
            instance,
            request_id,
            errors,
            existing_product_id: match self {
                Self::AlreadyRegistered { existing } => *existing,
                _ => None,
            },
            failure_reasons: match self {
                Self::IntakeFailed { reasons } => reasons,
                _ => &[],
            },
        };
        let body = serde_json::to_vec(&problem).expect("a problem serialises");
        let mut resp = Response::new(Bytes::from(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            Self::Unauthorized { token_present } => {
                let challenge = if *token_present {
                    r#"Bearer realm="warranty", error="invalid_token""#
                } else {
                    r#"Bearer realm="warranty""#
                };
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            }
            Self::MethodNotAllowed { allow } => {
                h.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Self::Unavailable { .. } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Self::StorageFull => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("300"));
            }
            Self::IntakeReading => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            }
            _ => {}
        }
        resp
    }
}

impl ApiError {
    /// A refused authentication: 401 with the right challenge, or 503 when the identity
    /// provider's keys cannot be had.
    pub fn from_auth(e: AuthError, header_present: bool) -> Self {
        match e {
            AuthError::Missing => Self::Unauthorized { token_present: header_present },
            AuthError::Invalid(reason) => {
                tracing::info!(reason, "token refused");
                Self::Unauthorized { token_present: true }
            }
            AuthError::KeysUnavailable(reason) => {
                tracing::error!(reason, "signing keys unavailable");
                Self::Unavailable { code: "auth_unavailable" }
            }
        }
    }
}

/// The use cases' error, mapped once.
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(errors) => Self::Validation(errors),
            Error::NotFound => Self::NotFound,
            Error::AlreadyRegistered { existing } => Self::AlreadyRegistered { existing },
            Error::IdempotencyKeyReused => Self::IdempotencyKeyReused,
            Error::PatchInvalid(detail) => Self::BadRequest { code: "patch_invalid", detail },
            Error::PreconditionFailed => Self::PreconditionFailed,
            Error::Locked { fields } => Self::ProductLocked { fields },
            Error::HasServiceRequests => Self::HasServiceRequests,
            Error::CoverageLocked { fields } => Self::CoverageLocked { fields },
            Error::CoverageLimit => Self::CoverageLimit,
            Error::LastCoverage => Self::LastCoverage,
            Error::InvoiceTooLarge => Self::InvoiceTooLarge,
            Error::InvoiceUnsupported => Self::InvoiceTypeUnsupported,
            Error::IntakeReading => Self::IntakeReading,
            Error::IntakeFailed(reasons) => Self::IntakeFailed { reasons },
            Error::IntakeUsed => Self::IntakeGone { used: true },
            Error::IntakeExpired => Self::IntakeGone { used: false },
            Error::Unavailable(u) => u.into(),
        }
    }
}

impl From<crate::ports::Unavailable> for ApiError {
    fn from(e: crate::ports::Unavailable) -> Self {
        if e.condition == crate::ports::Condition::Full {
            tracing::error!(backend = e.backend, error = %e.message, "no storage space left: free space or grow the volume");
            return Self::StorageFull;
        }
        tracing::error!(backend = e.backend, error = %e.message, "backend unavailable");
        Self::Unavailable { code: "storage_unavailable" }
    }
}

/// Every code the API can return, for the OpenAPI document test and the README.
pub const ALL_CODES: &[&str] = &[
    "brand_missing",
    "model_missing",
    "serial_number_missing",
    "purchase_date_missing",
    "invoice_missing",
    "invoice_empty",
    "field_too_long",
    "field_invalid_characters",
    "field_invalid_encoding",
    "field_duplicated",
    "serial_format_invalid",
    "purchase_date_invalid",
    "purchase_date_in_future",
    "purchase_date_too_old",
    "invoice_too_large",
    "invoice_type_unsupported",
    "content_type_unsupported",
    "multipart_malformed",
    "idempotency_key_invalid",
    "idempotency_key_reused",
    "limit_invalid",
    "query_invalid",
    "continuation_token_invalid",
    "unauthorized",
    "not_found",
    "method_not_allowed",
    "product_already_registered",
    "storage_unavailable",
    "storage_full",
    "server_busy",
    "service_starting",
    "length_required",
    "auth_unavailable",
    "internal_error",
    "precondition_required",
    "precondition_failed",
    "product_locked",
    "product_has_service_requests",
    "coverage_locked",
    "coverage_limit_reached",
    "coverage_last",
    "coverage_kind_invalid",
    "coverage_duration_invalid",
    "coverage_months_invalid",
    "coverage_date_invalid",
    "coverage_dates_out_of_order",
    "coverage_unknown",
    "lead_days_invalid",
    "proof_empty",
    "time_zone_invalid",
    "hour_invalid",
    "channel_invalid",
    "webhook_url_invalid",
    "field_read_only",
    "patch_invalid",
    "body_too_large",
    "description_missing",
    "installation_id_invalid",
    "platform_invalid",
    "push_channel_invalid",
    "push_not_configured",
    "push_unavailable",
    "confirmation_required",
    "invoice_with_intake",
    "intake_reading",
    "intake_failed",
    "intake_used",
    "intake_expired",
];
