//! Liveness, readiness and the Prometheus metrics.

use actix_web::{web, HttpResponse};

use super::Ctx;
use crate::roles::api::probe::Probe;
use crate::roles::api::rfc3339;

pub async fn healthz(ctx: Ctx, probe: web::Data<Probe>) -> HttpResponse {
    let backends = probe.backends(&ctx).await;
    let store_ok = backends.store;
    let live = store_ok && ctx.health.is_live();
    // `errors` names what is wrong, by component, as the system we replace reported it.
    let mut errors = serde_json::Map::new();
    if !store_ok {
        errors.insert("database".into(), "unavailable".into());
    }
    for (role, health) in ctx.health.snapshot() {
        if health == crate::process::health::RoleHealth::Failing {
            errors.insert(role.as_str().into(), "failing".into());
        }
    }
    let body = serde_json::json!({
        "status": if live { "ok" } else { "unhealthy" },
        "database": if store_ok { "ok" } else { "unavailable" },
        "roles": ctx.health.snapshot(),
        "errors": errors,
        "checked_at": rfc3339(backends.checked_at),
    });
    if live {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn readyz(ctx: Ctx, probe: web::Data<Probe>) -> HttpResponse {
    let backends = probe.backends(&ctx).await;
    let mut ready = ctx.health.is_ready() && backends.store && backends.timeline;
    // A process that dials cannot work while the carrier refuses its credentials.
    let provider = ctx
        .health
        .runs(crate::process::role::RoleName::Call)
        .then(|| ctx.provider.unavailable())
        .flatten();
    ready &= provider.is_none();
    let mut body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "roles": ctx.health.snapshot(),
        "checked_at": rfc3339(backends.checked_at),
    });
    if let Some(reason) = provider {
        body["provider"] = serde_json::json!({
            "name": ctx.settings.telephony.provider.as_str(),
            "status": "unavailable",
            "reason": reason,
        });
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn metrics_text() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render())
}
