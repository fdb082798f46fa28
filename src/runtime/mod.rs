//! The supervisor: builds every selected role (all fallible setup, including binding the HTTP
//! port and joining consumer groups) before running any, runs each as a named task, and stops
//! them in order: intake first (api, scheduler), then the call role, which lets dialing calls
//! end within `runtime.shutdown_grace`, then the roles that record outcomes (status, retry).
//! If a role exits on its own, the process says which and why, stops the rest and fails.

pub mod health;
pub mod role;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::health::RoleHealth;
use self::role::RoleName;
use crate::context::{AppContext, ContextError};
use crate::ports::{BusError, Subscription, Topic};
use crate::roles::api::ApiRole;
use crate::roles::call::CallWorker;
use crate::roles::retry::RetryWorker;
use crate::roles::scheduler::Scheduler;
use crate::roles::status::StatusWorker;
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("http.bind: cannot listen on {bind}")]
    Bind {
        bind: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bus: cannot subscribe: {0}")]
    Bus(#[from] BusError),
}

#[expect(
    clippy::large_enum_variant,
    reason = "one value per role, built once per process"
)]
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
                RoleName::Scheduler => Some((*name, Topic::Wake, "scheduler")),
                RoleName::Call => Some((*name, Topic::Dispatch, "call")),
                RoleName::Status => Some((*name, Topic::Status, "status")),
                RoleName::Retry => Some((*name, Topic::Retry, "retry")),
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
                    let role = ApiRole::build(ctx.clone()).map_err(|source| BuildError::Bind {
                        bind: bind.clone(),
                        source,
                    })?;
                    api_addr = Some(
                        role.local_addr()
                            .map_err(|source| BuildError::Bind { bind, source })?,
                    );
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
            let admin = ApiRole::build_admin(ctx.clone()).map_err(|source| BuildError::Bind {
                bind: bind.clone(),
                source,
            })?;
            let addr = admin
                .local_addr()
                .map_err(|source| BuildError::Bind { bind, source })?;
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
        // Before any role claims an attempt, so none is ever owned by a silent instance.
        for id in [self.ctx.instance, self.ctx.dialer] {
            self.ctx.store.heartbeat(id, chrono::Utc::now()).await?;
        }
        let (exited_tx, mut exited_rx) = mpsc::unbounded_channel::<(RoleName, String)>();
        let mut tokens: HashMap<RoleName, CancellationToken> = HashMap::new();
        let mut handles: HashMap<RoleName, JoinHandle<()>> = HashMap::new();
        for (name, role) in self.roles {
            let token = CancellationToken::new();
            tokens.insert(name, token.clone());
            let exited = exited_tx.clone();
            let health = self.ctx.health.clone();
            let span = tracing::info_span!("role", role = name.as_str());
            let task = async move {
                let outcome = AssertUnwindSafe(role.run(token.clone()))
                    .catch_unwind()
                    .await;
                let verdict = match outcome {
                    Ok(Ok(())) if token.is_cancelled() => None,
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
                };
                health.set(
                    name,
                    if verdict.is_some() {
                        RoleHealth::Failing
                    } else {
                        RoleHealth::Stopped
                    },
                );
                if let Some(reason) = verdict {
                    let _ = exited.send((name, reason));
                }
            }
            .instrument(span);
            handles.insert(name, tokio::spawn(task));
        }
        drop(exited_tx);
        // Attempts this process claims or adopts are alive while it heartbeats; until the
        // very end of shutdown, so draining calls are never taken for lost.
        let heartbeat_token = CancellationToken::new();
        let heartbeat_task = {
            let token = heartbeat_token.clone();
            let store = self.ctx.store.clone();
            let instance = self.ctx.instance;
            let dialer = self.ctx.dialer;
            let every = self.ctx.settings.scheduler.heartbeat_interval.0;
            tokio::spawn(
                async move {
                    let mut tick = tokio::time::interval(every);
                    loop {
                        tokio::select! {
                            _ = token.cancelled() => break,
                            _ = tick.tick() => {
                                for id in [instance, dialer] {
                                    if let Err(err) = store.heartbeat(id, chrono::Utc::now()).await {
                                        tracing::warn!(error = %err, "heartbeat failed");
                                    }
                                }
                            }
                        }
                    }
                }
                .instrument(tracing::info_span!("heartbeat")),
            )
        };
        let admin_token = CancellationToken::new();
        let admin_task = self.admin.map(|admin| {
            let token = admin_token.clone();
            tokio::spawn(
                async move {
                    if let Err(err) = admin.run(token).await {
                        tracing::error!(error.cause_chain = %format!("{err:#}"), "admin listener stopped");
                    }
                }
                .instrument(tracing::info_span!("admin")),
            )
        });
        tracing::info!(roles = ?handles.keys().collect::<Vec<_>>(), "roles running");

        let failure = tokio::select! {
            _ = shutdown.cancelled() => None,
            Some((name, reason)) = exited_rx.recv() => {
                tracing::error!(role = name.as_str(), error.cause_chain = %reason, "role stopped, shutting down");
                Some((name, reason))
            }
        };
        self.ctx.health.begin_shutdown();
        let grace = self.ctx.settings.runtime.shutdown_grace.0;
        let phases: [&[RoleName]; 3] = [
            &[RoleName::Api, RoleName::Scheduler],
            &[RoleName::Call],
            &[RoleName::Status, RoleName::Retry],
        ];
        let mut stuck = Vec::new();
        for phase in phases {
            for name in phase {
                if let Some(token) = tokens.get(name) {
                    token.cancel();
                }
            }
            for name in phase {
                if let Some(handle) = handles.remove(name) {
                    let limit = grace + Duration::from_secs(5);
                    if tokio::time::timeout(limit, handle).await.is_err() {
                        tracing::error!(role = name.as_str(), "role did not stop in time");
                        stuck.push(*name);
                    }
                }
            }
        }
        heartbeat_token.cancel();
        let _ = heartbeat_task.await;
        admin_token.cancel();
        if let Some(task) = admin_task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        // A role may have failed while the others were stopping.
        let late = exited_rx.try_recv().ok();
        if failure.is_none() && late.is_none() && !stuck.is_empty() {
            anyhow::bail!("roles did not stop within the shutdown grace: {stuck:?}");
        }
        match failure.or(late) {
            Some((name, reason)) => anyhow::bail!("role {name} stopped: {reason}"),
            None => {
                tracing::info!("all roles stopped");
                Ok(())
            }
        }
    }
}
