//! Reading the small files that hold a secret or a token (a client secret file, a CI job's token
//! file) the same careful way: the checks apply to the file opened, not to the path (a symbolic
//! link is followed, as Kubernetes volumes need, and nothing can swap the file between check and
//! read); a FIFO or device is refused at once instead of blocking the open; the size is bounded
//! before and while reading; the bytes are wiped when dropped.

use std::fs::Metadata;
use std::io::Read as _;
use std::path::Path;

use secrecy::zeroize::Zeroizing;

/// The bytes of the regular file at `path`, at most `max` of them, after `check` accepted its
/// metadata (ownership, mode). The error is the reason, for the caller's message.
pub fn read_small_regular(
    path: &Path,
    max: u64,
    check: impl FnOnce(&Metadata) -> Result<(), String>,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // O_NONBLOCK changes nothing for a regular file's reads.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    check(&meta)?;
    let too_large = || format!("it is larger than {max} bytes");
    if meta.len() > max {
        return Err(too_large());
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}
