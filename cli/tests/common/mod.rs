//! What the `leoflow` process tests share: the checkout, free ports, URL segments, stopping
//! a Lite child the way a user's Ctrl-C would, and ([`lite`]) a Lite on a home of its own
//! driven through its API.
// Each test binary uses its own subset.
#![allow(dead_code)]

pub mod lite;
pub mod server;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// The checkout's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `segment` percent-encoded for a URL path.
pub fn encode(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// SIGTERM, up to ten seconds for a clean stop, then SIGKILL.
pub fn terminate(child: &mut Child) {
    // SAFETY: a plain signal to a child of this test.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
