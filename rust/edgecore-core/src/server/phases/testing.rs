//! Helpers for the phases' unit tests: plans from JSON specs, request contexts, a server state,
//! a fake bridge (answers jobs on the spot) and a fake origin (one canned response on loopback,
//! recording what it received).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::{HeaderName, HeaderValue};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth::{Algorithm, JwtVerifier, Key, KeySet, VerifierConfig};
use crate::classify::BotDetector;
use crate::http::Request;
use crate::limit::{LimiterConfig, RateLimiter};
use crate::server::bridge::{Bridge, Job, JobKind, Reply};
use crate::server::ctx::{BodyState, RequestCtx};
use crate::server::plan::Plan;
use crate::server::spec::{AppSpec, Objects};
use crate::server::state::ServerState;

/// The HS256 secret of [`hs256_token`] and [`plan_with_jwt`].
pub const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";

/// A plan from a JSON spec and `objects`.
pub fn plan_with(spec: serde_json::Value, objects: Objects) -> Plan {
    let spec: AppSpec = serde_json::from_value(spec).expect("a valid spec shape");
    Plan::build(spec, objects).expect("a valid plan")
}

/// A plan from a JSON spec with no library objects.
pub fn plan(spec: serde_json::Value) -> Plan {
    plan_with(spec, Objects::default())
}

/// A plan with a bot policy (`action`, `allow`) on the bundled-style pattern `bot|crawl`.
pub fn plan_with_bots(action: &str, allow: &[&str]) -> Plan {
    let objects = Objects {
        bots: Some(Arc::new(BotDetector::new(&["(?i)bot|crawl"], false).unwrap())),
        ..Default::default()
    };
    plan_with(serde_json::json!({"bots": {"action": action, "allow": allow}}), objects)
}

/// A plan with an HS256 JWT rule on `/api/*`.
pub fn plan_with_jwt(claims_to_headers: serde_json::Value) -> Plan {
    let config = VerifierConfig {
        algorithms: vec![Algorithm::HS256],
        audience: None,
        issuer: None,
        leeway: 0.0,
        required_claims: vec!["exp".into()],
        max_token_bytes: 8192,
    };
    let verifier = JwtVerifier::new(config, KeySet::single(Key::hmac(SECRET).unwrap()), false).unwrap();
    let objects = Objects {
        verifiers: vec![Arc::new(verifier)],
        ..Default::default()
    };
    let spec =
        serde_json::json!({"jwt": [{"paths": ["/api/*"], "verifier": 0, "claims_to_headers": claims_to_headers}]});
    plan_with(spec, objects)
}

/// A plan limiting `/login` to `limit` requests a minute per `key`.
pub fn plan_with_limit(key: &str, limit: u64) -> Plan {
    let limiter = RateLimiter::new(&LimiterConfig {
        limit,
        period: 60.0,
        ..Default::default()
    })
    .unwrap();
    let objects = Objects {
        limiters: vec![Arc::new(limiter)],
        ..Default::default()
    };
    plan_with(
        serde_json::json!({"rate_limits": [{"paths": ["/login"], "limiter": 0, "key": key}]}),
        objects,
    )
}

/// An HS256 token for `claims`, signed with [`SECRET`].
pub fn hs256_token(claims: &serde_json::Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET),
        input.as_bytes(),
    );
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// A context for `GET path` from `peer` with `headers` (and `Host: shop.example` unless they
/// have one).
pub fn ctx_from(peer: &str, path: &str, headers: &[(&str, &str)]) -> RequestCtx {
    let mut request = Request::new(http::Method::GET, path.parse().unwrap());
    for (n, v) in headers {
        request.headers.as_map_mut().append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    if !request.headers.as_map_mut().contains_key(http::header::HOST) {
        request
            .headers
            .as_map_mut()
            .insert(http::header::HOST, HeaderValue::from_static("shop.example"));
    }
    let peer: IpAddr = peer.parse().unwrap();
    let mut ctx = RequestCtx::new(request, BodyState::Read(bytes::Bytes::new()), peer);
    ctx.request.edge.client_ip = Some(peer);
    ctx
}

/// A context for `GET path` from 198.51.100.1 with `headers`.
pub fn ctx_with(path: &str, headers: &[(&str, &str)]) -> RequestCtx {
    ctx_from("198.51.100.1", path, headers)
}

/// `ctx` located in `country`.
pub fn with_country(mut ctx: RequestCtx, country: &str) -> RequestCtx {
    ctx.request.edge.geo = Some(Arc::new(crate::geo::Geo {
        country: Some(country.into()),
        ..Default::default()
    }));
    ctx
}

/// The state of a one-worker server for `plan`.
pub fn state(plan: Plan, bridge: Option<Arc<FakeBridge>>) -> Arc<ServerState> {
    let bridge = bridge.map(|b| -> Arc<dyn Bridge> { b });
    Arc::new(ServerState::new(plan, bridge, 1).unwrap())
}

/// Runs `fut` on a fresh single-threaded runtime.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(fut)
}

type Answer = Box<dyn Fn(&Job) -> Reply + Send + Sync>;

/// A bridge that answers each job at once (or drops it, or refuses it as if full).
pub struct FakeBridge {
    answer: Option<Answer>,
    full: AtomicBool,
    seen: Mutex<Vec<JobKind>>,
}

impl FakeBridge {
    /// Answers every job with `f(job)`.
    pub fn answering(f: impl Fn(&Job) -> Reply + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(FakeBridge {
            answer: Some(Box::new(f)),
            full: AtomicBool::new(false),
            seen: Mutex::new(Vec::new()),
        })
    }

    /// Takes every job and drops its reply unanswered.
    pub fn dropping() -> Arc<Self> {
        Arc::new(FakeBridge {
            answer: None,
            full: AtomicBool::new(false),
            seen: Mutex::new(Vec::new()),
        })
    }

    /// Refuses every job (a full queue).
    pub fn full() -> Arc<Self> {
        let b = Self::dropping();
        b.full.store(true, Ordering::Relaxed);
        b
    }

    /// The kinds of the jobs taken so far.
    pub fn kinds(&self) -> Vec<JobKind> {
        self.seen.lock().clone()
    }
}

impl Bridge for FakeBridge {
    fn submit(&self, job: Job) -> bool {
        if self.full.load(Ordering::Relaxed) {
            return false;
        }
        self.seen.lock().push(job.kind);
        if let Some(answer) = &self.answer {
            let reply = answer(&job);
            let _ = job.reply.send(reply);
        }
        true
    }

    fn queued(&self) -> usize {
        0
    }
}

/// An origin on loopback that answers one connection with a canned response and records the
/// request head it received.
pub struct FakeOrigin {
    addr: std::net::SocketAddr,
    received: tokio::sync::oneshot::Receiver<String>,
}

impl FakeOrigin {
    /// Listens on a free port; the first connection gets `response` (raw bytes).
    pub async fn start(response: &'static str) -> FakeOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            s.write_all(response.as_bytes()).await.unwrap();
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
            // Kept open until the test ends, as a keep-alive origin would.
            let _ = s.read(&mut chunk).await;
        });
        FakeOrigin { addr, received: rx }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request head the origin received.
    pub async fn received(self) -> String {
        self.received.await.unwrap()
    }
}

/// An origin on loopback that answers every request, on any number of keep-alive connections,
/// with the next of its scripted responses (the last one again once they run out), and records
/// each request head in order.
pub struct ScriptedOrigin {
    addr: std::net::SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl ScriptedOrigin {
    /// Listens on a free port and answers with `script`, in order.
    pub async fn start(script: &[&str]) -> ScriptedOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Mutex<std::collections::VecDeque<String>>> =
            Arc::new(Mutex::new(script.iter().map(|s| s.to_string()).collect()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(Self::serve(s, script.clone(), seen.clone()));
            }
        });
        ScriptedOrigin { addr, heads }
    }

    async fn serve(
        mut s: tokio::net::TcpStream,
        script: Arc<Mutex<std::collections::VecDeque<String>>>,
        heads: Arc<Mutex<Vec<String>>>,
    ) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let body = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + body {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..end + 4 + body);
            heads.lock().push(head);
            let answer = {
                let mut script = script.lock();
                match script.len() {
                    0 | 1 => script.front().cloned().unwrap_or_default(),
                    _ => script.pop_front().unwrap_or_default(),
                }
            };
            if s.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request heads received so far, in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().clone()
    }
}
