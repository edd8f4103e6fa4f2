//! When the bytes of a read arrived: the kernel's receive timestamps of a TCP socket.
//!
//! A request, or an answer, can wait in the kernel's receive queue before its reader gets to
//! it, and a clock read after the read does not see that wait. With `SO_TIMESTAMPNS` each
//! read (`recvmsg`) also says when the last of the bytes it returns arrived; every message
//! that read completes arrived then or earlier, so the read's time less that stamp is a lower
//! bound of how long each waited to be read. The switch exports it per request frame
//! (`authswitch_receive_wait_duration_seconds`); loadtest reports it per answer
//! (`read_lag_us`), to tell its own lag from the target's latency.

use std::io;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use tokio::net::tcp::OwnedReadHalf;
#[cfg(target_os = "linux")]
use tokio::net::TcpStream;

/// Room made for a read into a full buffer.
#[cfg(target_os = "linux")]
const SPARE_MIN: usize = 4096;

/// A read lag beyond this is not believed: the wall clock was stepped.
const LAG_MAX: Duration = Duration::from_secs(10);

/// Asks the kernel to timestamp what the socket receives. Set on a listener, the sockets it
/// accepts inherit it, and the kernel's switch to stamping (deferred a moment after the first
/// socket asks) is on before any of them reads.
#[cfg(target_os = "linux")]
pub fn enable<S: std::os::fd::AsRawFd>(socket: &S) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid descriptor (the socket is alive), and an option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn enable<S>(_socket: &S) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "receive timestamps need Linux",
    ))
}

/// Reads what the socket has into `buf`'s spare capacity, waiting until it has something: the
/// byte count (0 at end of stream) and, if the kernel stamped them, when the last of those
/// bytes arrived. Like tokio's `read_buf`, a read that fills less than the room it had
/// drained the socket and clears its readiness, so the next `read` waits for the reactor
/// rather than trying a `recvmsg` that fails.
pub async fn read(
    half: &mut OwnedReadHalf,
    buf: &mut BytesMut,
) -> io::Result<(usize, Option<SystemTime>)> {
    loop {
        half.readable().await?;
        match try_read_as(half, buf, true) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            read => return read,
        }
    }
}

/// One read without waiting, as `read`; `WouldBlock` when the socket has nothing. Like tokio's
/// `try_read_buf`, it keeps the socket's readiness after a short read, so a call right after
/// tries the socket again: `server::connection` counts on that to tell a reader that keeps up
/// (it finds the socket empty) from one that does not (`server::backlog`).
pub fn try_read(
    half: &OwnedReadHalf,
    buf: &mut BytesMut,
) -> io::Result<(usize, Option<SystemTime>)> {
    try_read_as(half, buf, false)
}

/// One read without waiting. With `clear_on_short`, a read that fills less than the room it
/// had lets tokio clear the socket's readiness (by answering `WouldBlock` to `try_io`, the
/// bytes kept aside), as tokio's `poll_read` does; tokio clears it only if no readiness came
/// in since it was read, before the `recvmsg`, so nothing that arrives later is missed.
#[cfg(target_os = "linux")]
fn try_read_as(
    half: &OwnedReadHalf,
    buf: &mut BytesMut,
    clear_on_short: bool,
) -> io::Result<(usize, Option<SystemTime>)> {
    use std::os::fd::AsRawFd;
    let stream: &TcpStream = half.as_ref();
    let fd = stream.as_raw_fd();
    let mut got = None;
    let tried = stream.try_io(tokio::io::Interest::READABLE, || {
        let (n, stamp, room) = recv(fd, buf)?;
        got = Some((n, stamp));
        if clear_on_short && n > 0 && n < room {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    match got {
        Some(read) => Ok(read),
        None => tried.map(|()| (0, None)),
    }
}

#[cfg(not(target_os = "linux"))]
fn try_read_as(
    half: &OwnedReadHalf,
    buf: &mut BytesMut,
    _clear_on_short: bool,
) -> io::Result<(usize, Option<SystemTime>)> {
    half.try_read_buf(buf).map(|n| (n, None))
}

/// One `recvmsg` into the spare capacity of `buf`: the bytes read, their stamp, and the room
/// there was.
#[cfg(target_os = "linux")]
fn recv(
    fd: std::os::fd::RawFd,
    buf: &mut BytesMut,
) -> io::Result<(usize, Option<SystemTime>, usize)> {
    // A read into no room would return 0, which means end of stream: make some, as
    // `BufMut::chunk_mut` does for the plain reads.
    if buf.capacity() == buf.len() {
        buf.reserve(SPARE_MIN);
    }
    let spare = buf.spare_capacity_mut();
    let room = spare.len();
    let mut iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    // Room for a `timespec` message and then some; u64s for the header's alignment.
    let mut control = [0u64; 16];
    // SAFETY: `msghdr` is plain data, for which all zeros is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: the one buffer is `buf`'s spare capacity, writable for `iov_len` bytes, and the
    // control buffer lives as long as the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel wrote (initialized) the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    let mut stamp = None;
    // SAFETY: the headers walked are those the kernel wrote into `control`, within the
    // `msg_controllen` it set; CMSG_* stay inside it and return null past the end.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            let whole = libc::CMSG_LEN(std::mem::size_of::<libc::timespec>() as u32) as usize;
            if (*header).cmsg_level == libc::SOL_SOCKET
                && (*header).cmsg_type == libc::SCM_TIMESTAMPNS
                && (*header).cmsg_len as usize >= whole
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(header).cast());
                let secs = u64::try_from(ts.tv_sec).ok();
                let nanos = u32::try_from(ts.tv_nsec)
                    .ok()
                    .filter(|&n| n < 1_000_000_000);
                stamp = secs.zip(nanos).and_then(|(secs, nanos)| {
                    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
                });
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    Ok((n, stamp, room))
}

/// How long before `wall_now` bytes stamped `stamp` arrived: `None` without a stamp, or with
/// one after `wall_now` or further back than `LAG_MAX` (the wall clock was stepped).
pub fn read_lag(wall_now: SystemTime, stamp: Option<SystemTime>) -> Option<Duration> {
    let lag = wall_now.duration_since(stamp?).ok()?;
    (lag <= LAG_MAX).then_some(lag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_lag_is_the_stamps_age_within_bounds() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ms = Duration::from_millis;
        assert_eq!(read_lag(wall, None), None);
        assert_eq!(read_lag(wall, Some(wall - ms(3))), Some(ms(3)));
        assert_eq!(read_lag(wall, Some(wall)), Some(Duration::ZERO));
        // A stamp after the wall clock's now, or further back than LAG_MAX: not believed.
        assert_eq!(read_lag(wall, Some(wall + ms(1))), None);
        assert_eq!(read_lag(wall, Some(wall - LAG_MAX - ms(1))), None);
        assert_eq!(read_lag(wall, Some(wall - LAG_MAX)), Some(LAG_MAX));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn reads_carry_the_kernels_arrival_stamp() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        enable(&client).unwrap();
        let (mut half, _write) = client.into_split();
        let mut buf = BytesMut::with_capacity(64);
        // The kernel turns receive stamping on a moment after the first socket asks for it
        // (a deferred static-key switch), so the first bytes may come unstamped: wait for a
        // stamped read, a bounded number of times.
        let mut stamped = false;
        for _ in 0..200 {
            server.write_all(b"x").await.unwrap();
            buf.clear();
            let (n, stamp) = read(&mut half, &mut buf).await.unwrap();
            assert_eq!(n, 1);
            if stamp.is_some() {
                stamped = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(stamped, "no read was stamped");
        let before = SystemTime::now();
        server.write_all(b"twelve bytes").await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        buf.clear();
        let (n, stamp) = read(&mut half, &mut buf).await.unwrap();
        let after = SystemTime::now();
        assert_eq!((n, &buf[..]), (12, &b"twelve bytes"[..]));
        let stamp = stamp.expect("stamping is on");
        // Stamped on arrival, before the 30 ms sleep ended and the read happened.
        assert!(
            stamp >= before && stamp <= after,
            "{stamp:?} not in {before:?}..{after:?}"
        );
        let lag = read_lag(after, Some(stamp)).expect("a lag within bounds");
        assert!(lag >= Duration::from_millis(25), "{lag:?}");
        // A buffer without room gets some: the bytes are read, not taken for the end.
        server.write_all(b"more").await.unwrap();
        let mut full = BytesMut::new();
        assert_eq!(read(&mut half, &mut full).await.unwrap().0, 4);
        assert_eq!(&full[..], b"more");
        // End of stream: zero bytes.
        drop(server);
        buf.clear();
        assert_eq!(read(&mut half, &mut buf).await.unwrap().0, 0);
    }
}
