//! The floor under edgecore's proxy, for the benchmark report: hyper's HTTP/1 server and client
//! and nothing else. Each client connection gets its own keep-alive connection to the origin
//! (no pool, no lock), each request gets the forwarding fields edgecore and the nginx baseline
//! set (`X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`, `Via`) and its answer a
//! `Via`; no limits, timeouts, checks or metrics. What this costs per request is what any proxy
//! built on hyper and tokio costs before it does anything of its own.
//!
//!     cargo build --release --example hyper_floor
//!     target/release/examples/hyper_floor --port 8080 --origin 127.0.0.1:9000 [--workers 2]
//!
//! One current-thread runtime per worker thread, each with its own `SO_REUSEPORT` listener, as
//! edgecore's workers run.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, HOST, VIA};
use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::{TcpSocket, TcpStream};

type Sender = client::SendRequest<Incoming>;

fn main() {
    let (mut port, mut origin, mut workers) = (None, None, 2usize);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--port" => port = Some(value.parse::<u16>().unwrap_or_else(|_| usage("--port: not a port"))),
            "--origin" => {
                origin = Some(
                    value
                        .parse::<SocketAddr>()
                        .unwrap_or_else(|_| usage("--origin: not host:port")),
                )
            }
            "--workers" => workers = value.parse().unwrap_or_else(|_| usage("--workers: not a number")),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    let (Some(port), Some(origin)) = (port, origin) else {
        usage("--port and --origin are required")
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let threads: Vec<_> = (0..workers.max(1))
        .map(|_| {
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                rt.block_on(serve(addr, origin))
            })
        })
        .collect();
    for t in threads {
        if let Err(e) = t.join().expect("a worker") {
            eprintln!("hyper_floor: {e}");
            std::process::exit(1);
        }
    }
}

fn usage(why: &str) -> ! {
    eprintln!("hyper_floor: {why}\nusage: hyper_floor --port PORT --origin HOST:PORT [--workers N]");
    std::process::exit(2)
}

async fn serve(addr: SocketAddr, origin: SocketAddr) -> std::io::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(1024)?;
    loop {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let up: Arc<Mutex<Option<Sender>>> = Arc::new(Mutex::new(None));
            let xff = HeaderValue::from_str(&peer.ip().to_string()).expect("an IP is a field value");
            let service = hyper::service::service_fn(move |req| forward(req, origin, up.clone(), xff.clone()));
            // As edgecore's server: one write per answer (head and a small body together).
            let conn = server::Builder::new()
                .writev(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = conn.await;
        });
    }
}

async fn forward(
    mut req: Request<Incoming>,
    origin: SocketAddr,
    up: Arc<Mutex<Option<Sender>>>,
    xff: HeaderValue,
) -> Result<Response<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    let headers = req.headers_mut();
    if let Some(host) = headers.get(HOST).cloned() {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    headers.insert(HeaderName::from_static("x-forwarded-for"), xff);
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    headers.insert(VIA, HeaderValue::from_static("1.1 floor"));
    // The connection's one origin connection: taken while a request is on it (HTTP/1 answers
    // one request at a time), opened on the first request and again after the origin closed it.
    let taken = up.lock().take();
    let mut sender = match taken {
        Some(s) if !s.is_closed() => s,
        _ => {
            let stream = TcpStream::connect(origin).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) = client::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            sender
        }
    };
    sender.ready().await?;
    let answer = sender.send_request(req);
    *up.lock() = Some(sender);
    let mut resp = answer.await?;
    resp.headers_mut().append(VIA, HeaderValue::from_static("1.1 floor"));
    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(resp)
}
