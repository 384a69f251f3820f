//! The lookup of `dlq requeue`: which possibly-delivered records are on
//! their topic already. Runs on the main thread of the `dlq` process with
//! a consumer of its own (no group: assigned partitions, explicit offsets).
//!
//! For each topic, every partition is read from the offset of the oldest
//! record's first failure minus a margin (`offsets_for_times`; from the
//! partition's start when the broker cannot look offsets up by time) up to
//! its high watermark at lookup time (or its end, when it reports one). A record is found when a message has
//! its topic, key and value, byte for byte (the value carries the record's
//! identity: connection, sequence number, receive time).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::spool::Record;

fn content_hash(topic: &str, key: &[u8], value: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    (topic, key, value).hash(&mut h);
    h.finish()
}

fn remaining(deadline: Instant) -> anyhow::Result<Duration> {
    let r = deadline.saturating_duration_since(Instant::now());
    if r.is_zero() {
        bail!("the requeue deadline passed during the lookup");
    }
    Ok(r)
}

/// The records to look up, by hash of their content (the records
/// themselves stay on disk: a lookup of a large spool holds 16 bytes per
/// record, plus the matching messages).
#[derive(Debug, Default)]
pub(super) struct Wanted {
    /// How many records of each content are wanted.
    count: HashMap<u64, usize>,
    /// Oldest first failure per topic, ns.
    oldest: BTreeMap<String, u64>,
}

impl Wanted {
    /// Adds a record to look up.
    pub(super) fn add(&mut self, r: &Record) {
        *self
            .count
            .entry(content_hash(&r.topic, &r.key, &r.payload))
            .or_default() += 1;
        let o = self.oldest.entry(r.topic.clone()).or_insert(u64::MAX);
        *o = (*o).min(r.first_failure_ns);
    }

    /// Number of records to look up.
    pub(super) fn len(&self) -> usize {
        self.count.values().sum()
    }
}

/// A message's topic, key and value.
type Content = (String, Vec<u8>, Vec<u8>);

/// Messages found on the topics whose content hash is wanted, with their
/// content, to be matched exactly against the records.
#[derive(Debug, Default)]
pub(super) struct Found {
    msgs: HashMap<u64, Vec<Content>>,
}

impl Found {
    /// `true` (and the message used up) when `r` is on its topic: a message
    /// with its topic, key and value, byte for byte.
    pub(super) fn take(&mut self, r: &Record) -> bool {
        let Some(v) = self
            .msgs
            .get_mut(&content_hash(&r.topic, &r.key, &r.payload))
        else {
            return false;
        };
        let Some(at) = v
            .iter()
            .position(|(t, k, p)| *t == r.topic && *k == r.key && *p == r.payload)
        else {
            return false;
        };
        v.swap_remove(at);
        true
    }
}

/// Reads, on every partition of the wanted records' topics, from the
/// oldest first failure minus `margin` up to the end, keeping the messages
/// whose content is wanted.
///
/// # Errors
/// The broker cannot be asked, or the lookup does not reach the end of
/// every partition before `deadline`: nothing is then known to be absent.
pub(super) fn find(
    brokers: &str,
    wanted: &Wanted,
    margin: Duration,
    deadline: Instant,
) -> anyhow::Result<Found> {
    let mut found = Found::default();
    if wanted.count.is_empty() {
        return Ok(found);
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "panda-feed-dlq-lookup")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // End of partition reported: gaps below the high watermark
        // (compaction, control records) do not stall the lookup.
        .set("enable.partition.eof", "true")
        .create()
        .context("creating the lookup consumer")?;
    let margin_ms = u64::try_from(margin.as_millis()).unwrap_or(u64::MAX);
    let mut assign = TopicPartitionList::new();
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    for (topic, &ns) in &wanted.oldest {
        let topic = topic.as_str();
        let md = consumer
            .fetch_metadata(Some(topic), remaining(deadline)?)
            .with_context(|| format!("metadata of topic {topic}"))?;
        let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
            bail!("topic {topic} is not known to the broker");
        };
        if let Some(e) = t.error() {
            bail!("topic {topic}: {e:?}");
        }
        let from_ms = i64::try_from((ns / 1_000_000).saturating_sub(margin_ms)).unwrap_or(0);
        let ask = |ms: i64| -> anyhow::Result<Option<TopicPartitionList>> {
            let mut q = TopicPartitionList::new();
            for p in t.partitions() {
                q.add_partition_offset(topic, p.id(), Offset::Offset(ms))?;
            }
            Ok(consumer.offsets_for_times(q, remaining(deadline)?).ok())
        };
        let at = |l: &Option<TopicPartitionList>, p: i32| {
            l.as_ref()
                .and_then(|l| l.find_partition(topic, p))
                .map(|e| e.offset())
        };
        let starts = ask(from_ms)?;
        // A broker that answers by time gives the first offset for time 0
        // on a non-empty partition; one that cannot (librdkafka's mock
        // cluster) says "none". Only the former's "none after that time"
        // means the records cannot be there; otherwise partitions are read
        // from their start: slower, never wrong.
        let probe = ask(0)?;
        let mut marks = Vec::new();
        let mut by_time_works = false;
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), remaining(deadline)?)
                .with_context(|| format!("watermarks of {topic}/{}", p.id()))?;
            by_time_works |= high > low && matches!(at(&probe, p.id()), Some(Offset::Offset(_)));
            marks.push((p.id(), low, high));
        }
        for (p, low, high) in marks {
            let start = match at(&starts, p) {
                Some(Offset::Offset(o)) if o >= low => o,
                Some(Offset::End) if by_time_works => high,
                _ => low,
            };
            if start < high {
                assign.add_partition_offset(topic, p, Offset::Offset(start))?;
                ends.insert((topic.to_owned(), p), high);
            }
        }
    }
    if ends.is_empty() {
        return Ok(found);
    }
    consumer.assign(&assign).context("assigning the lookup")?;
    while !ends.is_empty() {
        let wait = remaining(deadline)
            .with_context(|| format!("{} partitions not read to their end", ends.len()))?;
        let Some(m) = consumer.poll(wait.min(Duration::from_millis(200))) else {
            continue;
        };
        let m = match m {
            Ok(m) => m,
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => {
                let pos = consumer.position().context("lookup position")?;
                ends.retain(|(t, p), high| {
                    !pos.find_partition(t, *p)
                        .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= *high))
                });
                continue;
            }
            Err(e) => return Err(e).context("reading the topic for the lookup"),
        };
        let (topic, key, value) = (
            m.topic(),
            m.key().unwrap_or_default(),
            m.payload().unwrap_or_default(),
        );
        let h = content_hash(topic, key, value);
        if let Some(&n) = wanted.count.get(&h) {
            let v = found.msgs.entry(h).or_default();
            if v.len() < n {
                v.push((topic.to_owned(), key.to_vec(), value.to_vec()));
            }
        }
        let k = (topic.to_owned(), m.partition());
        if ends.get(&k).is_some_and(|&high| m.offset() + 1 >= high) {
            ends.remove(&k);
        }
    }
    Ok(found)
}
