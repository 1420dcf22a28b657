//! The rows a batch of events touches, held in memory while the events are applied, then
//! written back with one statement per table. This is what makes replay fast: a page of
//! thousands of events costs a few round trips, not one per event.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::{AssertSqlSafe, PgConnection};

use crate::rows::{ReadModelRow, columns};

/// What the database held for a key before this batch.
#[derive(Debug, Clone)]
enum Original<R> {
    /// Not loaded: the batch only writes this key.
    Unknown,
    /// Loaded, and the table has no such row.
    Absent,
    /// Loaded.
    Present(R),
}

#[derive(Debug, Clone)]
struct Entry<R> {
    original: Original<R>,
    current: Option<R>,
}

/// A key was read without having been loaded first: a bug in a projection's `needs`.
#[derive(Debug, thiserror::Error)]
#[error("projection bug: {table} row {key} was read but not loaded")]
pub struct NotLoaded {
    /// The table.
    pub table: &'static str,
    /// The key, debug-printed.
    pub key: String,
}

/// The touched rows of one table.
#[derive(Debug, Clone)]
pub struct Table<R: ReadModelRow> {
    entries: BTreeMap<R::Key, Entry<R>>,
    wanted: Vec<R::Key>,
}

impl<R: ReadModelRow> Default for Table<R> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            wanted: Vec::new(),
        }
    }
}

impl<R: ReadModelRow> Table<R> {
    /// Asks for `key` to be loaded before events are applied.
    pub fn want(&mut self, key: R::Key) {
        if !self.entries.contains_key(&key) {
            self.wanted.push(key);
        }
    }

    /// Takes the keys asked for and not yet loaded.
    fn take_wanted(&mut self) -> Vec<R::Key> {
        let mut keys = std::mem::take(&mut self.wanted);
        keys.sort();
        keys.dedup();
        keys.retain(|k| !self.entries.contains_key(k));
        keys
    }

    /// Records what the database holds for a loaded key.
    fn loaded(&mut self, key: R::Key, row: Option<R>) {
        let original = match &row {
            Some(r) => Original::Present(r.clone()),
            None => Original::Absent,
        };
        self.entries.insert(
            key,
            Entry {
                original,
                current: row,
            },
        );
    }

    /// The current row for a loaded key (`None`: no such row).
    pub fn get(&self, key: &R::Key) -> Result<Option<&R>, NotLoaded> {
        match self.entries.get(key) {
            Some(entry) => Ok(entry.current.as_ref()),
            None => Err(self.not_loaded(key)),
        }
    }

    /// The current row for a loaded key, mutably.
    pub fn get_mut(&mut self, key: &R::Key) -> Result<Option<&mut R>, NotLoaded> {
        if !self.entries.contains_key(key) {
            return Err(self.not_loaded(key));
        }
        Ok(self.entries.get_mut(key).and_then(|e| e.current.as_mut()))
    }

    /// Writes a whole row (insert or replace); needs no prior load.
    pub fn put(&mut self, row: R) {
        let entry = self.entries.entry(row.key()).or_insert(Entry {
            original: Original::Unknown,
            current: None,
        });
        entry.current = Some(row);
    }

    /// Deletes a row if it exists; needs no prior load.
    pub fn remove(&mut self, key: R::Key) {
        let entry = self.entries.entry(key).or_insert(Entry {
            original: Original::Unknown,
            current: None,
        });
        entry.current = None;
    }

    fn not_loaded(&self, key: &R::Key) -> NotLoaded {
        NotLoaded {
            table: R::TABLE,
            key: format!("{key:?}"),
        }
    }

    /// Rows to upsert and keys to delete, leaving out what did not change.
    fn changes(&self) -> (Vec<&R>, Vec<&R::Key>) {
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for (key, entry) in &self.entries {
            match (&entry.original, &entry.current) {
                (Original::Present(before), Some(now)) if before == now => {}
                (_, Some(now)) => upserts.push(now),
                (Original::Absent, None) => {}
                (_, None) => deletes.push(key),
            }
        }
        (upserts, deletes)
    }

    /// Loads every wanted key from `schema` in one query.
    pub async fn load(&mut self, conn: &mut PgConnection, schema: &str) -> sqlx::Result<()> {
        let keys = self.take_wanted();
        if keys.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT to_jsonb(t) FROM {table} t \
             JOIN jsonb_populate_recordset(NULL::{table}, $1) k USING ({key_columns})",
            table = qualified::<R>(schema),
            key_columns = quoted(R::KEY_COLUMNS.iter().copied()),
        );
        let rows: Vec<Value> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(serde_json::to_value(&keys).expect("keys serialize"))
            .fetch_all(&mut *conn)
            .await?;
        let mut found = BTreeMap::new();
        for row in rows {
            let row: R = serde_json::from_value(row).map_err(|e| {
                sqlx::Error::Decode(
                    format!("{} row does not match its struct: {e}", R::TABLE).into(),
                )
            })?;
            found.insert(row.key(), row);
        }
        for key in keys {
            let row = found.remove(&key);
            self.loaded(key, row);
        }
        Ok(())
    }

    /// Writes the changed rows to `schema`: one upsert and one delete statement at most.
    pub async fn flush(&mut self, conn: &mut PgConnection, schema: &str) -> sqlx::Result<()> {
        let (upserts, deletes) = self.changes();
        let table = qualified::<R>(schema);
        if !deletes.is_empty() {
            let matches: Vec<String> = R::KEY_COLUMNS
                .iter()
                .map(|c| format!("t.\"{c}\" = k.\"{c}\""))
                .collect();
            let sql = format!(
                "DELETE FROM {table} t USING jsonb_populate_recordset(NULL::{table}, $1) k \
                 WHERE {}",
                matches.join(" AND ")
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(serde_json::to_value(&deletes).expect("keys serialize"))
                .execute(&mut *conn)
                .await?;
        }
        if !upserts.is_empty() {
            let updates: Vec<String> = columns::<R>()
                .into_iter()
                .filter(|c| !R::KEY_COLUMNS.contains(&c.as_str()))
                .map(|c| format!("\"{c}\" = EXCLUDED.\"{c}\""))
                .collect();
            // A table of key columns only has nothing to update on a conflict.
            let on_conflict = if updates.is_empty() {
                "DO NOTHING".to_owned()
            } else {
                format!("DO UPDATE SET {}", updates.join(", "))
            };
            let sql = format!(
                "INSERT INTO {table} SELECT * FROM jsonb_populate_recordset(NULL::{table}, $1) \
                 ON CONFLICT ({key_columns}) {on_conflict}",
                key_columns = quoted(R::KEY_COLUMNS.iter().copied()),
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(serde_json::to_value(&upserts).expect("rows serialize"))
                .execute(&mut *conn)
                .await?;
        }
        // What was written is now what the database holds.
        for entry in self.entries.values_mut() {
            entry.original = match &entry.current {
                Some(r) => Original::Present(r.clone()),
                None => Original::Absent,
            };
        }
        Ok(())
    }

    /// Forgets every row (between pages of a replay, to bound memory).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.wanted.clear();
    }
}

fn qualified<R: ReadModelRow>(schema: &str) -> String {
    format!("\"{schema}\".\"{}\"", R::TABLE)
}

fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{VariableKey, VariableRow};
    use leoflow_events::catalog::Sealed;

    fn var(key: &str, val: &str) -> VariableRow {
        VariableRow {
            key: key.into(),
            val: Sealed::clear(val),
            ..Default::default()
        }
    }

    fn key(k: &str) -> VariableKey {
        VariableKey {
            tenant: String::new(),
            key: k.into(),
        }
    }

    #[test]
    fn reading_an_unloaded_key_is_a_bug_not_a_silent_none() {
        let table = Table::<VariableRow>::default();
        let err = table.get(&key("a")).unwrap_err();
        assert_eq!(err.table, "variable");
    }

    #[test]
    fn unchanged_rows_are_not_written() {
        let mut table = Table::<VariableRow>::default();
        table.loaded(key("a"), Some(var("a", "1")));
        table.loaded(key("b"), None);
        let (upserts, deletes) = table.changes();
        assert!(upserts.is_empty() && deletes.is_empty());

        table.get_mut(&key("a")).unwrap().unwrap().val = Sealed::clear("2");
        table.remove(key("b"));
        table.remove(key("c"));
        let (upserts, deletes) = table.changes();
        assert_eq!(upserts, vec![&var("a", "2")]);
        // "b" was loaded as absent: nothing to delete. "c" was never loaded: delete it.
        assert_eq!(deletes, vec![&key("c")]);
    }

    #[test]
    fn put_then_remove_of_an_unknown_key_still_deletes() {
        let mut table = Table::<VariableRow>::default();
        table.put(var("x", "1"));
        table.remove(key("x"));
        let (upserts, deletes) = table.changes();
        assert!(upserts.is_empty());
        assert_eq!(deletes, vec![&key("x")]);
    }
}
