//! The store's client side: registered clients (argon2 key hashes, webhooks), bearer token
//! hashes, and artifact metadata.

use calls_protocol::jobs::{ArtifactInfo, WebhookConfig};
use rusqlite::{params, OptionalExtension};

use super::{ClientRecord, Store};
use crate::error::{Error, Result};

impl Store {
    pub fn insert_client(&self, client: &ClientRecord, now: i64) -> Result<()> {
        let (url, secret) = webhook_columns(client.webhook.as_ref());
        let changed = self.conn().execute(
            "INSERT OR IGNORE INTO clients (id, key_hash, webhook_url, webhook_secret, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![client.id, client.key_hash, url, secret, now],
        )?;
        if changed == 0 {
            return Err(Error::Conflict(format!(
                "client {:?} is already registered",
                client.id
            )));
        }
        Ok(())
    }

    pub fn client(&self, id: &str) -> Result<Option<ClientRecord>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, key_hash, webhook_url, webhook_secret FROM clients WHERE id = ?1",
                params![id],
                |row| {
                    let url: Option<String> = row.get(2)?;
                    let secret: Option<String> = row.get(3)?;
                    Ok(ClientRecord {
                        id: row.get(0)?,
                        key_hash: row.get(1)?,
                        webhook: url
                            .zip(secret)
                            .map(|(url, secret)| WebhookConfig { url, secret }),
                    })
                },
            )
            .optional()?)
    }

    /// Removes a client and its tokens; its jobs stay until retention sweeps them.
    pub fn delete_client(&self, id: &str) -> Result<bool> {
        let conn = self.conn();
        conn.execute("DELETE FROM tokens WHERE client_id = ?1", params![id])?;
        Ok(conn.execute("DELETE FROM clients WHERE id = ?1", params![id])? > 0)
    }

    pub fn set_webhook(&self, id: &str, webhook: Option<&WebhookConfig>) -> Result<bool> {
        let (url, secret) = webhook_columns(webhook);
        Ok(self.conn().execute(
            "UPDATE clients SET webhook_url = ?2, webhook_secret = ?3 WHERE id = ?1",
            params![id, url, secret],
        )? > 0)
    }

    pub fn insert_token(&self, hash: &str, client_id: &str, expires_at: i64) -> Result<()> {
        self.conn().execute(
            "INSERT INTO tokens (hash, client_id, expires_at) VALUES (?1, ?2, ?3)",
            params![hash, client_id, expires_at],
        )?;
        Ok(())
    }

    /// The client a token hash belongs to, if it has not expired.
    pub fn token_client(&self, hash: &str, now: i64) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT client_id FROM tokens WHERE hash = ?1 AND expires_at > ?2",
                params![hash, now],
                |row| row.get(0),
            )
            .optional()?)
    }

    pub fn delete_expired_tokens(&self, now: i64) -> Result<usize> {
        Ok(self
            .conn()
            .execute("DELETE FROM tokens WHERE expires_at <= ?1", params![now])?)
    }

    pub fn upsert_artifact(&self, job_id: &str, info: &ArtifactInfo) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO artifacts (job_id, name, size, sha256, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![job_id, info.name, info.size as i64, info.sha256, info.created_at],
        )?;
        Ok(())
    }

    pub fn artifacts(&self, job_id: &str) -> Result<Vec<ArtifactInfo>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT name, size, sha256, created_at FROM artifacts WHERE job_id = ?1 ORDER BY name",
        )?;
        let rows = stmt.query_map(params![job_id], |row| {
            Ok(ArtifactInfo {
                name: row.get(0)?,
                size: row.get::<_, i64>(1)?.max(0) as u64,
                sha256: row.get(2)?,
                created_at: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn webhook_columns(webhook: Option<&WebhookConfig>) -> (Option<String>, Option<String>) {
    match webhook {
        Some(w) => (Some(w.url.clone()), Some(w.secret.clone())),
        None => (None, None),
    }
}
