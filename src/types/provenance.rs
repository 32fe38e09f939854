//! Where a model came from, as logs, datasets and finetuned models record it: the file, its
//! SHA-256 and the contract it declared; and the SHA-256 helpers that identify files and texts.
//!
//! Not for: loading or checking models (`policy::load`).

use std::path::{Path, PathBuf};

/// A model as the daemon loaded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelProvenance {
    /// What the model is to the daemon (`controller`).
    pub(crate) role: &'static str,
    pub path: PathBuf,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// The contract JSON the model returned from `locod_spec()`.
    pub contract: String,
}

/// SHA-256 of `bytes`, lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of the file at `path`, lowercase hex, read in pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_the_standard_sha256() {
        // FIPS 180-2's example.
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.pt");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), sha256_hex(b"abc"));
        assert!(sha256_file(&dir.path().join("absent")).is_err());
    }
}
