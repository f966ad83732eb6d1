//! What a step, the sign-in and the memory figure say, for people (text) and for scripts
//! (one JSON object per line on stdout with `--json`; the text then goes to stderr).

use serde_json::{Value, json};

use crate::procfs::Memory;
use crate::stats::{Tally, ms_at, ms_max};

pub struct Reporter {
    pub json: bool,
}

impl Reporter {
    pub fn say(&self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    pub fn emit(&self, value: &Value) {
        if self.json {
            println!("{value}");
        }
    }
}

/// The proxy's figures over a measuring window.
#[derive(Debug, Clone, Copy)]
pub struct ProxyFigures {
    /// Cores it kept busy on average (`None` over less than a second).
    pub cores: Option<f64>,
    /// CPU time per answered unit.
    pub cpu_us_per_unit: Option<f64>,
    /// The part of it spent in the kernel (system calls and the network work they do).
    pub kernel_us_per_unit: Option<f64>,
    /// At the end of the step.
    pub memory: Memory,
}

/// One measured step (or the sign-in).
pub struct StepReport {
    /// `sign-in`, or `step i/n`.
    pub phase: String,
    pub scenario: &'static str,
    pub unit: &'static str,
    pub offered: f64,
    /// From the first measured unit's scheduled send to the last answer.
    pub seconds: f64,
    /// Units answered (any final status) per second over `seconds`: below the offered rate
    /// when the proxy falls behind, since its backlog stretches the time to the last answer.
    pub achieved: f64,
    pub tally: Tally,
    /// Cores the generator used during the window, of `threads` (`None` over less than a
    /// second).
    pub own_cores: Option<f64>,
    pub threads: usize,
    pub machine_cores: usize,
    pub proxy: Option<ProxyFigures>,
}

impl StepReport {
    /// Why the figures may say more about the generator than about the proxy.
    pub fn generator_bound(&self) -> Vec<String> {
        let mut why = Vec::new();
        let own = self.own_cores.unwrap_or_default();
        if own > 0.85 * self.threads as f64 {
            why.push(format!(
                "the generator used {own:.2} of its {} threads' cores",
                self.threads
            ));
        }
        // Slip is part of every latency (it counts from the scheduled time): it matters
        // once it is a fair share of what the proxy is charged with.
        let (slip, latency) = (ms_at(&self.tally.slip, 0.99), self.p99_ms());
        if slip > 5.0 && slip > 0.25 * latency {
            why.push(format!(
                "send times slipped behind schedule (p99 {slip:.1} ms of a p99 latency of {latency:.1} ms)"
            ));
        }
        if let Some(proxy) = self.proxy.and_then(|p| p.cores)
            && own + proxy > 0.9 * self.machine_cores as f64
        {
            why.push(format!(
                "generator ({own:.2}) and proxy ({proxy:.2}) kept all {} cores busy: they competed for CPU",
                self.machine_cores
            ));
        }
        why
    }

    pub fn failure_ratio(&self) -> f64 {
        if self.tally.sent == 0 {
            return 0.0;
        }
        self.tally.failed() as f64 / self.tally.sent as f64
    }

    pub fn p99_ms(&self) -> f64 {
        ms_at(&self.tally.latency, 0.99)
    }

    pub fn text(&self) -> String {
        let t = &self.tally;
        let failures = if t.failures.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = t
                .failures
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            format!(" ({})", list.join(", "))
        };
        let lat = |h| {
            format!(
                "p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                ms_at(h, 0.5),
                ms_at(h, 0.99),
                ms_at(h, 0.999),
                ms_max(h)
            )
        };
        let mut s = format!(
            "{}: {} at {:.0}/s offered, over {:.1} s: achieved {:.1}/s; sent {}, ok {}, failed {}{failures}\n  \
             latency ms (from scheduled send): {}\n  \
             send slip ms: p99 {:.2}  max {:.2}",
            self.phase,
            self.unit,
            self.offered,
            self.seconds,
            self.achieved,
            t.sent,
            t.ok,
            t.failed(),
            lat(&t.latency),
            ms_at(&t.slip, 0.99),
            ms_max(&t.slip),
        );
        if !t.teardown.is_empty() {
            s.push_str(&format!("\n  BYE latency ms: {}", lat(&t.teardown)));
        }
        let or_short = |v: Option<f64>, digits: usize| {
            v.map_or("(under 1 s: too short to tell)".to_owned(), |v| {
                format!("{v:.digits$}")
            })
        };
        if let Some(p) = self.proxy {
            s.push_str(&format!(
                "\n  proxy: {} cores, {} µs CPU per {}{}, RSS {:.1} MiB, PSS {:.1} MiB",
                or_short(p.cores, 2),
                or_short(p.cpu_us_per_unit, 1),
                self.unit,
                p.kernel_us_per_unit
                    .map(|k| format!(" ({k:.1} in the kernel)"))
                    .unwrap_or_default(),
                p.memory.rss_kib as f64 / 1024.0,
                p.memory.pss_kib as f64 / 1024.0
            ));
        }
        s.push_str(&format!(
            "\n  generator: {} cores of {} threads",
            or_short(self.own_cores, 2),
            self.threads
        ));
        let bound = self.generator_bound();
        if !bound.is_empty() {
            s.push_str(&format!(
                "\n  generator-bound: results are a lower bound ({})",
                bound.join("; ")
            ));
        }
        s
    }

    pub fn json(&self) -> Value {
        let t = &self.tally;
        let lat = |h| {
            json!({
                "p50": ms_at(h, 0.5),
                "p99": ms_at(h, 0.99),
                "p99_9": ms_at(h, 0.999),
                "max": ms_max(h),
            })
        };
        let failures: serde_json::Map<String, Value> = t
            .failures
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let bound = self.generator_bound();
        json!({
            "phase": if self.phase == "sign-in" { "sign-in" } else { "step" },
            "step": self.phase,
            "scenario": self.scenario,
            "unit": self.unit,
            "offered_rate": self.offered,
            "achieved_rate": self.achieved,
            "seconds": self.seconds,
            "sent": t.sent,
            "successes": t.ok,
            "failures": failures,
            "latency_ms": lat(&t.latency),
            "bye_latency_ms": (!t.teardown.is_empty()).then(|| lat(&t.teardown)),
            "send_slip_ms": {"p99": ms_at(&t.slip, 0.99), "max": ms_max(&t.slip)},
            "generator": {
                "cores": self.own_cores,
                "threads": self.threads,
                "bound": !bound.is_empty(),
                "why": bound,
            },
            "proxy": self.proxy.map(|p| json!({
                "cores": p.cores,
                "cpu_us_per_unit": p.cpu_us_per_unit,
                "kernel_us_per_unit": p.kernel_us_per_unit,
                "rss_kib": p.memory.rss_kib,
                "pss_kib": p.memory.pss_kib,
            })),
        })
    }
}

/// register-only: the proxy's memory before connecting, with the connections up, and with
/// every user registered; per user, per connection and per binding.
pub struct MemoryReport {
    pub users: usize,
    pub baseline: Memory,
    pub connected: Memory,
    pub registered: Memory,
}

impl MemoryReport {
    fn per(&self, from: Memory, to: Memory) -> (f64, f64) {
        let n = self.users.max(1) as f64;
        (
            (to.rss_kib as f64 - from.rss_kib as f64) * 1024.0 / n,
            (to.pss_kib as f64 - from.pss_kib as f64) * 1024.0 / n,
        )
    }

    pub fn text(&self) -> String {
        let mib = |m: Memory| {
            format!(
                "RSS {:.1} MiB, PSS {:.1} MiB",
                m.rss_kib as f64 / 1024.0,
                m.pss_kib as f64 / 1024.0
            )
        };
        let (user, user_pss) = self.per(self.baseline, self.registered);
        let (conn, _) = self.per(self.baseline, self.connected);
        let (binding, _) = self.per(self.connected, self.registered);
        format!(
            "proxy memory: before {}; {} connected {}; registered {}\n  \
             per registered user: {user:.0} B RSS ({user_pss:.0} B PSS) = {conn:.0} B per connection + {binding:.0} B per binding",
            mib(self.baseline),
            self.users,
            mib(self.connected),
            mib(self.registered),
        )
    }

    pub fn json(&self) -> Value {
        let kib = |m: Memory| json!({"rss_kib": m.rss_kib, "pss_kib": m.pss_kib});
        let (user, user_pss) = self.per(self.baseline, self.registered);
        let (conn, _) = self.per(self.baseline, self.connected);
        let (binding, _) = self.per(self.connected, self.registered);
        json!({
            "phase": "memory",
            "users": self.users,
            "baseline": kib(self.baseline),
            "connected": kib(self.connected),
            "registered": kib(self.registered),
            "bytes_per_user_rss": user,
            "bytes_per_user_pss": user_pss,
            "bytes_per_connection_rss": conn,
            "bytes_per_binding_rss": binding,
        })
    }
}
