//! The route table: every route the server answers, with its method, its pattern, the handler
//! and who may use it. The router, the metrics' route labels, `whoami` and the contract
//! document are all derived from it, so a route is declared once.

use std::sync::OnceLock;

use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{web, Route};

use super::handlers::{
    amd, audit, calls, campaigns, dnc, endpoints, events, explain, forecast, health, keys,
    not_allowed, targets, voice, webhooks,
};
use super::{access, console, contract};
use crate::domain::access::Access;

/// One route of `/api/v1`: its method, its pattern and what it requires of the caller, declared
/// together so that no route can be registered without saying who may use it.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    handler: fn(Route) -> Route,
}

const fn endpoint(
    method: Method,
    path: &'static str,
    access: Access,
    handler: fn(Route) -> Route,
) -> Endpoint {
    Endpoint {
        method,
        path,
        access,
        handler,
    }
}

/// One entry of the table: `route!(GET "/path", Viewer, handler)`.
macro_rules! route {
    ($method:ident $path:literal, $access:ident, $handler:path) => {
        endpoint(Method::$method, $path, $access, |r| r.to($handler))
    };
}

/// Every `/api/v1` route, with the access it requires (`../spec/security.md` gives the roles).
pub fn endpoints() -> Vec<Endpoint> {
    use Access::{Admin, Operator, Public, Viewer};
    vec![
        route!(GET "/api/v1/openapi.json", Public, contract::openapi),
        route!(POST "/api/v1/campaigns", Admin, campaigns::create_campaign),
        route!(GET "/api/v1/campaigns", Viewer, campaigns::list_campaigns),
        route!(GET "/api/v1/campaigns/{id}", Viewer, campaigns::get_campaign),
        route!(PUT "/api/v1/campaigns/{id}", Admin, campaigns::update_campaign),
        route!(GET "/api/v1/campaigns/{id}/stats", Viewer, campaigns::campaign_stats),
        route!(POST "/api/v1/campaigns/{id}/start", Operator, campaigns::start_campaign),
        route!(POST "/api/v1/campaigns/{id}/pause", Operator, campaigns::pause_campaign),
        route!(POST "/api/v1/campaigns/{id}/complete", Operator, campaigns::complete_campaign),
        route!(POST "/api/v1/campaigns/{id}/targets", Operator, targets::add_targets),
        route!(GET "/api/v1/campaigns/{id}/calls", Viewer, calls::list_calls),
        route!(GET "/api/v1/campaigns/{id}/attempts", Viewer, calls::list_attempts),
        route!(GET "/api/v1/campaigns/{id}/results", Viewer, campaigns::results::campaign_results),
        route!(POST "/api/v1/calls", Operator, calls::trigger_call),
        route!(GET "/api/v1/calls/{id}", Viewer, calls::get_call),
        route!(GET "/api/v1/calls/{id}/explain", Viewer, explain::explain_call),
        route!(GET "/api/v1/campaigns/{id}/explain", Viewer, explain::explain_campaign),
        route!(GET "/api/v1/campaigns/{id}/events", Viewer, events::campaign_events),
        route!(GET "/api/v1/campaigns/{id}/forecast", Viewer, forecast::campaign_forecast),
        route!(GET "/api/v1/whoami", Viewer, keys::whoami),
        route!(POST "/api/v1/keys", Admin, keys::create_key),
        route!(GET "/api/v1/keys", Admin, keys::list_keys),
        route!(DELETE "/api/v1/keys/{id}", Admin, keys::revoke_key),
        route!(GET "/api/v1/audit", Admin, audit::list_audit),
        route!(POST "/api/v1/dnc", Operator, dnc::add_global),
        route!(GET "/api/v1/dnc", Viewer, dnc::list_entries),
        route!(GET "/api/v1/dnc/{number}", Viewer, dnc::get_entry),
        route!(DELETE "/api/v1/dnc/{number}", Admin, dnc::remove_entry),
        route!(POST "/api/v1/campaigns/{id}/dnc", Operator, dnc::add_for_campaign),
        route!(POST "/api/v1/webhooks", Admin, endpoints::create_webhook),
        route!(GET "/api/v1/webhooks", Admin, endpoints::list_webhooks),
        route!(DELETE "/api/v1/webhooks/{id}", Admin, endpoints::delete_webhook),
        route!(GET "/api/v1/webhooks/{id}/deliveries", Admin, endpoints::list_deliveries),
        route!(
            POST "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
            Admin,
            endpoints::retry_delivery
        ),
    ]
}

/// The routes of one path, each behind its guard; a known path with another method answers 405.
fn resource(path: &str, pattern: &str, endpoints: &[&Endpoint]) -> actix_web::Resource {
    let mut resource = web::resource(path.to_owned());
    for endpoint in endpoints.iter().filter(|e| e.path == pattern) {
        let (access, route) = (endpoint.access, endpoint.path);
        resource = resource.route(
            (endpoint.handler)(web::method(endpoint.method.clone())).wrap(from_fn(
                move |req, next| access::guard(access, route, req, next),
            )),
        );
    }
    let allowed: Vec<String> = endpoints
        .iter()
        .filter(|e| e.path == pattern)
        .map(|e| e.method.to_string())
        .collect();
    // Another method on a known path answers 405 to whoever may read it, and is audited like
    // any request that is not a read.
    let route: &'static str = endpoints
        .iter()
        .find(|e| e.path == pattern)
        .map_or("unmatched", |e| e.path);
    resource.default_service(
        not_allowed(allowed.join(", ")).wrap(from_fn(move |req, next| {
            access::guard(Access::Viewer, route, req, next)
        })),
    )
}

/// Every route in one place; a known path with the wrong method answers 405.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for open in open_routes() {
        let allow = open.method.to_string();
        let mut resource = web::resource(open.path);
        if let Some(limit) = open.body_limit {
            resource = resource.app_data(web::PayloadConfig::new(limit));
        }
        cfg.service(
            resource
                .route((open.handler)(web::method(open.method.clone())))
                .default_service(not_allowed(allow)),
        );
    }
    let endpoints = endpoints();
    let all: Vec<&Endpoint> = endpoints.iter().collect();
    let mut paths: Vec<&'static str> = Vec::new();
    for endpoint in &endpoints {
        if !paths.contains(&endpoint.path) {
            paths.push(endpoint.path);
        }
    }
    // One scope for a campaign's routes: the router runs the `{id}` pattern (a regex) once and
    // compares the rest as plain strings, where a resource per route ran one regex per route
    // tried (a fifth of the CPU of a stats read).
    const CAMPAIGN: &str = "/api/v1/campaigns/{id}";
    let mut campaign = web::scope(CAMPAIGN);
    for path in &paths {
        match path.strip_prefix(CAMPAIGN) {
            Some(rest) => campaign = campaign.service(resource(rest, path, &all)),
            None => {
                cfg.service(resource(path, path, &all));
            }
        }
    }
    cfg.service(campaign);
}

/// A route outside `/api/v1`, served to anyone without a key: probes, metrics, the console's
/// files (which hold no data) and the carrier's signed callbacks.
pub struct OpenRoute {
    pub method: Method,
    pub path: &'static str,
    /// A bound on the body below the server's own, checked before the body is buffered.
    body_limit: Option<usize>,
    handler: fn(Route) -> Route,
}

/// The routes outside `/api/v1`.
pub fn open_routes() -> Vec<OpenRoute> {
    let get = |path, handler| OpenRoute {
        method: Method::GET,
        path,
        body_limit: None,
        handler,
    };
    vec![
        get("/healthz", |r| r.to(health::healthz)),
        get("/readyz", |r| r.to(health::readyz)),
        get("/metrics", |r| r.to(health::metrics_text)),
        get("/", |r| r.to(console::page)),
        get("/console/{path:.+}", |r| r.to(console::asset)),
        OpenRoute {
            method: Method::POST,
            path: crate::ports::STATUS_CALLBACK_PATH,
            // Anyone may post here before the signature is checked: a callback is a few
            // hundred bytes, so a large body is refused before it is buffered.
            body_limit: Some(webhooks::MAX_CALLBACK_BYTES),
            handler: |r| r.to(webhooks::twilio_status),
        },
        OpenRoute {
            method: Method::POST,
            path: crate::ports::VOICE_PATH,
            body_limit: Some(webhooks::MAX_CALLBACK_BYTES),
            handler: |r| r.to(voice::twilio_voice),
        },
        OpenRoute {
            method: Method::POST,
            path: crate::ports::GATHER_PATH,
            body_limit: Some(webhooks::MAX_CALLBACK_BYTES),
            handler: |r| r.to(voice::twilio_gather),
        },
        OpenRoute {
            method: Method::POST,
            path: crate::ports::AMD_PATH,
            body_limit: Some(webhooks::MAX_CALLBACK_BYTES),
            handler: |r| r.to(amd::twilio_amd),
        },
        OpenRoute {
            method: Method::POST,
            path: crate::ports::INBOUND_PATH,
            body_limit: Some(webhooks::MAX_CALLBACK_BYTES),
            handler: |r| r.to(voice::twilio_inbound),
        },
    ]
}

/// What a process without the api role serves on its admin listener.
const ADMIN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Health and metrics only, for processes that run without the api role.
pub fn configure_admin(cfg: &mut web::ServiceConfig) {
    for open in open_routes()
        .into_iter()
        .filter(|r| ADMIN_PATHS.contains(&r.path))
    {
        cfg.route(open.path, (open.handler)(web::method(open.method)));
    }
}

/// One segment of a route's pattern.
enum Segment {
    Literal(&'static str),
    /// `{id}`: any one segment.
    Any,
    /// `{path:.+}`: one segment or more, to the end.
    Rest,
}

type Pattern = (Vec<Segment>, &'static str);

/// The route table's patterns as segments, each with the label of its routes.
fn patterns() -> &'static [Pattern] {
    static PATTERNS: OnceLock<Vec<Pattern>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let mut paths: Vec<&'static str> = open_routes().iter().map(|r| r.path).collect();
        for endpoint in endpoints() {
            if !paths.contains(&endpoint.path) {
                paths.push(endpoint.path);
            }
        }
        paths
            .into_iter()
            .map(|path| {
                let segments = path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(|s| match s {
                        s if s.starts_with('{') && s.contains(':') => Segment::Rest,
                        s if s.starts_with('{') => Segment::Any,
                        s => Segment::Literal(s),
                    })
                    .collect();
                // A label names its parameters only: `{path:.+}` reads `{path}`.
                let label = match path.find(':') {
                    Some(colon) if path.ends_with('}') => {
                        &*Box::leak(format!("{}}}", &path[..colon]).into_boxed_str())
                    }
                    _ => path,
                };
                (segments, label)
            })
            .collect()
    })
}

/// The route template of a path, as a static label. Cheaper than asking the router again
/// (which runs its regexes a second time) and bounded: unknown paths are "unmatched".
pub fn route_label(path: &str) -> &'static str {
    'pattern: for (pattern, label) in patterns() {
        let mut given = path.split('/').filter(|s| !s.is_empty());
        for segment in pattern {
            match (segment, given.next()) {
                (Segment::Rest, Some(_)) => return label,
                (Segment::Any, Some(_)) => {}
                (Segment::Literal(want), Some(s)) if *want == s => {}
                _ => continue 'pattern,
            }
        }
        if given.next().is_none() {
            return label;
        }
    }
    "unmatched"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_are_templates() {
        assert_eq!(
            route_label("/api/v1/campaigns/abc/stats"),
            "/api/v1/campaigns/{id}/stats"
        );
        assert_eq!(route_label("/api/v1/campaigns/"), "/api/v1/campaigns");
        assert_eq!(route_label("/api/v1/calls/x"), "/api/v1/calls/{id}");
        assert_eq!(route_label("/nope/1/2"), "unmatched");
        assert_eq!(route_label("/"), "/");
        assert_eq!(
            route_label("/console/vendor/uPlot.min.css"),
            "/console/{path}"
        );
    }

    #[test]
    fn every_route_has_its_own_label() {
        for open in open_routes() {
            let concrete = open.path.replace("{path:.+}", "vendor/a.css");
            assert_ne!(route_label(&concrete), "unmatched", "{}", open.path);
        }
        for endpoint in endpoints() {
            let concrete = endpoint.path.replace("{id}", "x").replace("{number}", "1");
            assert_eq!(route_label(&concrete), endpoint.path);
        }
    }

    #[test]
    fn the_contract_documents_exactly_the_table() {
        let document = contract::document();
        let mut documented: Vec<String> = Vec::new();
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
        // The document does not describe itself.
        let mut table: Vec<String> = endpoints()
            .iter()
            .filter(|e| e.path != "/api/v1/openapi.json")
            .map(|e| format!("{} {}", e.method, e.path))
            .collect();
        for path in crate::ports::CARRIER_PATHS {
            table.push(format!("POST {path}"));
        }
        documented.sort();
        table.sort();
        assert_eq!(documented, table);
    }
}
