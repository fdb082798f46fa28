//! Per-role health, reported on watch channels and aggregated for `/healthz` and `/readyz`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use super::role::RoleName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleHealth {
    Starting,
    Ready,
    Failing,
    Stopped,
}

#[derive(Debug, Default)]
struct Inner {
    roles: Mutex<BTreeMap<RoleName, RoleHealth>>,
    shutting_down: AtomicBool,
}

/// Shared by every role of the process; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

impl Health {
    pub fn new(roles: impl IntoIterator<Item = RoleName>) -> Self {
        let health = Self::default();
        {
            let mut map = health.roles();
            for role in roles {
                map.insert(role, RoleHealth::Starting);
            }
        }
        health
    }

    fn roles(&self) -> MutexGuard<'_, BTreeMap<RoleName, RoleHealth>> {
        self.inner
            .roles
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn set(&self, role: RoleName, health: RoleHealth) {
        self.roles().insert(role, health);
    }

    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// Whether this process runs `role`.
    pub fn runs(&self, role: RoleName) -> bool {
        self.roles().contains_key(&role)
    }

    pub fn snapshot(&self) -> BTreeMap<RoleName, RoleHealth> {
        self.roles().clone()
    }

    /// Alive: no role is failing.
    pub fn is_live(&self) -> bool {
        !self.roles().values().any(|h| *h == RoleHealth::Failing)
    }

    /// Ready: every role is ready and no shutdown has begun.
    pub fn is_ready(&self) -> bool {
        !self.is_shutting_down() && self.roles().values().all(|h| *h == RoleHealth::Ready)
    }
}
