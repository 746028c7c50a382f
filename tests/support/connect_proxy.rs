//! A forward proxy of ours on loopback, as HTTPS_PROXY / HTTP_PROXY see one: `CONNECT host:port`
//! opens a tunnel (for https), an absolute-form request (`POST http://host:port/path`) is sent on
//! in origin form (for http). Every request line is recorded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub struct ConnectProxy {
    pub port: u16,
    /// Request lines seen, e.g. `CONNECT 127.0.0.1:4566 HTTP/1.1`.
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    pub fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    let _ = serve(conn, &log);
                });
            }
        });
        ConnectProxy { port, seen }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(client: TcpStream, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end().to_string();
    log.lock().unwrap().push(line.clone());
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let version = parts.next().unwrap_or("HTTP/1.1").to_string();
    let mut head = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim_end().is_empty() {
            break;
        }
        head.push(h);
    }
    let mut client_w = client.try_clone()?;
    let upstream = if method == "CONNECT" {
        let up = TcpStream::connect(&target)?;
        client_w.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        up
    } else {
        let rest = target.strip_prefix("http://").unwrap_or(&target);
        let (authority, path) = rest
            .split_once('/')
            .map_or((rest, "".to_string()), |(a, p)| (a, format!("/{p}")));
        let mut up = TcpStream::connect(authority)?;
        let path = if path.is_empty() { "/".to_string() } else { path };
        write!(up, "{method} {path} {version}\r\n")?;
        for h in &head {
            up.write_all(h.as_bytes())?;
        }
        up.write_all(b"\r\n")?;
        up
    };
    // Whatever the reader already buffered belongs upstream.
    let buffered = reader.buffer().to_vec();
    let mut up_w = upstream.try_clone()?;
    up_w.write_all(&buffered)?;
    let mut up_r = upstream;
    let to_client = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut client_w);
        let _ = client_w.shutdown(Shutdown::Both);
    });
    let mut client_r = reader.into_inner();
    let _ = std::io::copy(&mut client_r, &mut up_w);
    let _ = up_w.shutdown(Shutdown::Write);
    let _ = to_client.join();
    let _ = client_r.read(&mut [0u8; 1]);
    Ok(())
}
