//! The one way OCR events leave the store that recorded them: an outbox, drained to a
//! publisher.
//!
//! A registration (or an invoice replacement) writes its OCR event into an [`Outbox`] in the same
//! write as the product: the embedded store's queue table, or a pending-publication marker on
//! the Cosmos DB document. The [`Relay`] then delivers it to an [`OcrPublisher`] — the Service Bus
//! queue, or on the embedded default this process's own `/ProcessInvoiceOcr` in the Functions
//! host's invocation shape — and settles it: delivered messages leave the outbox, failed ones
//! come back after an exponential backoff (or the destination's `Retry-After`), and after
//! `max_delivery_count` deliveries they are dead-lettered (stores that count deliveries).
//!
//! Two ways to drive it, one per store:
//! - **a worker** ([`Relay::run`]) that claims due messages with a lock, woken at once by every
//!   write ([`Relay::written`]) and otherwise at the next due time (the embedded store);
//! - **at the write and on a timer** (Cosmos DB, where many instances share the store): the
//!   request publishes its own event right away ([`Relay::written`] waits at most
//!   [`PUBLISH_NOW_TIMEOUT`]), and the `RepublishPendingOcr` timer drains what is older than
//!   `min_age` ([`Relay::drain`]). The message id is derived from the product and the invoice
//!   version, so a second send of an event the queue already took is absorbed by its duplicate
//!   detection, and the OCR handler is idempotent per invoice version besides.
//!
//! Either way an event is never lost, and one registration gives one effective OCR run.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::domain::OcrRequested;
use crate::ports::{OcrPublisher, Outbox, OutboxMessage, Unavailable};

/// How long a request waits for its own event's publication before leaving it to the timer.
pub const PUBLISH_NOW_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest a timer drain goes on claiming batches (the timer ticks every 5 minutes; the host's
/// `functionTimeout` is 10): what is left is the next tick's.
pub const DRAIN_BUDGET: Duration = Duration::from_secs(240);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    /// A worker claims messages as they become due (the embedded store).
    Worker,
    /// The writer publishes at once; a timer drains the rest (Cosmos DB).
    AtWriteAndTimer,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub drive: Drive,
    /// A message younger than this is left to the request that wrote it (timer drains only).
    pub min_age: Duration,
    /// How long a claimed message is locked (Service Bus: LockDuration). Must exceed the
    /// slowest OCR when the publisher is the local handler.
    pub lock: Duration,
    pub max_delivery_count: u32,
    /// First retry delay; doubles per delivery up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Messages handled at once by the worker.
    pub workers: usize,
    /// Messages one timer drain claims at a time (it claims batches until none is left or its
    /// budget is spent).
    pub drain_batch: usize,
    /// Deliveries a timer drain has in flight at once.
    pub drain_concurrency: usize,
    /// Longest idle wait of the worker; a write wakes it at once.
    pub idle_poll: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            drive: Drive::Worker,
            min_age: Duration::ZERO,
            lock: Duration::from_secs(300),
            max_delivery_count: 10,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            workers: 1,
            drain_batch: 500,
            drain_concurrency: 16,
            idle_poll: Duration::from_secs(1),
        }
    }
}

/// The delay before delivery `n + 1` after `n` failed: base · 2^(n−1), capped, with ±20 %
/// jitter so a burst of failures does not retry in lockstep.
pub fn backoff(policy: &Policy, delivery_count: u32) -> Duration {
    jittered_backoff(policy.retry_base, policy.retry_max, delivery_count)
}

/// `base` · 2^(n−1), at most `max`, with ±20 % jitter from the OS's randomness.
pub fn jittered_backoff(base: Duration, max: Duration, n: u32) -> Duration {
    let exp = n.saturating_sub(1).min(20);
    let raw = base.saturating_mul(1u32 << exp).min(max);
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let jitter = 0.8 + 0.4 * (f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX));
    raw.mul_f64(jitter)
}

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub found: usize,
    pub published: usize,
    pub failed: usize,
}

pub struct Relay {
    outbox: Arc<dyn Outbox>,
    publisher: Arc<dyn OcrPublisher>,
    policy: Policy,
    wake: Notify,
}

impl Relay {
    pub fn new(outbox: Arc<dyn Outbox>, publisher: Arc<dyn OcrPublisher>, policy: Policy) -> Self {
        Self { outbox, publisher, policy, wake: Notify::new() }
    }

    pub fn drive(&self) -> Drive {
        self.policy.drive
    }

    /// Called after a write put `event` into the outbox: wakes the worker, or publishes it now.
    pub async fn written(&self, event: &OcrRequested) {
        match self.policy.drive {
            Drive::Worker => self.wake.notify_one(),
            Drive::AtWriteAndTimer => self.publish_now(event).await,
        }
    }

    /// Publishes `event` and removes it from the outbox. Failures are logged, not returned: the
    /// event is durable in the outbox and the timer sends it later.
    async fn publish_now(&self, event: &OcrRequested) {
        let message = OutboxMessage::for_event(event);
        // The caller (a registration) waits for this; a slow queue must not hold it long.
        match tokio::time::timeout(PUBLISH_NOW_TIMEOUT, self.publisher.deliver(&message)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(message_id = %event.message_id, error = %e, "OCR event not published yet; the sweeper will retry");
                return;
            }
            Err(_) => {
                tracing::warn!(message_id = %event.message_id, "OCR event publication timed out; the sweeper will retry");
                return;
            }
        }
        if let Err(e) = self.outbox.delivered(&message).await {
            // Published but still in the outbox: the timer sends it again and the queue's
            // duplicate detection absorbs it.
            tracing::warn!(message_id = %event.message_id, error = %e, "OCR event published but its marker stays");
        }
    }

    /// Delivers every due message once (the `RepublishPendingOcr` timer).
    /// Claims batch after batch of due messages and delivers each batch with bounded
    /// concurrency, until none is left, a whole batch failed (the destination is down: the next
    /// tick retries), or [`DRAIN_BUDGET`] is spent.
    pub async fn drain(&self) -> Result<SweepReport, Unavailable> {
        use futures_util::StreamExt;
        let started = std::time::Instant::now();
        let batch = self.policy.drain_batch.max(1);
        let mut report = SweepReport::default();
        loop {
            let messages = self.outbox.claim(self.policy.min_age, self.policy.lock, batch).await?;
            report.found += messages.len();
            let deliveries: Vec<_> = messages.iter().map(|m| self.deliver(m)).collect();
            let outcomes: Vec<Result<bool, Unavailable>> = futures_util::stream::iter(deliveries)
                .buffer_unordered(self.policy.drain_concurrency.max(1))
                .collect()
                .await;
            let mut published = 0;
            for outcome in outcomes {
                if outcome? {
                    published += 1;
                } else {
                    report.failed += 1;
                }
            }
            report.published += published;
            if messages.len() < batch || published == 0 || started.elapsed() >= DRAIN_BUDGET {
                return Ok(report);
            }
        }
    }

    /// Delivers one message and settles it; true when delivered.
    async fn deliver(&self, m: &OutboxMessage) -> Result<bool, Unavailable> {
        match self.publisher.deliver(m).await.err() {
            None => self.outbox.delivered(m).await.map(|_| true),
            Some(e) if m.delivery_count >= self.policy.max_delivery_count => {
                tracing::warn!(message_id = %m.message_id, deliveries = m.delivery_count, reason = %e, "dead-lettered");
                self.outbox.dead_letter(m, &format!("MaxDeliveryCountExceeded: {e}")).await.map(|_| false)
            }
            Some(e) => {
                // The destination's Retry-After wins when it asks for longer than our backoff.
                let delay = backoff(&self.policy, m.delivery_count).max(e.retry_after.unwrap_or_default());
                tracing::info!(message_id = %m.message_id, deliveries = m.delivery_count, retry_in_ms = delay.as_millis() as u64, reason = %e, "abandoned");
                let at = chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                self.outbox.retry_at(m, at, &e.reason).await.map(|_| false)
            }
        }
    }

    /// Looks at the queue once, as an idle worker does (its statement prepared, its connection
    /// open), and forgets the answer.
    pub async fn look(&self) {
        let _ = self.outbox.next_due().await;
    }

    /// Runs `workers` delivery loops until `stop` turns true.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let mut loops = Vec::new();
        for _ in 0..self.policy.workers.max(1) {
            let (me, stop) = (self.clone(), stop.clone());
            loops.push(tokio::spawn(async move { me.work(stop).await }));
        }
        for l in loops {
            let _ = l.await;
        }
    }

    async fn work(&self, mut stop: watch::Receiver<bool>) {
        // After a sleep nobody cut short, a store that knows its due times is looked at before a
        // claim: at rest the worker then only reads, once per `idle_poll`, instead of taking a
        // turn of the writer (and mapping its code back in) every time.
        let mut look_first = false;
        while !*stop.borrow() {
            if look_first {
                match self.outbox.next_due().await {
                    Ok(Some(at)) if at <= chrono::Utc::now() => {}
                    Ok(next) => {
                        look_first = self.idle(next, &mut stop).await;
                        continue;
                    }
                    // The claim meets the same failure and reports it.
                    Err(_) => {}
                }
            }
            match self.outbox.claim(Duration::ZERO, self.policy.lock, 1).await {
                Ok(claimed) if !claimed.is_empty() => {
                    look_first = false;
                    for m in &claimed {
                        if let Err(e) = self.deliver(m).await {
                            // The lock will expire and the message come back: nothing is lost.
                            tracing::error!(message_id = %m.message_id, error = %e, "could not settle a delivery");
                        }
                    }
                }
                Ok(_) => {
                    let next = self.outbox.next_due().await.ok().flatten();
                    look_first = self.idle(next, &mut stop).await && self.outbox.knows_due_times();
                }
                Err(e) => {
                    look_first = false;
                    tracing::error!(error = %e, "cannot read the OCR outbox");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }

    /// Sleeps until `next` is due, a write wakes the worker, or shutdown; never longer than
    /// `idle_poll`, so another process's writes (an operator's replay) are noticed. True when
    /// the sleep ran its course (nothing woke the worker).
    async fn idle(&self, next: Option<chrono::DateTime<chrono::Utc>>, stop: &mut watch::Receiver<bool>) -> bool {
        let wait = next
            .map(|at| (at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(self.policy.idle_poll)
            .min(self.policy.idle_poll);
        tokio::select! {
            _ = self.wake.notified() => false,
            _ = tokio::time::sleep(wait) => true,
            _ = stop.changed() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An outbox in memory that counts claims and looks; its one message is due from `due` on.
    struct Counting {
        knows: bool,
        due: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
        claims: AtomicUsize,
        looks: AtomicUsize,
        delivered: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Outbox for Counting {
        async fn claim(&self, _: Duration, _: Duration, _: usize) -> Result<Vec<OutboxMessage>, Unavailable> {
            self.claims.fetch_add(1, Ordering::SeqCst);
            let mut due = self.due.lock().unwrap();
            if due.is_some_and(|at| at <= chrono::Utc::now()) {
                *due = None;
                return Ok(vec![OutboxMessage {
                    message_id: "m1".into(),
                    body: "{}".into(),
                    enqueued_at: "2026-12-06T00:00:00Z".into(),
                    delivery_count: 1,
                    lock_token: "t".into(),
                }]);
            }
            Ok(Vec::new())
        }
        async fn delivered(&self, _: &OutboxMessage) -> Result<(), Unavailable> {
            self.delivered.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn retry_at(
            &self,
            _: &OutboxMessage,
            _: chrono::DateTime<chrono::Utc>,
            _: &str,
        ) -> Result<(), Unavailable> {
            Ok(())
        }
        async fn dead_letter(&self, _: &OutboxMessage, _: &str) -> Result<(), Unavailable> {
            Ok(())
        }
        async fn next_due(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, Unavailable> {
            self.looks.fetch_add(1, Ordering::SeqCst);
            Ok(if self.knows { *self.due.lock().unwrap() } else { None })
        }
        fn knows_due_times(&self) -> bool {
            self.knows
        }
    }

    struct Accept;

    #[async_trait::async_trait]
    impl OcrPublisher for Accept {
        async fn deliver(&self, _: &OutboxMessage) -> Result<(), crate::ports::DeliveryFailed> {
            Ok(())
        }
    }

    /// At rest a worker whose store knows its due times claims once and then only looks, once
    /// per `idle_poll` (a store that does not know is claimed from every time); a message that
    /// becomes due without a wake-up (another process wrote it) is delivered at the next look.
    /// Time is tokio's paused clock: the waits are the worker's own, advanced without sleeping.
    #[tokio::test(start_paused = true)]
    async fn an_idle_worker_looks_before_it_claims() {
        for knows in [true, false] {
            let outbox = Arc::new(Counting {
                knows,
                due: Mutex::new(None),
                claims: AtomicUsize::new(0),
                looks: AtomicUsize::new(0),
                delivered: AtomicUsize::new(0),
            });
            let policy = Policy { idle_poll: Duration::from_secs(1), ..Default::default() };
            let relay = Arc::new(Relay::new(outbox.clone(), Arc::new(Accept), policy));
            let (stop_tx, stop_rx) = watch::channel(false);
            let worker = tokio::spawn(relay.clone().run(stop_rx));
            tokio::time::sleep(Duration::from_millis(10_500)).await;
            let claims = outbox.claims.load(Ordering::SeqCst);
            if knows {
                assert_eq!(claims, 1, "one claim, then looks only");
                assert!(outbox.looks.load(Ordering::SeqCst) >= 10, "a look per idle poll");
            } else {
                assert!(claims >= 10, "a claim per idle poll: {claims}");
            }
            *outbox.due.lock().unwrap() = Some(chrono::Utc::now());
            tokio::time::sleep(Duration::from_millis(1_100)).await;
            assert_eq!(outbox.delivered.load(Ordering::SeqCst), 1, "knows: {knows}");
            stop_tx.send(true).unwrap();
            worker.await.unwrap();
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy =
            Policy { retry_base: Duration::from_secs(2), retry_max: Duration::from_secs(60), ..Default::default() };
        let within = |d: Duration, secs: f64| {
            let s = d.as_secs_f64();
            s >= secs * 0.8 - 1e-9 && s <= secs * 1.2 + 1e-9
        };
        assert!(within(backoff(&policy, 1), 2.0));
        assert!(within(backoff(&policy, 2), 4.0));
        assert!(within(backoff(&policy, 4), 16.0));
        assert!(within(backoff(&policy, 9), 60.0));
        assert!(within(backoff(&policy, 1000), 60.0));
    }
}
