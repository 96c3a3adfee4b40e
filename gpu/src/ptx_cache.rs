//! An optional on-disk cache of the kernels' PTX, so that the processes of one machine (the test
//! binaries, the sanitizer runs, the benchmarks) compile each kernel source once instead of once
//! each (NVRTC takes about ten seconds per source).
//!
//! It is off unless the environment variable `GLA_PTX_CACHE` names a folder (created if missing).
//! An entry holds, in one file, the full text the PTX depends on (NVRTC's version, the compile
//! options with the architecture, every header and the source) followed by the PTX, after a line
//! with both lengths. A read compares that text with the current one, so a stale entry or a clash
//! of the file name's hash only costs a compile; a write goes to a temporary file renamed into
//! place, so processes that compile at the same time never read a partial entry. Every I/O error
//! falls back to compiling.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// The first line of every entry.
const MAGIC: &str = "glacheck PTX cache entry v1";

/// One kernel source's cache entry: where it lives and the text it must match.
pub(crate) struct Entry {
    path: PathBuf,
    key: String,
}

impl Entry {
    /// The entry for `name` compiled from `src` with `headers` and `options` by NVRTC
    /// `version`, in the folder `dir`.
    pub(crate) fn new(
        dir: &Path,
        name: &str,
        src: &str,
        headers: &[(&str, &str)],
        options: &[String],
        version: (i32, i32),
    ) -> Entry {
        let mut key = format!("nvrtc {}.{}\noptions {options:?}\n", version.0, version.1);
        for (h, text) in headers {
            key.push_str(&format!("header {h} {}\n{text}\n", text.len()));
        }
        key.push_str(&format!("source {name} {}\n{src}\n", src.len()));
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let file = format!("{name}-{:016x}.ptx", hasher.finish());
        Entry {
            path: dir.join(file),
            key,
        }
    }

    /// The entry named by `GLA_PTX_CACHE` (see [`Entry::new`]), or `None` when the variable is
    /// unset or empty.
    pub(crate) fn from_env(
        name: &str,
        src: &str,
        headers: &[(&str, &str)],
        options: &[String],
        version: (i32, i32),
    ) -> Option<Entry> {
        let dir = std::env::var_os("GLA_PTX_CACHE").filter(|d| !d.is_empty())?;
        Some(Entry::new(
            Path::new(&dir),
            name,
            src,
            headers,
            options,
            version,
        ))
    }

    /// The cached PTX, if the entry exists and was made from the same text.
    pub(crate) fn load(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let rest = text.strip_prefix(MAGIC)?.strip_prefix('\n')?;
        let (lens, rest) = rest.split_once('\n')?;
        let (klen, plen) = lens.split_once(' ')?;
        let (klen, plen): (usize, usize) = (klen.parse().ok()?, plen.parse().ok()?);
        let (key, ptx) = (rest.get(..klen)?, rest.get(klen..)?);
        (key == self.key && ptx.len() == plen && plen > 0).then(|| ptx.to_string())
    }

    /// Store `ptx` (errors are ignored: the cache only saves time).
    pub(crate) fn store(&self, ptx: &str) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        let tmp = self.path.with_extension(format!(
            "tmp{}.{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let text = format!(
            "{MAGIC}\n{} {}\n{}{ptx}",
            self.key.len(),
            ptx.len(),
            self.key
        );
        if std::fs::write(&tmp, text).is_err() || std::fs::rename(&tmp, &self.path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("gla-ptx-cache-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn entry(dir: &Path, src: &str, arch: &str) -> Entry {
        let opts = vec![format!("--gpu-architecture={arch}")];
        Entry::new(dir, "k.cu", src, &[("h.cuh", "// h")], &opts, (13, 0))
    }

    #[test]
    fn an_entry_is_read_back_only_for_the_same_text() {
        let d = folder("same");
        let e = entry(&d, "kernel A", "sm_90");
        assert_eq!(e.load(), None, "empty cache");
        e.store(".version 9.0\n// ptx A\n");
        assert_eq!(e.load().as_deref(), Some(".version 9.0\n// ptx A\n"));
        // another source, architecture, header or NVRTC version misses
        assert_eq!(entry(&d, "kernel B", "sm_90").load(), None);
        assert_eq!(entry(&d, "kernel A", "sm_80").load(), None);
        let opts = vec!["--gpu-architecture=sm_90".to_string()];
        let other_header = Entry::new(&d, "k.cu", "kernel A", &[("h.cuh", "// g")], &opts, (13, 0));
        assert_eq!(other_header.load(), None);
        let other_nvrtc = Entry::new(&d, "k.cu", "kernel A", &[("h.cuh", "// h")], &opts, (13, 1));
        assert_eq!(other_nvrtc.load(), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_or_foreign_entry_is_a_miss() {
        let d = folder("damaged");
        let e = entry(&d, "kernel A", "sm_90");
        e.store("// ptx A\n");
        let good = std::fs::read_to_string(&e.path).unwrap();
        // cut short (in the key, in the PTX), another key under the same file name, not an entry
        std::fs::write(&e.path, &good[..good.len() / 2]).unwrap();
        assert_eq!(e.load(), None);
        std::fs::write(&e.path, &good[..good.len() - 2]).unwrap();
        assert_eq!(e.load(), None);
        std::fs::write(&e.path, good.replace("kernel A", "kernel Z")).unwrap();
        assert_eq!(e.load(), None);
        std::fs::write(&e.path, "hello").unwrap();
        assert_eq!(e.load(), None);
        // a store replaces it
        e.store("// ptx A\n");
        assert_eq!(e.load().as_deref(), Some("// ptx A\n"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
