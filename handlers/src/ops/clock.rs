//! Time for the release procedures.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Time for the procedures: waits between health probes and verification samples. The
/// workflows use the system clock; the drills a simulated one, so a 10-minute window takes
/// milliseconds and the elapsed time is still measured.
#[async_trait]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    async fn sleep(&self, duration: Duration);
}

pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}
