//! The framed record format of `mock-exchange --record` and `decode
//! --framed`: each message as a u32 big-endian length, then its bytes.

use std::path::{Path, PathBuf};

/// `tests/data/vectors`, the committed reference vectors.
pub(crate) fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors")
}

/// The path of one reference vector.
pub(crate) fn vector(name: &str) -> PathBuf {
    vectors_dir().join(name)
}

/// The messages of a framed file, in order. Panics if the file ends
/// mid-record.
pub(crate) fn read_framed(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).expect("read a framed file");
    let mut out = Vec::new();
    let mut rest = &data[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        assert!(rest.len() >= 4 + len, "record file ends mid-record");
        out.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    assert!(rest.is_empty(), "record file ends mid-record");
    out
}

/// `msgs` in the framed format.
pub(crate) fn framed<M: AsRef<[u8]>>(msgs: &[M]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        let m = m.as_ref();
        out.extend(
            u32::try_from(m.len())
                .expect("message fits u32")
                .to_be_bytes(),
        );
        out.extend(m);
    }
    out
}
