//! The inline-driven origin connection wakes its request's task for the origin, not for the
//! hand-offs between the connection and the request that the same poll takes up.

use std::sync::atomic::AtomicUsize;

use http_body_util::Empty;
use hyper::body::Body as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A task's waker that counts its wakes.
#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Count {
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Waits (letting the runtime's I/O driver run) until `count` reaches `n`.
async fn wakes_reach(count: &Count, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count.get() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the origin's answer never woke the task"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A connection to `addr`, handshaken (run inside [`runtime`]).
async fn conn_to(addr: std::net::SocketAddr) -> Box<OriginConn<Empty<Bytes>>> {
    let io = MaybeHttpsStream::Http(TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap()));
    let (sender, conn) = http1::handshake(io).await.unwrap();
    Box::new(OriginConn::new(sender, conn, Duration::from_secs(10)))
}

fn pool() -> Arc<OriginPool<Empty<Bytes>>> {
    Arc::new(OriginPool {
        idle: vec![Mutex::new(Vec::new())].into_boxed_slice(),
        dial: "http://127.0.0.1:1/".parse().unwrap(),
        host: HeaderValue::from_static("origin"),
        sweeps: AtomicU32::new(0),
        retired: AtomicBool::new(false),
    })
}

#[test]
fn a_proxied_exchange_wakes_its_task_only_when_the_origin_answers() {
    runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (go, answer) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let (mut head, mut chunk) = (Vec::new(), [0u8; 1024]);
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut chunk).await.unwrap();
                head.extend_from_slice(&chunk[..n]);
            }
            answer.await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi")
                .await
                .unwrap();
            let _ = s.read(&mut chunk).await;
        });
        let mut c = conn_to(addr).await;

        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let cx = Context::from_waker(&waker);
        assert_eq!(c.poll_inline(&cx, |link, cx| link.poll_ready(cx)), Poll::Ready(true));
        let req = http::Request::get("/page").body(Empty::<Bytes>::new()).unwrap();
        let mut response = Box::pin(c.handing(|link| link.sender.send_request(req)));
        let mut poll_head = |c: &mut OriginConn<Empty<Bytes>>| {
            c.poll_inline(&cx, |link, cx| {
                assert!(link.drive(cx));
                response.as_mut().poll(cx)
            })
        };
        // The request is written; the origin has not answered. Handing the request over woke
        // the connection, inside this task: not a wake for the scheduler.
        assert!(poll_head(&mut c).is_pending());
        assert_eq!(count.get(), 0, "a hand-off inside the task woke it");

        // The origin's answer wakes the task (through the connection's waker), once.
        go.send(()).unwrap();
        wakes_reach(&count, 1).await;
        let resp = match poll_head(&mut c) {
            Poll::Ready(Ok(r)) => r,
            other => panic!("expected the response head, got {:?}", other.map(|r| r.map(|_| ()))),
        };
        assert_eq!(resp.status(), 200);

        // The body came with the head: read to its end without another wake, and the
        // connection goes back to the pool.
        let pool = pool();
        let mut body = OriginBody {
            body: resp.into_body(),
            conn: Some(c),
            pool: pool.clone(),
            busy: None,
        };
        let mut cx = Context::from_waker(&waker);
        let data = match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(f))) => f.into_data().unwrap(),
            _ => panic!("expected the body's bytes"),
        };
        assert_eq!(&data[..], b"hi");
        assert!(matches!(Pin::new(&mut body).poll_frame(&mut cx), Poll::Ready(None)));
        assert_eq!(pool.idle().lock().len(), 1, "the connection went back to the pool");
        assert_eq!(count.get(), 1, "reading the body woke the task");
    });
}

#[test]
fn a_connection_that_keeps_waking_itself_hands_the_task_back_to_the_scheduler() {
    runtime().block_on(async {
        // Any connection will do: the passes below never touch it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c = conn_to(listener.local_addr().unwrap()).await;
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let cx = Context::from_waker(&waker);

        // A pass that wakes once, then has nothing: passed again at once, no wake sent.
        let mut passes = 0;
        let r = c.poll_inline(&cx, |_, cx| {
            passes += 1;
            if passes == 1 {
                cx.waker().wake_by_ref();
            }
            Poll::<()>::Pending
        });
        assert_eq!((r, passes, count.get()), (Poll::Pending, 2, 0));

        // One that wakes itself every time (as hyper yields): the task is woken to come back.
        let mut passes = 0;
        let r = c.poll_inline(&cx, |_, cx| {
            passes += 1;
            cx.waker().wake_by_ref();
            Poll::<()>::Pending
        });
        assert_eq!((r, passes, count.get()), (Poll::Pending, INLINE_PASSES, 1));

        // Outside a poll, a wake goes to the task that polled last.
        c.waker.wake_by_ref();
        assert_eq!(count.get(), 2);
    });
}
