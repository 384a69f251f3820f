//! `panda-feed doctor`: reads the host's tuning (kernel arguments, CPU
//! governor and idle states, transparent huge pages, socket buffers, swap,
//! NIC interrupt affinity, the memlock limit) and prints each setting
//! against the recommendation for the engine's configured cores
//! (`tuning/README.md`). Reads only world-readable files under `/proc` and
//! `/sys` (no root needed); `--root DIR` reads a copy of them instead (the
//! tests' fixtures). Exit 0 when every setting meets its recommendation,
//! 1 when one does not. Runs on the main thread.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::config::env::Layered;

/// Socket buffer maximum recommended for a feed host, bytes.
pub const SOCKET_BUFFER_MIN: u64 = 16 << 20;
/// `net.core.netdev_max_backlog` recommended.
pub const BACKLOG_MIN: u64 = 5000;
/// `vm.swappiness` at or below which swap is acceptable.
pub const SWAPPINESS_MAX: u64 = 10;

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// What is checked.
    pub setting: String,
    /// What the host has.
    pub found: String,
    /// What a feed host should have.
    pub recommended: String,
    /// `ok`, `bad`, or `n/a` (not applicable or not readable here).
    pub status: &'static str,
    /// How to fix a `bad` one.
    pub fix: String,
}

/// The host's files, under `root` (`/` normally).
#[derive(Debug)]
struct Host {
    root: PathBuf,
}

impl Host {
    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(path.trim_start_matches('/')))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    fn number(&self, path: &str) -> Option<u64> {
        self.read(path)?.parse().ok()
    }
}

/// Parses a kernel CPU list (`2-3,5`) into its CPUs; `None` when malformed.
#[must_use]
pub fn cpu_list(s: &str) -> Option<BTreeSet<usize>> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        // `isolcpus` may carry flags first: `isolcpus=domain,managed_irq,2-3`.
        if part.chars().all(|c| c.is_ascii_alphabetic() || c == '_') {
            continue;
        }
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 4096 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(part.parse().ok()?);
            }
        }
    }
    Some(out)
}

fn row(setting: &str, found: String, recommended: String, ok: Option<bool>, fix: &str) -> Row {
    Row {
        setting: setting.to_owned(),
        found,
        recommended,
        status: match ok {
            Some(true) => "ok",
            Some(false) => "bad",
            None => "n/a",
        },
        fix: if ok == Some(false) {
            fix.to_owned()
        } else {
            String::new()
        },
    }
}

fn show(cores: &BTreeSet<usize>) -> String {
    cores
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Every check, for the engine's `cores` (network and publishers) and the
/// NIC named `nic` (if any).
fn checks(h: &Host, cores: &BTreeSet<usize>, nic: Option<&str>) -> Vec<Row> {
    let mut rows = Vec::new();
    let want = if cores.is_empty() {
        "the engine's cores (none configured: set engine.network_core and \
         engine.publisher_cores)"
            .to_owned()
    } else {
        show(cores)
    };
    let online = h.read("/sys/devices/system/cpu/online");
    let online_set = online.as_deref().and_then(cpu_list);
    rows.push(row(
        "engine cores",
        if cores.is_empty() {
            "(none: the engine runs unpinned)".into()
        } else {
            format!(
                "{} (online: {})",
                show(cores),
                online.as_deref().unwrap_or("?")
            )
        },
        "engine.network_core and engine.publisher_cores set, on online cores".into(),
        Some(!cores.is_empty() && online_set.is_none_or(|o| cores.is_subset(&o))),
        "set engine.network_core and engine.publisher_cores to isolated, online cores \
         (one each; not core 0)",
    ));
    let cmdline = h.read("/proc/cmdline").unwrap_or_default();
    let arg = |k: &str| {
        cmdline
            .split_whitespace()
            .find_map(|a| a.strip_prefix(&format!("{k}=")).map(str::to_owned))
    };
    for (k, why) in [
        (
            "isolcpus",
            "keeps the scheduler's other tasks off the engine's cores",
        ),
        ("nohz_full", "stops the scheduler tick on them"),
        ("rcu_nocbs", "moves RCU callbacks off them"),
    ] {
        let found = arg(k);
        let covered = found.as_deref().and_then(cpu_list);
        let ok = (!cores.is_empty()).then(|| covered.is_some_and(|c| cores.is_subset(&c)));
        rows.push(row(
            &format!("kernel {k}"),
            found.unwrap_or_else(|| "(not set)".into()),
            format!("covers {want}"),
            ok,
            &format!(
                "add {k}={} to the kernel command line ({why}); tuning/README.md",
                show(cores)
            ),
        ));
    }
    for &c in cores {
        let g = h.read(&format!(
            "/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"
        ));
        let ok = g.as_deref().map(|g| g == "performance");
        rows.push(row(
            &format!("cpu{c} governor"),
            g.unwrap_or_else(|| "(no cpufreq: a VM, or fixed frequency)".into()),
            "performance".into(),
            ok,
            &format!(
                "echo performance > /sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor \
                 (or cpupower frequency-set -g performance)"
            ),
        ));
    }
    let max_cstate = arg("intel_idle.max_cstate")
        .or_else(|| arg("processor.max_cstate"))
        .or_else(|| h.read("/sys/module/intel_idle/parameters/max_cstate"));
    let idle_poll = arg("idle").is_some_and(|v| v == "poll");
    rows.push(row(
        "deep C-states",
        if idle_poll {
            "idle=poll".into()
        } else {
            max_cstate
                .clone()
                .map_or_else(|| "(no limit found)".into(), |v| format!("max_cstate={v}"))
        },
        "max_cstate <= 1 (or idle=poll)".into(),
        Some(
            idle_poll
                || max_cstate
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|v| v <= 1),
        ),
        "add intel_idle.max_cstate=1 processor.max_cstate=1 to the kernel command line \
         (wake-up from deep C-states costs tens of µs)",
    ));
    let thp = h.read("/sys/kernel/mm/transparent_hugepage/enabled");
    let thp_ok = thp
        .as_deref()
        .map(|t| t.contains("[never]") || t.contains("[madvise]"));
    rows.push(row(
        "transparent huge pages",
        thp.unwrap_or_else(|| "(not readable)".into()),
        "[madvise] or [never]".into(),
        thp_ok,
        "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (khugepaged's \
         compaction stalls are latency spikes)",
    ));
    for (key, path, min) in [
        (
            "net.core.rmem_max",
            "/proc/sys/net/core/rmem_max",
            SOCKET_BUFFER_MIN,
        ),
        (
            "net.core.wmem_max",
            "/proc/sys/net/core/wmem_max",
            SOCKET_BUFFER_MIN,
        ),
        (
            "net.core.netdev_max_backlog",
            "/proc/sys/net/core/netdev_max_backlog",
            BACKLOG_MIN,
        ),
    ] {
        let v = h.number(path);
        rows.push(row(
            key,
            v.map_or_else(|| "(not readable)".into(), |v| v.to_string()),
            format!(">= {min}"),
            v.map(|v| v >= min),
            &format!("sysctl -w {key}={min} (persist: tuning/sysctl.d/90-panda-feed.conf)"),
        ));
    }
    let swaps = h.read("/proc/swaps").unwrap_or_default();
    let swap_on = swaps.lines().count() > 1;
    let swappiness = h.number("/proc/sys/vm/swappiness");
    rows.push(row(
        "swap",
        format!(
            "{}, vm.swappiness={}",
            if swap_on { "on" } else { "off" },
            swappiness.map_or_else(|| "?".into(), |v| v.to_string())
        ),
        format!("off, or vm.swappiness <= {SWAPPINESS_MAX}"),
        Some(!swap_on || swappiness.is_some_and(|v| v <= SWAPPINESS_MAX)),
        "swapoff -a, or sysctl -w vm.swappiness=1",
    ));
    let memlock = h.read("/proc/self/limits").and_then(|l| {
        l.lines()
            .find(|x| x.starts_with("Max locked memory"))
            .map(|x| x.split_whitespace().nth(3).unwrap_or("?").to_owned())
    });
    rows.push(row(
        "memlock limit (soft)",
        memlock.clone().unwrap_or_else(|| "(not readable)".into()),
        "unlimited (systemd: LimitMEMLOCK=infinity)".into(),
        memlock.map(|m| m == "unlimited"),
        "LimitMEMLOCK=infinity in the unit (tuning/panda-feed.service), or ulimit -l \
         unlimited",
    ));
    if let Some(nic) = nic {
        rows.extend(irq_rows(h, cores, nic));
    }
    rows
}

/// The NIC's interrupts must not land on the engine's cores.
fn irq_rows(h: &Host, cores: &BTreeSet<usize>, nic: &str) -> Vec<Row> {
    let interrupts = h.read("/proc/interrupts").unwrap_or_default();
    let irqs: Vec<String> = interrupts
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w.starts_with(nic)))
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_owned()))
        .filter(|n| n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty())
        .collect();
    if irqs.is_empty() {
        return vec![row(
            &format!("{nic} interrupts"),
            "(none found in /proc/interrupts)".into(),
            format!("not on {}", show(cores)),
            None,
            "",
        )];
    }
    irqs.iter()
        .map(|n| {
            let aff = h.read(&format!("/proc/irq/{n}/smp_affinity_list"));
            let ok = aff
                .as_deref()
                .and_then(cpu_list)
                .map(|a| a.is_disjoint(cores));
            row(
                &format!("{nic} irq {n} affinity"),
                aff.unwrap_or_else(|| "(not readable)".into()),
                format!("not on {}", show(cores)),
                ok,
                &format!("tuning/irq-affinity.sh {nic} <housekeeping cpus> (as root)"),
            )
        })
        .collect()
}

/// Runs `doctor`; exit 0 when every setting is as recommended, 1 otherwise
/// (and on a bad config).
#[must_use]
pub fn run(args: &DoctorArgs) -> ExitCode {
    let cfg = match Layered::load(args.config.as_deref()) {
        Ok(l) => l.config,
        Err(p) => {
            eprintln!("panda-feed: invalid settings:\n  {}", p.join("\n  "));
            return ExitCode::FAILURE;
        }
    };
    let mut cores: BTreeSet<usize> = cfg.engine.publisher_cores.iter().copied().collect();
    cores.extend(cfg.engine.network_core);
    let host = Host {
        root: args.root.clone().unwrap_or_else(|| PathBuf::from("/")),
    };
    let rows = checks(&host, &cores, args.nic.as_deref());
    let bad = rows.iter().filter(|r| r.status == "bad").count();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"ok": bad == 0, "cores": cores, "checks": rows})
        );
    } else {
        print_table(&rows);
        println!(
            "{} of {} settings as recommended for cores [{}]{}",
            rows.iter().filter(|r| r.status == "ok").count(),
            rows.len(),
            show(&cores),
            if bad == 0 {
                String::new()
            } else {
                format!("; {bad} to fix (see tuning/README.md)")
            }
        );
    }
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_table(rows: &[Row]) {
    let w = |f: fn(&Row) -> &str| rows.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
    let (ws, wf, wr) = (w(|r| &r.setting), w(|r| &r.found), w(|r| &r.recommended));
    println!(
        "{:ws$}  {:wf$}  {:wr$}  status",
        "setting", "found", "recommended"
    );
    for r in rows {
        println!(
            "{:ws$}  {:wf$}  {:wr$}  {}{}",
            r.setting,
            r.found,
            r.recommended,
            r.status,
            if r.fix.is_empty() {
                String::new()
            } else {
                format!("  -> {}", r.fix)
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_like_the_kernel_writes_them() {
        let l = |s: &str| cpu_list(s).map(|c| c.into_iter().collect::<Vec<_>>());
        assert_eq!(l("2-3,5"), Some(vec![2, 3, 5]));
        assert_eq!(l("domain,managed_irq,2-3"), Some(vec![2, 3]));
        assert_eq!(l(""), Some(vec![]));
        assert_eq!(l("3-2"), None);
        assert_eq!(l("x-1"), None);
        assert_eq!(l("0-99999999"), None, "bounded");
    }
}
