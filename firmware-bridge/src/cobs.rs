//! Consistent Overhead Byte Stuffing: turns any byte string into one without 0x00, so that 0x00 can
//! delimit packets on a byte stream.
//!
//! For: the framing layer ([`crate::encode_frame`], [`crate::FrameDecoder`]). Not for: delimiting (the
//! caller appends the 0x00) or integrity (COBS detects some corruption, the frame's CRC the rest).

/// Largest encoded length of `len` input bytes, without the 0x00 delimiter: one code byte per started
/// block of 254 data bytes, plus one.
pub const fn max_encoded_len(len: usize) -> usize {
    len + len / 254 + 1
}

/// The output buffer was too small for the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputTooSmall;

/// Why a packet is not valid COBS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CobsError {
    /// A 0x00 byte inside the packet (the delimiter must have been stripped before decoding).
    ZeroByte {
        /// Offset of the zero in the encoded packet.
        at: usize,
    },
    /// A code byte announces more bytes than the packet has left.
    Truncated {
        /// Offset of the offending code byte.
        at: usize,
    },
}

/// Encodes `src` into `dst` and returns the encoded length (no delimiter is written).
pub fn encode(src: &[u8], dst: &mut [u8]) -> Result<usize, OutputTooSmall> {
    if dst.len() < max_encoded_len(src.len()) {
        return Err(OutputTooSmall);
    }
    let mut code_at = 0;
    let mut out = 1;
    let mut code: u8 = 1;
    for &byte in src {
        if byte == 0 {
            dst[code_at] = code;
            code_at = out;
            out += 1;
            code = 1;
        } else {
            dst[out] = byte;
            out += 1;
            code += 1;
            if code == 0xFF {
                dst[code_at] = code;
                code_at = out;
                out += 1;
                code = 1;
            }
        }
    }
    dst[code_at] = code;
    Ok(out)
}

/// Decodes the packet in `buf` in place (decoded output is never longer than its input) and returns the
/// decoded length. `buf` must not contain the 0x00 delimiter.
pub fn decode_in_place(buf: &mut [u8]) -> Result<usize, CobsError> {
    let mut read = 0;
    let mut write = 0;
    while read < buf.len() {
        let code = buf[read];
        if code == 0 {
            return Err(CobsError::ZeroByte { at: read });
        }
        let block_end = read + code as usize;
        if block_end > buf.len() {
            return Err(CobsError::Truncated { at: read });
        }
        for i in read + 1..block_end {
            let byte = buf[i];
            if byte == 0 {
                return Err(CobsError::ZeroByte { at: i });
            }
            buf[write] = byte;
            write += 1;
        }
        read = block_end;
        // A block shorter than 254 data bytes stands for "data, then a zero", except at the very end where
        // the zero is the implicit one every encoding carries.
        if code != 0xFF && read < buf.len() {
            buf[write] = 0;
            write += 1;
        }
    }
    Ok(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(data: &[u8]) -> usize {
        let mut enc = [0u8; 1200];
        let n = encode(data, &mut enc).expect("buffer sized by max_encoded_len");
        assert!(n <= max_encoded_len(data.len()));
        assert!(!enc[..n].contains(&0), "encoding contains a zero");
        let dec_len = decode_in_place(&mut enc[..n]).expect("own encoding decodes");
        assert_eq!(&enc[..dec_len], data);
        n
    }

    #[test]
    fn empty_and_zeros() {
        assert_eq!(round_trip(&[]), 1);
        assert_eq!(round_trip(&[0]), 2);
        assert_eq!(round_trip(&[0, 0]), 3);
        assert_eq!(round_trip(&[0; 300]), 301);
        let mut enc = [0u8; 4];
        let n = encode(&[0x11, 0x00, 0x22], &mut enc).unwrap();
        assert_eq!(&enc[..n], &[0x02, 0x11, 0x02, 0x22]);
    }

    #[test]
    fn runs_around_block_length() {
        for len in [253usize, 254, 255, 256, 508, 509, 1000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 255 + 1) as u8).collect();
            let n = round_trip(&data);
            assert_eq!(n, max_encoded_len(len), "len {len}");
            // A zero just after a full block.
            let mut with_zero = data.clone();
            with_zero.push(0);
            round_trip(&with_zero);
        }
        // Known vector: 254 non-zero bytes encode as FF, data, 01.
        let data: Vec<u8> = (1..=254).map(|i| i as u8).collect();
        let mut enc = [0u8; 300];
        let n = encode(&data, &mut enc).unwrap();
        assert_eq!(n, 256);
        assert_eq!(enc[0], 0xFF);
        assert_eq!(enc[255], 0x01);
    }

    #[test]
    fn rejects_bad_packets() {
        assert_eq!(decode_in_place(&mut [0x05, 1, 2]), Err(CobsError::Truncated { at: 0 }));
        assert_eq!(decode_in_place(&mut [0x03, 1, 0]), Err(CobsError::ZeroByte { at: 2 }));
        assert_eq!(decode_in_place(&mut [0x00]), Err(CobsError::ZeroByte { at: 0 }));
        assert_eq!(decode_in_place(&mut []), Ok(0));
    }

    #[test]
    fn small_output_is_an_error() {
        let mut enc = [0u8; 3];
        assert_eq!(encode(&[1, 2, 3], &mut enc), Err(OutputTooSmall));
    }
}
