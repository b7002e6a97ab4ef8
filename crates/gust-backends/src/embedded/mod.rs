//! The `embedded` backend: in-process, durable on disk under the app's
//! `.gust/data/`, nothing to install.

mod blob;
mod broadcast;
mod dedupe;
mod kv;
mod queue;
mod sql;
mod stream;
mod table;
mod topic;

pub use blob::{EmbeddedBlobs, EmbeddedContainer};
pub use broadcast::LocalBroadcast;
pub use dedupe::EmbeddedDedupe;
pub use kv::EmbeddedKv;
pub use queue::{EmbeddedQueue, EmbeddedQueues};
pub use sql::{EmbeddedDatabase, EmbeddedSql};
pub use stream::{EmbeddedStream, EmbeddedStreams};
pub use table::{EmbeddedTable, EmbeddedTables};
pub use topic::{EmbeddedTopic, EmbeddedTopics};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

/// Memory one embedded database file may use for its page cache. redb's
/// default (1 GiB per file) let a long-running host's memory grow with the
/// data it wrote; an app has up to four such files, and a host may serve
/// many apps. At 16 MiB the caches were the largest holder of a soak's
/// heap and kept filling for half an hour as the files grew; at 4 MiB they
/// are full within minutes, and pages past them are read from the
/// operating system's file cache.
pub const CACHE_BYTES: usize = 4 << 20;

/// The embedded database files open in this process, for [`page_caches`].
static OPEN: Mutex<Vec<(PathBuf, Weak<redb::Database>)>> = Mutex::new(Vec::new());

/// Opens (creating it if missing) the redb file at `path` with a cache of
/// [`CACHE_BYTES`], counted in [`page_caches`] while it is open.
pub(crate) fn open_database(path: &Path) -> Result<Arc<redb::Database>, redb::DatabaseError> {
    let db = Arc::new(
        redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)?,
    );
    let listed = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    open.retain(|(_, db)| db.strong_count() > 0);
    open.push((listed, Arc::downgrade(&db)));
    Ok(db)
}

/// Bytes each open embedded database file holds in its page cache (read
/// cache and write buffer), by canonical path: memory that grows with the
/// file up to [`CACHE_BYTES`].
pub fn page_caches() -> Vec<(PathBuf, usize)> {
    use redb::ReadableDatabase;
    let open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    open.iter()
        .filter_map(|(path, db)| Some((path.clone(), db.upgrade()?.cache_stats().used_bytes())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");

    #[test]
    fn page_caches_count_open_files_under_their_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cached.redb");
        let db = open_database(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(T).unwrap();
            for i in 0..4_000u64 {
                t.insert(i, [7u8; 4096].as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        let cached = |path: &Path| {
            page_caches()
                .into_iter()
                .find(|(p, _)| p == path)
                .map(|(_, bytes)| bytes)
        };
        let path = path.canonicalize().unwrap();
        let bytes = cached(&path).expect("an open file is listed");
        assert!(bytes > 0, "16 MB written leave pages cached");
        assert!(bytes <= CACHE_BYTES, "{bytes} over the bound");
        drop(db);
        assert_eq!(cached(&path), None, "a closed file is not listed");
    }
}
