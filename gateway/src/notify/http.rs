//! The HTTP client of the notification channels: one POST, time-limited, over HTTP or HTTPS
//! (rustls with the Mozilla roots). It knows nothing of channels or events: a URL, headers and
//! a body in, delivered or why not out.
//!
//! A user part in the URL (`https://user:token@ntfy.example.com/topic`) becomes a Basic
//! `Authorization` header and is taken out of the request line, as ntfy documents for access
//! tokens; the URL is never logged whole.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The most of an answer's body read (only to finish the exchange; it is not used).
const MAX_ANSWER: usize = 64 * 1024;

/// Why a URL cannot be a channel's (for `notify add`), or a try failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("{0}")]
    BadUrl(String),
    #[error("no answer within {} s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("the server answered HTTP {0}")]
    Status(u16),
    #[error("{0}")]
    Failed(String),
}

/// A POST to send.
pub struct Post<'a> {
    pub url: &'a str,
    pub content_type: &'static str,
    /// Extra headers (name, value); values are checked to be visible ASCII by the caller.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// A pooled client, built once.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpClient")
    }
}

impl HttpClient {
    pub fn new(connect_timeout: Duration) -> Result<HttpClient, PostError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| PostError::Failed(format!("TLS cannot be set up: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .build(https);
        Ok(HttpClient { client })
    }

    /// Sends `post`; Ok when the server answered 2xx within `limit`.
    pub async fn post(&self, post: Post<'_>, limit: Duration) -> Result<(), PostError> {
        let (uri, authorization) = split_url(post.url)?;
        let mut request = Request::post(uri)
            .header(CONTENT_TYPE, post.content_type)
            .header(USER_AGENT, concat!("agentgate/", env!("CARGO_PKG_VERSION")));
        if let Some(auth) = authorization {
            request = request.header(AUTHORIZATION, auth);
        }
        for (name, value) in &post.headers {
            let value = HeaderValue::from_str(value)
                .map_err(|_| PostError::Failed(format!("header {name} is not visible ASCII")))?;
            request = request.header(HeaderName::from_static(name), value);
        }
        let request = request
            .body(Full::new(Bytes::from(post.body)))
            .map_err(|e| PostError::BadUrl(e.to_string()))?;
        let exchange = async {
            let answer = self
                .client
                .request(request)
                .await
                .map_err(|e| PostError::Failed(cause(&e)))?;
            let status = answer.status();
            // Read (a bounded part of) the answer so the connection can be reused.
            let _ = Limited::new(answer.into_body(), MAX_ANSWER).collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(PostError::Status(status.as_u16()))
            }
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| PostError::Timeout(limit))?
    }
}

/// The innermost cause of a client error ("Connection refused (os error 111)"), which says
/// more than hyper's outer "client error (Connect)".
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    let outer = e.to_string();
    let inner = inner.to_string();
    if outer == inner {
        outer
    } else {
        format!("{outer}: {inner}")
    }
}

/// Checks that `url` can be a channel's: http or https, with a host.
pub fn check_url(url: &str) -> Result<(), PostError> {
    split_url(url).map(|_| ())
}

/// The URL without its user part, and the `Authorization` header that part makes.
fn split_url(url: &str) -> Result<(hyper::Uri, Option<HeaderValue>), PostError> {
    let bad = |why: &str| PostError::BadUrl(why.to_owned());
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("it is not a URL (it has no scheme://)"))?;
    if scheme != "http" && scheme != "https" {
        return Err(bad("only http:// and https:// URLs can be notified"));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, authority),
    };
    if host.is_empty() {
        return Err(bad("the URL has no host"));
    }
    let path = path.split('#').next().unwrap_or_default();
    let path = if path.is_empty() { "/" } else { path };
    let uri: hyper::Uri = format!("{scheme}://{host}{path}")
        .parse()
        .map_err(|_| bad("it is not a valid URL"))?;
    let authorization = userinfo
        .map(|user| {
            HeaderValue::from_str(&format!("Basic {}", base64(user.as_bytes())))
                .map_err(|_| bad("its user part is not valid"))
        })
        .transpose()?;
    Ok((uri, authorization))
}

/// Standard base64 with padding (RFC 4648), for a Basic credential.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_part_becomes_basic_authorization_and_leaves_the_url() {
        let (uri, auth) =
            split_url("https://phil:tk_secret@ntfy.example.com/alerts?x=1#f").expect("valid");
        assert_eq!(uri.to_string(), "https://ntfy.example.com/alerts?x=1");
        assert_eq!(
            auth.expect("auth").to_str().expect("ascii"),
            format!("Basic {}", base64(b"phil:tk_secret"))
        );
        let (uri, auth) = split_url("http://127.0.0.1:8080").expect("valid");
        assert_eq!(
            (uri.to_string(), auth),
            ("http://127.0.0.1:8080/".into(), None)
        );
        for bad in [
            "ftp://x/y",
            "ntfy.sh/topic",
            "https:///path",
            "https://a b/",
        ] {
            assert!(check_url(bad).is_err(), "{bad} was taken");
        }
    }

    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
