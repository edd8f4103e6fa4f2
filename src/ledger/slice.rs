//! The scheduler slice of a shard thread (`ledger.shard_slice_us`).
//!
//! Linux's fair scheduler (EEVDF) lets a running thread finish its slice, about 3 ms by
//! default, before a thread it woke takes the core, unless the woken one asked for a shorter
//! slice. A shard thread sleeps in every fdatasync; on a core shared with a busy I/O thread
//! (an overload on `scripts/overload`'s one core) its wake-up waited behind that thread's slice,
//! and every answer of the batch with it. With a slice of 100 µs, probes of 20 s alternating
//! with the default (2026-12-07, `scripts/overload`'s placement): 97.8-98.8 % of the served
//! requests within 5 ms inside the switch against 97.3-98.5 % in seven pairs, fdatasync's
//! p99.9 at most 2.5 ms against 10 ms. But the shards then also cut into the I/O threads and
//! the load generator at full load: the closed loop on 2 shared cores gave 355 000-394 000/s
//! against 387 000-406 000/s (five runs each). So it is off unless asked for
//! (`ledger.shard_slice_us`). From Linux 6.12 a fair thread's `sched_runtime` is its slice
//! (clamped to 0.1-100 ms); earlier kernels take the call and ignore the value.

use std::io;
use std::time::Duration;

/// `struct sched_attr` of sched_setattr(2), at its first extended size (56 bytes).
#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Default, Debug)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

#[cfg(target_os = "linux")]
fn get_attr() -> io::Result<SchedAttr> {
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: sched_getattr on the calling thread (0) writes at most `size` bytes into
    // `attr`, which is a live sched_attr of that size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            size,
            0u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(attr)
}

/// Asks for a slice of `slice` for the calling thread if it runs under the fair scheduler
/// (SCHED_OTHER, the default), keeping its nice value; a thread under another policy is left
/// as it is.
pub fn set_fair_slice(slice: Duration) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let mut attr = get_attr()?;
        if attr.policy != libc::SCHED_OTHER as u32 {
            return Ok(());
        }
        attr.size = std::mem::size_of::<SchedAttr>() as u32;
        attr.flags = 0;
        attr.runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
        // SAFETY: sched_setattr on the calling thread (0) reads the sched_attr it is given,
        // of the size it declares, alive for the call.
        let rc =
            unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0u32) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = slice;
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The kernel's (major, minor), from uname.
    fn kernel() -> (u32, u32) {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release
            .trim()
            .split(['.', '-'])
            .map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    #[test]
    fn the_slice_is_set_and_the_nice_value_kept() {
        std::thread::spawn(|| {
            // SAFETY: plain syscalls on the calling thread.
            let tid = unsafe { libc::gettid() } as libc::id_t;
            assert_eq!(unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 3) }, 0);
            set_fair_slice(Duration::from_micros(250)).unwrap();
            let attr = get_attr().unwrap();
            assert_eq!(attr.policy, libc::SCHED_OTHER as u32);
            assert_eq!(attr.nice, 3);
            if kernel() >= (6, 12) {
                assert_eq!(attr.runtime, 250_000, "{attr:?}");
            }
        })
        .join()
        .unwrap();
    }
}
