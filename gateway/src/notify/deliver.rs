//! The deliverer's tasks: one dispatcher that follows the feed and picks the channels to page,
//! and one worker per channel that sends, retries and records. Both end when the gateway stops
//! accepting connections; what a worker had not delivered by then is recorded as failed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::{Debouncer, Message, Notifier, event_of, wants};
use crate::model::{EventKind, EventResult};
use crate::store::{Event, NotifyChannel, StatusChange};

/// How often the dispatcher reads the channels again even when none was added or removed
/// (an operator's role may have changed).
const RELOAD_EVERY: Duration = Duration::from_secs(10);

/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One message for one channel.
struct Delivery {
    channel: NotifyChannel,
    message: Message,
}

type ChannelKey = (String, String);

fn key_of(channel: &NotifyChannel) -> ChannelKey {
    (channel.operator.clone(), channel.name.clone())
}

pub(super) async fn dispatch(
    notifier: Notifier,
    mut feed: broadcast::Receiver<StatusChange>,
    tasks: TaskTracker,
    stop: CancellationToken,
) {
    let settings = notifier.settings().clone();
    let mut debouncer = Debouncer::new(settings.debounce);
    let mut workers: HashMap<ChannelKey, mpsc::Sender<Delivery>> = HashMap::new();
    let mut channels: Vec<NotifyChannel> = Vec::new();
    let mut loaded: Option<(u64, Instant)> = None;
    loop {
        let received = tokio::select! {
            received = feed.recv() => received,
            () = stop.cancelled() => return,
        };
        let change = match received {
            Ok(change) => change,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                warn!(
                    missed,
                    "the notification deliverer fell behind the status feed"
                );
                record(
                    &notifier,
                    Event {
                        detail: format!("{missed} status changes"),
                        message: format!(
                            "the deliverer fell {missed} changes behind the feed; they were \
                             not notified"
                        ),
                        ..Event::new(EventKind::Notify, EventResult::Failed)
                    },
                )
                .await;
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(event) = event_of(&change) else {
            continue;
        };
        let generation = notifier.store().channels_generation();
        if loaded.is_none_or(|(g, at)| g != generation || at.elapsed() >= RELOAD_EVERY) {
            match notifier.store().all_channels().await {
                Ok(all) => {
                    channels = all;
                    loaded = Some((generation, Instant::now()));
                    // A removed channel's worker ends once its queue is done.
                    workers.retain(|key, _| channels.iter().any(|c| key_of(c) == *key));
                }
                Err(e) => warn!(error = %e, "cannot read the notification channels"),
            }
        }
        let now = Instant::now();
        for channel in channels.iter().filter(|c| wants(c, &change, event)) {
            if !debouncer.admit(&channel.operator, &channel.name, &change.agent, event, now) {
                debug!(
                    channel = channel.name,
                    agent = change.agent,
                    event = event.as_str(),
                    "paged within the debounce window; not again"
                );
                continue;
            }
            let key = key_of(channel);
            let sender = workers.entry(key).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(settings.queue);
                tasks.spawn(work(notifier.clone(), rx, stop.clone()));
                tx
            });
            let delivery = Delivery {
                channel: channel.clone(),
                message: Message::of(&change, event),
            };
            if let Err(e) = sender.try_send(delivery) {
                let (delivery, why) = match e {
                    mpsc::error::TrySendError::Full(d) => {
                        (d, Undelivered::QueueFull(settings.queue))
                    }
                    mpsc::error::TrySendError::Closed(d) => (d, Undelivered::Stopping),
                };
                recorded(&notifier, &delivery, Err(why)).await;
            }
        }
    }
}

/// One channel's worker: its deliveries in order, each tried up to `notify.tries` times.
async fn work(notifier: Notifier, mut queue: mpsc::Receiver<Delivery>, stop: CancellationToken) {
    let settings = notifier.settings().clone();
    loop {
        let delivery = tokio::select! {
            next = queue.recv() => match next {
                Some(d) => d,
                None => return,
            },
            () = stop.cancelled() => break,
        };
        let mut backoff = settings.retry_after;
        let mut last_error = String::new();
        let mut outcome = None;
        for attempt in 1..=settings.tries {
            let tried = tokio::select! {
                tried = notifier.try_once(&delivery.channel, &delivery.message) => tried,
                () = stop.cancelled() => {
                    outcome = Some(Err(Undelivered::StoppedDuring {
                        attempt,
                        before: last_error.clone(),
                    }));
                    break;
                }
            };
            match tried {
                Ok(()) => {
                    outcome = Some(Ok(attempt));
                    break;
                }
                Err(e) => {
                    debug!(channel = delivery.channel.name, attempt, error = %e, "a try failed");
                    last_error = e.to_string();
                }
            }
            if attempt < settings.tries {
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => {
                        outcome = Some(Err(Undelivered::StoppedBefore {
                            next: attempt + 1,
                            after: last_error.clone(),
                        }));
                        break;
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        let outcome = outcome.unwrap_or(Err(Undelivered::AllFailed {
            tries: settings.tries,
            last: last_error,
        }));
        recorded(&notifier, &delivery, outcome).await;
        if stop.is_cancelled() {
            break;
        }
    }
    // The gateway is stopping: what waits is recorded as not delivered.
    queue.close();
    while let Ok(delivery) = queue.try_recv() {
        recorded(&notifier, &delivery, Err(Undelivered::StoppedFirst)).await;
    }
}

/// Why a delivery did not reach its channel, in the audit trail's words.
#[derive(Debug, thiserror::Error)]
enum Undelivered {
    #[error("not sent: {0} deliveries already wait for this channel")]
    QueueFull(usize),
    #[error("not sent: the gateway is stopping")]
    Stopping,
    #[error("the gateway stopped during try {attempt} (before: {})", if before.is_empty() { "none" } else { before })]
    StoppedDuring { attempt: u32, before: String },
    #[error("the gateway stopped before try {next} (after: {after})")]
    StoppedBefore { next: u32, after: String },
    #[error("{tries} tries failed; the last: {last}")]
    AllFailed { tries: u32, last: String },
    #[error("not sent: the gateway stopped first")]
    StoppedFirst,
}

/// Records a delivery's outcome in the audit trail (and the log): `Ok(tries)` or why it failed.
async fn recorded(notifier: &Notifier, delivery: &Delivery, outcome: Result<u32, Undelivered>) {
    let channel = &delivery.channel;
    let detail = format!(
        "{} to {} channel '{}' ({})",
        delivery.message.event.as_str(),
        channel.kind.as_str(),
        channel.name,
        channel.url.masked()
    );
    let (result, message) = match &outcome {
        Ok(1) => (EventResult::Ok, String::new()),
        Ok(n) => (EventResult::Ok, format!("delivered at try {n}")),
        Err(why) => (EventResult::Failed, why.to_string()),
    };
    match &outcome {
        Ok(_) => info!(
            operator = channel.operator,
            agent = delivery.message.agent,
            detail,
            "notified"
        ),
        Err(why) => warn!(
            operator = channel.operator,
            agent = delivery.message.agent,
            detail,
            why = %why,
            "a notification failed"
        ),
    }
    record(
        notifier,
        Event {
            operator: Some(channel.operator.clone()),
            agent: Some(delivery.message.agent.clone()).filter(|a| !a.is_empty()),
            detail,
            message,
            ..Event::new(EventKind::Notify, result)
        },
    )
    .await;
}

async fn record(notifier: &Notifier, event: Event) {
    if let Err(e) = notifier.store().record_event(&event).await {
        warn!(error = %e, "could not record a notification in the audit trail");
    }
}
