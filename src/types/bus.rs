//! Bus constants the configuration checks and the transports use: the bitrates an slcan adapter
//! can select.
//!
//! Not for: encoding commands (`io::protocol::slcan`).

/// Bitrates the slcan `Sn` command can select, in bit/s, indexed by `n`.
pub(crate) const SLCAN_BITRATES_BPS: [u32; 9] =
    [10_000, 20_000, 50_000, 100_000, 125_000, 250_000, 500_000, 800_000, 1_000_000];

/// The `n` of slcan's `Sn` for a bitrate in bit/s, if an adapter can select it.
pub(crate) fn slcan_bitrate_code(bitrate_bps: u32) -> Option<u8> {
    SLCAN_BITRATES_BPS.iter().position(|&b| b == bitrate_bps).map(|n| n as u8)
}
