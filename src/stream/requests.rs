//! The `stream` thread's answers to client requests (README, "Downstream
//! stream"): subscribe (Redis look-up of windows not in memory, then the
//! paced replay and its acknowledgement), unsubscribe, and error frames.

use super::client::{self, Gone};
use super::stats::{add, set};
use super::{Server, protocol, redis_replay};

impl Server {
    /// Answers one request of client `slot`.
    pub(super) fn request(&mut self, slot: usize, text: &str) -> Result<(), Gone> {
        let req = match protocol::parse(text) {
            Ok(r) => r,
            Err(e) => return self.refuse(slot, &e),
        };
        match req {
            protocol::Request::Subscribe(mut tokens) => {
                // Each token once, in the order asked.
                let mut seen = std::collections::HashSet::with_capacity(tokens.len());
                tokens.retain(|t| seen.insert(*t));
                self.subscribe(slot, &tokens)
            }
            protocol::Request::Unsubscribe(tokens) => {
                let Some(c) = self.clients[slot].as_mut() else {
                    return Ok(());
                };
                for t in &tokens {
                    c.tokens.remove(t);
                    // A replay not sent yet is not sent (nor subscribed).
                    if c.queued.remove(t) {
                        c.replay.retain(|r| *r != client::Replay::Token(*t));
                    }
                }
                c.send(protocol::unsubscribed_frame(&tokens).into())
            }
            protocol::Request::ModeBars => Ok(()),
        }
    }

    fn refuse(&mut self, slot: usize, message: &str) -> Result<(), Gone> {
        add(&self.stats.bad_requests, 1);
        match self.clients[slot].as_mut() {
            Some(c) => c.send(protocol::error_frame(message).into()),
            None => Ok(()),
        }
    }

    /// Queues the replay of `tokens` for client `slot` (asking Redis, in
    /// pipelines of 256, for those with no bar in memory), then its
    /// acknowledgement,
    /// and sends as much as the socket takes ([`Self::pump`]).
    fn subscribe(&mut self, slot: usize, tokens: &[u32]) -> Result<(), Gone> {
        let Some(c) = self.clients[slot].as_ref() else {
            return Ok(());
        };
        let held = c.tokens.union(&c.queued).count();
        let new = tokens
            .iter()
            .filter(|t| !c.tokens.contains(t) && !c.queued.contains(t))
            .count();
        let limit = self.cfg.max_instruments;
        if held + new > limit {
            return self.refuse(
                slot,
                &format!(
                    "subscribing {new} more tokens to the {held} held would pass {limit} \
                     (ops.stream_max_instruments); nothing was subscribed"
                ),
            );
        }
        if c.replay.len() > 2 * limit + 64 {
            return self.refuse(
                slot,
                "too many subscribes waiting for their replay; read what was sent first",
            );
        }
        self.restore_from_redis(tokens);
        let Some(c) = self.clients[slot].as_mut() else {
            return Ok(());
        };
        for &t in tokens {
            if c.queued.insert(t) {
                c.replay.push_back(client::Replay::Token(t));
            }
        }
        c.replay.push_back(client::Replay::Ack(tokens.to_vec()));
        self.pump(slot)
    }

    /// Sends client `slot`'s queued replay, one token's window at a time,
    /// while the socket takes everything written so far: a large replay
    /// follows the client's reading instead of filling its buffer (at most
    /// one window, N × 512 bytes, beyond what the socket holds). A token is
    /// subscribed (gets live bars) from its window on, so no bar is missed
    /// or sent twice.
    pub(super) fn pump(&mut self, slot: usize) -> Result<(), Gone> {
        let Self {
            clients,
            windows,
            stats,
            ..
        } = self;
        let Some(c) = clients[slot].as_mut() else {
            return Ok(());
        };
        while !c.replay.is_empty() {
            if !c.try_flush()? {
                // The writable event continues it.
                return Ok(());
            }
            match c.replay.pop_front() {
                Some(client::Replay::Token(t)) => {
                    c.queued.remove(&t);
                    c.tokens.insert(t);
                    let (frames, from_redis) = windows.replay(t);
                    for f in frames {
                        c.send(f)?;
                        c.replayed += 1;
                        add(&stats.bars_replayed, 1);
                    }
                    add(&stats.bars_replayed_from_redis, from_redis as u64);
                }
                Some(client::Replay::Ack(tokens)) => {
                    let n = std::mem::take(&mut c.replayed);
                    c.send(protocol::subscribed_frame(&tokens, n).into())?;
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Reads the Redis lists of the `tokens` that have no bar in memory and
    /// were not looked up yet (a feed restart). Redis down: nothing is
    /// restored (counted); the client is served from memory.
    fn restore_from_redis(&mut self, tokens: &[u32]) {
        let Some(redis) = self.redis.as_mut() else {
            return;
        };
        let mut want: Vec<u32> = tokens
            .iter()
            .copied()
            .filter(|t| self.windows.needs_lookup(*t))
            .collect();
        want.sort_unstable();
        want.dedup();
        if want.is_empty() {
            return;
        }
        for chunk in want.chunks(redis_replay::READ_CHUNK) {
            // Redis down: the rest are not asked either (served from memory).
            let Some(lists) = redis.read(chunk, &self.stats) else {
                break;
            };
            for (t, bars) in chunk.iter().zip(lists) {
                if !self.windows.restore(*t, bars) {
                    add(&self.stats.instruments_over_limit, 1);
                }
            }
        }
        set(&self.stats.instruments, self.windows.len() as u64);
    }
}
