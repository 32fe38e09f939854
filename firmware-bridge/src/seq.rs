//! Counting lost frames from the u16 sequence numbers in [`crate::Header`].
//!
//! For: link-health statistics on either end. Not for: reordering or retransmission (a serial link neither
//! reorders nor retransmits; a frame that is late is a frame that is lost).

/// Tracks one direction's sequence numbers. A forward jump of `k` counts `k` dropped frames (wrapping at
/// 65536, so more than 32767 frames lost in a row are indistinguishable from a restart); a backward jump
/// (the peer restarted, or a duplicate) resynchronises and is counted in [`SeqTracker::resyncs`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqTracker {
    expected: Option<u16>,
    received: u64,
    dropped: u64,
    resyncs: u64,
}

impl SeqTracker {
    pub const fn new() -> Self {
        SeqTracker { expected: None, received: 0, dropped: 0, resyncs: 0 }
    }

    /// Records a received sequence number and returns how many frames were lost just before it.
    pub fn observe(&mut self, seq: u16) -> u16 {
        self.received += 1;
        let gap = match self.expected {
            None => 0,
            Some(expected) => {
                let gap = seq.wrapping_sub(expected);
                if gap >= 0x8000 {
                    self.resyncs += 1;
                    0
                } else {
                    gap
                }
            }
        };
        self.dropped += u64::from(gap);
        self.expected = Some(seq.wrapping_add(1));
        gap
    }

    /// Forgets the expected next number (call when the peer says Hello: it may have rebooted).
    pub fn restart(&mut self) {
        self.expected = None;
    }

    /// Frames observed.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Frames inferred lost from gaps.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Backward jumps seen.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gaps_across_wraparound() {
        let mut t = SeqTracker::new();
        assert_eq!(t.observe(65533), 0);
        assert_eq!(t.observe(65534), 0);
        assert_eq!(t.observe(1), 2); // 65535 and 0 lost
        assert_eq!(t.observe(2), 0);
        assert_eq!(t.dropped(), 2);
        assert_eq!(t.received(), 4);
    }

    #[test]
    fn backward_jump_resyncs() {
        let mut t = SeqTracker::new();
        t.observe(500);
        assert_eq!(t.observe(0), 0);
        assert_eq!(t.observe(1), 0);
        assert_eq!(t.resyncs(), 1);
        assert_eq!(t.dropped(), 0);
        t.restart();
        assert_eq!(t.observe(9000), 0);
    }
}
