//! Idempotence for any projection: remember, per stream, the last version applied.

use uuid::Uuid;

use crate::projection::{ApplyError, Envelope, Table, Tables, Transaction};

/// Makes a projection idempotent when its rows do not map one to one to streams (a total per
/// day, say): a table of the projection's own holds, per stream, the highest version it
/// applied, and [`StreamVersions::unseen`] lets through only events above it, recording them
/// in the same transaction as the projection's writes. A page applied twice (after a crash, a
/// lost lease, a replay) then changes nothing the second time.
///
/// Declare [`StreamVersions::table`] among the projection's tables. Pass the events in page
/// order; pass only those the projection uses, so that the table grows only with the streams
/// the projection cares about.
///
/// ```
/// use order_projector::StreamVersions;
/// let guard = StreamVersions::new("sales_streams");
/// assert_eq!(guard.table().name(), "sales_streams");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamVersions {
    table: String,
}

impl StreamVersions {
    /// A guard keeping its versions in the table `table` (in schema `orders`).
    pub fn new(table: &str) -> Self {
        Self {
            table: table.to_owned(),
        }
    }

    /// The guard's table, to declare in [`crate::Projection::tables`].
    pub fn table(&self) -> Table {
        Table::new(
            &self.table,
            "CREATE TABLE {table} (stream_id uuid PRIMARY KEY, stream_version bigint NOT NULL)",
        )
    }

    /// Of `events` (in page order), those whose stream has not reached their version in an
    /// earlier transaction, in the same order; records the new versions inside `tx` (one
    /// statement). Apply exactly the returned events in the same transaction.
    pub async fn unseen<'p, E>(
        &self,
        tx: &Transaction<'_>,
        tables: &Tables,
        events: impl IntoIterator<Item = &'p Envelope<E>>,
    ) -> Result<Vec<&'p Envelope<E>>, ApplyError>
    where
        E: 'p,
    {
        let events: Vec<&Envelope<E>> = events.into_iter().collect();
        if events.is_empty() {
            return Ok(events);
        }
        let mut highest: std::collections::BTreeMap<Uuid, i64> = Default::default();
        for event in &events {
            let version = highest.entry(event.stream_id()).or_default();
            *version = (*version).max(event.stream_version() as i64);
        }
        let streams: Vec<Uuid> = highest.keys().copied().collect();
        let versions: Vec<i64> = highest.values().copied().collect();
        let table = &tables[self.table.as_str()];
        let statement = tx
            .prepare_cached(&format!(
                "WITH page AS (
                     SELECT * FROM unnest($1::uuid[], $2::int8[]) AS p(stream_id, stream_version)
                 ), earlier AS (
                     SELECT s.stream_id, s.stream_version FROM {table} s JOIN page USING (stream_id)
                 ), recorded AS (
                     INSERT INTO {table} (stream_id, stream_version)
                     SELECT stream_id, stream_version FROM page ORDER BY stream_id
                     ON CONFLICT (stream_id) DO UPDATE SET stream_version = EXCLUDED.stream_version
                     WHERE {table}.stream_version < EXCLUDED.stream_version
                 )
                 SELECT stream_id, stream_version FROM earlier"
            ))
            .await?;
        let mut applied: std::collections::HashMap<Uuid, u64> = Default::default();
        for row in tx.query(&statement, &[&streams, &versions]).await? {
            applied.insert(row.try_get(0)?, row.try_get::<_, i64>(1)? as u64);
        }
        Ok(events
            .into_iter()
            .filter(|e| {
                applied
                    .get(&e.stream_id())
                    .is_none_or(|&done| e.stream_version() > done)
            })
            .collect())
    }
}
