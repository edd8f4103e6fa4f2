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

/// Page size the padded writes of a preallocated segment round up to.
pub const PAGE_BYTES: u64 = 4096;

/// A plain file.
pub struct RealFile {
    file: File,
    /// Each write is carried on with zeros to the end of its last page (see `open_padded`).
    pad_pages: bool,
    /// The padded copy of a write; keeps the capacity of the largest write (one chunk).
    scratch: Vec<u8>,
}

impl RealFile {
    /// Opens an existing segment for writing; never creates nor truncates (a missing tail
    /// segment is an error, not a silent fresh file at the wrong offset).
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Self::new(file, false))
    }

    /// Opens a preallocated segment, whose bytes past the log's end are zeros on disk and
    /// (written with O_DIRECT, see `wal::writer::prepare_spare`) not in the page cache. A
    /// buffered write that covers a page only in part makes the kernel read that page from
    /// disk first, on the shard thread; so every write is carried on with zeros to its page's
    /// end: it covers each page it starts whole, and the page the next write starts in is
    /// already cached. The padding only writes the zeros the file already has there.
    ///
    /// Precondition: every byte of the file past the end of each write is zero (a zero-filled
    /// spare, or a recovered tail whose bytes past the last record recovery found all zero);
    /// the padding overwrites them.
    pub fn open_padded(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Self::new(file, true))
    }

    /// Creates a new segment; fails if the file exists, so a segment is never overwritten.
    pub fn create_new(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Self::new(file, false))
    }

    fn new(file: File, pad_pages: bool) -> Self {
        Self {
            file,
            pad_pages,
            scratch: Vec::new(),
        }
    }
}

/// `end` rounded up to a whole page.
pub fn page_end(end: u64) -> u64 {
    end.div_ceil(PAGE_BYTES) * PAGE_BYTES
}

impl WalFile for RealFile {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let end = offset + buf.len() as u64;
        let padded = if self.pad_pages { page_end(end) } else { end };
        // write_all_at retries partial writes, which is what POSIX asks of callers; an error
        // part-way (e.g. ENOSPC) is returned as an error.
        if padded == end {
            self.file.write_all_at(buf, offset)?;
        } else {
            self.scratch.clear();
            self.scratch.extend_from_slice(buf);
            self.scratch.resize((padded - offset) as usize, 0);
            self.file.write_all_at(&self.scratch, offset)?;
        }
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
    /// Not a failure: every fdatasync takes `after` milliseconds longer (a slow disk, for the
    /// overload tests).
    SlowSync,
}

/// A plan to fail one kind of operation after `after` successful ones; the operation number
/// `after + 1` fails and so does every later one of any kind (a broken disk stays broken).
///
/// Text form, as given on the hidden config key: `write_fail_after=N`, `short_write_after=N`,
/// `enospc_after=N` or `fsync_fail_after=N`. Writes are counted over all segment writes of the
/// shard, syncs over all segment syncs (including the sync of a newly created segment).
/// `slow_sync_ms=N` fails nothing: every sync waits N ms first (`after` holds N).
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
        "unknown fault `{0}`; expected write_fail_after, short_write_after, enospc_after, \
         fsync_fail_after or slow_sync_ms"
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
            "slow_sync_ms" => FaultKind::SlowSync,
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
        if self.state.plan.kind == FaultKind::SlowSync {
            std::thread::sleep(std::time::Duration::from_millis(self.state.plan.after));
            return self.inner.sync_data();
        }
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

/// Opens a segment file, wrapped in the fault injector when a plan is active; `preallocated`
/// pads each write to its page's end (`RealFile::open_padded`).
pub fn open_segment_file(
    path: &Path,
    preallocated: bool,
    fault: Option<&Arc<FaultState>>,
) -> io::Result<Box<dyn WalFile>> {
    let real = if preallocated {
        RealFile::open_padded(path)?
    } else {
        RealFile::open(path)?
    };
    Ok(match fault {
        Some(state) => Box::new(FaultyFile::new(real, Arc::clone(state))),
        None => Box::new(real),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preallocated_segment_is_written_in_whole_pages_and_a_plain_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (plain, padded) = (dir.path().join("plain"), dir.path().join("padded"));
        for path in [&plain, &padded] {
            std::fs::write(path, vec![0xEEu8; 3 * PAGE_BYTES as usize]).unwrap();
        }
        let mut file = RealFile::open(&plain).unwrap();
        assert_eq!(file.write_at(b"abc", 4_090).unwrap(), 3);
        let bytes = std::fs::read(&plain).unwrap();
        assert_eq!(&bytes[4_090..4_093], b"abc");
        assert!(bytes[..4_090]
            .iter()
            .chain(&bytes[4_093..])
            .all(|&b| b == 0xEE));

        let mut file = RealFile::open_padded(&padded).unwrap();
        // Ends inside the second page: carried on with zeros to 8 192, the rest untouched.
        assert_eq!(file.write_at(b"0123456789", 4_090).unwrap(), 10);
        let bytes = std::fs::read(&padded).unwrap();
        assert_eq!(bytes.len(), 3 * PAGE_BYTES as usize);
        assert!(bytes[..4_090].iter().all(|&b| b == 0xEE));
        assert_eq!(&bytes[4_090..4_100], b"0123456789");
        assert!(bytes[4_100..8_192].iter().all(|&b| b == 0));
        assert!(bytes[8_192..].iter().all(|&b| b == 0xEE));
        // The next write continues at the records' end, over the padding; one that ends on a
        // page boundary gets none.
        assert_eq!(file.write_at(&[7u8; 4_092], 4_100).unwrap(), 4_092);
        let bytes = std::fs::read(&padded).unwrap();
        assert_eq!(&bytes[4_090..4_100], b"0123456789");
        assert!(bytes[4_100..8_192].iter().all(|&b| b == 7));
        assert!(bytes[8_192..].iter().all(|&b| b == 0xEE));
        // Past the file's end, padding extends it to the page.
        assert_eq!(file.write_at(b"z", 3 * PAGE_BYTES).unwrap(), 1);
        let bytes = std::fs::read(&padded).unwrap();
        assert_eq!(bytes.len(), 4 * PAGE_BYTES as usize);
        assert_eq!(bytes[3 * PAGE_BYTES as usize], b'z');
        assert!(bytes[3 * PAGE_BYTES as usize + 1..].iter().all(|&b| b == 0));
        assert_eq!(page_end(0), 0);
        assert_eq!(page_end(1), PAGE_BYTES);
        assert_eq!(page_end(PAGE_BYTES), PAGE_BYTES);
    }

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
    fn slow_sync_waits_and_fails_nothing() {
        let state = FaultState::new("slow_sync_ms=30".parse().unwrap());
        let mut f = FaultyFile::new(MemFile(Vec::new(), 0), Arc::clone(&state));
        for i in 0..3u64 {
            assert_eq!(f.write_at(b"ab", 2 * i).unwrap(), 2);
            let started = std::time::Instant::now();
            f.sync_data().unwrap();
            assert!(started.elapsed() >= std::time::Duration::from_millis(30));
        }
        assert!(!state.tripped());
        assert_eq!(f.inner.0, b"ababab");
        assert_eq!(f.inner.1, 3);
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
