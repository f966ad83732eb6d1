//! The command line. Everything about the target is a flag, so the same binary drives
//! siplab's front end, Kamailio or any other proxy that speaks SIP over mutual TLS.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "siplab-load",
    version,
    about = "Open-loop SIP load over mutual TLS: N registered callees, K callers at a fixed offered rate"
)]
pub struct Args {
    /// The proxy under test.
    #[arg(long, required_unless_present = "make_certs")]
    pub proxy: Option<SocketAddr>,
    /// The name the proxy's certificate must carry (the TLS name check).
    #[arg(long, required_unless_present = "make_certs")]
    pub server_name: Option<String>,
    /// Where the lab CA (ca.pem, and ca.key to issue user certificates in memory) and any
    /// user certificates written beforehand (users/<aor>.pem, .key) are.
    #[arg(long, default_value = "certs")]
    pub certs: PathBuf,
    /// Write the certificates of every callee and caller into --certs (users/) and exit.
    #[arg(long)]
    pub make_certs: bool,
    /// The SIP domain of every user.
    #[arg(long, default_value = "contoso.test")]
    pub domain: String,
    /// How many callee users register, each over its own connection.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Callees are <prefix><i>@<domain>, i from 0.
    #[arg(long, default_value = "user")]
    pub user_prefix: String,
    /// Callees by name instead (alice,adam): overrides --users and --user-prefix.
    #[arg(long, value_delimiter = ',')]
    pub user_names: Vec<String>,
    /// How many caller connections send the requests.
    #[arg(long, default_value_t = 10)]
    pub callers: usize,
    /// Callers are <prefix><j>@<domain>, j from 0.
    #[arg(long, default_value = "caller")]
    pub caller_prefix: String,
    /// Callers by name instead: overrides --callers and --caller-prefix.
    #[arg(long, value_delimiter = ',')]
    pub caller_names: Vec<String>,
    /// Register the callers too, for proxies that accept requests from registered users only.
    #[arg(long)]
    pub register_callers: bool,
    /// The source address of every connection.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    #[arg(long, value_enum, default_value = "message")]
    pub scenario: Scenario,
    /// Offered rates, one step each (requests, REGISTERs or calls per second).
    #[arg(
        long,
        visible_alias = "rate",
        value_delimiter = ',',
        default_value = "1000"
    )]
    pub rates: Vec<f64>,
    /// Seconds measured per step.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds at the step's rate before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds after which an unanswered request counts as timed out (Timer F: 64 * T1).
    #[arg(long, default_value_t = 32.0)]
    pub timeout: f64,
    /// REGISTERs per second while signing the users in.
    #[arg(long, default_value_t = 2000.0)]
    pub register_rate: f64,
    /// TLS handshakes in flight while connecting.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// register-only: seconds to keep the users registered after reporting.
    #[arg(long, default_value_t = 0.0)]
    pub hold: f64,
    /// The proxy's process(es) (comma-separated for a multi-process proxy such as Kamailio):
    /// their CPU time per request and their RSS and PSS are reported.
    #[arg(long, value_delimiter = ',')]
    pub pid: Vec<u32>,
    /// One JSON object per phase and step on stdout (the readable report goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Runtime worker threads of the generator (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Stop stepping up once a step's p99 latency exceeds this (ms) ...
    #[arg(long, default_value_t = 1000.0)]
    pub stop_p99_ms: f64,
    /// ... or more than this share of its requests failed.
    #[arg(long, default_value_t = 0.05)]
    pub stop_failure_ratio: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// MESSAGE from a caller to a random callee, answered 200 by the callee.
    Message,
    /// REGISTER refreshes from random callees over their own connections.
    Register,
    /// INVITE, 200, ACK and BYE, 200 between a caller and a random callee.
    Call,
    /// Connect and register --users, report the proxy's memory, hold --hold seconds.
    RegisterOnly,
}

impl Scenario {
    /// What one unit of offered load is, for the report.
    pub fn unit(self) -> &'static str {
        match self {
            Scenario::Message => "MESSAGE",
            Scenario::Register | Scenario::RegisterOnly => "REGISTER",
            Scenario::Call => "call",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Message => "message",
            Scenario::Register => "register",
            Scenario::Call => "call",
            Scenario::RegisterOnly => "register-only",
        }
    }
}
