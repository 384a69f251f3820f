//! Name resolution off the network thread: one small helper thread per
//! connection (`network-dns-i`) does the blocking `getaddrinfo` and hands the
//! address back through a channel the network thread polls.
//!
//! The network thread owns the [`Resolver`] of each connection (the request
//! sender and the reply receiver); the helper thread owns nothing but its
//! ends of the two channels and exits when the sender is dropped (after the
//! lookup in progress, if any, returns: a hung lookup is never joined). While
//! a lookup runs the connection waits in `resolving`; the network thread
//! keeps serving every other connection, and gives up on the lookup at the
//! connect deadline (`zerodha.connect_timeout_ms`). Each request carries its
//! attempt number, so a late reply to an abandoned attempt is ignored.
//! Allocation: at start-up and per lookup (connection set-up), never per
//! loop turn; an idle `try_recv` on an empty channel allocates nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::Duration;

use mio::Waker;

use super::ws;

/// A lookup's answer: the attempt it belongs to, and the address or why not.
type Reply = (u64, Result<SocketAddr, String>);

/// One connection's lookups, as the network thread sees them.
pub(super) struct Resolver {
    requests: Sender<(u64, String)>,
    replies: Receiver<Reply>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

/// Test hook (feature `test-hooks`): every lookup sleeps this long and then
/// fails, standing in for a resolver that hangs.
pub(super) type SlowHook = Option<Duration>;

impl Resolver {
    /// Spawns the helper thread of connection `index`; it wakes the
    /// network thread's poll through `waker` after each lookup.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub(super) fn spawn(index: u8, waker: Arc<Waker>, slow: SlowHook) -> std::io::Result<Self> {
        let (requests, rx) = mpsc::channel::<(u64, String)>();
        let (tx, replies) = mpsc::channel::<Reply>();
        std::thread::Builder::new()
            .name(format!("network-dns-{index}"))
            .spawn(move || {
                // Ends when the network thread drops its sender.
                while let Ok((attempt, url)) = rx.recv() {
                    let result = match slow {
                        Some(d) => {
                            std::thread::sleep(d);
                            Err("test hook: the resolver hung and failed".to_owned())
                        }
                        None => ws::resolve(&url),
                    };
                    if tx.send((attempt, result)).is_err() {
                        break;
                    }
                    // A failed wake only delays the reply to the next poll
                    // timeout.
                    let _ = waker.wake();
                }
            })?;
        Ok(Self { requests, replies })
    }

    /// Asks for `url`'s address for `attempt` (never blocks).
    ///
    /// # Errors
    /// The helper thread is gone (it panicked).
    pub(super) fn request(&self, attempt: u64, url: &str) -> Result<(), String> {
        self.requests
            .send((attempt, url.to_owned()))
            .map_err(|_| "the resolver thread is gone".to_owned())
    }

    /// The answer for `attempt`, if it has arrived (never blocks; answers
    /// to earlier attempts are skipped).
    pub(super) fn try_answer(&self, attempt: u64) -> Option<Result<SocketAddr, String>> {
        loop {
            match self.replies.try_recv() {
                Ok((a, r)) if a == attempt => return Some(r),
                Ok(_) => {}
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => {
                    return Some(Err("the resolver thread is gone".to_owned()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn waker() -> (mio::Poll, Arc<Waker>) {
        let poll = mio::Poll::new().unwrap();
        let w = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        (poll, w)
    }

    #[test]
    fn answers_arrive_for_their_attempt_and_stale_ones_are_skipped() {
        let (_poll, w) = waker();
        let r = Resolver::spawn(0, w, None).unwrap();
        r.request(1, "ws://127.0.0.1:9/").unwrap();
        r.request(2, "ws://127.0.0.1:10/").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = None;
        while got.is_none() && Instant::now() < deadline {
            got = r.try_answer(2);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got.unwrap().unwrap().port(), 10);
        assert!(r.try_answer(2).is_none());
    }

    #[test]
    fn a_hung_lookup_does_not_block_the_caller() {
        let (_poll, w) = waker();
        let r = Resolver::spawn(0, w, Some(Duration::from_millis(300))).unwrap();
        let t0 = Instant::now();
        r.request(1, "ws://127.0.0.1:9/").unwrap();
        assert!(r.try_answer(1).is_none());
        assert!(t0.elapsed() < Duration::from_millis(100));
    }
}
