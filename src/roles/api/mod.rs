//! The api role: the REST API of the seed's contract, plus `/healthz`, `/readyz`, `/metrics`
//! and the OpenAPI document. It binds its listener while building, so a taken port fails the
//! start before any other role runs.

pub mod access;
mod console;
mod contract;
mod error;
mod handlers;
mod limits;
mod probe;
mod routes;
mod tls;
mod uploads;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::JsonPayloadError;
use actix_web::middleware::{from_fn, Next, NormalizePath, TrailingSlash};
use actix_web::{web, App, HttpServer};
use tokio_util::sync::CancellationToken;
use tracing::{field, info_span, Instrument};

use self::access::Gate;
pub use self::contract::ApiDoc;
pub use self::error::ApiError;
pub use self::handlers::keys;
pub use self::handlers::rfc3339;
use self::routes::{configure, configure_admin};
pub use self::routes::{endpoints, open_routes, route_label, Endpoint, OpenRoute};
pub use self::tls::TlsError;
use crate::context::AppContext;
use crate::domain::access::KeyPolicy;
use crate::metrics::metrics;
use crate::process::health::RoleHealth;
use crate::process::role::RoleName;
use crate::roles::api::handlers::events::Streams;

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

/// Says at start whether the API asks for keys, so that an open API is never a surprise.
fn log_key_policy(policy: KeyPolicy, bound: SocketAddr) {
    match policy {
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
            log_key_policy(gate.policy(), bound);
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
        let streams = web::Data::new(Streams::new(
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
