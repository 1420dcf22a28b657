//! Executors run task attempts: the subprocess adapter (Lite) and the Kubernetes adapter
//! (Pro), each starting one task agent per attempt.
//!
//! Not built yet: executors and the task agent are their own issue. This crate exists so the
//! workspace has its final shape.
