//! Ctrl-C and SIGTERM, the two ways a long-running command (`lite`, `server`) is asked to stop.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The stop signals, handled from the moment they are installed: a signal during start-up is
/// seen once started, never the default death that would leave children and locks behind.
pub struct Stop {
    interrupt: Signal,
    terminate: Signal,
}

impl Stop {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves when either signal arrives.
    pub async fn requested(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
