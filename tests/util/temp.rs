//! One temporary directory type for every test file, removed on drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh directory under the system temp dir, unique to this process and
/// call, removed with its contents when dropped (also when the test panics,
/// since the value is dropped while unwinding).
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `panda-feed-<tag>-<pid>-<n>` in the system temp dir.
    pub(crate) fn new(tag: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Relaxed: the counter only has to hand out distinct numbers.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "panda-feed-{tag}-{}-{n}-{}",
            std::process::id(),
            panda_feed::clock::now_ns()
        ));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        Self { path }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// `name` inside the directory (not created).
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub(crate) fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(name);
        std::fs::write(&p, contents).expect("write a temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory under /tmp is not worth a panic
        // while another panic may be unwinding.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
