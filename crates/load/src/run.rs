//! A run, phase by phase: connect every user, sign the callees in, then either report the
//! proxy's memory (register-only) or step through the offered rates.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::cli::{Args, Scenario};
use crate::conn::{self, JobSender, Shared, Unit};
use crate::procfs::{Cpu, Memory, Proc, Target};
use crate::report::{MemoryReport, ProxyFigures, Reporter, StepReport};
use crate::schedule::{self, Dispatcher};
use crate::stats::StepStats;
use crate::users::{User, Users};

/// What every phase needs.
struct Run {
    args: Args,
    shared: Arc<Shared>,
    target: Target,
    out: Reporter,
    threads: usize,
    machine_cores: usize,
}

/// CPU clocks at the edges of a measuring window.
struct Probe {
    at: Instant,
    own_cpu: Cpu,
    proxy_cpu: Option<Cpu>,
}

impl Run {
    fn probe(&self) -> Result<Probe> {
        Ok(Probe {
            at: Instant::now(),
            own_cpu: Proc::Myself.cpu()?,
            proxy_cpu: self.proxy_cpu()?,
        })
    }

    fn proxy_cpu(&self) -> Result<Option<Cpu>> {
        if self.target.is_empty() {
            return Ok(None);
        }
        let cpu = self.target.cpu().with_context(|| {
            format!("the proxy (pid {:?}) is gone or unreadable", self.target.0)
        })?;
        Ok(Some(cpu))
    }

    fn proxy_memory(&self) -> Result<Option<Memory>> {
        if self.target.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.target.memory().with_context(|| {
            format!("the proxy (pid {:?}) is gone or unreadable", self.target.0)
        })?))
    }

    /// Sends `warm + measured` units at `rate` through `dispatch`, measures the last
    /// `measured`, waits for their outcomes and reports them.
    async fn step(
        &self,
        phase: String,
        rate: f64,
        warm: u64,
        measured: u64,
        mut dispatch: impl FnMut(u64, Unit),
    ) -> Result<StepReport> {
        let warm_stats = Arc::new(StepStats::new());
        let stats = Arc::new(StepStats::new());
        let mut start = None;
        let mut probe_error = None;
        let t0 = schedule::open_loop(rate, warm + measured, |i, due| {
            if i == warm {
                match self.probe() {
                    Ok(p) => start = Some(p),
                    Err(e) => probe_error = Some(e),
                }
            }
            let step = if i < warm { &warm_stats } else { &stats };
            dispatch(
                i,
                Unit {
                    scheduled: due,
                    stats: step.clone(),
                },
            );
        })
        .await;
        if let Some(e) = probe_error {
            return Err(e);
        }
        let start = match start {
            Some(s) => s,
            None => bail!("{phase}: nothing to send at {rate}/s"),
        };
        stats
            .drained(self.shared.timeout + Duration::from_secs(2))
            .await;
        // From the first measured send to the last outcome: the proxy's CPU over it covers
        // every measured unit (and the tail of the warm-up, which overlaps it).
        let end = self.probe()?;
        let tally = stats.snapshot();
        let cpu_seconds = end.at.duration_since(start.at).as_secs_f64().max(1e-3);
        let first_due = t0 + Duration::from_secs_f64(warm as f64 / rate);
        let seconds = tally.last_answer.map_or(0.0, |last| {
            last.saturating_duration_since(first_due).as_secs_f64()
        });
        // CPU time comes in clock ticks (10 ms): over less than a second it says little.
        let cpu = |a: Option<Cpu>, b: Option<Cpu>| match (a, b) {
            (Some(a), Some(b)) if cpu_seconds >= 1.0 => Some(b - a),
            _ => None,
        };
        let proxy = self.proxy_memory()?.map(|memory| {
            let used = cpu(start.proxy_cpu, end.proxy_cpu);
            let per_unit = |seconds: f64| seconds.max(0.0) * 1e6 / tally.answered as f64;
            let answered = used.filter(|_| tally.answered > 0);
            ProxyFigures {
                cores: used.map(|c| c.total() / cpu_seconds),
                cpu_us_per_unit: answered.map(|c| per_unit(c.total())),
                kernel_us_per_unit: answered.map(|c| per_unit(c.system)),
                memory,
            }
        });
        let unit = if phase == "sign-in" {
            "REGISTER"
        } else {
            self.args.scenario.unit()
        };
        Ok(StepReport {
            phase,
            scenario: self.args.scenario.name(),
            unit,
            offered: rate,
            seconds,
            achieved: if seconds > 0.0 {
                tally.answered as f64 / seconds
            } else {
                0.0
            },
            tally,
            own_cores: cpu(Some(start.own_cpu), Some(end.own_cpu)).map(|c| c.total() / cpu_seconds),
            threads: self.threads,
            machine_cores: self.machine_cores,
            proxy,
        })
    }

    /// Opens every user's connection, a bounded number of handshakes at a time.
    async fn connect_all(
        &self,
        users: &[&User],
        tls: Vec<siplab_transport::TlsConfig>,
    ) -> Result<Vec<JobSender>> {
        let (Some(proxy), Some(name)) = (self.args.proxy, self.args.server_name.clone()) else {
            bail!("--proxy and --server-name are required");
        };
        let server_name =
            ServerName::try_from(name.clone()).with_context(|| format!("--server-name {name}"))?;
        let gate = Arc::new(Semaphore::new(self.args.connect_concurrency.max(1)));
        let started = Instant::now();
        let tasks: Vec<_> = users
            .iter()
            .zip(tls)
            .enumerate()
            .map(|(i, (user, tls))| {
                let (gate, user, name, shared) = (
                    gate.clone(),
                    (*user).clone(),
                    server_name.clone(),
                    self.shared.clone(),
                );
                let bind = self.args.bind;
                tokio::spawn(async move {
                    let _permit = gate.acquire_owned().await;
                    // A proxy that takes the TCP connection but never finishes the handshake
                    // must not hold the run: connecting gets the request time-out too.
                    let wait = shared.timeout;
                    tokio::time::timeout(
                        wait,
                        conn::connect(user, i as u32, tls, bind, proxy, name, shared),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        Err(anyhow::anyhow!(
                            "connecting to {proxy}: no TLS connection within {wait:?}"
                        ))
                    })
                })
            })
            .collect();
        let mut conns = Vec::with_capacity(tasks.len());
        let mut failed = 0;
        let mut first_error = None;
        for t in tasks {
            match t.await {
                Ok(Ok(tx)) => conns.push(tx),
                Ok(Err(e)) => {
                    failed += 1;
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert(e.into());
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e.context(format!(
                "{failed} of {} connections to {proxy} failed",
                users.len()
            )));
        }
        let seconds = started.elapsed().as_secs_f64();
        self.out.say(&format!(
            "connected {} users to {proxy} ({name}) from {} in {seconds:.1} s ({:.0}/s)",
            conns.len(),
            self.args.bind,
            conns.len() as f64 / seconds.max(1e-3)
        ));
        self.out.emit(&serde_json::json!({
            "phase": "connect",
            "connections": conns.len(),
            "seconds": seconds,
        }));
        Ok(conns)
    }
}

pub async fn run(
    args: Args,
    users: Users,
    tls: Vec<siplab_transport::TlsConfig>,
    threads: usize,
) -> Result<()> {
    let out = Reporter { json: args.json };
    let run = Run {
        shared: Arc::new(Shared {
            domain: args.domain.clone(),
            salt: fastrand::u32(..),
            timeout: Duration::from_secs_f64(args.timeout),
        }),
        target: Target(args.pid.clone()),
        out,
        threads,
        machine_cores: crate::procfs::online_cores(),
        args,
    };
    let args = &run.args;
    let connecting = connecting(args, &users);
    let baseline = run.proxy_memory()?;
    let conns = run.connect_all(&connecting, tls).await?;
    let connected = run.proxy_memory()?;
    let (callees, callers) = conns.split_at(users.callees.len());

    // Sign-in: every callee (and caller, when asked) registers once, paced.
    let signing = if args.register_callers {
        &conns[..]
    } else {
        callees
    };
    if !signing.is_empty() {
        let report = run
            .step(
                "sign-in".into(),
                args.register_rate,
                0,
                signing.len() as u64,
                |i, unit| schedule::sign_in(signing, i, unit),
            )
            .await?;
        run.out.say(&report.text());
        run.out.emit(&report.json());
        if report.tally.ok < signing.len() as u64 {
            bail!(
                "only {} of {} users registered: the proxy refuses them (see the failures above)",
                report.tally.ok,
                signing.len()
            );
        }
    }

    if args.scenario == Scenario::RegisterOnly {
        if let (Some(baseline), Some(connected), Some(registered)) =
            (baseline, connected, run.proxy_memory()?)
        {
            let m = MemoryReport {
                users: callees.len(),
                baseline,
                connected,
                registered,
            };
            run.out.say(&m.text());
            run.out.emit(&m.json());
        }
        if args.hold > 0.0 {
            run.out.say(&format!(
                "holding {} registrations for {} s",
                callees.len(),
                args.hold
            ));
            tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
        }
        return Ok(());
    }

    if callees.is_empty() {
        bail!("no callees: --users must be at least 1");
    }
    if callers.is_empty() && args.scenario != Scenario::Register {
        bail!("no callers: --callers must be at least 1");
    }
    let mut dispatcher = Dispatcher {
        scenario: args.scenario,
        callees: callees.to_vec(),
        callee_aors: users
            .callees
            .iter()
            .map(|u| Arc::from(u.aor.as_str()))
            .collect(),
        callers: callers.to_vec(),
        rng: fastrand::Rng::new(),
    };
    for (n, &rate) in args.rates.iter().enumerate() {
        if rate <= 0.0 {
            bail!("--rates: {rate} is not a rate");
        }
        let warm = (rate * args.warmup).round() as u64;
        let measured = ((rate * args.duration).round() as u64).max(1);
        let report = run
            .step(
                format!("step {}/{}", n + 1, args.rates.len()),
                rate,
                warm,
                measured,
                |i, unit| dispatcher.load(i, unit),
            )
            .await?;
        run.out.say(&report.text());
        run.out.emit(&report.json());
        let (ratio, p99) = (report.failure_ratio(), report.p99_ms());
        if ratio > args.stop_failure_ratio || p99 > args.stop_p99_ms {
            run.out.say(&format!(
                "stopping: the step failed badly ({:.1} % failed, p99 {p99:.1} ms)",
                ratio * 100.0
            ));
            break;
        }
    }
    Ok(())
}

/// Who gets a connection: the callees, and the callers when the scenario sends from them.
pub fn connecting<'a>(args: &Args, users: &'a Users) -> Vec<&'a User> {
    let callers_send = matches!(args.scenario, Scenario::Message | Scenario::Call);
    users
        .callees
        .iter()
        .chain(users.callers.iter().filter(|_| callers_send))
        .collect()
}
