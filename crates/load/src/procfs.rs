//! What Linux says about a process: CPU time (utime and stime of every thread, from
//! /proc/PID/stat), resident memory (VmRSS from /proc/PID/status) and proportional memory
//! (Pss from /proc/PID/smaps_rollup). PSS is what adds up correctly over the processes of a
//! multi-process proxy (Kamailio's children share most of their pages); for one process it
//! equals RSS less what it shares with others.

use anyhow::{Context, Result, anyhow};

/// A process, or this one.
#[derive(Debug, Clone, Copy)]
pub enum Proc {
    Pid(u32),
    Myself,
}

impl Proc {
    fn file(self, name: &str) -> String {
        match self {
            Proc::Pid(pid) => format!("/proc/{pid}/{name}"),
            Proc::Myself => format!("/proc/self/{name}"),
        }
    }

    fn read(self, name: &str) -> Result<String> {
        let path = self.file(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
    }

    /// CPU time used so far, all threads.
    pub fn cpu(self) -> Result<Cpu> {
        let (user, system) = parse_stat_ticks(&self.read("stat")?)
            .ok_or_else(|| anyhow!("{}: no utime and stime fields", self.file("stat")))?;
        let hz = clock_ticks();
        Ok(Cpu {
            user: user as f64 / hz,
            system: system as f64 / hz,
        })
    }

    pub fn rss_kib(self) -> Result<u64> {
        parse_kib(&self.read("status")?, "VmRSS:")
            .ok_or_else(|| anyhow!("{}: no VmRSS line", self.file("status")))
    }

    pub fn pss_kib(self) -> Result<u64> {
        parse_kib(&self.read("smaps_rollup")?, "Pss:")
            .ok_or_else(|| anyhow!("{}: no Pss line", self.file("smaps_rollup")))
    }
}

/// The kernel's clock ticks per second, the unit of utime and stime.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// The machine's cores, whatever this process's affinity (`taskset` for the generator must
/// not hide the cores the proxy runs on).
pub fn online_cores() -> usize {
    // SAFETY: sysconf only reads a configuration value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
}

/// CPU seconds in user space and in the kernel (on the process's behalf: its system calls,
/// and the network work they do, such as delivering a loopback segment to its receiver).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cpu {
    pub user: f64,
    pub system: f64,
}

impl Cpu {
    pub fn total(self) -> f64 {
        self.user + self.system
    }
}

impl std::ops::Add for Cpu {
    type Output = Cpu;
    fn add(self, o: Cpu) -> Cpu {
        Cpu {
            user: self.user + o.user,
            system: self.system + o.system,
        }
    }
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            user: self.user - o.user,
            system: self.system - o.system,
        }
    }
}

impl std::iter::Sum for Cpu {
    fn sum<I: Iterator<Item = Cpu>>(iter: I) -> Cpu {
        iter.fold(Cpu::default(), |a, b| a + b)
    }
}

/// utime and stime, fields 14 and 15 of /proc/PID/stat. The command name (field 2) may
/// hold spaces and parentheses, so counting starts after its last ')'.
fn parse_stat_ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After the name: state (3), ppid (4), ..., utime is the 12th field from here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// `Name:   1234 kB` of status or smaps_rollup.
fn parse_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The processes of the proxy under test, summed.
#[derive(Debug, Clone)]
pub struct Target(pub Vec<u32>);

/// Memory of the target, KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub pss_kib: u64,
}

impl Target {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn cpu(&self) -> Result<Cpu> {
        self.0.iter().map(|&p| Proc::Pid(p).cpu()).sum()
    }

    pub fn memory(&self) -> Result<Memory> {
        let mut m = Memory::default();
        for &p in &self.0 {
            m.rss_kib += Proc::Pid(p).rss_kib()?;
            m.pss_kib += Proc::Pid(p).pss_kib()?;
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (siplab (fe) x) S 1 4242 4242 0 -1 4194560 1505 0 0 0 \
                    250 75 0 0 20 0 3 0 12345 123456789 2500 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some((250, 75)));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn memory_lines_in_kib() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\n";
        assert_eq!(parse_kib(status, "VmRSS:"), Some(5120));
        let rollup = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss: 6000 kB\nPss: 4000 kB\n";
        assert_eq!(parse_kib(rollup, "Pss:"), Some(4000));
        assert_eq!(parse_kib(rollup, "Swap:"), None);
    }

    #[test]
    fn this_process_is_readable() {
        assert!(Proc::Myself.cpu().unwrap().total() >= 0.0);
        assert!(Proc::Myself.rss_kib().unwrap() > 0);
    }
}
