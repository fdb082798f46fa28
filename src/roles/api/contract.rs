//! The contract document, `/api/v1/openapi.json`. The handlers' annotations give each route's
//! own bodies and answers; `Contract` adds, from the route table, what every route shares: the
//! `{id}` path parameter, the key the route needs, and the answers the layers in front of the
//! handlers give (401, 403 and 429 from the key gate, 400 for a bad id, 408, 413, 415 and 503
//! around bodies, 503 when a backend is down). So the document says what the server does,
//! route by route, and cannot drift from the table.

use actix_web::http::Method;
use actix_web::HttpResponse;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Ref, Required};
use utoipa::{Modify, OpenApi};

use super::endpoints;
use super::handlers::{
    amd, audit, calls, campaigns, dnc, endpoints, events, explain, forecast, keys, targets, voice,
    webhooks,
};
use crate::domain::access::Access;

/// An id in a path or a query: a hyphenated UUID, exactly what the server parses.
pub const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "outbound",
        description = "Outbound voice-call campaign engine. Every `/api/v1` route but this \
                       document needs an API key (`Authorization: Bearer <key>`) unless the \
                       server runs with `auth.mode = off` (or `auto` on a loopback address)."
    ),
    paths(
        campaigns::create_campaign,
        campaigns::list_campaigns,
        campaigns::get_campaign,
        campaigns::update_campaign,
        campaigns::start_campaign,
        campaigns::pause_campaign,
        campaigns::complete_campaign,
        campaigns::campaign_stats,
        targets::add_targets,
        calls::list_calls,
        calls::list_attempts,
        campaigns::results::campaign_results,
        calls::trigger_call,
        calls::get_call,
        explain::explain_call,
        explain::explain_campaign,
        events::campaign_events,
        forecast::campaign_forecast,
        webhooks::twilio_status,
        voice::twilio_voice,
        voice::twilio_gather,
        amd::twilio_amd,
        voice::twilio_inbound,
        keys::whoami,
        keys::create_key,
        keys::list_keys,
        keys::revoke_key,
        audit::list_audit,
        dnc::add_global,
        dnc::add_for_campaign,
        dnc::list_entries,
        dnc::get_entry,
        dnc::remove_entry,
        endpoints::create_webhook,
        endpoints::list_webhooks,
        endpoints::delete_webhook,
        endpoints::list_deliveries,
        endpoints::retry_delivery,
    ),
    modifiers(&Contract)
)]
pub struct ApiDoc;

/// The document as served, made once.
pub fn document() -> &'static serde_json::Value {
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        spell_links(&mut doc);
        state_syntax(&mut doc);
        doc
    })
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

/// utoipa 5 writes a link's fields in snake case (`operation_id`); OpenAPI spells them
/// `operationId`, `operationRef` and `requestBody`, which is what clients look for.
fn spell_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for item in paths.values_mut().filter_map(|i| i.as_object_mut()) {
        for op in item.values_mut() {
            let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) else {
                continue;
            };
            for response in responses.values_mut() {
                let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut()) else {
                    continue;
                };
                for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                    for (snake, camel) in [
                        ("operation_id", "operationId"),
                        ("operation_ref", "operationRef"),
                        ("request_body", "requestBody"),
                    ] {
                        if let Some(value) = link.remove(snake) {
                            link.insert(camel.to_owned(), value);
                        }
                    }
                }
            }
        }
    }
}

/// What `str::trim` takes off either end of a number or a window: Unicode's White_Space.
const TRIMMED: &str =
    r"[\t\n\x0B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*";

/// A separator `PhoneNumber::parse` skips between a number's digits.
const SEPARATOR: &str = "[ ().-]";

/// A Go duration as `parse_go_duration` reads it: a bare "0", or numbers ("5", "5.", ".5",
/// "1.5") each with a unit, no sign.
const GO_DURATION: &str = r"(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|\u00B5s|\u03BCs|ms|s|m|h))+)";

/// A number as `PhoneNumber::parse` takes it, its `+` spelled `plus`: then 8 to 15 digits, the
/// first not 0, the usual separators between them.
fn e164(plus: &str) -> String {
    format!("{plus}{SEPARATOR}*[1-9]({SEPARATOR}*[0-9]){{7,14}}{SEPARATOR}*")
}

/// The patterns of what the server parses itself (numbers, durations): exactly the syntax it
/// takes, so a value outside one is refused with 400. Whether a number is possible in its
/// country's numbering plan, and a duration's range, are beyond a pattern.
struct Syntax {
    phone: String,
    /// A caller id: a number, or blank for the configured one.
    caller_id: String,
    /// `?phone_number=`: empty for all, and a bare `+` (read as a space) taken for `+`.
    phone_query: String,
    /// `/dnc/{number}`: the `+` as is or as %2B.
    phone_path: String,
    duration: String,
    /// A recipient limit's window: a Go duration or whole days.
    window: String,
}

impl Syntax {
    fn new() -> Self {
        let number = e164(r"\+");
        Self {
            phone: format!("^{TRIMMED}{number}{TRIMMED}$"),
            caller_id: format!("^{TRIMMED}({number}{TRIMMED})?$"),
            phone_query: format!(
                "^(|{TRIMMED}{number}{TRIMMED}| [1-9]({SEPARATOR}*[0-9]){{7,14}}{SEPARATOR}*{TRIMMED})$"
            ),
            phone_path: format!("^{TRIMMED}{}{TRIMMED}$", e164(r"(\+|%2B)")),
            duration: format!("^{GO_DURATION}$"),
            window: format!("^{TRIMMED}([0-9]+d|{GO_DURATION}){TRIMMED}$"),
        }
    }
}

/// Sets a schema's pattern; nothing when there is no such schema (the contract-document test
/// checks that each is there).
fn set_pattern(schema: Option<&mut serde_json::Value>, pattern: &str) {
    if let Some(schema) = schema.and_then(|s| s.as_object_mut()) {
        schema.insert("pattern".to_owned(), pattern.into());
    }
}

/// The parameter `name` of the operation `method path`.
fn parameter<'a>(
    doc: &'a mut serde_json::Value,
    path: &str,
    method: &str,
    name: &str,
) -> Option<&'a mut serde_json::Value> {
    doc.get_mut("paths")?
        .get_mut(path)?
        .get_mut(method)?
        .get_mut("parameters")?
        .as_array_mut()?
        .iter_mut()
        .find(|p| p["name"] == name)
}

/// States in the document the syntax the handlers check by hand: numbers and durations as
/// patterns, a query parameter that is JSON as JSON content with its schema.
fn state_syntax(doc: &mut serde_json::Value) {
    let syntax = Syntax::new();
    let schemas = "/components/schemas";
    for (property, pattern) in [
        ("/TargetInput/properties/phone_number", &syntax.phone),
        ("/TriggerCallRequest/properties/phone_number", &syntax.phone),
        ("/DncRequest/properties/numbers/items", &syntax.phone),
        (
            "/CreateCampaignRequest/properties/caller_id",
            &syntax.caller_id,
        ),
        (
            "/UpdateCampaignRequest/properties/caller_id",
            &syntax.caller_id,
        ),
        ("/RetryPolicyInput/properties/base_delay", &syntax.duration),
        ("/RetryPolicyInput/properties/max_delay", &syntax.duration),
        ("/RecipientLimitInput/properties/per", &syntax.window),
    ] {
        set_pattern(doc.pointer_mut(&format!("{schemas}{property}")), pattern);
    }
    let calls = "/api/v1/campaigns/{id}/calls";
    set_pattern(
        parameter(doc, calls, "get", "phone_number").and_then(|p| p.get_mut("schema")),
        &syntax.phone_query,
    );
    for method in ["get", "delete"] {
        set_pattern(
            parameter(doc, "/api/v1/dnc/{number}", method, "number")
                .and_then(|p| p.get_mut("schema")),
            &syntax.phone_path,
        );
    }
    let forecast = "/api/v1/campaigns/{id}/forecast";
    if let Some(hours) =
        parameter(doc, forecast, "get", "business_hours").and_then(|p| p.as_object_mut())
    {
        hours.remove("schema");
        hours.insert(
            "content".to_owned(),
            serde_json::json!({"application/json": {"schema": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/BusinessHourInput"},
            }}}),
        );
    }
}

const SCHEME: &str = "bearer";

struct Contract;

fn operation<'a>(item: &'a mut PathItem, method: &Method) -> Option<&'a mut Operation> {
    match *method {
        Method::GET => item.get.as_mut(),
        Method::POST => item.post.as_mut(),
        Method::PUT => item.put.as_mut(),
        Method::DELETE => item.delete.as_mut(),
        _ => None,
    }
}

fn error_answer(description: &str, retry_after: bool) -> utoipa::openapi::Response {
    let mut answer = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if retry_after {
        answer = answer.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                )
                .description(Some("seconds to wait before trying again"))
                .build(),
        );
    }
    answer.build()
}

/// Adds an answer unless the handler documents that status itself.
fn answer(op: &mut Operation, status: u16, description: &str, retry_after: bool) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| error_answer(description, retry_after).into());
}

fn id_parameter() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                .pattern(Some(UUID_PATTERN)),
        ))
        .build()
}

/// What the layers in front of every handler of a body-taking route may answer.
fn body_answers(op: &mut Operation) {
    answer(op, 400, "malformed_body or validation_failed", false);
    answer(
        op,
        408,
        "request_timeout: the body did not arrive in time",
        false,
    );
    answer(op, 413, "payload_too_large", false);
    answer(op, 415, "unsupported_media_type", false);
}

impl Modify for Contract {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("obk_ followed by 64 URL-safe base64 characters")
                    .description(Some(
                        "An API key, from `outbound keys create` or `POST /api/v1/keys`.",
                    ))
                    .build(),
            ),
        );
        for endpoint in endpoints() {
            let Some(item) = doc.paths.paths.get_mut(endpoint.path) else {
                continue;
            };
            let Some(op) = operation(item, &endpoint.method) else {
                continue;
            };
            if endpoint.path.contains("{id}") {
                let parameters = op.parameters.get_or_insert_with(Vec::new);
                parameters.retain(|p| p.name != "id");
                parameters.insert(0, id_parameter());
                answer(op, 400, "invalid_id: the id is not a UUID", false);
                answer(op, 404, "not_found", false);
            }
            if op.request_body.is_some() {
                body_answers(op);
                answer(
                    op,
                    503,
                    "busy (too many large bodies at once) or unavailable (a backend is down)",
                    true,
                );
            } else {
                answer(op, 503, "unavailable: a backend is down", false);
            }
            if endpoint.access == Access::Public {
                op.security = Some(Vec::new());
                continue;
            }
            op.security = Some(vec![SecurityRequirement::new(SCHEME, Vec::<String>::new())]);
            answer(
                op,
                401,
                "unauthorized: no key, or an unknown or revoked one",
                false,
            );
            let needed = endpoint
                .access
                .least_role()
                .map_or("", |role| role.as_str());
            answer(
                op,
                403,
                &format!("forbidden: the key's role is below {needed}"),
                false,
            );
            let too_many = if endpoint.path.ends_with("/events") {
                "rate_limited: the key's requests per second are used up; too_many_streams: \
                 the key (http.max_streams_per_key) or the server (http.max_streams) has as \
                 many event streams open as it may"
            } else {
                "rate_limited: the key's requests per second are used up"
            };
            answer(op, 429, too_many, true);
        }
        link_created_resources(doc);
        for path in crate::ports::CARRIER_PATHS {
            if let Some(op) = doc
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.post.as_mut())
            {
                op.security = Some(Vec::new());
                body_answers(op);
            }
        }
    }
}

/// Links each create (`POST /x`, answering with the new resource's `id`) to the operations on
/// what it created (`/x/{id}...`), so clients and a stateful fuzzer can follow them.
fn link_created_resources(doc: &mut Document) {
    let table = endpoints();
    for create in table
        .iter()
        .filter(|e| e.method == Method::POST && !e.path.contains('{'))
    {
        let prefix = format!("{}/{{id}}", create.path);
        let targets: Vec<(String, String)> = table
            .iter()
            .filter(|e| e.path.starts_with(&prefix))
            .filter_map(|e| {
                let item = doc.paths.paths.get_mut(e.path)?;
                let id = operation(item, &e.method)?.operation_id.clone()?;
                Some((id, e.path.to_owned()))
            })
            .collect();
        let Some(op) = doc
            .paths
            .paths
            .get_mut(create.path)
            .and_then(|item| item.post.as_mut())
        else {
            continue;
        };
        for (status, response) in op.responses.responses.iter_mut() {
            let utoipa::openapi::RefOr::T(response) = response else {
                continue;
            };
            if !status.starts_with('2') {
                continue;
            }
            for (operation_id, path) in &targets {
                response.links.insert(
                    operation_id.clone(),
                    LinkBuilder::new()
                        .operation_id(operation_id.clone())
                        .parameter("id", "$response.body#/id")
                        .description(format!("{path} of what was created"))
                        .build()
                        .into(),
                );
            }
        }
    }
}
