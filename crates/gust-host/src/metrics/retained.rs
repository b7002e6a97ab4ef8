//! Memory a host holds on purpose, each part under its own bound, and the
//! size of its embedded data files: what an operator (and `bench/soak.sh`)
//! reads to tell a full window from a leak.
//!
//! * `gust_retained_bytes` / `gust_retained_items` by `holder`: `replay`
//!   (event inputs kept for `gust replay`, `--replay-max-bytes`), `logs`
//!   (lines kept for `gust logs` and the console), `sse` (recent events kept
//!   for server-sent event replay) and `dedupe` (published event ids
//!   remembered, when the window lives in this process) and `page_cache`
//!   (the page caches of the app's open embedded database files, items =
//!   files);
//! * `gust_storage_file_bytes` by `file`: each embedded database file of
//!   `<app>/.gust/data` (each caches up to 4 MiB of itself in memory);
//! * `process_heap_bytes` by `state` (`in_use`, `free`): the allocator's
//!   view of the whole process, where it is glibc's.

use super::text::{Families, Kind};
use crate::host::Host;

/// Adds `host`'s bounded holders and data files to `families`.
pub fn collect(host: &Host, families: &mut Families) {
    let app = host.current();
    let name = app.app.name.as_str();
    let (replay_items, replay_bytes) = host.event_inputs().usage();
    let (log_lines, log_bytes) = host.logs().usage();
    let (sse_events, sse_bytes) = host.sse().usage();
    let mut holders = vec![
        ("replay", replay_items, replay_bytes as usize),
        ("logs", log_lines, log_bytes),
        ("sse", sse_events, sse_bytes),
    ];
    if let Some((keys, bytes)) = host.services().dedupe.in_memory() {
        holders.push(("dedupe", keys, bytes));
    }
    let data = app.app.state_dir().join("data");
    let data = data.canonicalize().unwrap_or(data);
    let caches: Vec<usize> = gust_backends::embedded::page_caches()
        .into_iter()
        .filter(|(path, _)| path.starts_with(&data))
        .map(|(_, bytes)| bytes)
        .collect();
    holders.push(("page_cache", caches.len(), caches.iter().sum()));
    for (holder, items, bytes) in holders {
        let (items, bytes) = (items as u64, bytes as u64);
        let labels = [("app", name), ("holder", holder)];
        families
            .family(
                "gust_retained_bytes",
                "Memory held by a bounded in-memory holder: replay (event inputs for gust replay), logs (recent function log lines), sse (events kept for server-sent event replay), dedupe (published event ids remembered in this process), page_cache (the embedded database files' page caches).",
                Kind::Gauge,
            )
            .sample(&labels, bytes);
        families
            .family(
                "gust_retained_items",
                "Entries held by each bounded in-memory holder (see gust_retained_bytes).",
                Kind::Gauge,
            )
            .sample(&labels, items);
    }
    let Ok(files) = std::fs::read_dir(&data) else {
        return;
    };
    let mut files: Vec<(String, u64)> = files
        .flatten()
        .filter_map(|f| {
            let meta = f.metadata().ok().filter(std::fs::Metadata::is_file)?;
            Some((f.file_name().to_string_lossy().into_owned(), meta.len()))
        })
        .collect();
    files.sort();
    for (file, size) in files {
        families
            .family(
                "gust_storage_file_bytes",
                "Size of each embedded database file of the app (.gust/data).",
                Kind::Gauge,
            )
            .sample(&[("app", name), ("file", &file)], size);
    }
}

/// Adds the process's heap usage to `families` (glibc only).
pub fn collect_heap(families: &mut Families) {
    let Some(heap) = gust_runtime::heap_usage() else {
        return;
    };
    for (state, bytes) in [("in_use", heap.in_use), ("free", heap.free)] {
        families
            .family(
                "process_heap_bytes",
                "The allocator's heap: in_use (allocated, live data) and free (freed, kept for reuse).",
                Kind::Gauge,
            )
            .sample(&[("state", state)], bytes);
    }
}
