//! One budget for all of a delivery's attempts: each attempt gets what is
//! left of it, and a retry waits only if time for another try remains.

use std::time::{Duration, Instant};

/// Wait before the second attempt; doubled each time up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// An attempt with less time than this left is not worth starting.
const MIN_ATTEMPT: Duration = Duration::from_millis(100);

/// Why an attempt failed, and whether another may succeed.
pub(super) struct Failure {
    pub message: String,
    pub retry: bool,
}

/// Runs `attempt(time_left)` until it succeeds, fails for good, or the
/// budget is spent. Returns the outcome and the number of attempts.
pub(super) fn within(
    budget: Duration,
    mut attempt: impl FnMut(Duration) -> Result<(), Failure>,
) -> (Result<(), String>, u32) {
    let deadline = Instant::now() + budget;
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let failure = match attempt(left) {
            Ok(()) => return (Ok(()), attempts),
            Err(f) => f,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if !failure.retry || left < backoff + MIN_ATTEMPT {
            let message = if attempts > 1 {
                format!("{} (after {attempts} attempts)", failure.message)
            } else {
                failure.message
            };
            return (Err(message), attempts);
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_transient_failures_within_the_budget_only() {
        let start = Instant::now();
        let (r, n) = within(Duration::from_secs(1), |_| {
            Err(Failure {
                message: "HTTP 503".into(),
                retry: true,
            })
        });
        assert!(start.elapsed() < Duration::from_millis(1100));
        assert!(n >= 3, "{n}");
        assert_eq!(r.unwrap_err(), format!("HTTP 503 (after {n} attempts)"));

        let (r, n) = within(Duration::from_secs(1), |_| {
            Err(Failure {
                message: "HTTP 404".into(),
                retry: false,
            })
        });
        assert_eq!((r.unwrap_err().as_str(), n), ("HTTP 404", 1));

        let mut tries = 0;
        let (r, n) = within(Duration::from_secs(5), |_| {
            tries += 1;
            if tries < 3 {
                Err(Failure {
                    message: "refused".into(),
                    retry: true,
                })
            } else {
                Ok(())
            }
        });
        assert_eq!((r, n), (Ok(()), 3));
    }
}
