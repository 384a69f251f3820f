//! panda-feed performance harnesses. Not published; see `perf/README.md`.

use std::path::Path;

/// Reads a framed corpus (records of u32 big-endian length + message bytes).
///
/// # Errors
/// When the file cannot be read or is not a well-formed framed stream.
pub fn read_framed(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let len = data
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| format!("{}: truncated record length at byte {at}", path.display()))?;
        let body = data
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| format!("{}: record at byte {at} overruns the file", path.display()))?;
        out.push(body.to_vec());
        at += 4 + len;
    }
    Ok(out)
}
