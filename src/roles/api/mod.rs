//! The api role: the REST API of the seed's contract, plus `/healthz`, `/readyz`, `/metrics`
//! and the OpenAPI document. It binds its listener while building, so a taken port fails the
//! start before any other role runs.

pub mod access;
mod console;
mod contract;
mod dnc;
mod dto;
mod error;
mod events;
mod handlers;
pub mod keys;
mod limits;
mod probe;
mod tls;
mod uploads;
mod webhooks;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::JsonPayloadError;
use actix_web::http::Method;
use actix_web::middleware::{from_fn, Next, NormalizePath, TrailingSlash};
use actix_web::{web, App, HttpServer, Route};
use tokio_util::sync::CancellationToken;
use tracing::{field, info_span, Instrument};

use self::access::Gate;
pub use self::contract::ApiDoc;
pub use self::dto::rfc3339;
pub use self::error::ApiError;
pub use self::tls::TlsError;
use crate::context::AppContext;
use crate::domain::access::{Access, KeyPolicy};
use crate::metrics::metrics;
use crate::process::health::RoleHealth;
use crate::process::role::RoleName;

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

/// Every `/api/v1` route, with the access it requires (`../spec/security.md` gives the roles).
pub fn endpoints() -> Vec<Endpoint> {
    use handlers as h;
    use Access::{Admin, Operator, Public, Viewer};
    vec![
        endpoint(Method::GET, "/api/v1/openapi.json", Public, |r| {
            r.to(contract::openapi)
        }),
        endpoint(Method::POST, "/api/v1/campaigns", Admin, |r| {
            r.to(h::create_campaign)
        }),
        endpoint(Method::GET, "/api/v1/campaigns", Viewer, |r| {
            r.to(h::list_campaigns)
        }),
        endpoint(Method::GET, "/api/v1/campaigns/{id}", Viewer, |r| {
            r.to(h::get_campaign)
        }),
        endpoint(Method::PUT, "/api/v1/campaigns/{id}", Admin, |r| {
            r.to(h::update_campaign)
        }),
        endpoint(Method::GET, "/api/v1/campaigns/{id}/stats", Viewer, |r| {
            r.to(h::campaign_stats)
        }),
        endpoint(
            Method::POST,
            "/api/v1/campaigns/{id}/start",
            Operator,
            |r| r.to(h::start_campaign),
        ),
        endpoint(
            Method::POST,
            "/api/v1/campaigns/{id}/pause",
            Operator,
            |r| r.to(h::pause_campaign),
        ),
        endpoint(
            Method::POST,
            "/api/v1/campaigns/{id}/complete",
            Operator,
            |r| r.to(h::complete_campaign),
        ),
        endpoint(
            Method::POST,
            "/api/v1/campaigns/{id}/targets",
            Operator,
            |r| r.to(h::add_targets),
        ),
        endpoint(Method::GET, "/api/v1/campaigns/{id}/calls", Viewer, |r| {
            r.to(h::list_calls)
        }),
        endpoint(
            Method::GET,
            "/api/v1/campaigns/{id}/attempts",
            Viewer,
            |r| r.to(h::list_attempts),
        ),
        endpoint(Method::POST, "/api/v1/calls", Operator, |r| {
            r.to(h::trigger_call)
        }),
        endpoint(Method::GET, "/api/v1/calls/{id}", Viewer, |r| {
            r.to(h::get_call)
        }),
        endpoint(Method::GET, "/api/v1/calls/{id}/explain", Viewer, |r| {
            r.to(h::explain_call)
        }),
        endpoint(Method::GET, "/api/v1/campaigns/{id}/explain", Viewer, |r| {
            r.to(h::explain_campaign)
        }),
        endpoint(Method::GET, "/api/v1/campaigns/{id}/events", Viewer, |r| {
            r.to(events::campaign_events)
        }),
        endpoint(
            Method::GET,
            "/api/v1/campaigns/{id}/forecast",
            Viewer,
            |r| r.to(h::campaign_forecast),
        ),
        endpoint(Method::GET, "/api/v1/whoami", Viewer, |r| {
            r.to(keys::whoami)
        }),
        endpoint(Method::POST, "/api/v1/keys", Admin, |r| {
            r.to(keys::create_key)
        }),
        endpoint(Method::GET, "/api/v1/keys", Admin, |r| {
            r.to(keys::list_keys)
        }),
        endpoint(Method::DELETE, "/api/v1/keys/{id}", Admin, |r| {
            r.to(keys::revoke_key)
        }),
        endpoint(Method::GET, "/api/v1/audit", Admin, |r| {
            r.to(keys::list_audit)
        }),
        endpoint(Method::POST, "/api/v1/dnc", Operator, |r| {
            r.to(dnc::add_global)
        }),
        endpoint(Method::GET, "/api/v1/dnc", Viewer, |r| {
            r.to(dnc::list_entries)
        }),
        endpoint(Method::GET, "/api/v1/dnc/{number}", Viewer, |r| {
            r.to(dnc::get_entry)
        }),
        endpoint(Method::DELETE, "/api/v1/dnc/{number}", Admin, |r| {
            r.to(dnc::remove_entry)
        }),
        endpoint(Method::POST, "/api/v1/campaigns/{id}/dnc", Operator, |r| {
            r.to(dnc::add_for_campaign)
        }),
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
    resource.default_service(handlers::not_allowed(allowed.join(", ")).wrap(from_fn(
        move |req, next| access::guard(Access::Viewer, route, req, next),
    )))
}

/// Every route in one place; a known path with the wrong method answers 405.
pub fn configure(cfg: &mut web::ServiceConfig) {
    use handlers as h;
    let not_allowed = |allow: &str| h::not_allowed(allow.to_owned());
    cfg.service(
        web::resource("/healthz")
            .route(web::get().to(h::healthz))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/readyz")
            .route(web::get().to(h::readyz))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(h::metrics_text))
            .default_service(not_allowed("GET")),
    )
    // The operator console: its files hold no data, so they need no key.
    .service(
        web::resource("/")
            .route(web::get().to(console::page))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/console/{path:.+}")
            .route(web::get().to(console::asset))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource(crate::ports::STATUS_CALLBACK_PATH)
            // Anyone may post here before the signature is checked: a callback is a few
            // hundred bytes, so a large body is refused before it is buffered.
            .app_data(web::PayloadConfig::new(webhooks::MAX_CALLBACK_BYTES))
            .route(web::post().to(webhooks::twilio_status))
            .default_service(not_allowed("POST")),
    );
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

fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            let api_error = match &err {
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => {
                    ApiError::payload_too_large(limit)
                }
                JsonPayloadError::ContentType => ApiError::unsupported_media_type(),
                JsonPayloadError::Payload(inner) if limits::timed_out(inner) => {
                    ApiError::body_timeout()
                }
                JsonPayloadError::Deserialize(inner) => {
                    ApiError::malformed(format!("malformed JSON body: {inner}"))
                }
                other => ApiError::malformed(format!("unreadable body: {other}")),
            };
            api_error.into()
        })
}

/// The route template of a path, as a static label. Cheaper than asking the router again
/// (which runs its regexes a second time) and bounded: unknown paths are "unmatched".
pub fn route_label(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segments.as_slice() {
        [] | [""] => "/",
        ["console", ..] => "/console/{path}",
        ["healthz"] => "/healthz",
        ["readyz"] => "/readyz",
        ["metrics"] => "/metrics",
        ["webhooks", "twilio", "status"] => "/webhooks/twilio/status",
        ["api", "v1", "openapi.json"] => "/api/v1/openapi.json",
        ["api", "v1", "campaigns"] => "/api/v1/campaigns",
        ["api", "v1", "campaigns", _] => "/api/v1/campaigns/{id}",
        ["api", "v1", "campaigns", _, "start"] => "/api/v1/campaigns/{id}/start",
        ["api", "v1", "campaigns", _, "pause"] => "/api/v1/campaigns/{id}/pause",
        ["api", "v1", "campaigns", _, "complete"] => "/api/v1/campaigns/{id}/complete",
        ["api", "v1", "campaigns", _, "stats"] => "/api/v1/campaigns/{id}/stats",
        ["api", "v1", "campaigns", _, "targets"] => "/api/v1/campaigns/{id}/targets",
        ["api", "v1", "campaigns", _, "calls"] => "/api/v1/campaigns/{id}/calls",
        ["api", "v1", "campaigns", _, "attempts"] => "/api/v1/campaigns/{id}/attempts",
        ["api", "v1", "calls"] => "/api/v1/calls",
        ["api", "v1", "calls", _] => "/api/v1/calls/{id}",
        ["api", "v1", "calls", _, "explain"] => "/api/v1/calls/{id}/explain",
        ["api", "v1", "whoami"] => "/api/v1/whoami",
        ["api", "v1", "keys"] => "/api/v1/keys",
        ["api", "v1", "keys", _] => "/api/v1/keys/{id}",
        ["api", "v1", "audit"] => "/api/v1/audit",
        ["api", "v1", "campaigns", _, "dnc"] => "/api/v1/campaigns/{id}/dnc",
        ["api", "v1", "campaigns", _, "explain"] => "/api/v1/campaigns/{id}/explain",
        ["api", "v1", "campaigns", _, "events"] => "/api/v1/campaigns/{id}/events",
        ["api", "v1", "campaigns", _, "forecast"] => "/api/v1/campaigns/{id}/forecast",
        ["api", "v1", "dnc"] => "/api/v1/dnc",
        ["api", "v1", "dnc", _] => "/api/v1/dnc/{number}",
        _ => "unmatched",
    }
}

/// A span per request (its trace id goes into error bodies) and the request metrics.
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let method = req.method().to_string();
    // Not `match_pattern()`: that runs the router's regexes a second time for every request.
    let route = route_label(req.path());
    let span = info_span!("http_request", http.method = %method, http.route = %route, http.status = field::Empty);
    let started = Instant::now();
    let response = next.call(req).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    span.record("http.status", status);
    let m = metrics();
    m.http_requests
        .with_label_values(&[method.as_str(), route, status.to_string().as_str()])
        .inc();
    m.http_duration
        .with_label_values(&[method.as_str(), route])
        .observe(started.elapsed().as_secs_f64());
    if status >= 500 {
        tracing::warn!(parent: &span, status, "request failed");
    }
    Ok(response)
}

/// Health and metrics only, for processes that run without the api role.
pub fn configure_admin(cfg: &mut web::ServiceConfig) {
    use handlers as h;
    cfg.route("/healthz", web::get().to(h::healthz))
        .route("/readyz", web::get().to(h::readyz))
        .route("/metrics", web::get().to(h::metrics_text));
}

pub struct ApiRole {
    ctx: AppContext,
    listener: TcpListener,
    admin_only: bool,
    tls: Option<rustls::ServerConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error(transparent)]
    Bind(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Binds `bind` and reads the TLS files, so that a taken port or a bad certificate stops the
/// start before any role runs.
fn listen(
    ctx: &AppContext,
    bind: &str,
) -> Result<(TcpListener, Option<rustls::ServerConfig>), ListenerError> {
    let bound = TcpListener::bind(bind)?;
    bound.set_nonblocking(true)?;
    let tls = &ctx.settings.http.tls;
    let config = if tls.enabled() {
        Some(tls::server_config(tls.cert.as_ref(), tls.key.as_ref())?)
    } else {
        None
    };
    Ok((bound, config))
}

impl ApiRole {
    pub fn build(ctx: AppContext) -> Result<Self, ListenerError> {
        let (listener, tls) = listen(&ctx, &ctx.settings.http.bind)?;
        Ok(Self {
            ctx,
            listener,
            admin_only: false,
            tls,
        })
    }

    /// The small admin listener (`http.admin_bind`) of a process without the api role.
    pub fn build_admin(ctx: AppContext) -> Result<Self, ListenerError> {
        let (listener, tls) = listen(&ctx, &ctx.settings.http.admin_bind)?;
        Ok(Self {
            ctx,
            listener,
            admin_only: true,
            tls,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let ctx = self.ctx.clone();
        let limit = ctx.settings.http.body_limit_bytes;
        let workers = match ctx.settings.http.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let data = web::Data::new(ctx.clone());
        let admin_only = self.admin_only;
        let bound = self.listener.local_addr()?;
        let gate = Arc::new(
            Gate::new(
                ctx.store.clone(),
                ctx.settings.key_policy(bound.ip()),
                ctx.settings.auth.rate_limit,
            )
            .retaining(ctx.settings.audit.retention.0),
        );
        if !admin_only {
            match gate.policy() {
                KeyPolicy::Always => tracing::info!(bind = %bound, "api keys required"),
                KeyPolicy::UnlessLocal => tracing::info!(
                    bind = %bound,
                    "api keys required but for requests made on this host (auth.mode = auto)"
                ),
                KeyPolicy::Never => {
                    tracing::warn!(bind = %bound, "api keys not required (auth.mode = off)")
                }
            }
        }
        let gate_stopped = CancellationToken::new();
        // A process without the api role serves no keyed route: its gate never reloads.
        let gate_task = (!admin_only).then(|| tokio::spawn(gate.clone().run(gate_stopped.clone())));
        let gate = web::Data::from(gate);
        let http = &ctx.settings.http;
        let bodies = web::Data::new(limits::BodyLimits::new(
            http.max_large_bodies,
            http.body_timeout.0,
        ));
        let (keep_alive, request_timeout) = (http.keep_alive.0, http.request_timeout.0);
        let probe = web::Data::new(probe::Probe::default());
        let streams = web::Data::new(events::Streams::new(
            shutdown.clone(),
            http.max_streams_per_key,
            http.max_streams,
        ));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(probe.clone())
                .app_data(streams.clone())
                .app_data(gate.clone())
                .app_data(bodies.clone())
                .app_data(json_config(limit))
                .app_data(web::PayloadConfig::new(limit))
                .wrap(from_fn(limits::bound_bodies))
                .wrap(from_fn(observe))
                // The system we replace answered `/api/v1/campaigns/` like
                // `/api/v1/campaigns`, and its clients rely on it. Innermost, so the metrics'
                // route labels see the path as given.
                .wrap(NormalizePath::new(TrailingSlash::Trim))
                .configure(if admin_only {
                    configure_admin
                } else {
                    configure
                })
                .default_service(web::to(handlers::route_not_found))
        })
        .workers(if admin_only { 1 } else { workers })
        .keep_alive(keep_alive)
        .client_request_timeout(request_timeout)
        .disable_signals()
        .shutdown_timeout(ctx.settings.runtime.shutdown_grace.0.as_secs().max(1));
        let server = match self.tls {
            Some(config) => {
                tracing::info!(bind = %bound, "serving https");
                server.listen_rustls_0_23(self.listener, config)?
            }
            None => server.listen(self.listener)?,
        }
        .run();
        let handle = server.handle();
        let mut server = std::pin::pin!(server);
        if !admin_only {
            ctx.health.set(RoleName::Api, RoleHealth::Ready);
        }
        let served = tokio::select! {
            served = &mut server => {
                served.map_err(anyhow::Error::from)
                    .and_then(|()| Err(anyhow::anyhow!("http server stopped by itself")))
            }
            _ = shutdown.cancelled() => {
                // Stops accepting at once and lets requests in flight finish; the server future
                // must keep being polled while the stop command is handled.
                let ((), served) = tokio::join!(handle.stop(true), server);
                served.map_err(anyhow::Error::from)
            }
        };
        // Last: records when keys were last used by the requests just served.
        gate_stopped.cancel();
        if let Some(task) = gate_task {
            let _ = task.await;
        }
        served
    }
}

#[cfg(test)]
mod tests {
    use super::route_label;

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
}
