//! An operator's webhook receiver, as tests, benchmarks and the chaos suite need one: it takes
//! Standard Webhooks deliveries on any path, checks each signature with the secret registered
//! for that path, keeps what it was sent (deduplicated by `webhook-id`, as receivers are told
//! to), and can be made to fail, hang or answer slowly, path by path.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::domain::webhook::{verify, Secret};

/// What one path does with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// 204 at once.
    #[default]
    Accept,
    /// This status to every delivery.
    Fail(u16),
    /// 500 to the next `n` deliveries, then accepts.
    FailFirst(u64),
    /// Never answers.
    Hang,
    /// Answers after this long.
    Slow(Duration),
}

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: i64,
    /// Whether the signature checked out against the path's secret (false without one).
    pub signed: bool,
    pub body: serde_json::Value,
    pub accepted: bool,
}

#[derive(Default)]
struct State {
    behaviour: HashMap<String, Behaviour>,
    secrets: HashMap<String, Secret>,
    received: HashMap<String, Vec<Received>>,
    /// Counting only (benchmarks): the distinct ids accepted per path, nothing else kept.
    counting: bool,
    distinct: HashMap<String, HashSet<String>>,
}

struct Inner {
    state: Mutex<State>,
    url: String,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running receiver; clones share it.
#[derive(Clone)]
pub struct WebhookReceiver {
    inner: Arc<Inner>,
    handle: actix_web::dev::ServerHandle,
}

impl WebhookReceiver {
    /// Serves on `listener` (bound already) from the current tokio runtime.
    pub fn start(listener: std::net::TcpListener) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            url,
        });
        let data = web::Data::from(inner.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(4 << 20))
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self { inner, handle })
    }

    /// Keeps only the distinct ids each path accepted (`distinct`), for a benchmark's volumes.
    pub fn count_only(&self) {
        self.inner.state().counting = true;
    }

    /// How many distinct deliveries `path` accepted, in counting mode.
    pub fn distinct(&self, path: &str) -> usize {
        self.inner
            .state()
            .distinct
            .get(path)
            .map_or(0, HashSet::len)
    }

    /// `http://127.0.0.1:PORT`; a path of it names one endpoint.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    pub fn set(&self, path: &str, behaviour: Behaviour) {
        self.inner
            .state()
            .behaviour
            .insert(path.to_owned(), behaviour);
    }

    /// The secret the path's signatures are checked with.
    pub fn expect_secret(&self, path: &str, secret: Secret) {
        self.inner.state().secrets.insert(path.to_owned(), secret);
    }

    /// Every delivery `path` was sent, in arrival order, repeats included.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.inner
            .state()
            .received
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// The distinct deliveries `path` accepted: what a deduplicating receiver keeps.
    pub fn accepted(&self, path: &str) -> Vec<Received> {
        let mut seen = HashSet::new();
        self.received(path)
            .into_iter()
            .filter(|r| r.accepted && seen.insert(r.id.clone()))
            .collect()
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

async fn receive(inner: web::Data<Inner>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let path = request.path().to_owned();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id = header("webhook-id");
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap_or(0);
    let signature = header("webhook-signature");
    let (behaviour, signed) = {
        let mut state = inner.state();
        let signed = state
            .secrets
            .get(&path)
            .is_some_and(|secret| verify(secret, &id, timestamp, &body, &signature));
        let behaviour = state.behaviour.get(&path).copied().unwrap_or_default();
        if let Behaviour::FailFirst(n) = behaviour {
            let next = if n > 1 {
                Behaviour::FailFirst(n - 1)
            } else {
                Behaviour::Accept
            };
            state.behaviour.insert(path.clone(), next);
        }
        (behaviour, signed)
    };
    // A slow answer counts once it is given: a sender that went away meanwhile (killed, or
    // timed out) delivered nothing.
    if let Behaviour::Slow(wait) = behaviour {
        tokio::time::sleep(wait).await;
    }
    let accepted = matches!(behaviour, Behaviour::Accept | Behaviour::Slow(_));
    keep(&inner, path, id, accepted, || Received {
        id: String::new(),
        timestamp,
        signed,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        accepted,
    });
    match behaviour {
        Behaviour::Accept | Behaviour::Slow(_) => HttpResponse::NoContent().finish(),
        Behaviour::Fail(status) => HttpResponse::build(
            actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
        )
        .finish(),
        Behaviour::FailFirst(_) => HttpResponse::InternalServerError().finish(),
        Behaviour::Hang => {
            std::future::pending::<()>().await;
            HttpResponse::NoContent().finish()
        }
    }
}

/// Keeps what `path` was sent: the id alone when counting, else the whole delivery.
fn keep(
    inner: &Inner,
    path: String,
    id: String,
    accepted: bool,
    received: impl FnOnce() -> Received,
) {
    let mut state = inner.state();
    if state.counting {
        if accepted {
            state.distinct.entry(path).or_default().insert(id);
        }
    } else {
        let entry = Received { id, ..received() };
        state.received.entry(path).or_default().push(entry);
    }
}
