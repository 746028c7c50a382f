//! A small HTTP/1.x proxy of ours on loopback that sits between the plugin and the ECS emulator
//! and misbehaves on purpose, at set rates: throttling and 5xx answers made up by the proxy,
//! 5xx answers after the request reached the emulator, stalls past the client's timeout
//! (before or after the emulator acted) and connections dropped half-way through a response.
//!
//! One request per client connection: every answer carries `Connection: close` (as the
//! emulator's own do), so a fault never leaves a half-read connection in the plugin's pool.
//! Only AWS API calls (requests with an `X-Amz-Target` header) are faulted.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What can go wrong with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// 400 ThrottlingException (or 429 without a type), made up by the proxy.
    Throttle,
    /// 500/503 made up by the proxy: the emulator never saw the request.
    ServerErrorBefore,
    /// The emulator acted, the client gets a 500 instead of its answer.
    ServerErrorAfter,
    /// The proxy holds the request past the client timeout, then closes; the emulator never saw it.
    StallBefore,
    /// The emulator acted; the answer is held past the client timeout, then the connection closes.
    StallAfter,
    /// The emulator acted; half of its answer is written, then the connection closes.
    DropMidResponse,
}

pub const ALL_FAULTS: [Fault; 6] = [
    Fault::Throttle,
    Fault::ServerErrorBefore,
    Fault::ServerErrorAfter,
    Fault::StallBefore,
    Fault::StallAfter,
    Fault::DropMidResponse,
];

/// Rates (per mille of API requests) of each fault, and how long a stall lasts.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub per_mille: Vec<(Fault, u32)>,
    pub stall: Duration,
    pub seed: u64,
}

#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub faults: [AtomicU64; 6],
}

impl Counters {
    pub fn faults_of(&self, f: Fault) -> u64 {
        let i = ALL_FAULTS.iter().position(|x| *x == f).unwrap_or(0);
        self.faults[i].load(Ordering::Relaxed)
    }

    pub fn total_faults(&self) -> u64 {
        self.faults.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// A running proxy. Stops accepting when dropped.
pub struct FaultyProxy {
    pub port: u16,
    pub counters: Arc<Counters>,
    enabled: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl FaultyProxy {
    pub fn start(upstream_port: u16, plan: FaultPlan) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let counters = Arc::new(Counters::default());
        let enabled = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let rng = Arc::new(Mutex::new(Rng::new(plan.seed)));
        let plan = Arc::new(plan);
        {
            let (counters, enabled, stop) = (Arc::clone(&counters), Arc::clone(&enabled), Arc::clone(&stop));
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (counters, enabled, rng, plan) = (
                        Arc::clone(&counters),
                        Arc::clone(&enabled),
                        Arc::clone(&rng),
                        Arc::clone(&plan),
                    );
                    std::thread::spawn(move || {
                        let _ = serve(conn, upstream_port, &plan, &rng, &counters, &enabled);
                    });
                }
            });
        }
        FaultyProxy {
            port,
            counters,
            enabled,
            stop,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Faults on (the default) or off (plain forwarding).
    pub fn set_faults(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// xorshift64*: reproducible from the printed seed, no RNG crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

fn pick(plan: &FaultPlan, rng: &Mutex<Rng>) -> Option<Fault> {
    let roll = rng.lock().unwrap_or_else(|p| p.into_inner()).below(1000) as u32;
    let mut acc = 0;
    for (f, pm) in &plan.per_mille {
        acc += pm;
        if roll < acc {
            return Some(*f);
        }
    }
    None
}

/// Reads one request (head and Content-Length body).
fn read_request(conn: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len = header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((head, body)))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// Sends the request to the emulator (HTTP/1.0, so the answer is delimited by the close) and
/// returns its answer rewritten to carry a Content-Length and `Connection: close`.
fn forward(upstream_port: u16, head: &str, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream_port))?;
    let mut lines = head.trim_end().lines();
    let request_line = lines.next().unwrap_or_default();
    let request_line = request_line.replace("HTTP/1.1", "HTTP/1.0");
    let mut out = format!("{request_line}\r\n");
    for l in lines {
        let name = l.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
        if name == "connection" || name == "keep-alive" {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    up.write_all(out.as_bytes())?;
    up.write_all(body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    let Some(end) = find(&answer, b"\r\n\r\n") else {
        return Err(std::io::Error::other("upstream answer has no header end"));
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_string();
    let body = &answer[end + 4..];
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap_or("HTTP/1.1 502 Bad Gateway")
        .replacen("HTTP/1.0", "HTTP/1.1", 1);
    let mut rebuilt = format!("{status}\r\n");
    for l in lines {
        let name = l.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "connection" | "keep-alive" | "content-length" | "transfer-encoding"
        ) {
            continue;
        }
        rebuilt.push_str(l);
        rebuilt.push_str("\r\n");
    }
    rebuilt.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    let mut bytes = rebuilt.into_bytes();
    bytes.extend_from_slice(body);
    Ok(bytes)
}

fn made_up(status: u16, reason: &str, error_type: Option<&str>, message: &str) -> Vec<u8> {
    let body = match error_type {
        Some(t) => format!(r#"{{"__type":"{t}","message":"{message}"}}"#),
        None => format!(r#"{{"message":"{message}"}}"#),
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: chaos-proxy\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn serve(
    mut conn: TcpStream,
    upstream_port: u16,
    plan: &FaultPlan,
    rng: &Mutex<Rng>,
    counters: &Counters,
    enabled: &AtomicBool,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let Some((head, body)) = read_request(&mut conn)? else {
        return Ok(());
    };
    let is_api = header(&head, "x-amz-target").is_some();
    if is_api {
        counters.requests.fetch_add(1, Ordering::Relaxed);
    }
    let fault = if is_api && enabled.load(Ordering::SeqCst) {
        pick(plan, rng)
    } else {
        None
    };
    if let Some(f) = fault {
        let i = ALL_FAULTS.iter().position(|x| *x == f).unwrap_or(0);
        counters.faults[i].fetch_add(1, Ordering::Relaxed);
    }
    let coin = rng.lock().unwrap_or_else(|p| p.into_inner()).below(2) == 0;
    match fault {
        None => {
            let answer = forward(upstream_port, &head, &body)?;
            conn.write_all(&answer)?;
        }
        Some(Fault::Throttle) => {
            let answer = if coin {
                made_up(400, "Bad Request", Some("ThrottlingException"), "Rate exceeded")
            } else {
                made_up(429, "Too Many Requests", None, "Too many requests")
            };
            conn.write_all(&answer)?;
        }
        Some(Fault::ServerErrorBefore) => {
            let answer = if coin {
                made_up(500, "Internal Server Error", Some("ServerException"), "injected before")
            } else {
                made_up(
                    503,
                    "Service Unavailable",
                    Some("ServiceUnavailableException"),
                    "injected before",
                )
            };
            conn.write_all(&answer)?;
        }
        Some(Fault::ServerErrorAfter) => {
            forward(upstream_port, &head, &body)?;
            conn.write_all(&made_up(500, "Internal Server Error", None, "injected after"))?;
        }
        Some(Fault::StallBefore) => {
            std::thread::sleep(plan.stall);
        }
        Some(Fault::StallAfter) => {
            forward(upstream_port, &head, &body)?;
            std::thread::sleep(plan.stall);
        }
        Some(Fault::DropMidResponse) => {
            let answer = forward(upstream_port, &head, &body)?;
            // Half the time inside the body (headers complete, body short), else inside the headers.
            let head_len = find(&answer, b"\r\n\r\n").map_or(answer.len(), |i| i + 4);
            let cut = if coin && answer.len() > head_len + 1 {
                head_len + (answer.len() - head_len) / 2
            } else {
                (head_len / 2).max(1)
            };
            conn.write_all(&answer[..cut])?;
            conn.flush()?;
        }
    }
    let _ = conn.shutdown(Shutdown::Both);
    Ok(())
}
