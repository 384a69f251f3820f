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
//! connect deadline (`zerodha.connect_timeout_ms`). At most one lookup is
//! outstanding per connection: a new attempt while one still runs (it hung
//! past the deadline) waits for that lookup's answer instead of queueing
//! another, so a hung resolver costs one thread and one request, however
//! long it hangs.
//! Allocation: at start-up and per lookup (connection set-up), never per
//! loop turn; an idle `try_recv` on an empty channel allocates nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::Duration;

use mio::Waker;

use super::ws;

/// A lookup's answer: the address, or why not.
type Reply = Result<SocketAddr, String>;

/// One connection's lookups, as the network thread sees them.
pub(super) struct Resolver {
    requests: Sender<String>,
    replies: Receiver<Reply>,
    /// A lookup was asked for and its answer has not been taken yet.
    outstanding: bool,
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
        let (requests, rx) = mpsc::channel::<String>();
        let (tx, replies) = mpsc::channel::<Reply>();
        std::thread::Builder::new()
            .name(format!("network-dns-{index}"))
            .spawn(move || {
                // Ends when the network thread drops its sender.
                while let Ok(url) = rx.recv() {
                    let result = match slow {
                        Some(d) => {
                            std::thread::sleep(d);
                            Err("test hook: the resolver hung and failed".to_owned())
                        }
                        None => ws::resolve(&url),
                    };
                    if tx.send(result).is_err() {
                        break;
                    }
                    // A failed wake only delays the reply to the next poll
                    // timeout.
                    let _ = waker.wake();
                }
            })?;
        Ok(Self {
            requests,
            replies,
            outstanding: false,
        })
    }

    /// Asks for `url`'s address (never blocks); when a lookup is still
    /// outstanding, its answer serves this request too.
    ///
    /// # Errors
    /// The helper thread is gone (it panicked).
    pub(super) fn request(&mut self, url: &str) -> Result<(), String> {
        if self.outstanding {
            return Ok(());
        }
        self.requests
            .send(url.to_owned())
            .map_err(|_| "the resolver thread is gone".to_owned())?;
        self.outstanding = true;
        Ok(())
    }

    /// The answer, if it has arrived (never blocks).
    pub(super) fn try_answer(&mut self) -> Option<Reply> {
        match self.replies.try_recv() {
            Ok(r) => {
                self.outstanding = false;
                Some(r)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.outstanding = false;
                Some(Err("the resolver thread is gone".to_owned()))
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

    fn answer(r: &mut Resolver) -> Reply {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(a) = r.try_answer() {
                return a;
            }
            assert!(Instant::now() < deadline, "no answer");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn one_lookup_at_a_time_serves_the_requests_made_meanwhile() {
        let (_poll, w) = waker();
        let mut r = Resolver::spawn(0, w, None).unwrap();
        r.request("ws://127.0.0.1:9/").unwrap();
        r.request("ws://127.0.0.1:10/").unwrap();
        assert_eq!(answer(&mut r).unwrap().port(), 9);
        r.request("ws://127.0.0.1:10/").unwrap();
        assert_eq!(answer(&mut r).unwrap().port(), 10);
        assert!(r.try_answer().is_none());
    }

    #[test]
    fn a_hung_lookup_does_not_block_the_caller() {
        let (_poll, w) = waker();
        let mut r = Resolver::spawn(0, w, Some(Duration::from_millis(300))).unwrap();
        let t0 = Instant::now();
        r.request("ws://127.0.0.1:9/").unwrap();
        assert!(r.try_answer().is_none());
        assert!(t0.elapsed() < Duration::from_millis(100));
        assert!(answer(&mut r).unwrap_err().contains("hung"));
    }
}
