//! One Lite per home: a second one would share the managed Postgres, the ports and the
//! project's state. The lock is an exclusive file lock the kernel drops when the process
//! ends, however it ends, so a killed Lite never blocks the next one.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Held while Lite runs.
pub struct HomeLock {
    _file: File,
}

/// Takes the home's lock, or says who holds it.
pub fn lock_home(home: &Path) -> Result<HomeLock> {
    std::fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    let path = home.join("lite.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            bail!(
                "another Leoflow Lite already runs with the home {} ({}). Stop it (Ctrl-C in its \
                 terminal), or give this one its own home with --home or LEOFLOW_HOME.",
                home.display(),
                holder.trim()
            );
        }
        Err(std::fs::TryLockError::Error(error)) => {
            return Err(error).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "pid {}", std::process::id())?;
    Ok(HomeLock { _file: file })
}
