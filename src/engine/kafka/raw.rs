//! The FFI calls the `rdkafka` crate does not wrap: the hot path's
//! `rd_kafka_produce` on a topic handle made once (instead of
//! `rd_kafka_producev` with a per-call `CString`), and, on the failure
//! path, `rd_kafka_message_status`.

use std::ffi::{CString, c_void};
use std::ptr::NonNull;

use rdkafka::bindings as rd;
use rdkafka::producer::{BaseProducer, Producer as _};

use super::{Ctx, ProduceError};
use crate::spool::Persisted;
use rdkafka::error::RDKafkaErrorCode;

/// An `rd_kafka_topic_t` owned by us, destroyed on drop.
#[derive(Debug)]
pub(super) struct Topic(NonNull<rd::rd_kafka_topic_t>);

// SAFETY: librdkafka topic handles are thread-safe (refcounted, with
// internal locking); `rd_kafka_produce` may be called from any thread.
unsafe impl Send for Topic {}

/// What librdkafka knows of a failed record's fate: certainly not
/// written, or possibly written (a request the broker may have received
/// before the timeout). "Persisted" cannot happen for a failure and is
/// mapped to possibly, the safe side.
pub(super) fn persisted(msg: &rdkafka::message::BorrowedMessage<'_>) -> Persisted {
    // SAFETY: `msg.ptr()` points at the `rd_kafka_message_t` librdkafka
    // handed to the delivery callback; it is valid for the borrow of `msg`,
    // and `rd_kafka_message_status` only reads it.
    let status = unsafe { rd::rd_kafka_message_status(msg.ptr()) };
    match status {
        rd::rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_NOT_PERSISTED => Persisted::No,
        _ => Persisted::Possibly,
    }
}

/// Test hook: `rd_kafka_test_fatal_error` on `producer`.
#[cfg(feature = "test-hooks")]
pub(super) fn inject_fatal(producer: &BaseProducer<Ctx>) {
    let reason = c"test hook: injected fatal error";
    // SAFETY: the client pointer is valid for the producer's lifetime and
    // `reason` is a NUL-terminated string that outlives the call, which
    // copies it.
    let _ = unsafe {
        rd::rd_kafka_test_fatal_error(
            producer.client().native_ptr(),
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            reason.as_ptr(),
        )
    };
}

impl Topic {
    pub(super) fn new(producer: &BaseProducer<Ctx>, name: &str) -> Option<Self> {
        let name = CString::new(name).ok()?;
        // SAFETY: the client pointer is valid for the producer's lifetime,
        // `name` is a valid C string, and a null topic config means
        // "defaults". The owner (`TickProducer`) drops this handle before
        // the producer (field order).
        let ptr = unsafe {
            rd::rd_kafka_topic_new(
                producer.client().native_ptr(),
                name.as_ptr(),
                std::ptr::null_mut(),
            )
        };
        NonNull::new(ptr).map(Self)
    }

    #[inline]
    pub(super) fn produce(
        &self,
        key: &[u8],
        payload: &[u8],
        recv_ns: u64,
    ) -> Result<(), ProduceError> {
        // SAFETY: the topic handle is live (owned by `self`); with
        // RD_KAFKA_MSG_F_COPY librdkafka copies key and payload before
        // returning, so the borrowed slices need only outlive the call and
        // the mutable payload pointer is never written through. The
        // opaque is an integer (the receive time), never dereferenced:
        // `Ctx::DeliveryOpaque = usize` turns it back into one.
        let rc = unsafe {
            rd::rd_kafka_produce(
                self.0.as_ptr(),
                rdkafka::producer::PARTITION_UA,
                rd::RD_KAFKA_MSG_F_COPY,
                payload.as_ptr().cast_mut().cast::<c_void>(),
                payload.len(),
                key.as_ptr().cast::<c_void>(),
                key.len(),
                recv_ns as usize as *mut c_void,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        // SAFETY: reads the calling thread's last librdkafka error; no
        // pointers involved.
        let code = RDKafkaErrorCode::from(unsafe { rd::rd_kafka_last_error() });
        Err(match code {
            RDKafkaErrorCode::QueueFull => ProduceError::QueueFull,
            c => ProduceError::Other(c),
        })
    }
}

impl Topic {
    /// `rd_kafka_produce_batch` of `recs` (at most [`super::batch::SUB_BATCH`]),
    /// whose payloads are in `payloads`, to the partitioner's partitions;
    /// sets each record's verdict and returns how many were enqueued. After
    /// a queue-full refusal librdkafka refuses every later record of the
    /// call with the same error, so the enqueued ones are a prefix.
    pub(super) fn produce_batch(
        &self,
        payloads: &[u8],
        recs: &mut [super::batch::BatchRec],
    ) -> usize {
        const N: usize = super::batch::SUB_BATCH;
        let n = recs.len().min(N);
        // SAFETY: `rd_kafka_message_t` is a plain C struct of pointers and
        // integers, for which all-zero bytes are valid (null pointers, error
        // code 0 = no error).
        let mut msgs: [rd::rd_kafka_message_t; N] = unsafe { std::mem::zeroed() };
        for (m, r) in msgs.iter_mut().zip(&recs[..n]) {
            let p = &payloads[r.start as usize..(r.start + r.len) as usize];
            m.payload = p.as_ptr().cast_mut().cast::<c_void>();
            m.len = p.len();
            m.key = r.key.as_ptr().cast_mut().cast::<c_void>();
            m.key_len = usize::from(r.key_len);
            m._private = r.recv_ns as usize as *mut c_void;
        }
        // SAFETY: the topic handle is live (owned by `self`); `msgs[..n]`
        // point into `payloads` and `recs`, which outlive the call, and with
        // RD_KAFKA_MSG_F_COPY librdkafka copies them before returning and
        // never writes through them (it writes only each message's `err`).
        // The opaque is an integer, as in `produce`. `n` ≤ 64 fits a c_int.
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        let good = unsafe {
            rd::rd_kafka_produce_batch(
                self.0.as_ptr(),
                rdkafka::producer::PARTITION_UA,
                rd::RD_KAFKA_MSG_F_COPY,
                msgs.as_mut_ptr(),
                n as std::ffi::c_int,
            )
        };
        for (m, r) in msgs.iter().zip(&mut recs[..n]) {
            r.err = match RDKafkaErrorCode::from(m.err) {
                RDKafkaErrorCode::NoError => None,
                RDKafkaErrorCode::QueueFull => Some(ProduceError::QueueFull),
                c => Some(ProduceError::Other(c)),
            };
        }
        usize::try_from(good).unwrap_or(0)
    }
}

impl Drop for Topic {
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_topic_new` and is
        // destroyed exactly once, while its client is still alive.
        unsafe { rd::rd_kafka_topic_destroy(self.0.as_ptr()) }
    }
}
