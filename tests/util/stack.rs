//! The default set-up of an engine test: a mock exchange, an embedded Kafka
//! broker and an engine between them, in a temp dir of their own. A test
//! states only what differs from it:
//!
//! ```ignore
//! let mut s = Stack::builder()
//!     .mock(|m| m.rate_per_s = 2_000)
//!     .engine(|c| c.supervision.liveness = Duration::from_secs(1))
//!     .start();
//! assert!(wait_until(Duration::from_secs(20), || s.engine.counts().received > 100));
//! ```
//!
//! This is the only file of the harness that names the engine's API
//! (`Engine`, `EngineConfig`, `engine_config`): a rename in the engine is a
//! fix here, and in the tests that call it by name.

use std::path::PathBuf;
use std::time::Duration;

use panda_feed::config::{IdlePolicy, KafkaConfig, defaults};
use panda_feed::engine::{Engine, EngineConfig};
use panda_feed::mock::{EmbeddedBroker, Faults, MockConfig, MockExchange, default_instruments};
use panda_feed::secret::Secret;

use super::kafka::Consumer;
use super::temp::TempDir;

/// Topic of the default set-up (the engine's default topic).
pub(crate) const TOPIC: &str = defaults::TOPIC;
/// Partitions of the default topic.
pub(crate) const PARTITIONS: i32 = 8;
/// Instruments subscribed by default (of the mock's default instruments).
pub(crate) const INSTRUMENTS: usize = 60;
/// How long [`Stack::consume`] reads before giving up.
pub(crate) const CONSUME_TIMEOUT: Duration = Duration::from_secs(120);

/// The engine settings the engine and ops tests share: the mock's
/// credentials, `n_instruments` of its default instruments, 2 parked
/// publishers, `linger.ms` 2.
pub(crate) fn engine_config(
    mock: &MockExchange,
    brokers: &str,
    n_instruments: usize,
) -> EngineConfig {
    EngineConfig {
        ws_url: mock.ws_url(),
        api_key: Secret::new(defaults::MOCK_API_KEY),
        access_token: Secret::new(defaults::MOCK_ACCESS_TOKEN),
        instruments: default_instruments(n_instruments)
            .iter()
            .map(|i| (i.token, i.mode.expect("default instruments have a mode")))
            .collect(),
        publishers: 2,
        idle: IdlePolicy::Park,
        kafka: KafkaConfig {
            brokers: brokers.to_owned(),
            linger_ms: 2,
            ..KafkaConfig::default()
        },
        ..EngineConfig::default()
    }
}

/// A mock exchange with `MockConfig::default()` changed by `f`.
pub(crate) fn start_mock(f: impl FnOnce(&mut MockConfig)) -> MockExchange {
    let mut cfg = MockConfig::default();
    f(&mut cfg);
    MockExchange::start(cfg).expect("the mock exchange starts")
}

/// A one-broker embedded Kafka cluster with `topic` of `partitions`.
pub(crate) fn start_broker(topic: &str, partitions: i32) -> EmbeddedBroker {
    EmbeddedBroker::start(1, topic, partitions).expect("the embedded broker starts")
}

type EngineEdit = Box<dyn FnOnce(&mut EngineConfig)>;
type FaultsEdit = Box<dyn FnOnce(&Faults)>;

/// What differs from the default set-up; [`StackBuilder::start`] starts it.
pub(crate) struct StackBuilder {
    tag: &'static str,
    mock: MockConfig,
    record: bool,
    partitions: i32,
    instruments: usize,
    faults: Option<FaultsEdit>,
    engine: Option<EngineEdit>,
}

impl std::fmt::Debug for StackBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackBuilder")
            .field("mock", &self.mock)
            .field("record", &self.record)
            .field("partitions", &self.partitions)
            .field("instruments", &self.instruments)
            .finish_non_exhaustive()
    }
}

impl StackBuilder {
    /// Changes the mock exchange's settings (default: `MockConfig::default()`).
    pub(crate) fn mock(mut self, f: impl FnOnce(&mut MockConfig)) -> Self {
        f(&mut self.mock);
        self
    }

    /// The mock records every message it sends to [`Stack::record`].
    pub(crate) fn record(mut self) -> Self {
        self.record = true;
        self
    }

    /// Partitions of the topic (default [`PARTITIONS`]).
    pub(crate) fn partitions(mut self, n: i32) -> Self {
        self.partitions = n;
        self
    }

    /// Instruments subscribed (default [`INSTRUMENTS`]).
    pub(crate) fn instruments(mut self, n: usize) -> Self {
        self.instruments = n;
        self
    }

    /// Sets fault switches on the mock before the engine connects.
    pub(crate) fn faults(mut self, f: impl FnOnce(&Faults) + 'static) -> Self {
        self.faults = Some(Box::new(f));
        self
    }

    /// Changes the engine's settings (default: [`engine_config`], with the
    /// spool in [`Stack::spool_dir`]).
    pub(crate) fn engine(mut self, f: impl FnOnce(&mut EngineConfig) + 'static) -> Self {
        self.engine = Some(Box::new(f));
        self
    }

    /// Names the temp dir after the test (default `stack`).
    pub(crate) fn tag(mut self, tag: &'static str) -> Self {
        self.tag = tag;
        self
    }

    /// Starts the temp dir, the broker and the mock exchange, without an
    /// engine (for tests that run the binary against them).
    pub(crate) fn start_exchange(mut self) -> Exchange {
        let dir = TempDir::new(self.tag);
        let broker = start_broker(TOPIC, self.partitions);
        if self.record {
            self.mock.record = Some(dir.join("sent.bin"));
        }
        let mock = MockExchange::start(self.mock).expect("the mock exchange starts");
        if let Some(f) = self.faults {
            f(mock.faults());
        }
        Exchange {
            mock,
            broker,
            partitions: self.partitions,
            dir,
        }
    }

    /// Starts everything: temp dir, broker, mock exchange (faults set), then
    /// the engine.
    pub(crate) fn start(mut self) -> Stack {
        let instruments = self.instruments;
        let edit = self.engine.take();
        let x = self.start_exchange();
        let mut cfg = engine_config(&x.mock, x.broker.bootstrap_servers(), instruments);
        cfg.spool.dir = x.dir.join("spool");
        if let Some(f) = edit {
            f(&mut cfg);
        }
        let engine = Engine::start(cfg).expect("the engine starts");
        Stack {
            engine,
            mock: x.mock,
            broker: x.broker,
            partitions: x.partitions,
            dir: x.dir,
        }
    }
}

/// A mock exchange and a broker, no engine.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// The mock exchange.
    pub(crate) mock: MockExchange,
    /// The embedded broker, with [`TOPIC`].
    pub(crate) broker: EmbeddedBroker,
    partitions: i32,
    /// The temp dir of this set-up (record file, spool, files of the test).
    pub(crate) dir: TempDir,
}

impl Exchange {
    /// `bootstrap.servers` of the broker.
    pub(crate) fn brokers(&self) -> &str {
        self.broker.bootstrap_servers()
    }

    /// A consumer reading [`TOPIC`] from the beginning, for up to `timeout`.
    pub(crate) fn consume_within(&self, timeout: Duration) -> Consumer {
        Consumer::spawn(self.brokers(), TOPIC, self.partitions, timeout)
    }
}

/// The default set-up, running. Fields are public so a test can stop the
/// engine (`s.engine.stop()`) or the mock (`s.mock.stop()`) and keep using
/// the rest. Dropped in field order: engine first, temp dir last.
#[derive(Debug)]
pub(crate) struct Stack {
    /// The engine under test.
    pub(crate) engine: Engine,
    /// The mock exchange it reads.
    pub(crate) mock: MockExchange,
    /// The embedded broker it publishes to, with [`TOPIC`].
    pub(crate) broker: EmbeddedBroker,
    partitions: i32,
    /// The temp dir of this set-up.
    pub(crate) dir: TempDir,
}

impl Stack {
    /// The default set-up, to be changed by the builder's methods.
    pub(crate) fn builder() -> StackBuilder {
        StackBuilder {
            tag: "stack",
            mock: MockConfig::default(),
            record: false,
            partitions: PARTITIONS,
            instruments: INSTRUMENTS,
            faults: None,
            engine: None,
        }
    }

    /// `bootstrap.servers` of the broker.
    pub(crate) fn brokers(&self) -> &str {
        self.broker.bootstrap_servers()
    }

    /// The mock's record file (set by [`StackBuilder::record`]).
    pub(crate) fn record(&self) -> PathBuf {
        self.dir.join("sent.bin")
    }

    /// The engine's dead-letter spool directory.
    pub(crate) fn spool_dir(&self) -> PathBuf {
        self.dir.join("spool")
    }

    /// A consumer reading [`TOPIC`] from the beginning, for up to
    /// [`CONSUME_TIMEOUT`]; [`Consumer::join`] says how many to expect.
    pub(crate) fn consume(&self) -> Consumer {
        self.consume_within(CONSUME_TIMEOUT)
    }

    /// A consumer reading [`TOPIC`] from the beginning, for up to `timeout`.
    pub(crate) fn consume_within(&self, timeout: Duration) -> Consumer {
        Consumer::spawn(self.brokers(), TOPIC, self.partitions, timeout)
    }
}
