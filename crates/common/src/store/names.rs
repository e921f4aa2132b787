//! Mutable names: `namespace/name → CID`, updated atomically with compare-and-swap, with a
//! history of previous values. Named content is protected from GC like a recursive pin.

use cid::Cid;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::engine::{now, Engine};
use super::gc::PinMode;
use super::journal::Record;
use crate::{Error, Result};

/// What the current value must be for an update to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Apply whatever the current value is.
    Any,
    /// Apply only if the name is not set.
    Absent,
    /// Apply only if the name currently points at this CID.
    Cid(Cid),
}

/// A name and its current value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameEntry {
    /// The namespace.
    pub namespace: String,
    /// The name within it.
    pub name: String,
    /// The CID it points at.
    pub cid: String,
    /// Increments on every change, starting at 1.
    pub version: u64,
    /// Unix time of the last change.
    pub updated: i64,
}

/// One past value of a name (`cid` is `None` where the name was removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameHistoryEntry {
    /// The version this value had.
    pub version: u64,
    /// The CID, or `None` for a removal.
    pub cid: Option<String>,
    /// Unix time of the change.
    pub at: i64,
}

/// A validated `namespace/name`: each part 1–255 bytes, no control characters, no `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name {
    namespace: String,
    name: String,
}

impl Name {
    /// Checks both parts.
    pub fn new(namespace: &str, name: &str) -> Result<Name> {
        validate(namespace)?;
        validate(name)?;
        Ok(Name { namespace: namespace.to_string(), name: name.to_string() })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The name within the namespace.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::str::FromStr for Name {
    type Err = Error;

    /// Parses `namespace/name`.
    fn from_str(s: &str) -> Result<Name> {
        let (namespace, name) = s.split_once('/').ok_or_else(|| Error::InvalidName {
            input: s.to_string(),
            reason: "expected NAMESPACE/NAME",
        })?;
        Name::new(namespace, name)
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

const MAX_LEN: usize = 255;

/// Checks a namespace or name: 1–255 bytes, no control characters, no `/` (the separator
/// used when names are shown as `namespace/name`).
pub fn validate(input: &str) -> Result<()> {
    let reason = if input.is_empty() {
        "empty"
    } else if input.len() > MAX_LEN {
        "longer than 255 bytes"
    } else if input.chars().any(char::is_control) {
        "contains a control character"
    } else if input.contains('/') {
        "contains '/'"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName { input: input.to_string(), reason })
}

impl Engine {
    /// Points `namespace/name` at `cid` if `expect` holds; returns the new version. The
    /// content must be complete in the store (as for a recursive pin).
    pub fn name_set(&self, name: &Name, cid: &Cid, expect: Expect) -> Result<u64> {
        self.write(|tx| self.name_set_in(tx, name, cid, expect))
    }

    /// [`Engine::name_set`] inside an existing transaction (used by add to name atomically).
    pub(crate) fn name_set_in(
        &self,
        tx: &rusqlite::Transaction<'_>,
        name: &Name,
        cid: &Cid,
        expect: Expect,
    ) -> Result<u64> {
        let (namespace, name) = (name.namespace(), name.name());
        {
            self.check_complete(tx, cid, PinMode::Recursive)?;
            let current = current(self, tx, namespace, name)?;
            check_expect(namespace, name, expect, current.as_deref())?;
            let version = next_version(self, tx, namespace, name)?;
            let t = now();
            tx.execute(
                "INSERT INTO names (namespace, name, cid, mh, version, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (namespace, name) DO UPDATE SET cid = excluded.cid, mh = excluded.mh,
                     version = excluded.version, updated = excluded.updated",
                params![namespace, name, cid.to_string(), cid.hash().to_bytes(), version as i64, t],
            )
            .map_err(|e| self.db_err(e))?;
            history(self, tx, namespace, name, version, Some(&cid.to_string()), t)?;
            self.journal().append(&[Record::Name {
                namespace: namespace.to_string(),
                name: name.to_string(),
                cid: *cid,
            }])?;
            Ok(version)
        }
    }

    /// The current value of `namespace/name`.
    pub fn name_get(&self, name: &Name) -> Result<NameEntry> {
        let (namespace, name) = (name.namespace(), name.name());
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT cid, version, updated FROM names WHERE namespace = ?1 AND name = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![namespace, name], |row| {
                    Ok(NameEntry {
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                        cid: row.get(0)?,
                        version: row.get::<_, i64>(1)? as u64,
                        updated: row.get(2)?,
                    })
                })
                .optional()
            })
            .map_err(|e| self.db_err(e))?
            .ok_or_else(|| Error::NameNotFound {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
        })
    }

    /// Removes `namespace/name` if `expect` holds; its content loses this protection.
    pub fn name_remove(&self, name: &Name, expect: Expect) -> Result<()> {
        let (namespace, name) = (name.namespace(), name.name());
        self.with_room(|| {
            self.write(|tx| {
                let Some(cid) = current(self, tx, namespace, name)? else {
                    return Err(Error::NameNotFound {
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                    });
                };
                check_expect(namespace, name, expect, Some(&cid))?;
                tx.execute(
                    "DELETE FROM names WHERE namespace = ?1 AND name = ?2",
                    params![namespace, name],
                )
                .map_err(|e| self.db_err(e))?;
                let version = next_version(self, tx, namespace, name)?;
                history(self, tx, namespace, name, version, None, now())?;
                self.journal().append(&[Record::Unname {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                }])
            })
        })
    }

    /// Names in `namespace` (every namespace when `None`), sorted.
    pub fn name_list(&self, namespace: Option<&str>) -> Result<Vec<NameEntry>> {
        if let Some(ns) = namespace {
            validate(ns)?;
        }
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT namespace, name, cid, version, updated FROM names
                 WHERE ?1 IS NULL OR namespace = ?1 ORDER BY namespace, name",
            )
            .and_then(|mut s| {
                s.query_map(params![namespace], |row| {
                    Ok(NameEntry {
                        namespace: row.get(0)?,
                        name: row.get(1)?,
                        cid: row.get(2)?,
                        version: row.get::<_, i64>(3)? as u64,
                        updated: row.get(4)?,
                    })
                })?
                .collect()
            })
            .map_err(|e| self.db_err(e))
        })
    }

    /// Past and present values of `namespace/name`, newest first.
    pub fn name_history(&self, name: &Name) -> Result<Vec<NameHistoryEntry>> {
        let (namespace, name) = (name.namespace(), name.name());
        self.read(|conn| {
            conn.prepare_cached("SELECT version, cid, at FROM name_history WHERE namespace = ?1 AND name = ?2 ORDER BY version DESC")
                .and_then(|mut s| {
                    s.query_map(params![namespace, name], |row| {
                        Ok(NameHistoryEntry { version: row.get::<_, i64>(0)? as u64, cid: row.get(1)?, at: row.get(2)? })
                    })?
                    .collect()
                })
                .map_err(|e| self.db_err(e))
        })
    }
}

fn current(
    engine: &Engine,
    tx: &rusqlite::Transaction<'_>,
    namespace: &str,
    name: &str,
) -> Result<Option<String>> {
    tx.prepare_cached("SELECT cid FROM names WHERE namespace = ?1 AND name = ?2")
        .and_then(|mut s| s.query_row(params![namespace, name], |row| row.get(0)).optional())
        .map_err(|e| engine.db_err(e))
}

/// The next version: one past the newest in the history, so versions never repeat, even after
/// a removal.
fn next_version(
    engine: &Engine,
    tx: &rusqlite::Transaction<'_>,
    namespace: &str,
    name: &str,
) -> Result<u64> {
    tx.prepare_cached(
        "SELECT COALESCE(MAX(version), 0) FROM name_history WHERE namespace = ?1 AND name = ?2",
    )
    .and_then(|mut s| s.query_row(params![namespace, name], |row| row.get::<_, i64>(0)))
    .map(|v| v as u64 + 1)
    .map_err(|e| engine.db_err(e))
}

fn check_expect(namespace: &str, name: &str, expect: Expect, actual: Option<&str>) -> Result<()> {
    let ok = match expect {
        Expect::Any => true,
        Expect::Absent => actual.is_none(),
        Expect::Cid(cid) => {
            actual.and_then(|a| Cid::try_from(a).ok()).is_some_and(|a| a.hash() == cid.hash())
        }
    };
    if ok {
        return Ok(());
    }
    Err(Error::NameConflict {
        namespace: namespace.to_string(),
        name: name.to_string(),
        expected: match expect {
            Expect::Any => "anything".into(),
            Expect::Absent => "unset".into(),
            Expect::Cid(cid) => cid.to_string(),
        },
        actual: actual.map_or_else(|| "unset".to_string(), str::to_string),
    })
}

fn history(
    engine: &Engine,
    tx: &rusqlite::Transaction<'_>,
    namespace: &str,
    name: &str,
    version: u64,
    cid: Option<&str>,
    at: i64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO name_history (namespace, name, version, cid, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![namespace, name, version as i64, cid, at],
    )
    .map_err(|e| engine.db_err(e))?;
    Ok(())
}
