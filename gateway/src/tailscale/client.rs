//! A client of tailscaled's LocalAPI: HTTP/1.1 over its unix socket, one connection per
//! request (a local socket is cheap, and a restarted daemon needs no pool to be noticed).
//!
//! Every request carries `Host: local-tailscaled.sock` and neither `Origin` nor `Referer`
//! (tailscaled answers 403 otherwise). Every call has a time limit: `ping` in particular is
//! never answered for a peer that does not answer.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use super::types::{PingResult, Status, WhoIs};

/// The `Host` tailscaled insists on.
const LOCALAPI_HOST: &str = "local-tailscaled.sock";

/// The largest answer read from tailscaled (a status with thousands of peers fits).
const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LocalApiError {
    /// No socket, or nobody listening on it.
    #[error("tailscaled is not running (nothing answers at {})", .0.display())]
    NotRunning(PathBuf),
    #[error("tailscaled refused access: {0}")]
    AccessDenied(String),
    #[error("tailscaled has no {0}")]
    NotFound(String),
    #[error("tailscaled answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("tailscaled sent an answer the gateway cannot read: {0}")]
    BadResponse(String),
    #[error("tailscaled did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot talk to tailscaled at {}: {message}", .socket.display())]
    Io { socket: PathBuf, message: String },
}

/// tailscaled's LocalAPI at one socket path.
#[derive(Clone, Debug)]
pub struct LocalApi {
    socket: PathBuf,
    timeout: Duration,
}

impl LocalApi {
    /// `timeout`: the time limit of each call (a watch's limit covers only its start).
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> LocalApi {
        LocalApi {
            socket: socket.into(),
            timeout,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET status`: this node, its peers and the daemon's state.
    pub async fn status(&self) -> Result<Status, LocalApiError> {
        self.json(Method::GET, "status", self.timeout).await
    }

    /// `GET whois?addr=IP:PORT`: the node and user behind a tailnet address. `None` when the
    /// address is no tailnet peer's (404).
    pub async fn whois(&self, addr: SocketAddr) -> Result<Option<WhoIs>, LocalApiError> {
        let query = format!("whois?addr={}", query_escape(&addr.to_string()));
        match self.json(Method::GET, &query, self.timeout).await {
            Ok(who) => Ok(Some(who)),
            Err(LocalApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST ping?ip=IP&type=disco`: whether the peer's tailscaled answers, and over which
    /// path. tailscaled never answers for a peer that does not: `limit` ends the wait.
    pub async fn ping(&self, ip: IpAddr, limit: Duration) -> Result<PingResult, LocalApiError> {
        let query = format!(
            "ping?ip={}&size=0&type=disco",
            query_escape(&ip.to_string())
        );
        self.json(Method::POST, &query, limit).await
    }

    /// `GET watch-ipn-bus?mask=MASK`: a stream of notifications, one JSON object per line.
    pub async fn watch(&self, mask: u64) -> Result<Watch, LocalApiError> {
        let path = format!("watch-ipn-bus?mask={mask}");
        let response = tokio::time::timeout(self.timeout, self.send(Method::GET, &path))
            .await
            .map_err(|_| LocalApiError::Timeout(self.timeout))??;
        let response = check(response, "watch-ipn-bus").await?;
        Ok(Watch {
            body: response.into_body(),
            pending: Vec::new(),
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        limit: Duration,
    ) -> Result<T, LocalApiError> {
        let what = path.split('?').next().unwrap_or(path).to_owned();
        let call = async {
            let response = check(self.send(method, path).await?, &what).await?;
            let body = read_body(response.into_body()).await?;
            serde_json::from_slice(&body)
                .map_err(|e| LocalApiError::BadResponse(format!("{what}: {e}")))
        };
        tokio::time::timeout(limit, call)
            .await
            .map_err(|_| LocalApiError::Timeout(limit))?
    }

    async fn send(&self, method: Method, path: &str) -> Result<Response<Incoming>, LocalApiError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    LocalApiError::NotRunning(self.socket.clone())
                }
                std::io::ErrorKind::PermissionDenied => LocalApiError::AccessDenied(format!(
                    "no permission to open {}",
                    self.socket.display()
                )),
                _ => self.io(e),
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.io(e))?;
        // The connection lives as long as the request and its body; it ends with them.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::builder()
            .method(method)
            .uri(format!("/localapi/v0/{path}"))
            .header(hyper::header::HOST, LOCALAPI_HOST)
            .header("Tailscale-Cap", "145")
            .body(Empty::<Bytes>::new())
            .map_err(|e| LocalApiError::BadResponse(e.to_string()))?;
        sender.send_request(request).await.map_err(|e| self.io(e))
    }

    fn io(&self, e: impl std::fmt::Display) -> LocalApiError {
        LocalApiError::Io {
            socket: self.socket.clone(),
            message: e.to_string(),
        }
    }
}

/// Turns an error status into its error, with tailscaled's message: JSON `{"error": ...}`
/// (any case of the key) or the text body.
async fn check(
    response: Response<Incoming>,
    what: &str,
) -> Result<Response<Incoming>, LocalApiError> {
    let status = response.status();
    if status == StatusCode::OK {
        return Ok(response);
    }
    let body = read_body(response.into_body()).await.unwrap_or_default();
    let message = error_message(&body);
    Err(match status {
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => LocalApiError::AccessDenied(message),
        StatusCode::NOT_FOUND => LocalApiError::NotFound(format!("{what}: {message}")),
        _ => LocalApiError::Status {
            status: status.as_u16(),
            message,
        },
    })
}

fn error_message(body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body)
        && let Some(serde_json::Value::String(m)) = map
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("error"))
            .map(|(_, v)| v)
    {
        return m.clone();
    }
    String::from_utf8_lossy(body).trim().to_owned()
}

async fn read_body(mut body: Incoming) -> Result<Vec<u8>, LocalApiError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| LocalApiError::BadResponse(e.to_string()))?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > MAX_BODY {
                return Err(LocalApiError::BadResponse(format!(
                    "an answer of more than {MAX_BODY} bytes"
                )));
            }
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

/// Escapes a query value (addresses: `:`, `[`, `]`, `%` of a scope).
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An open `watch-ipn-bus` stream.
pub struct Watch {
    body: Incoming,
    pending: Vec<u8>,
}

impl Watch {
    /// The next notification, as JSON; `None` when the stream ended (tailscaled stopped, or
    /// dropped a watcher that fell behind).
    pub async fn next(&mut self) -> Result<Option<serde_json::Value>, LocalApiError> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return serde_json::from_slice(line)
                    .map(Some)
                    .map_err(|e| LocalApiError::BadResponse(format!("watch-ipn-bus: {e}")));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(LocalApiError::BadResponse(e.to_string())),
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        if self.pending.len() + data.len() > MAX_BODY {
                            return Err(LocalApiError::BadResponse(
                                "watch-ipn-bus: a line longer than the limit".into(),
                            ));
                        }
                        self.pending.extend_from_slice(data);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_read_as_tailscaled_writes_them() {
        assert_eq!(
            error_message(b"{\"error\":\"context canceled\"}\n"),
            "context canceled"
        );
        assert_eq!(error_message(b"{\"Error\":\"bad prefs\"}\n"), "bad prefs");
        assert_eq!(
            error_message(b"no match for IP:port\n"),
            "no match for IP:port"
        );
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("100.1.2.3:22"), "100.1.2.3%3A22");
        assert_eq!(query_escape("[fd7a::1]:22"), "%5Bfd7a%3A%3A1%5D%3A22");
    }
}
