//! `outbound keys`: keys made, listed and revoked on the configured store directly, so the
//! first key of a deployment can be made before the API asks for one. Each change is in the
//! audit log like the API's, under the method `CLI`.

use chrono::Utc;
use uuid::Uuid;

use crate::cli::KeysCommand;
use crate::context::{open_store, ContextError};
use crate::domain::access::AuditEntry;
use crate::domain::ids::KeyId;
use crate::ports::StoreError;
use crate::roles::api::keys::{key_request, new_key, CreatedKeyResponse, KeyResponse};
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// The audit entry of a CLI change, with the status the API would have answered.
fn cli_entry(route: &str, resource_id: String, status: u16) -> AuditEntry {
    AuditEntry {
        count: 1,
        id: Uuid::now_v7(),
        at: Utc::now(),
        key_id: None,
        key_name: None,
        method: "CLI".into(),
        route: route.into(),
        resource_id: Some(resource_id),
        status,
    }
}

/// Runs the command; returns what to print.
pub async fn run(command: KeysCommand, settings: &Settings) -> Result<String, KeysError> {
    let store = open_store(settings).await?;
    match command {
        KeysCommand::Create { name, role, json } => {
            let (name, role) = key_request(Some(&name), Some(&role))
                .map_err(|problems| KeysError::Invalid(problems.join("; ")))?;
            let issued = new_key(name, role);
            let id = issued.record.id;
            let key = store
                .create_key(
                    issued.record,
                    Utc::now(),
                    Some(cli_entry("outbound keys create", id.to_string(), 201)),
                )
                .await?;
            Ok(if json {
                let object = CreatedKeyResponse::new(&key, issued.key);
                format!("{}\n", serde_json::to_string(&object).unwrap_or_default())
            } else {
                format!(
                    "created key {} ({}, {}); keep it now, it is not shown again:\n{}\n",
                    key.id, key.name, key.role, issued.key
                )
            })
        }
        KeysCommand::List { json } => {
            let keys = store.list_keys().await?;
            let keys: Vec<KeyResponse> = keys.iter().map(KeyResponse::from).collect();
            if json {
                return Ok(format!("{}\n", serde_json::json!({ "keys": keys })));
            }
            let mut out = format!(
                "{:<36}  {:<8}  {:<24}  {:<24}  {:<24}  name\n",
                "id", "role", "created_at", "last_used_at", "revoked_at"
            );
            for key in keys {
                out.push_str(&format!(
                    "{:<36}  {:<8}  {:<24}  {:<24}  {:<24}  {}\n",
                    key.id,
                    key.role.as_str(),
                    key.created_at,
                    key.last_used_at.as_deref().unwrap_or("-"),
                    key.revoked_at.as_deref().unwrap_or("-"),
                    key.name
                ));
            }
            Ok(out)
        }
        KeysCommand::Revoke { id } => {
            let key_id: KeyId = id
                .parse()
                .map_err(|_| KeysError::Invalid(format!("not a key id: {id:?}")))?;
            let key = store
                .revoke_key(
                    key_id,
                    Utc::now(),
                    Some(cli_entry("outbound keys revoke", key_id.to_string(), 204)),
                )
                .await
                .map_err(|err| match err {
                    StoreError::NotFound => KeysError::Invalid(format!("no key {key_id}")),
                    other => other.into(),
                })?;
            Ok(format!("revoked key {} ({})\n", key.id, key.name))
        }
    }
}
