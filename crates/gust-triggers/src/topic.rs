//! Topics: publish/subscribe of CloudEvents over a [`TopicProvider`]. Each
//! subscription (a function with a topic trigger) is a durable subscription
//! of the backend's topic, `<topic>--<function>`, with its own cursor,
//! retries and dead letters; every subscription receives every event and
//! its consumer skips (acknowledges without running the function) the ones
//! its filter rejects.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::queue::{EventFilter, QueueConsumer, QueueSettings};
use crate::registry::{Description, StartContext, StartFuture, Started, TriggerError, TriggerKind};
use crate::settings::{Invalid, Settings, check_range, check_resource_name};
use gust_backends::{Dedupe, Result, Topic, TopicProvider};
use gust_events::{Event, to_metadata};
use gust_manifest::{EventTriggerKind, Function, Trigger};
use serde::Deserialize;

pub use gust_backends::topic::subscription_queue;

/// `trigger = { topic = { topic = "orders", type = "...", ... } }`: a
/// subscription; the function sees only events matching every filter given.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    /// The topic.
    #[serde(default)]
    pub topic: String,
    /// Only events of this exact `type`.
    #[serde(default, rename = "type")]
    pub event_type: Option<String>,
    /// Only events whose `subject` starts with this.
    #[serde(default)]
    pub subject_prefix: Option<String>,
    /// Only events whose `subject` ends with this.
    #[serde(default)]
    pub subject_suffix: Option<String>,
    /// Only events whose extension attributes have these values.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Events handled at once by this subscriber (1 to 10000, default 16).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
}

fn default_concurrency() -> u32 {
    16
}

impl TopicSettings {
    /// A subscription to every event of `topic`.
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            concurrency: default_concurrency(),
            ..Self::default()
        }
    }
}

impl Settings for TopicSettings {
    const KIND: &'static str = "topic";
    const HELP: &'static str = "topic triggers take `topic`, and optional filters `type`, `subject_prefix`, `subject_suffix`, `attributes = { name = \"value\" }`, plus `concurrency`";

    fn check(&self) -> std::result::Result<(), Invalid> {
        check_resource_name("topic", "topic", &self.topic)?;
        check_range("concurrency", self.concurrency, 1..=10_000)
    }
}

/// Whether `event` passes every filter of `trigger`.
pub fn matches(trigger: &TopicSettings, event: &Event) -> bool {
    let subject = event.subject.as_deref().unwrap_or("");
    trigger.event_type.as_deref().is_none_or(|t| t == event.ty)
        && trigger
            .subject_prefix
            .as_deref()
            .is_none_or(|p| event.subject.is_some() && subject.starts_with(p))
        && trigger
            .subject_suffix
            .as_deref()
            .is_none_or(|s| event.subject.is_some() && subject.ends_with(s))
        && trigger
            .attributes
            .iter()
            .all(|(k, v)| event.extension(k) == Some(v.as_str()))
}

/// The key under which `event` is remembered for de-duplication: its
/// `source` and `id` (CloudEvents makes the pair unique).
pub fn dedupe_key(event: &Event) -> String {
    format!("{}\n{}", event.source, event.id)
}

/// What a publish did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// Events accepted (stored for every matching subscription).
    pub accepted: usize,
    /// Events dropped as duplicates (same source and id within the window).
    pub duplicates: usize,
    /// Function runs the accepted events lead to: the subscriptions of this
    /// app whose filter each event passes.
    pub deliveries: usize,
}

/// Publishes events to an app's topics.
pub struct Publisher {
    provider: Arc<dyn TopicProvider>,
    /// The app's subscriptions' filters by topic (to report how many
    /// function runs a publish leads to).
    filters: HashMap<String, Vec<TopicSettings>>,
    opened: Mutex<HashMap<String, Arc<dyn Topic>>>,
    dedupe: Arc<dyn Dedupe>,
}

impl Publisher {
    /// A publisher to `provider`'s topics, whose app subscribes with
    /// `triggers`, sharing `dedupe` across reloads.
    pub fn new(
        provider: Arc<dyn TopicProvider>,
        triggers: Vec<TopicSettings>,
        dedupe: Arc<dyn Dedupe>,
    ) -> Self {
        let mut filters: HashMap<String, Vec<TopicSettings>> = HashMap::new();
        for t in triggers {
            filters.entry(t.topic.clone()).or_default().push(t);
        }
        Self {
            provider,
            filters,
            opened: Mutex::default(),
            dedupe,
        }
    }

    /// The app's subscriptions of `topic` (their triggers).
    pub fn subscriptions(&self, topic: &str) -> &[TopicSettings] {
        self.filters.get(topic).map_or(&[], Vec::as_slice)
    }

    async fn topic(&self, name: &str) -> Result<Arc<dyn Topic>> {
        if let Some(t) = self
            .opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(t.clone());
        }
        let topic = self.provider.topic(name).await?;
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    /// Stores each new event durably for every subscription of `topic`.
    /// Returns once all are stored; an error means some may not be, and the
    /// publisher should retry (duplicates are then dropped by id).
    pub async fn publish(&self, topic: &str, events: Vec<Event>) -> Result<PublishReport> {
        let mut report = PublishReport::default();
        let mut fresh = Vec::with_capacity(events.len());
        for event in events {
            if self.dedupe.first_seen(&dedupe_key(&event)).await? {
                fresh.push(event);
            } else {
                report.duplicates += 1;
            }
        }
        if fresh.is_empty() {
            return Ok(report);
        }
        let batch = fresh
            .iter()
            .map(|e| (e.data.clone(), to_metadata(e)))
            .collect();
        let stored = match self.topic(topic).await {
            Ok(t) => t.publish(batch).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            // Let a retried publish through again.
            for event in &fresh {
                if let Err(forget) = self.dedupe.forget(&dedupe_key(event)).await {
                    tracing::warn!(event = %event.id, "a retry of this event may be dropped as a duplicate: {forget}");
                }
            }
            return Err(e);
        }
        report.deliveries = fresh
            .iter()
            .map(|e| {
                self.subscriptions(topic)
                    .iter()
                    .filter(|t| matches(t, e))
                    .count()
            })
            .sum();
        report.accepted = fresh.len();
        Ok(report)
    }
}

/// The `topic` trigger kind: a durable subscription `<topic>--<function>`
/// with the trigger's filter applied by the consumer.
pub struct TopicKind;

impl TriggerKind for TopicKind {
    fn name(&self) -> &'static str {
        "topic"
    }

    fn serves(&self, trigger: &Trigger) -> bool {
        matches!(
            trigger,
            Trigger::Event {
                kind: EventTriggerKind::Topic,
                ..
            }
        )
    }

    fn validate(&self, function: &Function) -> std::result::Result<(), TriggerError> {
        TopicSettings::of(function).map(|_| ())
    }

    fn describe(&self, function: &Function) -> Description {
        let Ok(t) = TopicSettings::of(function) else {
            return Description::other(self.name(), function);
        };
        Description {
            kind: "topic",
            source: format!("topic `{}`", t.topic),
            details: serde_json::json!({
                "kind": "topic",
                "topic": t.topic,
                "queue": subscription_queue(&t.topic, &function.name),
                "filter": {
                    "type": t.event_type,
                    "subject_prefix": t.subject_prefix,
                    "subject_suffix": t.subject_suffix,
                    "attributes": t.attributes,
                },
            }),
        }
    }

    fn start<'a>(&'a self, cx: StartContext<'a>) -> StartFuture<'a> {
        Box::pin(async move {
            let topic = &TopicSettings::of(cx.function)?;
            let name = &cx.function.name;
            let queue = async {
                cx.services
                    .topics
                    .topic(&topic.topic)
                    .await?
                    .subscribe(name)
                    .await
            }
            .await
            .map_err(|e| cx.error(format!("cannot subscribe to topic `{}`: {e}", topic.topic)))?;
            let wanted = topic.clone();
            let filter: EventFilter = Arc::new(move |e| matches(&wanted, e));
            let consumer = QueueConsumer {
                function: name.clone(),
                trigger: QueueSettings {
                    concurrency: topic.concurrency,
                    ..QueueSettings::new(subscription_queue(&topic.topic, name))
                },
                retry: cx.function.retry.clone(),
                queue,
                dispatcher: cx.dispatcher.clone(),
                filter: Some(filter),
            };
            let mut started = Started {
                subscription: Some(topic.clone()),
                ..Started::default()
            };
            cx.spawn(&mut started, consumer.run(cx.shutdown.clone()));
            Ok(started)
        })
    }
}

#[cfg(test)]
mod tests {
    use gust_backends::embedded::{EmbeddedQueues, EmbeddedTopics};

    use super::*;

    fn event(ty: &str, subject: Option<&str>, ext: &[(&str, &str)]) -> Event {
        let mut e = Event::new("/test", ty, b"{}".to_vec());
        e.subject = subject.map(str::to_string);
        for (k, v) in ext {
            e.set_extension(k, *v);
        }
        e
    }

    #[test]
    fn filters_on_type_subject_and_attributes() {
        let mut t = TopicSettings {
            topic: "orders".into(),
            event_type: Some("order.created".into()),
            subject_prefix: Some("eu/".into()),
            subject_suffix: Some(".json".into()),
            ..TopicSettings::default()
        };
        t.attributes.insert("tenant".into(), "acme".into());
        let good = event("order.created", Some("eu/1.json"), &[("tenant", "acme")]);
        assert!(matches(&t, &good));
        assert!(!matches(
            &t,
            &event("order.paid", Some("eu/1.json"), &[("tenant", "acme")])
        ));
        assert!(!matches(
            &t,
            &event("order.created", Some("us/1.json"), &[("tenant", "acme")])
        ));
        assert!(!matches(
            &t,
            &event("order.created", Some("eu/1.xml"), &[("tenant", "acme")])
        ));
        assert!(!matches(
            &t,
            &event("order.created", None, &[("tenant", "acme")])
        ));
        assert!(!matches(
            &t,
            &event("order.created", Some("eu/1.json"), &[("tenant", "other")])
        ));
        assert!(matches(&TopicSettings::default(), &event("x", None, &[])));
    }

    #[tokio::test]
    async fn publishes_new_events_to_every_subscription_once() {
        let dir = tempfile::tempdir().unwrap();
        let queues = EmbeddedQueues::open(&dir.path().join("q.redb")).unwrap();
        let provider = Arc::new(EmbeddedTopics::new(queues).unwrap());
        let orders = provider.topic("orders").await.unwrap();
        let all = orders.subscribe("all").await.unwrap();
        let paid = orders.subscribe("paid").await.unwrap();
        let triggers = vec![
            TopicSettings {
                topic: "orders".into(),
                ..TopicSettings::default()
            },
            TopicSettings {
                topic: "orders".into(),
                event_type: Some("order.paid".into()),
                ..TopicSettings::default()
            },
        ];
        let publisher = Publisher::new(
            provider,
            triggers,
            Arc::new(gust_backends::embedded::EmbeddedDedupe::new(
                std::time::Duration::from_secs(60),
                1000,
                1 << 20,
            )),
        );
        let created = event("order.created", None, &[]);
        let paid_event = event("order.paid", None, &[]);
        let report = publisher
            .publish(
                "orders",
                vec![created.clone(), paid_event.clone(), created.clone()],
            )
            .await
            .unwrap();
        assert_eq!(
            (report.accepted, report.duplicates, report.deliveries),
            (2, 1, 3)
        );
        // Every subscription stores every event; consumers filter.
        assert_eq!(all.depth().await.unwrap(), 2);
        assert_eq!(paid.depth().await.unwrap(), 2);
        let stored = paid.peek(2).await.unwrap().remove(1);
        let back = gust_events::from_metadata(&stored.metadata, stored.body, 1).unwrap();
        assert_eq!(back.id, paid_event.id);
        assert_eq!(back.ty, "order.paid");
        let again = publisher
            .publish("nobody", vec![event("x", None, &[])])
            .await
            .unwrap();
        assert_eq!((again.accepted, again.deliveries), (1, 0));
    }
}
