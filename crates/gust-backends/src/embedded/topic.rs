//! Topics beside the queues, in the same redb file.
//!
//! Each subscription is the embedded queue `<topic>--<subscription>`; the
//! table `topic_subscriptions` records which subscriptions each topic has,
//! so a publish after a restart reaches them before anyone subscribes
//! again. Publishing appends the messages to every subscription's queue; the
//! queues' writer folds those appends into one group commit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::queue::EmbeddedQueues;
use crate::queue::check_metadata;
use crate::topic::{Topic, TopicProvider, subscription_queue};
use crate::{BackendError, Queue, Result};

const SUBSCRIPTIONS: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("topic_subscriptions");

fn engine(e: impl std::fmt::Display) -> BackendError {
    BackendError::engine("embedded topic", e)
}

/// Topics on an [`EmbeddedQueues`] file: a [`TopicProvider`].
///
/// Cheap to clone; clones share the registry.
#[derive(Clone)]
pub struct EmbeddedTopics {
    queues: EmbeddedQueues,
    db: Arc<Database>,
    /// Topic -> its subscriptions, as stored.
    registry: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
}

impl std::fmt::Debug for EmbeddedTopics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedTopics").finish_non_exhaustive()
    }
}

impl EmbeddedTopics {
    /// Topics whose subscriptions are queues of `queues` (and whose registry
    /// lives in the same file).
    pub fn new(queues: EmbeddedQueues) -> Result<Self> {
        let db = queues.database();
        {
            let txn = db.begin_write().map_err(engine)?;
            txn.open_table(SUBSCRIPTIONS).map_err(engine)?;
            txn.commit().map_err(engine)?;
        }
        let mut registry: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        {
            let txn = db.begin_read().map_err(engine)?;
            let table = txn.open_table(SUBSCRIPTIONS).map_err(engine)?;
            for row in table.iter().map_err(engine)? {
                let (key, _) = row.map_err(engine)?;
                let (topic, subscription) = key.value();
                registry
                    .entry(topic.to_string())
                    .or_default()
                    .insert(subscription.to_string());
            }
        }
        Ok(Self {
            queues,
            db,
            registry: Arc::new(Mutex::new(registry)),
        })
    }

    fn subscribers(&self, topic: &str) -> Vec<String> {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry
            .get(topic)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Adds (`true`) or removes (`false`) a registry row durably.
    async fn record(&self, topic: &str, subscription: &str, present: bool) -> Result<()> {
        let known = {
            let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
            registry
                .get(topic)
                .is_some_and(|s| s.contains(subscription))
        };
        if known == present {
            return Ok(());
        }
        let db = self.db.clone();
        let (t, s) = (topic.to_string(), subscription.to_string());
        tokio::task::spawn_blocking(move || -> Result<()> {
            let txn = db.begin_write().map_err(engine)?;
            {
                let mut table = txn.open_table(SUBSCRIPTIONS).map_err(engine)?;
                if present {
                    table.insert((t.as_str(), s.as_str()), ()).map_err(engine)?;
                } else {
                    table.remove((t.as_str(), s.as_str())).map_err(engine)?;
                }
            }
            txn.commit().map_err(engine)
        })
        .await
        .map_err(engine)??;
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let set = registry.entry(topic.to_string()).or_default();
        if present {
            set.insert(subscription.to_string());
        } else {
            set.remove(subscription);
            if set.is_empty() {
                registry.remove(topic);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl TopicProvider for EmbeddedTopics {
    async fn topic(&self, name: &str) -> Result<Arc<dyn Topic>> {
        if name.is_empty() {
            return Err(BackendError::NoSuchResource(String::new()));
        }
        Ok(Arc::new(EmbeddedTopic {
            topics: self.clone(),
            name: name.to_string(),
        }))
    }

    async fn topics(&self) -> Result<Vec<String>> {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        Ok(registry.keys().cloned().collect())
    }
}

/// One topic of an [`EmbeddedTopics`] registry.
#[derive(Debug)]
pub struct EmbeddedTopic {
    topics: EmbeddedTopics,
    name: String,
}

#[async_trait]
impl Topic for EmbeddedTopic {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, messages: Vec<(Vec<u8>, BTreeMap<String, String>)>) -> Result<()> {
        for (_, metadata) in &messages {
            check_metadata(metadata)?;
        }
        let sends = self.topics.subscribers(&self.name).into_iter().map(|s| {
            let queue = self
                .topics
                .queues
                .open_queue(&subscription_queue(&self.name, &s));
            let messages = messages.clone();
            async move { queue?.send_batch(messages).await }
        });
        for result in futures::future::join_all(sends).await {
            result?;
        }
        Ok(())
    }

    async fn subscribe(&self, name: &str) -> Result<Arc<dyn Queue>> {
        if name.is_empty() {
            return Err(BackendError::NoSuchResource(String::new()));
        }
        let queue = self
            .topics
            .queues
            .open_queue(&subscription_queue(&self.name, name))?;
        self.topics.record(&self.name, name, true).await?;
        Ok(Arc::new(queue))
    }

    async fn unsubscribe(&self, name: &str) -> Result<()> {
        self.topics.record(&self.name, name, false).await?;
        self.topics
            .queues
            .open_queue(&subscription_queue(&self.name, name))?
            .purge()
            .await?;
        Ok(())
    }

    async fn subscriptions(&self) -> Result<Vec<String>> {
        Ok(self.topics.subscribers(&self.name))
    }
}
