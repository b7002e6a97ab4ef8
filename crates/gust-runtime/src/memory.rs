//! Giving freed heap back to the operating system.

/// Returns the free memory the allocator holds to the operating system.
///
/// Compiling a component (Cranelift, on several threads at once) allocates
/// hundreds of MiB that are freed when it ends, but glibc keeps freed
/// memory in each thread's arena: without this, a first `gust up examples`,
/// which compiles 34 components, stayed at 676 MiB resident for its whole
/// life instead of 309 MiB. Does nothing where the allocator is not
/// glibc's.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free pages of the allocator's own
    // arenas; it touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the allocator holds, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapUsage {
    /// Allocated and not freed (small blocks plus those mapped on their own).
    pub in_use: u64,
    /// Freed but kept by the allocator for reuse.
    pub free: u64,
}

/// The process's heap as glibc's allocator sees it (`mallinfo2`), over every
/// arena; `None` where the allocator is not glibc's. Telling what is in use
/// from what is kept free shows whether a growing resident size is live
/// data or fragmentation.
pub fn heap_usage() -> Option<HeapUsage> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallinfo2` only reads the allocator's own bookkeeping
        // (under its arena locks) and returns it by value.
        let info = unsafe { libc::mallinfo2() };
        Some(HeapUsage {
            in_use: (info.uordblks + info.hblkhd) as u64,
            free: info.fordblks as u64,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn heap_usage_counts_a_live_allocation() {
        let before = heap_usage().expect("glibc").in_use;
        let block = vec![1u8; 4 << 20];
        let during = heap_usage().expect("glibc").in_use;
        assert!(during >= before + (4 << 20) - 4096, "{before} -> {during}");
        drop(block);
    }
}
