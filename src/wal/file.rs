//! File I/O of WAL segments behind a small trait, the real implementation, and a
//! fault-injecting wrapper used by tests and (through a hidden config key) the server.
//!
//! The fault wrapper lives in the normal build on purpose: the end-to-end storage-fault tests
//! start the real binary with a [`FaultPlan`] and check it answers 96 instead of approving.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use thiserror::Error;

/// Linux errno for "no space left on device".
pub const ENOSPC: i32 = 28;
/// Linux errno for "input/output error".
pub const EIO: i32 = 5;

/// What the WAL writer needs from a segment file. Data written by `write_at` is durable only
/// after `sync_data` returned Ok.
pub trait WalFile: Send {
    /// Writes `buf` at `offset`; returns how many bytes reached the file. Anything less than
    /// `buf.len()` is a short write, which the writer treats as a failure.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// Makes the written data durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&mut self, len_bytes: u64) -> io::Result<()>;
}

/// A plain file.
pub struct RealFile {
    file: File,
}

impl RealFile {
    /// Opens an existing segment for writing; never creates nor truncates (a missing tail
    /// segment is an error, not a silent fresh file at the wrong offset).
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Self { file })
    }

    /// Creates a new segment; fails if the file exists, so a segment is never overwritten.
    pub fn create_new(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Self { file })
    }
}

impl WalFile for RealFile {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        // write_all_at retries partial writes, which is what POSIX asks of callers; an error
        // part-way (e.g. ENOSPC) is returned as an error.
        self.file.write_all_at(buf, offset)?;
        Ok(buf.len())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn set_len(&mut self, len_bytes: u64) -> io::Result<()> {
        self.file.set_len(len_bytes)
    }
}

/// Fsyncs a directory so that file creations, renames and deletions in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Which operation a fault plan breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The write fails with EIO and writes nothing.
    WriteFail,
    /// The write puts the first half of the buffer in the file and reports that count.
    ShortWrite,
    /// The write fails with ENOSPC and writes nothing.
    Enospc,
    /// fdatasync fails with EIO (the data may be in the page cache but is not durable).
    FsyncFail,
}

/// A plan to fail one kind of operation after `after` successful ones; the operation number
/// `after + 1` fails and so does every later one of any kind (a broken disk stays broken).
///
/// Text form, as given on the hidden config key: `write_fail_after=N`, `short_write_after=N`,
/// `enospc_after=N` or `fsync_fail_after=N`. Writes are counted over all segment writes of the
/// shard, syncs over all segment syncs (including the sync of a newly created segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultPlan {
    pub kind: FaultKind,
    pub after: u64,
}

/// Why a fault plan string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FaultPlanError {
    #[error("fault plan must look like `name=N`")]
    MissingEquals,
    #[error(
        "unknown fault `{0}`; expected write_fail_after, short_write_after, enospc_after \
         or fsync_fail_after"
    )]
    UnknownFault(String),
    #[error("fault count `{0}` is not a non-negative integer")]
    BadCount(String),
}

impl FromStr for FaultPlan {
    type Err = FaultPlanError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, count) = text
            .trim()
            .split_once('=')
            .ok_or(FaultPlanError::MissingEquals)?;
        let kind = match name.trim() {
            "write_fail_after" => FaultKind::WriteFail,
            "short_write_after" => FaultKind::ShortWrite,
            "enospc_after" => FaultKind::Enospc,
            "fsync_fail_after" => FaultKind::FsyncFail,
            other => return Err(FaultPlanError::UnknownFault(other.to_string())),
        };
        let after = count
            .trim()
            .parse::<u64>()
            .map_err(|_| FaultPlanError::BadCount(count.to_string()))?;
        Ok(FaultPlan { kind, after })
    }
}

/// Counters of a fault plan, shared by every segment file of one writer so that rotation
/// does not reset them.
#[derive(Debug)]
pub struct FaultState {
    plan: FaultPlan,
    writes: AtomicU64,
    syncs: AtomicU64,
    tripped: AtomicBool,
}

impl FaultState {
    pub fn new(plan: FaultPlan) -> Arc<Self> {
        Arc::new(Self {
            plan,
            writes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            tripped: AtomicBool::new(false),
        })
    }

    /// True once the planned fault has fired.
    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::Acquire)
    }

    /// Counts one operation; returns true if it must fail with the planned fault.
    fn count(&self, counter: &AtomicU64, counts_for: &[FaultKind]) -> bool {
        let done = counter.fetch_add(1, Ordering::AcqRel);
        if counts_for.contains(&self.plan.kind) && done >= self.plan.after {
            self.tripped.store(true, Ordering::Release);
            return true;
        }
        false
    }
}

/// Wraps a [`WalFile`] and fails operations as its [`FaultPlan`] says.
pub struct FaultyFile<F: WalFile> {
    inner: F,
    state: Arc<FaultState>,
}

impl<F: WalFile> FaultyFile<F> {
    pub fn new(inner: F, state: Arc<FaultState>) -> Self {
        Self { inner, state }
    }
}

impl<F: WalFile> WalFile for FaultyFile<F> {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let write_kinds = [
            FaultKind::WriteFail,
            FaultKind::ShortWrite,
            FaultKind::Enospc,
        ];
        let already = self.state.tripped();
        if !self.state.count(&self.state.writes, &write_kinds) && !already {
            return self.inner.write_at(buf, offset);
        }
        match self.state.plan.kind {
            FaultKind::ShortWrite if !already => self.inner.write_at(&buf[..buf.len() / 2], offset),
            FaultKind::Enospc => Err(io::Error::from_raw_os_error(ENOSPC)),
            _ => Err(io::Error::from_raw_os_error(EIO)),
        }
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let already = self.state.tripped();
        if self.state.count(&self.state.syncs, &[FaultKind::FsyncFail]) || already {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.inner.sync_data()
    }

    fn set_len(&mut self, len_bytes: u64) -> io::Result<()> {
        // Not faulted: the writer uses it to cut unacknowledged bytes after a failure, and
        // tests want to see that best effort succeed.
        self.inner.set_len(len_bytes)
    }
}

/// Opens a segment file, wrapped in the fault injector when a plan is active.
pub fn open_segment_file(
    path: &Path,
    fault: Option<&Arc<FaultState>>,
) -> io::Result<Box<dyn WalFile>> {
    let real = RealFile::open(path)?;
    Ok(match fault {
        Some(state) => Box::new(FaultyFile::new(real, Arc::clone(state))),
        None => Box::new(real),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_plan() {
        assert_eq!(
            "fsync_fail_after=3".parse(),
            Ok(FaultPlan {
                kind: FaultKind::FsyncFail,
                after: 3
            })
        );
        assert_eq!(
            "write_fail_after=2".parse(),
            Ok(FaultPlan {
                kind: FaultKind::WriteFail,
                after: 2
            })
        );
        assert_eq!(
            " short_write_after = 1 ".parse(),
            Ok(FaultPlan {
                kind: FaultKind::ShortWrite,
                after: 1
            })
        );
        assert_eq!(
            "enospc_after=4".parse(),
            Ok(FaultPlan {
                kind: FaultKind::Enospc,
                after: 4
            })
        );
        assert_eq!(
            "enospc".parse::<FaultPlan>(),
            Err(FaultPlanError::MissingEquals)
        );
        assert_eq!(
            "disk_on_fire=1".parse::<FaultPlan>(),
            Err(FaultPlanError::UnknownFault("disk_on_fire".into()))
        );
        assert_eq!(
            "enospc_after=-1".parse::<FaultPlan>(),
            Err(FaultPlanError::BadCount("-1".into()))
        );
    }

    /// In-memory file to observe what the wrapper passes through.
    struct MemFile(Vec<u8>, u32);
    impl WalFile for MemFile {
        fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
            let end = offset as usize + buf.len();
            if self.0.len() < end {
                self.0.resize(end, 0);
            }
            self.0[offset as usize..end].copy_from_slice(buf);
            Ok(buf.len())
        }
        fn sync_data(&mut self) -> io::Result<()> {
            self.1 += 1;
            Ok(())
        }
        fn set_len(&mut self, len_bytes: u64) -> io::Result<()> {
            self.0.resize(len_bytes as usize, 0);
            Ok(())
        }
    }

    #[test]
    fn short_write_writes_half_then_everything_fails() {
        let state = FaultState::new("short_write_after=1".parse().unwrap());
        let mut f = FaultyFile::new(MemFile(Vec::new(), 0), Arc::clone(&state));
        assert_eq!(f.write_at(b"abcd", 0).unwrap(), 4);
        assert!(!state.tripped());
        assert_eq!(f.write_at(b"efgh", 4).unwrap(), 2);
        assert!(state.tripped());
        assert_eq!(f.inner.0, b"abcdef");
        assert_eq!(f.write_at(b"ij", 6).unwrap_err().raw_os_error(), Some(EIO));
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(EIO));
        assert_eq!(f.inner.1, 0);
    }

    #[test]
    fn fsync_fail_counts_syncs_only() {
        let state = FaultState::new("fsync_fail_after=2".parse().unwrap());
        let mut f = FaultyFile::new(MemFile(Vec::new(), 0), state);
        for i in 0..5u64 {
            assert_eq!(f.write_at(b"x", i).unwrap(), 1);
        }
        f.sync_data().unwrap();
        f.sync_data().unwrap();
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(EIO));
        assert_eq!(f.write_at(b"y", 5).unwrap_err().raw_os_error(), Some(EIO));
        assert_eq!(f.inner.1, 2);
    }

    #[test]
    fn enospc_and_write_fail_errnos() {
        let state = FaultState::new("enospc_after=0".parse().unwrap());
        let mut f = FaultyFile::new(MemFile(Vec::new(), 0), state);
        assert_eq!(
            f.write_at(b"x", 0).unwrap_err().raw_os_error(),
            Some(ENOSPC)
        );
        assert!(f.inner.0.is_empty());
        let state = FaultState::new("write_fail_after=1".parse().unwrap());
        let mut f = FaultyFile::new(MemFile(Vec::new(), 0), state);
        f.write_at(b"x", 0).unwrap();
        assert_eq!(f.write_at(b"y", 1).unwrap_err().raw_os_error(), Some(EIO));
        assert_eq!(f.inner.0, b"x");
    }
}
