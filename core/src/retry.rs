//! When a failed try is retried: Airflow's retry delay, exponential backoff and its cap.

use sha2::{Digest, Sha256};

/// Airflow caps any computed retry delay at a day.
pub const MAX_RETRY_DELAY_SECONDS: f64 = 24.0 * 60.0 * 60.0;

/// A task's retry settings (from dag.json).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// How many retries after the first try.
    pub retries: u32,
    /// Seconds before a retry.
    pub retry_delay: f64,
    /// Whether the delay doubles with each try.
    pub exponential_backoff: bool,
    /// Upper bound of the delay, in seconds.
    pub max_retry_delay: Option<f64>,
}

impl RetryPolicy {
    /// Whether try `failed_try` (1 for the first) may be retried.
    pub fn should_retry(&self, failed_try: i32) -> bool {
        failed_try >= 1 && (failed_try as i64) <= self.retries as i64
    }

    /// Seconds to wait before the try after `failed_try`.
    ///
    /// With backoff, as in Airflow: at least `retry_delay · 2^(try−1)` seconds (and at least 1),
    /// plus a deterministic jitter below that amount derived from the task instance's identity,
    /// capped at a day and at `max_retry_delay`.
    pub fn delay_seconds(&self, identity: &str, failed_try: i32) -> f64 {
        let mut delay = self.retry_delay.max(0.0);
        if self.exponential_backoff {
            let exponent = (failed_try - 1).clamp(0, 62);
            let min_backoff = (delay * 2f64.powi(exponent))
                .ceil()
                .clamp(1.0, MAX_RETRY_DELAY_SECONDS);
            let digest = Sha256::digest(format!("{identity}#{failed_try}").as_bytes());
            let hash = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
            let jitter = (hash % min_backoff as u64) as f64;
            delay = (min_backoff + jitter).min(MAX_RETRY_DELAY_SECONDS);
        }
        match self.max_retry_delay {
            Some(cap) => delay.min(cap),
            None => delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(retries: u32, delay: f64, backoff: bool, cap: Option<f64>) -> RetryPolicy {
        RetryPolicy {
            retries,
            retry_delay: delay,
            exponential_backoff: backoff,
            max_retry_delay: cap,
        }
    }

    #[test]
    fn retries_count_after_the_first_try() {
        let p = policy(2, 10.0, false, None);
        assert!(p.should_retry(1));
        assert!(p.should_retry(2));
        assert!(!p.should_retry(3));
        assert!(!policy(0, 10.0, false, None).should_retry(1));
    }

    #[test]
    fn plain_delay_is_the_retry_delay() {
        assert_eq!(policy(3, 30.0, false, None).delay_seconds("d#t#r", 2), 30.0);
        assert_eq!(
            policy(3, 30.0, false, Some(10.0)).delay_seconds("d#t#r", 2),
            10.0
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_respects_the_caps() {
        let p = policy(10, 10.0, true, None);
        for try_number in 1..=6 {
            let min = 10.0 * 2f64.powi(try_number - 1);
            let delay = p.delay_seconds("dag#task#run", try_number);
            assert!(
                delay >= min && delay < 2.0 * min,
                "try {try_number}: {delay}"
            );
            assert_eq!(
                delay,
                p.delay_seconds("dag#task#run", try_number),
                "deterministic"
            );
        }
        assert_eq!(
            policy(10, 10.0, true, Some(60.0)).delay_seconds("x", 6),
            60.0
        );
        assert_eq!(
            policy(100, 10.0, true, None).delay_seconds("x", 60),
            MAX_RETRY_DELAY_SECONDS
        );
        assert!(
            policy(3, 0.0, true, None).delay_seconds("x", 1) >= 1.0,
            "at least a second"
        );
    }
}
