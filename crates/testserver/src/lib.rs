#![doc = include_str!("../README.md")]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a reply's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Every chunk, then the end of the body.
    Complete,
    /// Every chunk, then the connection closes without ending the body: a stream cut short.
    Cut,
    /// Every chunk, then silence with the connection held open: a stream that went quiet.
    Stall,
    /// The server reads the request and never answers.
    Hang,
}

/// One scripted answer to one request.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    chunks: Vec<Vec<u8>>,
    chunk_delay: Duration,
    end: End,
    /// Serve only the part a `Range: bytes=N-` request asks for (206), as file servers do.
    ranged: bool,
    /// Close the connection after this many bytes of a whole body (its full length announced).
    cut_at: Option<usize>,
}

impl Reply {
    /// `status` with `body` sent whole, as JSON.
    pub fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            chunks: vec![body.into().into_bytes()],
            chunk_delay: Duration::ZERO,
            end: End::Complete,
            ranged: false,
            cut_at: None,
        }
    }

    /// A 200 with a binary `body` sent whole (a file download).
    pub fn bytes(content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            headers: vec![("content-type".into(), content_type.into())],
            chunks: vec![body.into()],
            ..Reply::json(200, "")
        }
    }

    /// A `302 Found` pointing at `location`.
    pub fn redirect(location: &str) -> Reply {
        Reply::json(302, "").header("location", location)
    }

    /// A 200 whose body is streamed in `chunks` (chunked transfer encoding), with `content_type`.
    pub fn stream<S: Into<String>>(content_type: &str, chunks: impl IntoIterator<Item = S>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), content_type.into())],
            chunks: chunks.into_iter().map(|c| c.into().into_bytes()).collect(),
            chunk_delay: Duration::from_millis(5),
            end: End::Complete,
            ranged: false,
            cut_at: None,
        }
    }

    /// Reads the request and never answers.
    pub fn hang() -> Reply {
        Reply { end: End::Hang, ..Reply::json(200, "") }
    }

    /// The same reply, with the connection closed after the last chunk without ending the body.
    pub fn cut(mut self) -> Reply {
        self.end = End::Cut;
        self
    }

    /// The same whole-body reply, honouring `Range: bytes=N-` with `206 Partial Content` and
    /// `content-range` (and saying `accept-ranges: bytes`), as a file server does.
    pub fn ranged(mut self) -> Reply {
        self.ranged = true;
        self.header("accept-ranges", "bytes")
    }

    /// The same whole-body reply, announcing its full length but closing the connection after
    /// `bytes` bytes of it (of the part served, for a ranged reply): a download cut short.
    pub fn cut_at(mut self, bytes: usize) -> Reply {
        self.cut_at = Some(bytes);
        self
    }

    /// The same reply, with the connection held open and silent after the last chunk.
    pub fn stall(mut self) -> Reply {
        self.end = End::Stall;
        self
    }

    /// The same reply, with `delay` between two chunks.
    pub fn paced(mut self, delay: Duration) -> Reply {
        self.chunk_delay = delay;
        self
    }

    /// The same reply with one more header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn is_streamed(&self) -> bool {
        self.chunks.len() != 1 || matches!(self.end, End::Cut | End::Stall)
    }
}

/// A request as the server received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A loopback HTTP/1.1 server that answers requests with scripted replies, in order; after the
/// last one it repeats the last. It runs on its own thread, so blocking tests can use it too.
pub struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    /// Starts a server on 127.0.0.1 with a free port.
    pub fn start(replies: Vec<Reply>) -> Server {
        assert!(!replies.is_empty(), "a test server needs at least one reply");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
        std_listener.set_nonblocking(true).expect("cannot make the listener non-blocking");
        let addr = std_listener.local_addr().expect("the listener has an address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cannot start the test server's runtime");
            runtime.block_on(serve(std_listener, replies, recorded));
        });
        Server { addr, requests }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("the request log is not poisoned").clone()
    }
}

async fn serve(listener: std::net::TcpListener, replies: Vec<Reply>, requests: Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::from_std(listener).expect("cannot adopt the listener");
    let mut next = 0;
    loop {
        let Ok((socket, _)) = listener.accept().await else { continue };
        let reply = replies[next.min(replies.len() - 1)].clone();
        next += 1;
        let requests = requests.clone();
        tokio::spawn(async move {
            // A client that gives up mid-way (a timeout under test) is not the server's failure.
            let _ = answer(socket, reply, requests).await;
        });
    }
}

async fn answer(
    mut socket: TcpStream,
    reply: Reply,
    requests: Arc<Mutex<Vec<Request>>>,
) -> std::io::Result<()> {
    let request = read_request(&mut socket).await?;
    requests.lock().expect("the request log is not poisoned").push(request);
    if reply.end == End::Hang {
        return hold_open(&mut socket).await;
    }
    let reply = match reply.ranged {
        true => serve_range(reply, &requests),
        false => reply,
    };
    let streamed = reply.is_streamed();
    let mut head = format!("HTTP/1.1 {} {}\r\nconnection: close\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if streamed {
        head.push_str("transfer-encoding: chunked\r\n\r\n");
    } else {
        head.push_str(&format!("content-length: {}\r\n\r\n", reply.chunks[0].len()));
    }
    socket.write_all(head.as_bytes()).await?;
    if let Some(at) = reply.cut_at {
        let body = &reply.chunks[0];
        socket.write_all(&body[..at.min(body.len())]).await?;
        socket.flush().await?;
        return socket.shutdown().await;
    }
    for chunk in &reply.chunks {
        if streamed {
            socket.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
            socket.write_all(chunk).await?;
            socket.write_all(b"\r\n").await?;
        } else {
            socket.write_all(chunk).await?;
        }
        socket.flush().await?;
        tokio::time::sleep(reply.chunk_delay).await;
    }
    match reply.end {
        End::Complete if streamed => socket.write_all(b"0\r\n\r\n").await?,
        End::Stall => return hold_open(&mut socket).await,
        _ => {}
    }
    socket.shutdown().await
}

/// `reply` cut down to the bytes that the last request's `Range: bytes=N-` asks for.
fn serve_range(mut reply: Reply, requests: &Mutex<Vec<Request>>) -> Reply {
    let log = requests.lock().expect("the request log is not poisoned");
    let start = log
        .last()
        .and_then(|r| r.header("range"))
        .and_then(|range| range.strip_prefix("bytes="))
        .and_then(|range| range.strip_suffix('-'))
        .and_then(|start| start.parse::<usize>().ok());
    let Some(start) = start else { return reply };
    let whole = std::mem::take(&mut reply.chunks[0]);
    if start >= whole.len() {
        reply.status = 416;
        return reply.header("content-range", &format!("bytes */{}", whole.len()));
    }
    reply.status = 206;
    let range = format!("bytes {start}-{}/{}", whole.len() - 1, whole.len());
    reply.chunks[0] = whole[start..].to_vec();
    reply.header("content-range", &range)
}

/// Keeps the connection open, silent, until the client gives up.
async fn hold_open(socket: &mut TcpStream) -> std::io::Result<()> {
    let mut sink = [0u8; 1];
    while socket.read(&mut sink).await? > 0 {}
    Ok(())
}

async fn read_request(socket: &mut TcpStream) -> std::io::Result<Request> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or_default().split(' ');
    let (method, path) =
        (start.next().unwrap_or_default().to_owned(), start.next().unwrap_or_default().to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length =
        headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Request { method, path, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Server-sent events: each `(event, data)` as an `event:` line (when given), a `data:` line
/// and a blank line.
pub fn sse<'a>(events: impl IntoIterator<Item = (Option<&'a str>, &'a str)>) -> Vec<String> {
    events
        .into_iter()
        .map(|(event, data)| match event {
            Some(event) => format!("event: {event}\ndata: {data}\n\n"),
            None => format!("data: {data}\n\n"),
        })
        .collect()
}
