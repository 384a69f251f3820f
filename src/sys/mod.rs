//! Every call into libc that needs `unsafe`, kept here (house style: `unsafe`
//! only in `sys/`). Runs on the caller's thread; cold path only.

pub mod mem;
