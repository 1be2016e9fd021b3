//! Where `bridge open` finds the running bridges' dashboards: one file per process, holding
//! its address (with the secret), readable by the user only, removed when the bridge stops;
//! files of processes that are gone are removed when read.

use std::path::PathBuf;
use std::time::SystemTime;

/// Where the running bridges' dashboard addresses are kept for `bridge open` (one file per
/// process, readable by the user only).
pub fn address_dir() -> anyhow::Result<PathBuf> {
    Ok(crate::login::config_dir()?.join("dashboards"))
}

/// Keeps this process's dashboard address for `bridge open`; the file goes when the
/// returned guard is dropped.
pub fn remember_address(url: &str) -> anyhow::Result<AddressFile> {
    let dir = address_dir()?;
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}.url", std::process::id()));
    crate::login::write_private(&path, url.as_bytes())?;
    Ok(AddressFile(path))
}

/// The file holding this process's dashboard address; removed when dropped.
pub struct AddressFile(PathBuf);

impl Drop for AddressFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The address of the newest running bridge's dashboard (stale files of processes that
/// are gone are removed).
pub fn running_address() -> anyhow::Result<Option<String>> {
    let dir = address_dir()?;
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(None);
    };
    let mut newest: Option<(SystemTime, String)> = None;
    for e in entries.flatten() {
        let path = e.path();
        let Some(pid) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if !process_alive(pid) {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let (Ok(url), Ok(meta)) = (std::fs::read_to_string(&path), e.metadata()) else {
            continue;
        };
        let at = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if newest.as_ref().is_none_or(|(t, _)| at > *t) {
            newest = Some((at, url.trim().to_owned()));
        }
    }
    Ok(newest.map(|(_, url)| url))
}

fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}
