//! The embedded Kafka-protocol broker of `run --mock`, `mock-kafka`, the
//! tests and the perf harness: librdkafka's mock cluster on its own thread.
//! Development tooling, not part of the engine.

use std::sync::mpsc;
use std::thread::JoinHandle;

/// An embedded Kafka-protocol broker: librdkafka's mock cluster, owned by a
/// thread of its own (the cluster handle is not `Send`). Stops on drop.
/// Faults (broker down/up) are commands to that thread.
#[derive(Debug)]
pub struct EmbeddedBroker {
    bootstrap: String,
    cmd: Option<mpsc::Sender<BrokerCmd>>,
    thread: Option<JoinHandle<()>>,
}

enum BrokerCmd {
    Down(i32, mpsc::Sender<Result<(), String>>),
    Up(i32, mpsc::Sender<Result<(), String>>),
    Rtt(i32, std::time::Duration, mpsc::Sender<Result<(), String>>),
    ProduceErrors(
        Vec<rdkafka::types::RDKafkaRespErr>,
        mpsc::Sender<Result<(), String>>,
    ),
}

impl EmbeddedBroker {
    /// Starts a cluster of `brokers` brokers with `topic` created with
    /// `partitions` partitions, and returns once it accepts connections.
    ///
    /// # Errors
    /// When the cluster or the topic cannot be created.
    pub fn start(brokers: i32, topic: &str, partitions: i32) -> Result<Self, String> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let (cmd_tx, cmd_rx) = mpsc::channel::<BrokerCmd>();
        let topic = topic.to_owned();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let cluster = match rdkafka::mocking::MockCluster::new(brokers) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start the mock cluster: {e}")));
                        return;
                    }
                };
                // The ticks' topic, the order postbacks' and the bars'
                // (default names), with the same partitions.
                let mut topics = vec![
                    topic.as_str(),
                    crate::config::defaults::ORDERS_TOPIC,
                    crate::config::defaults::BARS_TOPIC,
                ];
                topics.sort_unstable();
                topics.dedup();
                for t in topics {
                    if let Err(e) = cluster.create_topic(t, partitions, 1) {
                        let _ = ready_tx.send(Err(format!("cannot create topic {t:?}: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Serves commands until the handle is dropped.
                while let Ok(cmd) = cmd_rx.recv() {
                    match cmd {
                        BrokerCmd::Down(id, reply) => {
                            let _ = reply.send(cluster.broker_down(id).map_err(|e| e.to_string()));
                        }
                        BrokerCmd::Rtt(id, rtt, reply) => {
                            let _ = reply.send(
                                cluster
                                    .broker_round_trip_time(id, rtt)
                                    .map_err(|e| e.to_string()),
                            );
                        }
                        BrokerCmd::Up(id, reply) => {
                            let _ = reply.send(cluster.broker_up(id).map_err(|e| e.to_string()));
                        }
                        BrokerCmd::ProduceErrors(errs, reply) => {
                            cluster.request_errors(rdkafka::types::RDKafkaApiKey::Produce, &errs);
                            let _ = reply.send(Ok(()));
                        }
                    }
                }
                drop(cluster);
            })
            .map_err(|e| format!("cannot spawn the embedded broker thread: {e}"))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| "the embedded broker thread exited during start-up".to_owned())??;
        Ok(Self {
            bootstrap,
            cmd: Some(cmd_tx),
            thread: Some(thread),
        })
    }

    /// `bootstrap.servers` of the cluster (`127.0.0.1:PORT,…`).
    #[must_use]
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    fn call(
        &self,
        make: impl FnOnce(mpsc::Sender<Result<(), String>>) -> BrokerCmd,
    ) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        self.cmd
            .as_ref()
            .ok_or("broker stopped")?
            .send(make(tx))
            .map_err(|_| "broker thread gone".to_owned())?;
        rx.recv().map_err(|_| "broker thread gone".to_owned())?
    }

    /// Takes broker `id` (1-based) down: connections to it fail.
    ///
    /// # Errors
    /// The mock cluster refused.
    pub fn broker_down(&self, id: i32) -> Result<(), String> {
        self.call(|r| BrokerCmd::Down(id, r))
    }

    /// Brings broker `id` back up.
    ///
    /// # Errors
    /// The mock cluster refused.
    pub fn broker_up(&self, id: i32) -> Result<(), String> {
        self.call(|r| BrokerCmd::Up(id, r))
    }

    /// Delays every response of broker `id` by `rtt`: a stalled broker that
    /// still receives (and appends) what it is sent, unlike
    /// [`broker_down`](Self::broker_down). `Duration::ZERO` restores it.
    ///
    /// # Errors
    /// The mock cluster refused.
    pub fn set_rtt(&self, id: i32, rtt: std::time::Duration) -> Result<(), String> {
        self.call(|r| BrokerCmd::Rtt(id, rtt, r))
    }

    /// The next Produce requests fail with these errors, one request each
    /// (the records of a failed request are not appended).
    ///
    /// # Errors
    /// The broker thread is gone.
    pub fn push_produce_errors(
        &self,
        errs: Vec<rdkafka::types::RDKafkaRespErr>,
    ) -> Result<(), String> {
        self.call(|r| BrokerCmd::ProduceErrors(errs, r))
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        drop(self.cmd.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
