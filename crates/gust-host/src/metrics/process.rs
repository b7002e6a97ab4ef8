//! Process metrics, read from `/proc` at scrape time (Linux; elsewhere
//! they are left out): resident and virtual memory from
//! `/proc/self/statm`, open file descriptors from `/proc/self/fd`.

use std::sync::OnceLock;

use super::text::{Families, Kind};

/// Adds the process's samples to `families`.
pub fn collect(families: &mut Families) {
    if let Some((virt, rss)) = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| parse_statm(&s))
    {
        let page = page_size();
        families
            .family(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                Kind::Gauge,
            )
            .sample(&[], rss * page);
        families
            .family(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                Kind::Gauge,
            )
            .sample(&[], virt * page);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        families
            .family(
                "process_open_fds",
                "Number of open file descriptors.",
                Kind::Gauge,
            )
            .sample(&[], fds.count() as u64);
    }
}

/// `(size, resident)` in pages: the first two fields of `/proc/self/statm`.
fn parse_statm(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some((fields.next()??, fields.next()??))
}

/// The memory page size, from the `AT_PAGESZ` entry of `/proc/self/auxv`
/// (4096 if it cannot be read).
fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        std::fs::read("/proc/self/auxv")
            .ok()
            .and_then(|auxv| auxv_entry(&auxv, AT_PAGESZ))
            .filter(|&p| p > 0)
            .unwrap_or(4096)
    })
}

/// The auxiliary vector's type for the page size.
const AT_PAGESZ: u64 = 6;

/// The value of entry `key` in an auxiliary vector of native-endian
/// `(type, value)` word pairs.
fn auxv_entry(auxv: &[u8], key: u64) -> Option<u64> {
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |b: &[u8]| -> u64 {
        let mut buf = [0u8; WORD];
        buf.copy_from_slice(b);
        usize::from_ne_bytes(buf) as u64
    };
    auxv.chunks_exact(2 * WORD)
        .map(|pair| (word(&pair[..WORD]), word(&pair[WORD..])))
        .take_while(|&(ty, _)| ty != 0)
        .find(|&(ty, _)| ty == key)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_statm() {
        assert_eq!(parse_statm("1234 56 7 8 0 9 0\n"), Some((1234, 56)));
        assert_eq!(parse_statm("x"), None);
    }

    #[test]
    fn finds_auxv_entries() {
        let mut auxv = Vec::new();
        for (k, v) in [(3usize, 99usize), (6, 16384), (0, 0)] {
            auxv.extend_from_slice(&k.to_ne_bytes());
            auxv.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(auxv_entry(&auxv, AT_PAGESZ), Some(16384));
        assert_eq!(auxv_entry(&auxv, 42), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reports_resident_memory() {
        let mut families = Families::default();
        collect(&mut families);
        let text = families.encode();
        let rss: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .expect("rss line")
            .parse()
            .unwrap();
        assert!(rss > 1 << 20, "{text}");
        assert!(page_size().is_power_of_two());
    }
}
