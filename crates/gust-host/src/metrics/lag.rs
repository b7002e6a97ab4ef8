//! How far each stream-triggered function is behind in each partition of
//! its stream, read from the backend when asked: the metrics scrape
//! ([`super::backlog`]) and the console's `GET /_gust/stats`
//! ([`crate::stats`]) both report it. Every backend call is bounded by
//! [`super::backlog::TIMEOUT`]; a read that errs or is slow is `None`.

use gust_backends::stream::PartitionOffsets;
use gust_manifest::{EventTriggerKind, Trigger};

use super::backlog::bounded;
use crate::app::LoadedApp;
use crate::host::Host;

/// One stream-triggered function and how far behind it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLag<'a> {
    /// The stream the function consumes.
    pub stream: &'a str,
    /// The function.
    pub function: &'a str,
    /// Each partition, in order; `None` when the stream could not be
    /// opened.
    pub partitions: Option<Vec<PartitionLag>>,
}

/// One partition of a [`StreamLag`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition's number.
    pub partition: u32,
    /// The offsets the partition holds; `None` when they could not be read.
    pub offsets: Option<PartitionOffsets>,
    /// The function's checkpoint: `None` when it could not be read,
    /// `Some(None)` before its first commit.
    pub checkpoint: Option<Option<u64>>,
}

impl PartitionLag {
    /// The offset the partition's next record gets.
    pub fn next(&self) -> Option<u64> {
        self.offsets.map(|o| o.next)
    }

    /// Records of the partition the function has not checkpointed yet
    /// (counted from the earliest record still kept); `None` unless both
    /// the offsets and the checkpoint were read.
    pub fn lag(&self) -> Option<u64> {
        let (offsets, checkpoint) = (self.offsets?, self.checkpoint?);
        let consumed = checkpoint.unwrap_or(offsets.earliest).max(offsets.earliest);
        Some(offsets.next.saturating_sub(consumed))
    }
}

/// The lag of every stream-triggered function of `app`, in manifest order.
pub async fn stream_lag<'a>(host: &Host, app: &'a LoadedApp) -> Vec<StreamLag<'a>> {
    let mut out = Vec::new();
    for f in &app.app.functions {
        let Trigger::Event {
            kind: EventTriggerKind::Stream,
            settings,
        } = &f.trigger
        else {
            continue;
        };
        let Some(name) = settings.get("stream").and_then(|v| v.as_str()) else {
            continue;
        };
        let partitions = match bounded(host.streams().stream(name)).await {
            Some(stream) => {
                let mut partitions = Vec::new();
                for partition in 0..stream.partitions() {
                    partitions.push(PartitionLag {
                        partition,
                        offsets: bounded(stream.offsets(partition)).await,
                        checkpoint: bounded(stream.checkpoint(&f.name, partition)).await,
                    });
                }
                Some(partitions)
            }
            None => None,
        };
        out.push(StreamLag {
            stream: name,
            function: &f.name,
            partitions,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(earliest: u64, next: u64, checkpoint: Option<Option<u64>>) -> PartitionLag {
        PartitionLag {
            partition: 0,
            offsets: Some(PartitionOffsets { earliest, next }),
            checkpoint,
        }
    }

    #[test]
    fn lag_counts_from_the_checkpoint_or_the_earliest_record_kept() {
        assert_eq!(partition(0, 10, Some(Some(4))).lag(), Some(6));
        assert_eq!(partition(0, 10, Some(None)).lag(), Some(10));
        // Records before the checkpoint expired: only what is kept counts.
        assert_eq!(partition(8, 10, Some(Some(4))).lag(), Some(2));
        assert_eq!(partition(0, 10, Some(Some(10))).lag(), Some(0));
    }

    #[test]
    fn lag_is_unknown_when_a_read_failed() {
        assert_eq!(partition(0, 10, None).lag(), None);
        let no_offsets = PartitionLag {
            offsets: None,
            ..partition(0, 10, Some(Some(4)))
        };
        assert_eq!(no_offsets.lag(), None);
        assert_eq!(no_offsets.next(), None);
    }
}
