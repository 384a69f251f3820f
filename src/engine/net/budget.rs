//! A connection's read budget per loop turn. Runs on the network thread,
//! inside one connection's read loop (`conn.rs`), which owns it for the
//! turn; plain integers, no allocation.

/// Most messages one connection reads in one loop turn.
const READ_BUDGET_MESSAGES: u32 = 512;
/// Most payload bytes one connection reads in one loop turn (the message
/// that crosses it is finished).
const READ_BUDGET_BYTES: usize = 256 * 1024;

/// One connection's share of a loop turn: with it, a flooding socket cannot
/// starve the others (each is served every turn) nor the stop flag (checked
/// every turn); what it leaves unread is read next turn without waiting
/// for readiness (README, "Fault drills": a flooding connection).
#[derive(Debug, Default)]
pub(super) struct ReadBudget {
    messages: u32,
    bytes: usize,
}

impl ReadBudget {
    pub(super) const fn charge(&mut self, len: usize) {
        self.messages += 1;
        self.bytes = self.bytes.saturating_add(len);
    }

    pub(super) const fn spent(&self) -> bool {
        self.messages >= READ_BUDGET_MESSAGES || self.bytes >= READ_BUDGET_BYTES
    }
}
