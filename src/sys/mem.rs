//! `engine.mlockall`: locks the process's memory so no ring page is ever
//! paged out (tuning/README.md, "Memory locking"). Called once, on the main
//! thread, by `Engine::start` after the rings and threads exist. A failure
//! is a warning naming `RLIMIT_MEMLOCK` / `LimitMEMLOCK` and the fix, never
//! an error: the feed runs unlocked.

/// What [`lock_all`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locked {
    /// Everything mapped now and every later mapping is locked
    /// (`MCL_CURRENT | MCL_FUTURE`).
    All,
    /// Only what is mapped now (rings, thread stacks, buffers allocated at
    /// start) is locked: `RLIMIT_MEMLOCK` is finite, and a process locking
    /// its future mappings gets `ENOMEM` from any allocation past it.
    Current {
        /// `RLIMIT_MEMLOCK`, bytes.
        limit: u64,
    },
}

/// `RLIMIT_MEMLOCK` (soft), bytes; `None` for unlimited.
#[must_use]
pub fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable `rlimit`; getrlimit only writes it.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &raw mut r) };
    if rc != 0 || r.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(r.rlim_cur)
}

/// `CAP_IPC_LOCK` (bit 14) is in the effective set (`/proc/self/status`,
/// `CapEff`): the memlock limit does not apply then.
#[must_use]
pub fn has_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Turns transparent huge pages off for this process and its children
/// (`prctl(PR_SET_THP_DISABLE)`, Linux 3.15): page faults from now on map
/// 4 KiB pages whatever the allocator's `madvise` asks.
///
/// # Errors
/// `prctl` failed: the message names the call and the error.
pub fn disable_thp() -> Result<(), String> {
    // SAFETY: prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) takes integers only
    // and touches no memory of ours.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_THP_DISABLE,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "prctl(PR_SET_THP_DISABLE) failed: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// Locks the process's memory: all of it, now and later, when
/// `RLIMIT_MEMLOCK` is unlimited or the process holds `CAP_IPC_LOCK`;
/// otherwise what is mapped now.
///
/// # Errors
/// `mlockall` failed: the message names the limit, the error and the fix.
pub fn lock_all() -> Result<Locked, String> {
    let limit = memlock_limit();
    let all = limit.is_none() || has_ipc_lock();
    // MCL_ONFAULT (Linux 4.4): lock each page when it is first touched, not
    // every page mapped: without it the allocator's reserved arenas and
    // every thread's whole stack become resident (over 1 GiB measured for
    // `run --mock`; tuning/README.md, "Memory locking").
    let flags = if all {
        libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT
    } else {
        libc::MCL_CURRENT | libc::MCL_ONFAULT
    };
    // SAFETY: mlockall takes flags only and touches no memory of ours.
    let rc = unsafe { libc::mlockall(flags) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let lim = limit.map_or_else(|| "unlimited".to_owned(), |l| format!("{l} bytes"));
        return Err(format!(
            "engine.mlockall: mlockall failed: {e} (RLIMIT_MEMLOCK is {lim}); the feed runs \
             with pageable memory. Fix: raise the memlock limit (LimitMEMLOCK=infinity in the \
             systemd unit, tuning/panda-feed.service; `ulimit -l unlimited` in a shell; or \
             grant CAP_IPC_LOCK), or set engine.mlockall = false"
        ));
    }
    Ok(match limit {
        Some(limit) if !all => Locked::Current { limit },
        _ => Locked::All,
    })
}
