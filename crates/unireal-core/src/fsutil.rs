//! Writes that are never seen half-done, and one writer per directory.

use std::fs;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The temporary name used while `path` is being written: `.NAME.tmp` beside it.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Writes `bytes` to a temporary name beside `path`, syncs it and renames it over `path`:
/// readers see the old file or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path_for(path);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The lock file a writer holds in its directory.
pub const LOCK_NAME: &str = ".lock";

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds the lock; `holder` is what it wrote into the lock file.
    #[error("{dir}: another process is writing here ({holder})")]
    Held { dir: PathBuf, holder: String },
    #[error("{path}: cannot lock: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// An exclusive hold on a directory for one writer (a build, an import, a training run):
/// `DIR/.lock`, locked with the operating system's advisory file lock (`flock` on Linux), so a
/// second writer is refused while the first lives, and the lock of a killed process ends with
/// it and is taken over at once. The file names its holder (command, process id, host, start
/// time) for the refused writer's message. Released (and the file removed) when dropped; a
/// killed holder leaves the file, unlocked (on NFS the lock of a dead client lasts until its
/// lease expires). On a filesystem without file locks it warns and holds nothing.
#[derive(Debug)]
pub struct DirLock {
    /// The lock file; None on a filesystem without file locks (a warning was printed).
    held: Option<(PathBuf, fs::File)>,
}

impl DirLock {
    /// Locks `dir` (which must exist) for `what` (e.g. `unireal-data build`), or says who holds it.
    pub fn acquire(dir: &Path, what: &str) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_NAME);
        let io = |source| LockError::Io { path: path.clone(), source };
        // A holder that finishes removes the file: a lock taken on the removed file is no
        // lock, so the file must still be the one at `path` once locked, else try again.
        for _ in 0..16 {
            let mut file =
                fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    return Err(LockError::Held {
                        dir: dir.to_path_buf(),
                        holder: match holder.is_empty() {
                            true => "a process that has not named itself yet".into(),
                            false => holder.into(),
                        },
                    });
                }
                Err(fs::TryLockError::Error(e)) if locks_unsupported(&e) => {
                    eprintln!(
                        "warning: {}: this filesystem has no file locks ({e}); writing without one, so make sure no other process writes here",
                        path.display()
                    );
                    return Ok(DirLock { held: None });
                }
                Err(fs::TryLockError::Error(e)) => return Err(io(e)),
            }
            if !same_file(&file, &path) {
                continue;
            }
            let host =
                fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
            let since =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let host = if host.is_empty() { "this host".to_string() } else { host };
            let me = format!("{what}, pid {} on {host}, since {}\n", std::process::id(), utc(since));
            file.set_len(0).and_then(|_| file.rewind()).and_then(|_| file.write_all(me.as_bytes())).map_err(io)?;
            return Ok(DirLock { held: Some((path, file)) });
        }
        Err(io(io::Error::other("the lock file kept being replaced while it was being locked")))
    }
}

/// `2026-12-04 15:01:40 UTC` for seconds since the Unix epoch (the civil calendar from day
/// numbers, after Howard Hinnant's `civil_from_days`).
fn utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Lock errors that mean the filesystem cannot lock at all (some FUSE and parallel
/// filesystems): ENOLCK, ENOSYS, EOPNOTSUPP.
fn locks_unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported || matches!(e.raw_os_error(), Some(37 | 38 | 95))
}

#[cfg(unix)]
fn same_file(file: &fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &fs::File, path: &Path) -> bool {
    path.exists()
}

impl Drop for DirLock {
    /// Removes the file while still holding the lock; the lock ends when the file closes.
    fn drop(&mut self) {
        if let Some((path, _)) = &self.held {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_396_300), "2026-12-04 14:58:20 UTC");
    }

    #[test]
    fn a_second_writer_is_refused_by_name_and_a_stale_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "unireal-data build").unwrap();
        let err = DirLock::acquire(dir.path(), "unireal-data import").unwrap_err().to_string();
        assert!(err.contains("another process is writing here"), "{err}");
        assert!(err.contains(&format!("unireal-data build, pid {}", std::process::id())), "{err}");
        drop(first);
        assert!(!dir.path().join(LOCK_NAME).exists(), "a released lock leaves no file");
        // A killed holder's file stays, unlocked, naming it: taken over at once.
        fs::write(dir.path().join(LOCK_NAME), "unireal-data build, pid 1 on elsewhere\n").unwrap();
        let again = DirLock::acquire(dir.path(), "unireal-train").unwrap();
        let text = fs::read_to_string(dir.path().join(LOCK_NAME)).unwrap();
        assert!(text.starts_with("unireal-train, pid") && !text.contains("build"), "{text}");
        drop(again);
    }
}
