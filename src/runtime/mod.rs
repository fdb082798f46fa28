//! The supervisor: builds every selected role (all fallible setup, including binding the HTTP
//! port and joining consumer groups) before running any, runs each as a named task, and stops
//! them in order: intake first (api, scheduler), then the call role, which lets dialing calls
//! end within `runtime.shutdown_grace`, then the roles that record outcomes (status, retry).
//! If a role exits on its own, the process says which and why, stops the rest and fails.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::{AppContext, ContextError};
use crate::domain::ids::InstanceId;
use crate::ports::{BusError, StoreError, Subscription, Topic};
use crate::process::health::RoleHealth;
use crate::process::role::{RoleName, ShutdownPhase};
use crate::roles::api::ApiRole;
use crate::roles::call::CallWorker;
use crate::roles::consume::Consumer;
use crate::roles::retry::RetryWorker;
use crate::roles::scheduler::Scheduler;
use crate::roles::status::StatusWorker;
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("{key}: cannot listen on {bind}")]
    Bind {
        /// `http.bind` or `http.admin_bind`.
        key: &'static str,
        bind: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bus: cannot subscribe: {0}")]
    Bus(#[from] BusError),
    #[error(transparent)]
    Tls(#[from] crate::roles::api::TlsError),
}

impl BuildError {
    fn listener(key: &'static str, bind: &str, err: crate::roles::api::ListenerError) -> Self {
        match err {
            crate::roles::api::ListenerError::Bind(source) => BuildError::Bind {
                key,
                bind: bind.to_owned(),
                source,
            },
            crate::roles::api::ListenerError::Tls(err) => BuildError::Tls(err),
        }
    }
}

enum BuiltRole {
    Api(ApiRole),
    Scheduler(Scheduler, Box<dyn Subscription>),
    Call(CallWorker, Box<dyn Subscription>),
    Status(StatusWorker, Box<dyn Subscription>),
    Retry(RetryWorker, Box<dyn Subscription>),
}

impl BuiltRole {
    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        match self {
            Self::Api(role) => role.run(shutdown).await,
            Self::Scheduler(role, sub) => role.run(sub, shutdown).await,
            Self::Call(role, sub) => role.run(sub, shutdown).await,
            Self::Status(role, sub) => role.run(sub, shutdown).await,
            Self::Retry(role, sub) => role.run(sub, shutdown).await,
        }
    }
}

/// A process's built roles, ready to run.
pub struct Node {
    ctx: AppContext,
    roles: Vec<(RoleName, BuiltRole)>,
    api_addr: Option<SocketAddr>,
    /// Health and metrics of a process without the api role.
    admin: Option<ApiRole>,
    admin_addr: Option<SocketAddr>,
}

impl Node {
    pub async fn build(settings: Settings, run_migrations: bool) -> Result<Self, BuildError> {
        let names = RoleName::expand(&settings.runtime.roles);
        let ctx = AppContext::build(settings, &names, run_migrations).await?;
        // Joining a consumer group can take seconds (Kafka waits for the group to settle), so
        // every role subscribes at once.
        let wanted: Vec<(RoleName, Topic, &str)> = names
            .iter()
            .filter_map(|name| match name {
                RoleName::Scheduler => Some((*name, Scheduler::TOPIC, Scheduler::GROUP)),
                RoleName::Call => Some((*name, CallWorker::TOPIC, CallWorker::GROUP)),
                RoleName::Status => Some((*name, StatusWorker::TOPIC, StatusWorker::GROUP)),
                RoleName::Retry => Some((*name, RetryWorker::TOPIC, RetryWorker::GROUP)),
                RoleName::Api | RoleName::All => None,
            })
            .collect();
        let subscribed = futures::future::try_join_all(
            wanted
                .iter()
                .map(|(_, topic, group)| ctx.bus.subscribe(*topic, group)),
        )
        .await?;
        let mut subscriptions: HashMap<RoleName, Box<dyn Subscription>> = wanted
            .iter()
            .map(|(name, _, _)| *name)
            .zip(subscribed)
            .collect();
        let mut take = |name: RoleName| {
            subscriptions
                .remove(&name)
                .ok_or(BuildError::Bus(BusError::Closed))
        };
        let mut roles = Vec::with_capacity(names.len());
        let mut api_addr = None;
        for name in names {
            let built = match name {
                RoleName::Api => {
                    let bind = ctx.settings.http.bind.clone();
                    let role = ApiRole::build(ctx.clone())
                        .map_err(|err| BuildError::listener("http.bind", &bind, err))?;
                    api_addr = Some(role.local_addr().map_err(|source| BuildError::Bind {
                        key: "http.bind",
                        bind,
                        source,
                    })?);
                    BuiltRole::Api(role)
                }
                RoleName::Scheduler => {
                    BuiltRole::Scheduler(Scheduler::new(ctx.clone()), take(name)?)
                }
                RoleName::Call => BuiltRole::Call(CallWorker::new(ctx.clone()), take(name)?),
                RoleName::Status => BuiltRole::Status(StatusWorker::new(ctx.clone()), take(name)?),
                RoleName::Retry => BuiltRole::Retry(RetryWorker::new(ctx.clone()), take(name)?),
                RoleName::All => continue,
            };
            roles.push((name, built));
        }
        let (admin, admin_addr) = if api_addr.is_none() {
            let bind = ctx.settings.http.admin_bind.clone();
            let admin = ApiRole::build_admin(ctx.clone())
                .map_err(|err| BuildError::listener("http.admin_bind", &bind, err))?;
            let addr = admin.local_addr().map_err(|source| BuildError::Bind {
                key: "http.admin_bind",
                bind,
                source,
            })?;
            (Some(admin), Some(addr))
        } else {
            (None, None)
        };
        Ok(Self {
            ctx,
            roles,
            api_addr,
            admin,
            admin_addr,
        })
    }

    /// Where `/healthz`, `/readyz` and `/metrics` are served: the api role's listener, or the
    /// admin listener of a process without it.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.api_addr.or(self.admin_addr)
    }

    /// Where the api role listens (port 0 in the configuration resolves here).
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api_addr
    }

    pub fn context(&self) -> &AppContext {
        &self.ctx
    }

    pub fn role_names(&self) -> BTreeSet<RoleName> {
        self.roles.iter().map(|(name, _)| *name).collect()
    }

    /// Runs until `shutdown` is cancelled (clean exit) or a role exits on its own (error).
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Node {
            ctx, roles, admin, ..
        } = self;
        // Before any role claims an attempt, so none is ever owned by a silent instance.
        announce(&ctx).await?;
        let mut supervisor = Supervisor::spawn(&ctx, roles);
        // Attempts this process claims or adopts are alive while it heartbeats; until the
        // very end of shutdown, so draining calls are never taken for lost.
        let heartbeat = Background::spawn("heartbeat", |token| heartbeat(ctx.clone(), token));
        let admin = admin.map(|admin| {
            Background::spawn("admin", |token| async move {
                if let Err(err) = admin.run(token).await {
                    tracing::error!(error.cause_chain = %format!("{err:#}"), "admin listener stopped");
                }
            })
        });
        tracing::info!(roles = ?supervisor.names(), "roles running");

        let failure = supervisor.first_exit_or(&shutdown).await;
        ctx.health.begin_shutdown();
        let stuck = supervisor
            .stop_in_phases(ctx.settings.runtime.shutdown_grace.0)
            .await;
        heartbeat.stop(None).await;
        if let Some(admin) = admin {
            admin.stop(Some(ADMIN_STOP_LIMIT)).await;
        }
        supervisor.verdict(failure, stuck)
    }
}

/// How long the admin listener may take to close after the roles stopped.
const ADMIN_STOP_LIMIT: Duration = Duration::from_secs(5);
/// What a role's stop may take beyond the shutdown grace before it is reported stuck.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// Writes the first heartbeat of the process's instance ids.
async fn announce(ctx: &AppContext) -> Result<(), StoreError> {
    for id in [ctx.instance, ctx.dialer] {
        beat(ctx, id).await?;
    }
    Ok(())
}

/// One heartbeat, reading the store's clock on the way.
async fn beat(ctx: &AppContext, id: InstanceId) -> Result<(), StoreError> {
    let sent = chrono::Utc::now();
    let store = ctx.store.heartbeat(id).await?;
    ctx.clock.observe(sent, store, chrono::Utc::now());
    Ok(())
}

/// Heartbeats the process's instance ids every `scheduler.heartbeat_interval` until stopped.
async fn heartbeat(ctx: AppContext, stop: CancellationToken) {
    let mut tick = tokio::time::interval(ctx.settings.scheduler.heartbeat_interval.0);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                for id in [ctx.instance, ctx.dialer] {
                    if let Err(err) = beat(&ctx, id).await {
                        tracing::warn!(error = %err, "heartbeat failed");
                    }
                }
            }
        }
    }
}

/// Why a role's task ended, or `None` for a stop it was asked for.
type Exit = Option<String>;

/// The role tasks of a running node: a stop token and a handle per role, and the channel on
/// which a role that ends by itself says why.
struct Supervisor {
    tokens: HashMap<RoleName, CancellationToken>,
    handles: HashMap<RoleName, JoinHandle<()>>,
    exited: mpsc::UnboundedReceiver<(RoleName, String)>,
}

impl Supervisor {
    /// Runs each role as a named task that reports, when it ends, why it did.
    fn spawn(ctx: &AppContext, roles: Vec<(RoleName, BuiltRole)>) -> Self {
        let (exited_tx, exited) = mpsc::unbounded_channel();
        let mut tokens = HashMap::new();
        let mut handles = HashMap::new();
        for (name, role) in roles {
            let token = CancellationToken::new();
            tokens.insert(name, token.clone());
            let exited = exited_tx.clone();
            let health = ctx.health.clone();
            let task = async move {
                let outcome = AssertUnwindSafe(role.run(token.clone()))
                    .catch_unwind()
                    .await;
                let exit = describe_exit(outcome, token.is_cancelled());
                let state = match exit {
                    Some(_) => RoleHealth::Failing,
                    None => RoleHealth::Stopped,
                };
                health.set(name, state);
                if let Some(reason) = exit {
                    let _ = exited.send((name, reason));
                }
            }
            .instrument(tracing::info_span!("role", role = name.as_str()));
            handles.insert(name, tokio::spawn(task));
        }
        Self {
            tokens,
            handles,
            exited,
        }
    }

    fn names(&self) -> BTreeSet<RoleName> {
        self.handles.keys().copied().collect()
    }

    /// Waits for `shutdown`, or for a role to end by itself, which is the failure returned.
    async fn first_exit_or(&mut self, shutdown: &CancellationToken) -> Option<(RoleName, String)> {
        tokio::select! {
            _ = shutdown.cancelled() => None,
            Some((name, reason)) = self.exited.recv() => {
                tracing::error!(role = name.as_str(), error.cause_chain = %reason, "role stopped, shutting down");
                Some((name, reason))
            }
        }
    }

    /// Stops the roles phase by phase (`RoleName::shutdown_phase`), each role within `grace`
    /// plus a margin; returns the roles that did not stop in time.
    async fn stop_in_phases(&mut self, grace: Duration) -> Vec<RoleName> {
        let mut stuck = Vec::new();
        for phase in ShutdownPhase::IN_ORDER {
            let names: Vec<RoleName> = self
                .names()
                .into_iter()
                .filter(|name| name.shutdown_phase() == phase)
                .collect();
            for name in &names {
                if let Some(token) = self.tokens.get(name) {
                    token.cancel();
                }
            }
            for name in names {
                if let Some(handle) = self.handles.remove(&name) {
                    if tokio::time::timeout(grace + STOP_MARGIN, handle)
                        .await
                        .is_err()
                    {
                        tracing::error!(role = name.as_str(), "role did not stop in time");
                        stuck.push(name);
                    }
                }
            }
        }
        stuck
    }

    /// The process's result: the first role failure (one may have come while the others
    /// were stopping), else roles stuck at shutdown, else success.
    fn verdict(
        mut self,
        failure: Option<(RoleName, String)>,
        stuck: Vec<RoleName>,
    ) -> anyhow::Result<()> {
        if let Some((name, reason)) = failure.or_else(|| self.exited.try_recv().ok()) {
            anyhow::bail!("role {name} stopped: {reason}");
        }
        if !stuck.is_empty() {
            anyhow::bail!("roles did not stop within the shutdown grace: {stuck:?}");
        }
        tracing::info!("all roles stopped");
        Ok(())
    }
}

/// Why a role's task ended: `None` when it returned after being asked to stop.
fn describe_exit(
    outcome: Result<anyhow::Result<()>, Box<dyn std::any::Any + Send>>,
    asked_to_stop: bool,
) -> Exit {
    match outcome {
        Ok(Ok(())) if asked_to_stop => None,
        Ok(Ok(())) => Some("exited unexpectedly".to_owned()),
        Ok(Err(err)) => Some(format!("{err:#}")),
        Err(panic) => Some(format!(
            "panicked: {}",
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default()
        )),
    }
}

/// A helper task of the node (the heartbeat, the admin listener) with its own stop token.
struct Background {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl Background {
    fn spawn<F, Fut>(name: &'static str, run: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let handle = tokio::spawn(run(stop.clone()).instrument(tracing::info_span!("task", name)));
        Self { stop, handle }
    }

    /// Stops the task and waits for it, at most `limit` when given.
    async fn stop(self, limit: Option<Duration>) {
        self.stop.cancel();
        match limit {
            Some(limit) => {
                let _ = tokio::time::timeout(limit, self.handle).await;
            }
            None => {
                let _ = self.handle.await;
            }
        }
    }
}
