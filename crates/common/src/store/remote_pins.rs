//! Records of content this node pins on remote tiers. A pending record protects the local DAG
//! from GC and eviction until the remote confirms its pin (see the GC roots in `gc.rs`).

use cid::Cid;
use rusqlite::params;
use serde::Serialize;

use super::engine::{now, Engine};
use crate::Result;

/// Where a remote pin stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RemotePinState {
    /// Asked for, not yet confirmed by the tier: the local copy is kept.
    Pending,
    /// The tier confirmed the pin: the local copy is an ordinary cache.
    Pinned,
}

/// One remote pin record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemotePin {
    /// The pinned root.
    pub cid: String,
    /// The tier's identity (`kubo http://127.0.0.1:5001`, `s3 s3://bucket/prefix`).
    pub tier: String,
    /// Pending or pinned.
    pub state: RemotePinState,
    /// When the record last changed (Unix seconds).
    pub updated: i64,
    /// The last failure, while pending.
    pub error: Option<String>,
}

impl Engine {
    /// Records a pending remote pin of `cid` on `tier` in `tx` (a pinned record goes back to
    /// pending: the caller is about to re-pin).
    pub(crate) fn remote_pin_pending_in(
        &self,
        tx: &rusqlite::Transaction<'_>,
        cid: &Cid,
        tier: &str,
    ) -> Result<()> {
        tx.execute(
            "INSERT INTO remote_pins (mh, cid, tier, state, updated, error) VALUES (?1, ?2, ?3, 'pending', ?4, NULL)
             ON CONFLICT (mh, tier) DO UPDATE SET state = 'pending', updated = excluded.updated",
            params![cid.hash().to_bytes(), cid.to_string(), tier, now()],
        )
        .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Marks the remote pin of `cid` on `tier` confirmed, or records why it is still pending.
    pub(crate) fn remote_pin_update(
        &self,
        cid: &Cid,
        tier: &str,
        outcome: std::result::Result<(), String>,
    ) -> Result<()> {
        let (state, error) = match outcome {
            Ok(()) => ("pinned", None),
            Err(e) => ("pending", Some(e)),
        };
        self.write(|tx| {
            tx.execute(
                "UPDATE remote_pins SET state = ?3, error = ?4, updated = ?5 WHERE mh = ?1 AND tier = ?2",
                params![cid.hash().to_bytes(), tier, state, error, now()],
            )
            .map_err(|e| self.db_err(e))?;
            Ok(())
        })
    }

    /// Every remote pin record, pending first.
    pub(crate) fn remote_pins(&self) -> Result<Vec<RemotePin>> {
        self.read(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT cid, tier, state, updated, error FROM remote_pins
                     ORDER BY state = 'pinned', updated, cid, tier",
                )
                .map_err(|e| self.db_err(e))?;
            let rows = statement
                .query_map([], |row| {
                    let state: String = row.get(2)?;
                    Ok(RemotePin {
                        cid: row.get(0)?,
                        tier: row.get(1)?,
                        state: if state == "pinned" {
                            RemotePinState::Pinned
                        } else {
                            RemotePinState::Pending
                        },
                        updated: row.get(3)?,
                        error: row.get(4)?,
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| self.db_err(e))?;
            Ok(rows)
        })
    }
}
