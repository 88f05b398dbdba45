//! The store's client side: registered clients (argon2 key hashes, webhooks), bearer token
//! hashes, and artifact metadata.

use calls_protocol::jobs::{ArtifactInfo, WebhookConfig};
use rusqlite::{params, OptionalExtension};

use super::{blocking, ClientRecord, Store};
use crate::error::{Error, Result};

impl Store {
    pub fn insert_client(&self, client: &ClientRecord, now: i64) -> Result<()> {
        blocking(|| {
            let (url, secret) = webhook_columns(client.webhook.as_ref());
            let changed = self.conn().execute(
                "INSERT OR IGNORE INTO clients (id, uid, key_hash, webhook_url, webhook_secret, created_at) \
                 VALUES (?1, ?6, ?2, ?3, ?4, ?5)",
                params![client.id, client.key_hash, url, secret, now, client.uid],
            )?;
            if changed == 0 {
                return Err(Error::Conflict(format!(
                    "client {:?} is already registered",
                    client.id
                )));
            }
            Ok(())
        })
    }

    pub fn client(&self, id: &str) -> Result<Option<ClientRecord>> {
        blocking(|| self.client_where("id", id))
    }

    /// The client registration with internal id `uid` (jobs and tokens refer to it).
    pub fn client_by_uid(&self, uid: &str) -> Result<Option<ClientRecord>> {
        blocking(|| {
            if uid.is_empty() {
                return Ok(None);
            }
            self.client_where("uid", uid)
        })
    }

    fn client_where(&self, column: &str, value: &str) -> Result<Option<ClientRecord>> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT id, key_hash, webhook_url, webhook_secret, uid FROM clients WHERE {column} = ?1"
                ),
                params![value],
                |row| {
                    let url: Option<String> = row.get(2)?;
                    let secret: Option<String> = row.get(3)?;
                    Ok(ClientRecord {
                        id: row.get(0)?,
                        key_hash: row.get(1)?,
                        webhook: url
                            .zip(secret)
                            .map(|(url, secret)| WebhookConfig {
                                url,
                                secret: secret.into(),
                            }),
                        uid: row.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Removes a client and its tokens; its jobs stay until retention sweeps them.
    pub fn delete_client(&self, id: &str) -> Result<bool> {
        blocking(|| {
            let conn = self.conn();
            conn.execute("DELETE FROM tokens WHERE client_id = ?1", params![id])?;
            Ok(conn.execute("DELETE FROM clients WHERE id = ?1", params![id])? > 0)
        })
    }

    pub fn set_webhook(&self, id: &str, webhook: Option<&WebhookConfig>) -> Result<bool> {
        blocking(|| {
            let (url, secret) = webhook_columns(webhook);
            Ok(self.conn().execute(
                "UPDATE clients SET webhook_url = ?2, webhook_secret = ?3 WHERE id = ?1",
                params![id, url, secret],
            )? > 0)
        })
    }

    /// Stores a new bearer token of `client` and revokes its oldest ones beyond `max_live`
    /// (so repeated logins rotate tokens instead of piling them up). Returns how many were
    /// revoked.
    pub fn insert_token(
        &self,
        hash: &str,
        client: &ClientRecord,
        expires_at: i64,
        max_live: usize,
    ) -> Result<usize> {
        blocking(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO tokens (hash, client_id, client_uid, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![hash, client.id, client.uid, expires_at],
            )?;
            let revoked = tx.execute(
                "DELETE FROM tokens WHERE client_uid = ?1 AND rowid NOT IN \
                 (SELECT rowid FROM tokens WHERE client_uid = ?1 ORDER BY rowid DESC LIMIT ?2)",
                params![client.uid, max_live.max(1) as i64],
            )?;
            tx.commit()?;
            Ok(revoked)
        })
    }

    /// The client (id, uid) a token hash belongs to, if it has not expired and the client
    /// registration it was issued to still exists.
    pub fn token_client(&self, hash: &str, now: i64) -> Result<Option<(String, String)>> {
        blocking(|| {
            Ok(self
                .conn()
                .query_row(
                    "SELECT c.id, c.uid FROM tokens t JOIN clients c ON c.uid = t.client_uid \
                     WHERE t.hash = ?1 AND t.expires_at > ?2 AND t.client_uid != ''",
                    params![hash, now],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?)
        })
    }

    pub fn delete_expired_tokens(&self, now: i64) -> Result<usize> {
        blocking(|| {
            Ok(self
                .conn()
                .execute("DELETE FROM tokens WHERE expires_at <= ?1", params![now])?)
        })
    }

    pub fn upsert_artifact(&self, job_id: &str, info: &ArtifactInfo) -> Result<()> {
        blocking(|| {
            self.conn().execute(
                "INSERT OR REPLACE INTO artifacts (job_id, name, size, sha256, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![job_id, info.name, info.size as i64, info.sha256, info.created_at],
            )?;
            Ok(())
        })
    }

    pub fn artifacts(&self, job_id: &str) -> Result<Vec<ArtifactInfo>> {
        blocking(|| {
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
        })
    }
}

fn webhook_columns(webhook: Option<&WebhookConfig>) -> (Option<String>, Option<String>) {
    match webhook {
        Some(w) => (Some(w.url.clone()), Some(w.secret.expose().to_owned())),
        None => (None, None),
    }
}
