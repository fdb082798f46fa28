//! Waiting out a failing backend: each wait doubles, up to a ceiling, until a success resets it.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    ceiling: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, ceiling: Duration) -> Self {
        Self {
            first,
            ceiling,
            next: first,
        }
    }

    /// Sleeps for the current delay, then doubles it for the next failure.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.ceiling);
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_double_up_to_the_ceiling_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
        let started = tokio::time::Instant::now();
        backoff.wait().await;
        backoff.wait().await;
        backoff.wait().await;
        assert_eq!(started.elapsed(), Duration::from_millis(100 + 200 + 300));
        backoff.reset();
        let started = tokio::time::Instant::now();
        backoff.wait().await;
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }
}
