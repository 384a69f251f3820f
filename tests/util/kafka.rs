//! A stock librdkafka consumer that reads a whole topic back, as a user of
//! the feed would.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde_json::Value;

/// After the expected count arrived, how long to keep reading so that a
/// duplicate beyond it would show up in the result.
const LINGER: Duration = Duration::from_millis(500);

/// One record as the consumer saw it.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// Partition it was read from.
    pub(crate) partition: i32,
    /// Key, as UTF-8 text (the instrument token in decimal).
    pub(crate) key: String,
    /// Value, as UTF-8 text, byte for byte.
    pub(crate) value: String,
}

impl Record {
    /// The value parsed as JSON (the envelope). Parsed on demand, after the
    /// run: parsing while the engine runs would compete with it for the CPU.
    pub(crate) fn envelope(&self) -> Value {
        serde_json::from_str(&self.value).expect("the value is JSON")
    }

    /// The `data` object of the envelope, byte for byte as published (the
    /// envelope ends with it).
    pub(crate) fn data_text(&self) -> &str {
        let at = self.value.find(",\"data\":").expect("envelope has data") + 8;
        &self.value[at..self.value.len() - 1]
    }
}

/// Reads `topic` from the beginning of every partition on a thread of its
/// own, until [`Consumer::join`] says how many records to expect (and they
/// arrived, plus [`LINGER`] for duplicates) or until the deadline. Dropped
/// without `join` (a test that failed first), it stops reading.
#[derive(Debug)]
pub(crate) struct Consumer {
    want: Arc<AtomicU64>,
    thread: Option<JoinHandle<Vec<Record>>>,
}

/// `want` value that tells the reading thread to stop now.
const STOP: u64 = u64::MAX;

impl Consumer {
    /// Starts reading now; gives up `timeout` from now.
    pub(crate) fn spawn(bootstrap: &str, topic: &str, partitions: i32, timeout: Duration) -> Self {
        let want = Arc::new(AtomicU64::new(0));
        let (bootstrap, topic, w) = (bootstrap.to_owned(), topic.to_owned(), Arc::clone(&want));
        let thread = std::thread::Builder::new()
            .name("test-consumer".into())
            .spawn(move || read(&bootstrap, &topic, partitions, &w, Instant::now() + timeout))
            .expect("spawn the consumer thread");
        Self {
            want,
            thread: Some(thread),
        }
    }

    /// Waits until `want` records were read (then [`LINGER`] more for
    /// duplicates) or the deadline passed, and returns every record read.
    pub(crate) fn join(mut self, want: u64) -> Vec<Record> {
        assert!(want < STOP, "want {want} records");
        // SeqCst: a plain value handed to the reading thread; no other data
        // travels with it.
        self.want.store(want, Ordering::SeqCst);
        let thread = self.thread.take().expect("joined once");
        thread.join().expect("the consumer thread panicked")
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.want.store(STOP, Ordering::SeqCst);
            // Already failing: what the thread read or why it failed adds
            // nothing.
            let _ = thread.join();
        }
    }
}

fn read(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    want: &AtomicU64,
    deadline: Instant,
) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "panda-feed-test")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition offset");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut linger_until: Option<Instant> = None;
    while Instant::now() < deadline {
        let w = want.load(Ordering::SeqCst);
        if w == STOP {
            break;
        }
        if linger_until.is_none() && w > 0 && out.len() as u64 >= w {
            linger_until = Some(Instant::now() + LINGER);
        }
        if linger_until.is_some_and(|l| Instant::now() >= l) {
            break;
        }
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let key =
                    String::from_utf8(m.key().unwrap_or_default().to_vec()).expect("UTF-8 key");
                let value = String::from_utf8(m.payload().unwrap_or_default().to_vec())
                    .expect("UTF-8 value");
                out.push(Record {
                    partition: m.partition(),
                    key,
                    value,
                });
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    out
}

/// Every record of `topic` as `(key, value)`, read to the high watermark
/// each partition has when the call starts (so duplicates show, without
/// knowing how many records to expect).
pub(crate) fn read_to_end(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    read_to_end_with_partitions(bootstrap, topic, partitions)
        .into_iter()
        .map(|(_, k, v)| (k, v))
        .collect()
}

/// [`read_to_end`] with each record's partition: `(partition, key, value)`.
#[allow(dead_code)] // not every test binary reads partitions
pub(crate) fn read_to_end_with_partitions(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "panda-feed-tests-read-to-end")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut left = BTreeMap::new();
    for p in 0..partitions {
        let (low, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low))
                .unwrap();
            left.insert(p, high);
        }
    }
    let mut out = Vec::new();
    if left.is_empty() {
        return out;
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !left.is_empty() {
        assert!(Instant::now() < deadline, "topic not read to its end");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            out.push((
                m.partition(),
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
            if left
                .get(&m.partition())
                .is_some_and(|&h| m.offset() + 1 >= h)
            {
                left.remove(&m.partition());
            }
        }
    }
    out
}
