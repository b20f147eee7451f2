//! Chat fan-out load: N WebSocket viewers in one room, S senders posting M messages/s for D
//! seconds, against the release server binary run as a separate process (or two, sharing Redis
//! and PostgreSQL).
//!
//! ```text
//! cargo build --release --bin onair
//! cargo run --release --example chat_load -- --clients 1000 --rate 100 --seconds 10
//! # two nodes (Redis bus, one PostgreSQL database; senders on node A, viewers split):
//! psql -h 127.0.0.1 -U postgres -c 'create database chatbench'
//! cargo run --release --example chat_load -- --nodes 2 --redis-url redis://127.0.0.1:6379 \
//!     --database-url postgres://postgres@127.0.0.1:5432/chatbench
//! ```
//!
//! Measures server memory per connection (VmRSS before and after the viewers connect), the
//! send-to-receive latency of every delivery (each message carries its send time), the server's
//! CPU time during the run, and whether any viewer missed or duplicated an offset.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Parser;
use onair_loadtest::client::chat_ws::{ChatWs, Closed, mint_token};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The JWT secret of the benchmark servers (tokens are minted with it).
const SECRET: &str = "chat-load-benchmark-secret";
/// Messages a user may post per window, and the window (the server's defaults).
const USER_LIMIT: f64 = 20.0;
const LIMIT_WINDOW_SECS: f64 = 30.0;
/// Connections opened at once.
const CONNECT_PARALLEL: usize = 64;
/// How long viewers may take to receive the last message after the last ack.
const DRAIN: Duration = Duration::from_secs(15);

#[derive(Parser, Debug)]
#[command(
    about = "Chat fan-out benchmark against the release server binary",
    after_help = "Build the server first: cargo build --release --bin onair\n\
                  Then: cargo run --release --example chat_load -- --clients 1000 --rate 100 --seconds 10"
)]
struct Args {
    /// Viewer WebSocket connections (anonymous, read-only).
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Messages per second, all senders together.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Sending time in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Sender connections (distinct users); default: enough to stay 10% under 20 per 30 s each.
    #[arg(long)]
    senders: Option<usize>,
    /// The server binary (build it with `cargo build --release --bin onair`).
    #[arg(long, default_value = "target/release/onair")]
    server_bin: PathBuf,
    /// Server processes: 1, or 2 sharing `--redis-url` and `--database-url`.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Redis for the chat bus (required with `--nodes 2`).
    #[arg(long)]
    redis_url: Option<String>,
    /// Database (required with `--nodes 2`; an existing, preferably empty, PostgreSQL database).
    /// Default: SQLite in a fresh temporary directory.
    #[arg(long)]
    database_url: Option<String>,
    /// The room; created unless it is `demo` (every fresh data dir has it). Default: a new
    /// `cb_<random>` each run, so nothing left in Redis by an earlier run is reused.
    #[arg(long)]
    channel: Option<String>,
}

/// A server process, killed when dropped.
struct ServerProc {
    name: String,
    child: Child,
    http: String,
    log: PathBuf,
}

impl ServerProc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `onair serve` on free ports and waits for its "onair is up" line.
    fn start(
        bin: &Path,
        name: &str,
        data_dir: &Path,
        redis_url: Option<&str>,
        database_url: Option<&str>,
    ) -> anyhow::Result<ServerProc> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let log = data_dir.join("server.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--media-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--jwt-secret", SECRET]);
        if let Some(r) = redis_url {
            cmd.args(["--redis-url", r]);
        }
        if let Some(d) = database_url {
            cmd.args(["--database-url", d]);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut proc = ServerProc {
            name: name.to_string(),
            child,
            http: String::new(),
            log,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Read every line so the server never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("onair is up: ") {
                    let _ = tx.send(url.trim_end_matches('/').to_string());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => proc.http = url,
            Err(_) => anyhow::bail!(
                "{name} did not start within 60 s; its log ({}):\n{}",
                proc.log.display(),
                log_tail(&proc.log)
            ),
        }
        Ok(proc)
    }

    fn status(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(st)) => format!("exited ({st}); log:\n{}", log_tail(&self.log)),
            _ => "running".into(),
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// User + system CPU time of a process (`self` or a pid), in seconds.
fn cpu_secs(pid: &str, ticks_per_sec: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the `(comm)`, which may contain spaces: state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("odd /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("no field {i} in /proc/{pid}/stat"))
    };
    Ok((ticks(14)? + ticks(15)?) / ticks_per_sec)
}

/// Busy CPU time of the whole machine (every core, every process), in seconds.
fn machine_busy_secs(ticks_per_sec: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    anyhow::ensure!(f.len() == 8, "odd cpu line in /proc/stat: {line}");
    Ok((f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / ticks_per_sec)
}

/// CPU seconds of every process whose name is one of `names` (Redis, PostgreSQL), by pid.
fn cpu_by_name(names: &[&str], tck: f64) -> std::collections::HashMap<u32, (String, f64)> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        let comm = comm.trim();
        if names.contains(&comm)
            && let Ok(secs) = cpu_secs(&pid.to_string(), tck)
        {
            out.insert(pid, (comm.to_string(), secs));
        }
    }
    out
}

/// CPU seconds used per process name between two [`cpu_by_name`] samples.
fn cpu_used_by_name(
    before: &std::collections::HashMap<u32, (String, f64)>,
    after: &std::collections::HashMap<u32, (String, f64)>,
) -> std::collections::BTreeMap<String, f64> {
    let mut used = std::collections::BTreeMap::new();
    for (pid, (name, secs)) in after {
        let start = before.get(pid).map_or(0.0, |(_, s)| *s);
        *used.entry(name.clone()).or_insert(0.0) += secs - start;
    }
    used
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The digits right after `key` in `text`.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
}

/// What one viewer saw.
#[derive(Default)]
struct ViewerReport {
    node: usize,
    received: u64,
    duplicates: u64,
    missed: u64,
    latencies_us: Vec<u32>,
    last_receipt: Option<Instant>,
    error: Option<String>,
}

/// Shared stop conditions of the viewers.
struct Stop {
    /// Offset of the last acknowledged message; `u64::MAX` while sending.
    target: AtomicU64,
    /// Give up waiting (drain timeout).
    now: AtomicBool,
}

async fn run_viewer(mut ws: ChatWs, node: usize, expected: usize, stop: Arc<Stop>) -> ViewerReport {
    let mut r = ViewerReport {
        node,
        latencies_us: Vec::with_capacity(expected.min(4096)),
        ..ViewerReport::default()
    };
    let mut next = ws.welcome()["offset"].as_u64().unwrap_or(0) + 1;
    loop {
        let target = stop.target.load(Ordering::Relaxed);
        if next > target || stop.now.load(Ordering::Relaxed) {
            break;
        }
        let text = match ws.next_text(Duration::from_millis(200)).await {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                r.error = Some(match e.downcast_ref::<Closed>() {
                    Some(c) => format!("closed {}", c.code.map_or("-".into(), |c| c.to_string())),
                    None => format!("{e:#}"),
                });
                break;
            }
        };
        if !text.starts_with(r#"{"type":"message""#) {
            continue;
        }
        let now = Instant::now();
        let (Some(offset), Some(sent_us)) = (
            number_after(&text, r#""offset":"#),
            number_after(&text, r#""message":"t="#),
        ) else {
            continue;
        };
        r.received += 1;
        r.last_receipt = Some(now);
        let lat = unix_micros().saturating_sub(sent_us);
        r.latencies_us.push(u32::try_from(lat).unwrap_or(u32::MAX));
        match offset.cmp(&next) {
            std::cmp::Ordering::Equal => next += 1,
            std::cmp::Ordering::Greater => {
                r.missed += offset - next;
                next = offset + 1;
            }
            std::cmp::Ordering::Less => r.duplicates += 1,
        }
    }
    let target = stop.target.load(Ordering::Relaxed);
    if target != u64::MAX && next <= target {
        r.missed += target + 1 - next;
    }
    drop(ws);
    r
}

/// What one sender did.
#[derive(Default)]
struct SenderReport {
    sent: u64,
    delivered: u64,
    refused: u64,
    max_offset: u64,
    notices: Vec<String>,
    error: Option<String>,
}

/// Posts messages `index, index + senders, ...` of `total`, message k at `t0 + k / rate`,
/// reading its socket in between (acks, and the room's messages it must drain).
async fn run_sender(
    mut ws: ChatWs,
    index: usize,
    senders: usize,
    total: usize,
    rate: f64,
    t0: Instant,
) -> SenderReport {
    let mut r = SenderReport::default();
    let mut k = index;
    let handle = |text: &str, r: &mut SenderReport| {
        if text.starts_with(r#"{"type":"ack""#) {
            if text.contains(r#""status":"delivered""#) {
                r.delivered += 1;
                if let Some(o) = number_after(text, r#""offset":"#) {
                    r.max_offset = r.max_offset.max(o);
                }
            }
        } else if text.starts_with(r#"{"type":"notice""#) {
            r.refused += 1;
            if r.notices.len() < 5 {
                r.notices.push(text.to_string());
            }
        }
    };
    // Every send is answered once: an ack `delivered` or a notice.
    let answered = |r: &SenderReport| r.delivered + r.refused;
    while k < total {
        let at = t0 + Duration::from_secs_f64(k as f64 / rate);
        loop {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match ws.next_text(left).await {
                Ok(Some(t)) => handle(&t, &mut r),
                Ok(None) => break,
                Err(e) => {
                    r.error = Some(format!("{e:#}"));
                    return r;
                }
            }
        }
        let text = format!("t={} k={k} chat load benchmark", unix_micros());
        if let Err(e) = ws.send_text(&format!("c{k}"), &text).await {
            r.error = Some(format!("{e:#}"));
            return r;
        }
        r.sent += 1;
        k += senders;
    }
    // Wait for the answers to what we sent.
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered(&r) < r.sent {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match ws.next_text(left).await {
            Ok(Some(t)) => handle(&t, &mut r),
            Ok(None) => break,
            Err(e) => {
                r.error = Some(format!("{e:#}"));
                break;
            }
        }
    }
    r
}

/// Percentile (nearest rank) of sorted microseconds, in milliseconds.
fn pct_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    n: usize,
}

fn latency(reports: &[&ViewerReport]) -> Latency {
    let mut all: Vec<u32> = reports
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    all.sort_unstable();
    Latency {
        p50: pct_ms(&all, 50.0),
        p90: pct_ms(&all, 90.0),
        p99: pct_ms(&all, 99.0),
        max: all.last().map_or(f64::NAN, |v| f64::from(*v) / 1000.0),
        n: all.len(),
    }
}

/// Connects `count` clients, `CONNECT_PARALLEL` at a time; `token(i)` gives client i's token.
async fn connect_many(
    count: usize,
    url_of: impl Fn(usize) -> String,
    channel: &str,
    token: impl Fn(usize) -> anyhow::Result<Option<String>>,
) -> anyhow::Result<Vec<(usize, ChatWs)>> {
    let gate = Arc::new(Semaphore::new(CONNECT_PARALLEL));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let (gate, url, channel, token) = (gate.clone(), url_of(i), channel.to_string(), token(i)?);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let ws = ChatWs::connect(&url, &channel, token.as_deref()).await?;
            anyhow::Ok((i, ws))
        }));
    }
    let mut out = Vec::with_capacity(count);
    let mut failures = 0;
    let mut first_error = None;
    for t in tasks {
        match t.await.context("connect task")? {
            Ok(c) => out.push(c),
            Err(e) => {
                failures += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!("{failures} of {count} connections failed; the first: {e:#}");
        if out.is_empty() {
            return Err(e);
        }
    }
    Ok(out)
}

fn create_channel(
    bin: &Path,
    channel: &str,
    data_dir: &Path,
    database_url: Option<&str>,
) -> anyhow::Result<()> {
    let mut cmd = Command::new(bin);
    cmd.args(["channel", "create", channel, "--data-dir"])
        .arg(data_dir)
        .args(["--jwt-secret", SECRET]);
    if let Some(d) = database_url {
        cmd.args(["--database-url", d]);
    }
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {} channel create", bin.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "`onair channel create {channel}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "channel create printed no JSON: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    anyhow::ensure!(
        v["channelID"] == channel,
        "channel create printed {v}, not channel {channel}"
    );
    Ok(())
}

fn total_rss(servers: &[ServerProc]) -> anyhow::Result<u64> {
    servers.iter().map(|s| rss_kib(s.pid())).sum()
}

fn total_cpu(servers: &[ServerProc], tck: f64) -> anyhow::Result<f64> {
    servers
        .iter()
        .map(|s| cpu_secs(&s.pid().to_string(), tck))
        .sum()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let command = format!(
        "cargo run --release --example chat_load -- {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(
        args.rate > 0.0 && args.seconds > 0.0,
        "--rate and --seconds must be positive"
    );
    anyhow::ensure!(matches!(args.nodes, 1 | 2), "--nodes is 1 or 2");
    if args.nodes == 2 {
        anyhow::ensure!(
            args.redis_url.is_some() && args.database_url.is_some(),
            "--nodes 2 needs --redis-url and --database-url (a PostgreSQL database both nodes share)"
        );
    }
    anyhow::ensure!(
        args.server_bin.exists(),
        "{} not found: build the server first with `cargo build --release --bin onair` \
         (or pass --server-bin)",
        args.server_bin.display()
    );
    let senders = args.senders.unwrap_or_else(|| {
        ((args.rate * LIMIT_WINDOW_SECS / USER_LIMIT).ceil() * 1.1).ceil() as usize
    });
    anyhow::ensure!(senders > 0, "--senders must be at least 1");
    let per_user = args.rate / senders as f64 * LIMIT_WINDOW_SECS;
    if per_user > USER_LIMIT {
        eprintln!(
            "warning: {senders} senders at {} msg/s post {per_user:.1} each per 30 s, over the limit of 20",
            args.rate
        );
    }
    let total = (args.rate * args.seconds).round() as usize;
    let channel = args
        .channel
        .clone()
        .unwrap_or_else(|| format!("cb_{:08x}", unix_micros() as u32));
    let tck = clock_ticks();

    // Other processes on the machine skew every figure: say so.
    let idle_probe = machine_busy_secs(tck)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busy_before = (machine_busy_secs(tck)? - idle_probe) / cores() as f64 * 100.0;
    if busy_before > 20.0 {
        eprintln!(
            "warning: the machine is already {busy_before:.0}% busy before the benchmark starts; \
             expect noisy figures"
        );
    }

    // Servers.
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let node_dirs: Vec<PathBuf> = (0..args.nodes)
        .map(|i| tmp.path().join(format!("node{i}")))
        .collect();
    if channel != "demo" {
        create_channel(
            &args.server_bin,
            &channel,
            &node_dirs[0],
            args.database_url.as_deref(),
        )?;
    }
    let mut servers = Vec::new();
    for (i, dir) in node_dirs.iter().enumerate() {
        let name = ["A", "B"][i];
        servers.push(ServerProc::start(
            &args.server_bin,
            &format!("node {name}"),
            dir,
            args.redis_url.as_deref(),
            args.database_url.as_deref(),
        )?);
    }
    for s in &servers {
        eprintln!("{} up at {} (pid {})", s.name, s.http, s.pid());
    }
    let urls: Vec<String> = servers.iter().map(|s| s.http.clone()).collect();

    // Senders (node A), then the memory baseline, then the viewers.
    let started = Instant::now();
    let sender_ws = connect_many(
        senders,
        |_| urls[0].clone(),
        &channel,
        |i| {
            mint_token(
                SECRET,
                &format!("bench_s{i}"),
                &format!("Bench sender {i}"),
                Duration::from_secs(3600),
            )
            .map(Some)
        },
    )
    .await
    .context("connecting the senders")?;
    anyhow::ensure!(
        sender_ws.len() == senders,
        "only {} of {senders} senders connected",
        sender_ws.len()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = total_rss(&servers)?;
    let node_of = |i: usize| i % args.nodes;
    let viewers = connect_many(
        args.clients,
        |i| urls[node_of(i)].clone(),
        &channel,
        |_| Ok(None),
    )
    .await
    .context("connecting the viewers")?;
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = total_rss(&servers)?;
    let connected = viewers.len();
    let kb_per_conn = (rss_after as f64 - rss_before as f64) / connected as f64;
    eprintln!(
        "{connected} viewers and {senders} senders connected in {connect_secs:.1} s; \
         server RSS {rss_before} KiB -> {rss_after} KiB"
    );

    // Run.
    let stop = Arc::new(Stop {
        target: AtomicU64::new(u64::MAX),
        now: AtomicBool::new(false),
    });
    let viewer_tasks: Vec<_> = viewers
        .into_iter()
        .map(|(i, ws)| tokio::spawn(run_viewer(ws, node_of(i), total, stop.clone())))
        .collect();
    let cpu0 = total_cpu(&servers, tck)?;
    let client_cpu0 = cpu_secs("self", tck)?;
    let machine0 = machine_busy_secs(tck)?;
    const BACKENDS: [&str; 2] = ["redis-server", "postgres"];
    let backends0 = cpu_by_name(&BACKENDS, tck);
    let t0 = Instant::now() + Duration::from_millis(200);
    let sender_tasks: Vec<_> = sender_ws
        .into_iter()
        .map(|(i, ws)| tokio::spawn(run_sender(ws, i, senders, total, args.rate, t0)))
        .collect();
    let mut sent = 0;
    let mut delivered = 0;
    let mut max_offset = 0;
    let mut refused = 0;
    let mut notices = Vec::new();
    let mut sender_errors = Vec::new();
    for t in sender_tasks {
        let r = t.await.context("sender task")?;
        sent += r.sent;
        delivered += r.delivered;
        refused += r.refused;
        max_offset = max_offset.max(r.max_offset);
        notices.extend(r.notices);
        sender_errors.extend(r.error);
    }
    let sending_secs = (Instant::now() - t0).as_secs_f64();
    stop.target.store(max_offset, Ordering::Relaxed);
    let drain_until = Instant::now() + DRAIN;
    let stopper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(drain_until).await;
            stop.now.store(true, Ordering::Relaxed);
        })
    };
    let mut reports = Vec::with_capacity(viewer_tasks.len());
    for t in viewer_tasks {
        reports.push(t.await.context("viewer task")?);
    }
    stopper.abort();
    let cpu = total_cpu(&servers, tck)? - cpu0;
    let client_cpu = cpu_secs("self", tck)? - client_cpu0;
    let machine = machine_busy_secs(tck)? - machine0;
    let backends = cpu_used_by_name(&backends0, &cpu_by_name(&BACKENDS, tck));
    let rss_end = total_rss(&servers)?;
    for s in &mut servers {
        let st = s.status();
        if st != "running" {
            eprintln!("{}: {st}", s.name);
        }
    }

    // Report.
    let received: u64 = reports.iter().map(|r| r.received).sum();
    let expected = delivered * connected as u64;
    let missed: u64 = reports.iter().map(|r| r.missed).sum();
    let duplicates: u64 = reports.iter().map(|r| r.duplicates).sum();
    let viewers_missing = reports.iter().filter(|r| r.missed > 0).count();
    let mut viewer_errors: std::collections::BTreeMap<String, usize> = Default::default();
    for e in reports.iter().filter_map(|r| r.error.clone()) {
        *viewer_errors.entry(e).or_default() += 1;
    }
    let last = reports.iter().filter_map(|r| r.last_receipt).max();
    let span = last.map_or(sending_secs, |l| (l - t0).as_secs_f64());
    let per_sec = received as f64 / span;
    let all: Vec<&ViewerReport> = reports.iter().collect();
    let lat = latency(&all);

    println!();
    println!("## chat_load");
    println!("command: {command}");
    println!(
        "servers: {} node(s), {}; bus: {}; room: {channel}",
        args.nodes,
        if args.database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        if args.redis_url.is_some() {
            "Redis"
        } else {
            "in-process"
        }
    );
    println!(
        "viewers: {connected}/{} connected; senders: {senders} ({per_user:.1} msgs each per 30 s)",
        args.clients
    );
    println!(
        "server memory: {rss_before} KiB before viewers, {rss_after} KiB after, {rss_end} KiB at the end \
         -> {kb_per_conn:.1} KiB per connection"
    );
    println!(
        "messages: {sent} sent (planned {total}), {delivered} acked delivered, {refused} refused by a notice"
    );
    for n in notices.iter().take(3) {
        println!("  notice: {n}");
    }
    for e in sender_errors.iter().take(3) {
        println!("  sender error: {e}");
    }
    println!(
        "deliveries: {received} received of {expected} expected ({:.2}%), {per_sec:.0}/s over {span:.2} s",
        if expected > 0 {
            received as f64 * 100.0 / expected as f64
        } else {
            0.0
        }
    );
    println!(
        "integrity: {missed} offsets missed ({viewers_missing} viewers), {duplicates} duplicates"
    );
    for (e, n) in &viewer_errors {
        println!("  viewers ended by `{e}`: {n}");
    }
    println!(
        "latency (send -> viewer receive, ms): p50 {:.1}, p90 {:.1}, p99 {:.1}, max {:.1} ({} samples)",
        lat.p50, lat.p90, lat.p99, lat.max, lat.n
    );
    if args.nodes == 2 {
        for node in 0..2 {
            let mine: Vec<&ViewerReport> = reports.iter().filter(|r| r.node == node).collect();
            let l = latency(&mine);
            println!(
                "  node {} viewers{}: p50 {:.1}, p90 {:.1}, p99 {:.1}, max {:.1} ms ({} samples)",
                ["A", "B"][node],
                if node == 0 {
                    " (same node as senders)"
                } else {
                    " (cross-node, via Redis)"
                },
                l.p50,
                l.p90,
                l.p99,
                l.max,
                l.n
            );
        }
    }
    println!(
        "server CPU: {cpu:.2} s during the run ({:.0}% of one core) -> {:.0} deliveries per CPU-second",
        cpu / span * 100.0,
        received as f64 / cpu
    );
    println!(
        "  (the server also delivered {} frames to the {senders} senders; with them: {:.0} per CPU-second)",
        delivered * senders as u64,
        (received + delivered * senders as u64) as f64 / cpu
    );
    println!(
        "client CPU: {client_cpu:.2} s during the run (machine {busy_before:.0}% busy before the start)"
    );
    let backend_cpu: f64 = backends.values().sum();
    let backend_list: Vec<String> = backends
        .iter()
        .map(|(name, secs)| format!("{name} {secs:.2} s"))
        .collect();
    println!(
        "machine CPU: {machine:.2} s busy of {:.2} s ({} cores): server {cpu:.2} s, client \
         {client_cpu:.2} s, {} (all processes of that name), everything else {:.2} s",
        span * cores() as f64,
        cores(),
        if backend_list.is_empty() {
            "no redis-server or postgres processes".to_string()
        } else {
            backend_list.join(", ")
        },
        (machine - cpu - client_cpu - backend_cpu).max(0.0)
    );
    println!();
    println!(
        "| nodes | viewers | senders | msg/s | s | sent | acked | deliveries (expected) | deliveries/s | p50 ms | p90 ms | p99 ms | max ms | KiB/conn | server CPU s | deliveries/CPU-s | missed/dup |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {}{} | {connected} | {senders} | {} | {} | {sent} | {delivered} | {received} ({expected}) | {per_sec:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {kb_per_conn:.1} | {cpu:.2} | {:.0} | {missed}/{duplicates} |",
        args.nodes,
        if args.redis_url.is_some() {
            " (Redis)"
        } else {
            ""
        },
        args.rate,
        args.seconds,
        lat.p50,
        lat.p90,
        lat.p99,
        lat.max,
        received as f64 / cpu
    );
    println!();
    println!("`{command}`");
    drop(servers);
    drop(tmp);
    Ok(())
}
