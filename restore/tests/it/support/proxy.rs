//! A TCP proxy on a loopback port in front of the S3 test server, which a
//! test can take down (the port refuses connections and every connection in
//! flight is reset) and bring back on the same port. moto keeps its state
//! in memory, so stopping the server itself would lose the bucket; closing
//! the port is the same fault as far as a client can tell.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    want_up: AtomicBool,
    listening: AtomicBool,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    /// Reads from clients: roughly, requests.
    requests: AtomicU64,
    /// Connections reset by `down`.
    resets: AtomicU64,
}

pub struct Proxy {
    port: u16,
    state: Arc<State>,
}

impl Proxy {
    /// Forwards a new loopback port to `127.0.0.1:target`.
    pub fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a proxy port");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        state.want_up.store(true, Ordering::SeqCst);
        state.listening.store(true, Ordering::SeqCst);
        let s = state.clone();
        std::thread::spawn(move || accept_loop(listener, port, target, s));
        Self { port, state }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn resets(&self) -> u64 {
        self.state.resets.load(Ordering::SeqCst)
    }

    /// Blocks until at least `n` requests went through (at most a minute).
    pub fn wait_for_requests(&self, n: u64) {
        let t = Instant::now();
        while self.requests() < n {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "no traffic through the proxy"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Closes the port and resets every open connection.
    pub fn down(&self) {
        self.state.want_up.store(false, Ordering::SeqCst);
        while self.state.listening.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        for c in self.state.conns.lock().unwrap().drain(..) {
            if c.shutdown(Shutdown::Both).is_ok() {
                self.state.resets.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Opens the port again.
    pub fn up(&self) {
        self.state.want_up.store(true, Ordering::SeqCst);
        while !self.state.listening.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.want_up.store(false, Ordering::SeqCst);
        for c in self.state.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(first: TcpListener, port: u16, target: u16, state: Arc<State>) {
    let mut listener = Some(first);
    while !state.stop.load(Ordering::SeqCst) {
        let want = state.want_up.load(Ordering::SeqCst);
        match (&listener, want) {
            (Some(_), false) => {
                listener = None;
                state.listening.store(false, Ordering::SeqCst);
            }
            (None, true) => match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => {
                    listener = Some(l);
                    state.listening.store(true, Ordering::SeqCst);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            },
            _ => {}
        }
        let Some(l) = &listener else {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        l.set_nonblocking(true).unwrap();
        match l.accept() {
            Ok((client, _)) => {
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                {
                    let mut conns = state.conns.lock().unwrap();
                    conns.push(client.try_clone().unwrap());
                    conns.push(server.try_clone().unwrap());
                }
                let s = state.clone();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump(client, server, Some(s)));
                std::thread::spawn(move || pump(s2, c2, None));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Copies `from` to `to` until either side closes; counts reads if asked.
fn pump(mut from: TcpStream, mut to: TcpStream, count: Option<Arc<State>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(s) = &count {
                    s.requests.fetch_add(1, Ordering::SeqCst);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
