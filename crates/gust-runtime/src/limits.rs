//! Per-store resource limits that remember why they refused.

use wasmtime::ResourceLimiter;

/// Caps linear memory growth per instance and records a refusal, so a trap
/// that follows can be reported as "out of memory".
pub(crate) struct MemoryLimiter {
    limit: usize,
    /// Set once a growth past the limit was refused.
    pub(crate) refused: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            refused: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.limit && maximum.is_none_or(|m| desired <= m);
        if !allowed {
            self.refused = true;
            // A trap rather than a failed `memory.grow`: guests rarely handle
            // allocation failure, and the trap names the cause precisely.
            wasmtime::bail!(
                "memory limit exceeded: wanted {desired} bytes, limit is {}",
                self.limit
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000 && maximum.is_none_or(|m| desired <= m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_growth_past_the_limit_and_remembers() {
        let mut l = MemoryLimiter::new(1 << 20);
        assert!(l.memory_growing(0, 1 << 19, None).unwrap());
        assert!(!l.refused);
        assert!(l.memory_growing(0, 2 << 20, None).is_err());
        assert!(l.refused);
    }
}
