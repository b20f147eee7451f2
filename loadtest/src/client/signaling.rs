//! The offer/answer exchange, behind a trait so the clients can talk WHIP/WHEP over HTTP or,
//! in tests, to an in-process answerer.

use std::time::Duration;

use anyhow::Context;
use parking_lot::Mutex;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};

/// The parts of an HTTP response that WHIP/WHEP tests assert on.
#[derive(Debug, Clone, Default)]
pub struct LastResponse {
    /// HTTP status code.
    pub status: u16,
    /// `Location` header as sent (may be relative).
    pub location: Option<String>,
    /// `ETag` header.
    pub etag: Option<String>,
    /// Every `Link` header, in order.
    pub links: Vec<String>,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// All headers, lower-case names, in order.
    pub headers: Vec<(String, String)>,
}

impl LastResponse {
    fn from_parts(status: u16, headers: &HeaderMap) -> Self {
        let one = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            status,
            location: one("location"),
            etag: one("etag"),
            links: headers
                .get_all("link")
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect(),
            content_type: one("content-type"),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        }
    }

    /// First header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The POST was answered with something other than `201 Created` (downcast an
/// `anyhow::Error` from `publish`/`play` to this to assert on the status).
#[derive(Debug, Clone)]
pub struct HttpStatusError {
    /// The response's status and headers.
    pub response: LastResponse,
    /// The response body (for problem+json details).
    pub body: String,
}

impl std::fmt::Display for HttpStatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "expected 201 Created, got {}: {}",
            self.response.status, self.body
        )
    }
}

impl std::error::Error for HttpStatusError {}

/// Result of a successful exchange.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// The remote answer SDP.
    pub answer: String,
    /// The session resource (absolute `Location` URL for HTTP).
    pub session_url: String,
    /// HTTP response details, when the exchange was HTTP.
    pub response: Option<LastResponse>,
}

/// Sends an offer and brings back the answer; later tears the session down.
#[async_trait::async_trait]
pub trait SdpExchange: Send + Sync + 'static {
    /// Sends the offer; returns the answer.
    async fn negotiate(&self, offer: String) -> anyhow::Result<Negotiated>;
    /// Ends the session (HTTP: DELETE on the session URL). Returns the HTTP status if any.
    async fn terminate(&self) -> anyhow::Result<Option<u16>>;
}

/// WHIP or WHEP over HTTP: POST `application/sdp` to the endpoint, DELETE the `Location`.
pub struct HttpExchange {
    client: reqwest::Client,
    endpoint: String,
    bearer: Option<String>,
    session_url: Mutex<Option<String>>,
}

impl HttpExchange {
    /// An exchange with `endpoint` (the WHIP/WHEP URL), sending `Authorization: Bearer` if set.
    pub fn new(endpoint: impl Into<String>, bearer: Option<String>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building HTTP client")?;
        Ok(Self {
            client,
            endpoint: endpoint.into(),
            bearer,
            session_url: Mutex::new(None),
        })
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.bearer {
            Some(token) => req.header(AUTHORIZATION, format!("Bearer {token}")),
            None => req,
        }
    }
}

#[async_trait::async_trait]
impl SdpExchange for HttpExchange {
    async fn negotiate(&self, offer: String) -> anyhow::Result<Negotiated> {
        let req = self
            .client
            .post(&self.endpoint)
            .header(CONTENT_TYPE, "application/sdp")
            .body(offer);
        let resp = self
            .authorize(req)
            .send()
            .await
            .with_context(|| format!("POST {}", self.endpoint))?;
        let response = LastResponse::from_parts(resp.status().as_u16(), resp.headers());
        let base = resp.url().clone();
        let body = resp.text().await.context("reading answer body")?;
        if response.status != 201 {
            return Err(HttpStatusError { response, body }.into());
        }
        let location = response
            .location
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("201 without Location header"))?;
        // Location may be relative; resolve it against the URL the answer came from.
        let session_url = base
            .join(location)
            .with_context(|| format!("bad Location {location:?}"))?
            .to_string();
        anyhow::ensure!(
            body.starts_with("v=0"),
            "201 body is not an SDP answer: {body:.80}"
        );
        *self.session_url.lock() = Some(session_url.clone());
        Ok(Negotiated {
            answer: body,
            session_url,
            response: Some(response),
        })
    }

    async fn terminate(&self) -> anyhow::Result<Option<u16>> {
        let Some(url) = self.session_url.lock().take() else {
            return Ok(None);
        };
        let resp = self
            .authorize(self.client.delete(&url))
            .send()
            .await
            .with_context(|| format!("DELETE {url}"))?;
        Ok(Some(resp.status().as_u16()))
    }
}

/// Keeps only the ICE candidates `keep` accepts (and everything that is not a candidate).
pub fn filter_candidates(sdp: &str, keep: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if let Some(candidate) = trimmed.strip_prefix("a=candidate:")
            && !keep(candidate)
        {
            continue;
        }
        out.push_str(line);
    }
    out
}

/// The transport field ("udp"/"tcp", any case) of a candidate attribute value.
pub fn candidate_transport(candidate: &str) -> Option<&str> {
    // foundation component transport priority address port typ ...
    candidate.split_whitespace().nth(2)
}

/// Candidate attribute values (`a=candidate:` stripped) in an SDP, with the mid and m-line
/// index of the section they appear in.
pub fn candidates_in(sdp: &str) -> Vec<(String, Option<String>, u16)> {
    let mut out = Vec::new();
    let mut mline: Option<u16> = None;
    let mut mid: Option<String> = None;
    let mut pending: Vec<String> = Vec::new();
    let mut flush = |pending: &mut Vec<String>, mid: &Option<String>, mline: Option<u16>| {
        for c in pending.drain(..) {
            out.push((c, mid.clone(), mline.unwrap_or(0)));
        }
    };
    for line in sdp.lines() {
        let line = line.trim_end();
        if line.starts_with("m=") {
            flush(&mut pending, &mid, mline);
            mline = Some(mline.map_or(0, |i| i + 1));
            mid = None;
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.to_owned());
        } else if let Some(c) = line.strip_prefix("a=candidate:") {
            pending.push(c.to_owned());
        }
    }
    flush(&mut pending, &mid, mline);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\n\
        a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n\
        a=candidate:2 1 TCP 1694498815 127.0.0.1 5001 typ host tcptype passive\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n";

    #[test]
    fn filters_udp_candidates() {
        let out = filter_candidates(SDP, |c| {
            candidate_transport(c).is_some_and(|t| t.eq_ignore_ascii_case("tcp"))
        });
        assert!(!out.contains("udp 2130706431"));
        assert!(out.contains("TCP 1694498815"));
        assert!(out.ends_with("a=mid:1\r\n"));
    }

    #[test]
    fn lists_candidates_with_mid() {
        let c = candidates_in(SDP);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].1.as_deref(), Some("0"));
        assert_eq!(c[1].2, 0);
    }
}
