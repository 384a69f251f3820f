//! `panda-feed doctor` against fixture hosts (`--root`): a tuned host passes
//! (exit 0), an untuned one fails (exit 1) with a fix per bad row, a VM
//! without cpufreq is `n/a` there, not a failure, and malformed files are
//! reported, never a panic.

mod util;

use std::path::Path;

use serde_json::Value;
use util::TempDir;
use util::cli::{output, panda_feed};

/// Writes `files` (path under the root, content) into a fixture root.
fn host(dir: &TempDir, name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let root = dir.join(name);
    for (p, content) in files {
        let f = root.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, content).unwrap();
    }
    root
}

const TUNED: &[(&str, &str)] = &[
    (
        "proc/cmdline",
        "BOOT_IMAGE=/vmlinuz root=/dev/sda1 isolcpus=domain,managed_irq,2-3 nohz_full=2-3 \
         rcu_nocbs=2-3 intel_idle.max_cstate=1 processor.max_cstate=1\n",
    ),
    ("sys/devices/system/cpu/online", "0-3\n"),
    (
        "sys/devices/system/cpu/cpu2/cpufreq/scaling_governor",
        "performance\n",
    ),
    (
        "sys/devices/system/cpu/cpu3/cpufreq/scaling_governor",
        "performance\n",
    ),
    (
        "sys/kernel/mm/transparent_hugepage/enabled",
        "always [madvise] never\n",
    ),
    ("proc/sys/net/core/rmem_max", "16777216\n"),
    ("proc/sys/net/core/wmem_max", "33554432\n"),
    ("proc/sys/net/core/netdev_max_backlog", "5000\n"),
    ("proc/swaps", "Filename Type Size Used Priority\n"),
    ("proc/sys/vm/swappiness", "60\n"),
    (
        "proc/self/limits",
        "Limit                     Soft Limit           Hard Limit           Units\n\
         Max locked memory         unlimited            unlimited            bytes\n",
    ),
    (
        "proc/interrupts",
        "           CPU0       CPU1       CPU2       CPU3\n\
          24:          1          0          0          0   PCI-MSI 512000-edge      eth0-TxRx-0\n\
          25:          0          1          0          0   PCI-MSI 512001-edge      eth0-TxRx-1\n\
          30:          0          0          0          0   PCI-MSI 1-edge      nvme0q0\n",
    ),
    ("proc/irq/24/smp_affinity_list", "0\n"),
    ("proc/irq/25/smp_affinity_list", "0-1\n"),
];

fn doctor(root: &Path, config: &Path, extra: &[&str]) -> (i32, Value) {
    let out = output(
        panda_feed(["doctor", "--json", "--nic", "eth0", "--root"])
            .arg(root)
            .arg("--config")
            .arg(config)
            .args(extra),
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), v)
}

fn status<'a>(v: &'a Value, setting: &str) -> &'a str {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["setting"] == setting)
        .unwrap_or_else(|| panic!("no row {setting}: {v}"))["status"]
        .as_str()
        .unwrap()
}

#[test]
fn a_tuned_host_passes_and_an_untuned_one_gets_a_fix_per_setting() {
    let dir = TempDir::new("doctor");
    let config = dir.file(
        "feed.toml",
        "[engine]\npublishers = 1\nnetwork_core = 2\npublisher_cores = [3]\n",
    );
    let tuned = host(&dir, "tuned", TUNED);
    let (code, v) = doctor(&tuned, &config, &[]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["ok"], true);
    assert_eq!(status(&v, "eth0 irq 25 affinity"), "ok");

    // Every setting off its recommendation.
    let mut bad: Vec<(&str, &str)> = TUNED.to_vec();
    let set = |b: &mut Vec<(&str, &'static str)>, p: &str, c: &'static str| {
        b.iter_mut().find(|x| x.0 == p).unwrap().1 = c;
    };
    set(
        &mut bad,
        "proc/cmdline",
        "BOOT_IMAGE=/vmlinuz isolcpus=3 nohz_full=2-3\n",
    );
    set(
        &mut bad,
        "sys/devices/system/cpu/cpu3/cpufreq/scaling_governor",
        "powersave\n",
    );
    set(
        &mut bad,
        "sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never\n",
    );
    set(&mut bad, "proc/sys/net/core/rmem_max", "212992\n");
    set(
        &mut bad,
        "proc/swaps",
        "Filename Type Size Used Priority\n/swap.img file 1 0 -2\n",
    );
    set(&mut bad, "proc/irq/25/smp_affinity_list", "0-3\n");
    let untuned = host(&dir, "untuned", &bad);
    let (code, v) = doctor(&untuned, &config, &[]);
    assert_eq!(code, 1, "{v:#}");
    for s in [
        "kernel isolcpus",
        "kernel rcu_nocbs",
        "cpu3 governor",
        "transparent huge pages",
        "net.core.rmem_max",
        "swap",
        "deep C-states",
        "eth0 irq 25 affinity",
    ] {
        assert_eq!(status(&v, s), "bad", "{s}: {v:#}");
    }
    assert_eq!(status(&v, "kernel nohz_full"), "ok");
    assert_eq!(status(&v, "eth0 irq 24 affinity"), "ok");
    for r in v["checks"].as_array().unwrap() {
        assert_eq!(
            r["status"] == "bad",
            r["fix"] != "",
            "a fix for every bad row: {r}"
        );
    }
}

#[test]
fn a_vm_without_cpufreq_is_not_applicable_and_garbage_never_panics() {
    let dir = TempDir::new("doctor-vm");
    let config = dir.file(
        "feed.toml",
        "[engine]\nnetwork_core = 2\npublisher_cores = [3]\n",
    );
    let vm: Vec<(&str, &str)> = TUNED
        .iter()
        .copied()
        .filter(|(p, _)| !p.contains("cpufreq"))
        .collect();
    let root = host(&dir, "vm", &vm);
    let (code, v) = doctor(&root, &config, &[]);
    assert_eq!(status(&v, "cpu2 governor"), "n/a");
    assert_eq!(code, 0, "n/a is not a failure: {v:#}");

    let junk = host(
        &dir,
        "junk",
        &[
            (
                "proc/cmdline",
                "isolcpus=9-2 nohz_full=\u{1b}[2J rcu_nocbs=,,,\n",
            ),
            ("proc/sys/net/core/rmem_max", "lots\n"),
            ("proc/interrupts", ":::\n eth0\n"),
        ],
    );
    let (code, v) = doctor(&junk, &config, &[]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(status(&v, "kernel isolcpus"), "bad");
    assert_eq!(status(&v, "net.core.rmem_max"), "n/a");

    // No cores configured: the pinning row says so.
    let none = dir.file("none.toml", "");
    let (code, v) = doctor(&root, &none, &[]);
    assert_eq!(code, 1);
    assert_eq!(status(&v, "engine cores"), "bad");
}
