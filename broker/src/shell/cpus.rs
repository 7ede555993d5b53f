//! Shards pinned to CPUs: which CPU each shard's thread runs on (a pure choice from the CPUs
//! the process may use, the shard count and `server.pin_cores`), and the two system calls.
//!
//! A pinned shard keeps its caches and its io_uring's kernel work on one CPU, and two shards
//! never share a CPU while another stands idle.

use crate::core::options::PinCores;

/// Where the shards' threads run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Shard `i` on CPU `cpus[i]`.
    Pinned(Vec<usize>),
    /// Wherever the scheduler puts them.
    Unpinned(Unpinned),
}

/// Why the shards are not pinned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unpinned {
    /// `pin_cores = false`.
    Off,
    /// `pin_cores` is `"auto"` and the shard count is not the number of CPUs allowed.
    CountsDiffer {
        /// Shards.
        shards: usize,
        /// CPUs the process may use.
        cpus: usize,
    },
    /// The CPUs the process may use could not be read.
    AffinityUnknown,
}

/// The placement of `shards` shards on the `allowed` CPUs (in ascending order, as
/// [`allowed_cpus`] gives them) under `setting`: shard `i` takes the `i`-th allowed CPU,
/// wrapping round when `pin_cores = true` asks for more shards than there are CPUs.
pub fn place(allowed: &[usize], shards: usize, setting: PinCores) -> Placement {
    let cpus = allowed.len();
    match setting {
        PinCores::Off => return Placement::Unpinned(Unpinned::Off),
        _ if cpus == 0 => return Placement::Unpinned(Unpinned::AffinityUnknown),
        PinCores::Auto if shards != cpus => {
            return Placement::Unpinned(Unpinned::CountsDiffer { shards, cpus });
        }
        PinCores::Auto | PinCores::On => {}
    }
    Placement::Pinned((0..shards).map(|i| allowed[i % cpus]).collect())
}

impl Placement {
    /// The CPU shard `shard` is to be pinned to, if any.
    pub fn cpu_of(&self, shard: usize) -> Option<usize> {
        match self {
            Placement::Pinned(cpus) => cpus.get(shard).copied(),
            Placement::Unpinned(_) => None,
        }
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::Pinned(cpus) => {
                f.write_str("pinned:")?;
                for (shard, cpu) in cpus.iter().enumerate() {
                    let comma = if shard == 0 { "" } else { "," };
                    write!(f, "{comma} shard {shard} on CPU {cpu}")?;
                }
                Ok(())
            }
            Placement::Unpinned(Unpinned::Off) => f.write_str("not pinned (pin_cores = false)"),
            Placement::Unpinned(Unpinned::CountsDiffer { shards, cpus }) => write!(
                f,
                "not pinned: {shards} shards for {cpus} CPUs (pin_cores = true pins anyway)"
            ),
            Placement::Unpinned(Unpinned::AffinityUnknown) => {
                f.write_str("not pinned: the CPUs allowed to the process are unknown")
            }
        }
    }
}

/// The CPUs the process may run on (`sched_getaffinity`), ascending; empty if unreadable.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data, zeroed is an empty set; sched_getaffinity writes at
    // most `size_of::<cpu_set_t>()` bytes into it, and CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: as in `allowed_cpus`; `cpu` is below CPU_SETSIZE, so CPU_SET stays in the set,
    // and pid 0 is the calling thread.
    let result = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_pins_only_when_there_is_one_shard_per_allowed_cpu() {
        assert_eq!(
            place(&[2, 3], 2, PinCores::Auto),
            Placement::Pinned(vec![2, 3])
        );
        assert_eq!(
            place(&[0, 1, 2, 3], 2, PinCores::Auto),
            Placement::Unpinned(Unpinned::CountsDiffer { shards: 2, cpus: 4 })
        );
        assert_eq!(
            place(&[0], 2, PinCores::Auto),
            Placement::Unpinned(Unpinned::CountsDiffer { shards: 2, cpus: 1 })
        );
    }

    #[test]
    fn shard_i_takes_the_i_th_allowed_cpu_not_cpu_i() {
        // A process limited to CPUs 1, 5 and 6 (taskset, cpusets).
        assert_eq!(
            place(&[1, 5, 6], 3, PinCores::Auto),
            Placement::Pinned(vec![1, 5, 6])
        );
        assert_eq!(place(&[1, 5, 6], 2, PinCores::On).cpu_of(1), Some(5));
    }

    #[test]
    fn on_pins_whatever_the_counts_wrapping_round_the_cpus() {
        assert_eq!(
            place(&[0, 1], 5, PinCores::On),
            Placement::Pinned(vec![0, 1, 0, 1, 0])
        );
        assert_eq!(
            place(&[0, 1, 2], 1, PinCores::On),
            Placement::Pinned(vec![0])
        );
    }

    #[test]
    fn off_or_an_unknown_affinity_pins_nothing() {
        assert_eq!(
            place(&[0, 1], 2, PinCores::Off),
            Placement::Unpinned(Unpinned::Off)
        );
        for setting in [PinCores::Auto, PinCores::On] {
            let placement = place(&[], 2, setting);
            assert_eq!(placement, Placement::Unpinned(Unpinned::AffinityUnknown));
            assert_eq!(placement.cpu_of(0), None);
        }
    }

    #[test]
    fn the_log_names_the_cpus_or_the_reason() {
        assert_eq!(
            place(&[0, 3], 2, PinCores::Auto).to_string(),
            "pinned: shard 0 on CPU 0, shard 1 on CPU 3"
        );
        assert_eq!(
            place(&[0, 1, 2, 3], 2, PinCores::Auto).to_string(),
            "not pinned: 2 shards for 4 CPUs (pin_cores = true pins anyway)"
        );
    }

    #[test]
    fn the_allowed_cpus_are_read_and_this_thread_can_be_pinned_to_one() {
        let allowed = allowed_cpus();
        assert!(!allowed.is_empty());
        assert!(allowed.windows(2).all(|w| w[0] < w[1]));
        // On a thread of its own, so the test runner's threads keep their affinity.
        let first = allowed[0];
        let pinned = std::thread::spawn(move || {
            pin_current_thread(first).unwrap();
            allowed_cpus()
        })
        .join()
        .unwrap();
        assert_eq!(pinned, vec![first]);
        assert!(pin_current_thread(libc::CPU_SETSIZE as usize).is_err());
    }
}
