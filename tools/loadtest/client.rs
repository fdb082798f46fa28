//! The one HTTP client of the REST API for the load test, the benchmarks and the integration
//! tests: typed campaign calls, and the latency of every request per route in HDR histograms.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

use super::LoadError;

/// The campaign routes as the latency report names them.
pub mod routes {
    pub const CREATE: &str = "POST /api/v1/campaigns";
    pub const START: &str = "POST /api/v1/campaigns/{id}/start";
    pub const STATS: &str = "GET /api/v1/campaigns/{id}/stats";
    pub const CAMPAIGN: &str = "GET /api/v1/campaigns/{id}";
}

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    latencies: Arc<Mutex<BTreeMap<&'static str, Histogram<u64>>>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteLatency {
    pub route: String,
    pub requests: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl ApiClient {
    pub fn new(base: &str, connections: usize) -> Result<Self, LoadError> {
        // Idle connections are let go before the server's keep-alive (5 s by default) could
        // close one just as a request is sent on it.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(connections.max(1))
            .pool_idle_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|err| LoadError::Http(err.to_string()))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            latencies: Arc::new(Mutex::new(BTreeMap::new())),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn histograms(&self) -> MutexGuard<'_, BTreeMap<&'static str, Histogram<u64>>> {
        self.latencies
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn record(&self, route: &'static str, elapsed: Duration) {
        let mut histograms = self.histograms();
        if !histograms.contains_key(route) {
            // Three significant digits from 1 µs to 10 minutes; constant, valid bounds.
            let Ok(histogram) = Histogram::new_with_bounds(1, 600_000_000, 3) else {
                return;
            };
            histograms.insert(route, histogram);
        }
        if let Some(histogram) = histograms.get_mut(route) {
            histogram.saturating_record(elapsed.as_micros().max(1) as u64);
        }
    }

    /// Sends one request and returns its status and JSON body (Null when empty).
    pub async fn send(
        &self,
        route: &'static str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), LoadError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.timed(route, request).await
    }

    /// Like `send`, with a body already encoded as JSON text (large bodies skip `Value`).
    pub async fn send_raw(
        &self,
        route: &'static str,
        method: reqwest::Method,
        path: &str,
        body: String,
    ) -> Result<(u16, Value), LoadError> {
        self.send_as(route, method, path, "application/json", body)
            .await
    }

    /// Sends a body already encoded as `content_type`.
    pub async fn send_as(
        &self,
        route: &'static str,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: String,
    ) -> Result<(u16, Value), LoadError> {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        self.timed(route, request).await
    }

    async fn timed(
        &self,
        route: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Value), LoadError> {
        let failed = |err: reqwest::Error| LoadError::Http(format!("{route}: {}", chain(&err)));
        let request = request.build().map_err(failed)?;
        // A GET changes nothing, so one that got no answer at all (the server closed a pooled
        // connection just as it was reused) is sent once more, on a fresh connection.
        let again = (request.method() == reqwest::Method::GET)
            .then(|| request.try_clone())
            .flatten();
        let started = Instant::now();
        let response = match (self.http.execute(request).await, again) {
            (Err(err), Some(again)) if err.is_request() || err.is_connect() => {
                self.http.execute(again).await
            }
            (result, _) => result,
        }
        .map_err(failed)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(failed)?;
        self.record(route, started.elapsed());
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok((status, value))
    }

    /// Sends one request and returns its body when the status is `expected`; any other status
    /// is an error naming the route.
    pub async fn expect(
        &self,
        route: &'static str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        expected: u16,
    ) -> Result<Value, LoadError> {
        let (status, body) = self.send(route, method, path, body).await?;
        if status != expected {
            return Err(LoadError::Api {
                route,
                status,
                body: body.to_string(),
            });
        }
        Ok(body)
    }

    /// Registers a campaign from its JSON text and returns its id.
    pub async fn create_campaign(&self, body: String) -> Result<String, LoadError> {
        let (status, created) = self
            .send_raw(
                routes::CREATE,
                reqwest::Method::POST,
                "/api/v1/campaigns",
                body,
            )
            .await?;
        if status != 201 {
            return Err(LoadError::Api {
                route: routes::CREATE,
                status,
                body: created.to_string(),
            });
        }
        created["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| LoadError::Http("created campaign has no id".into()))
    }

    pub async fn start(&self, id: &str) -> Result<(), LoadError> {
        let path = format!("/api/v1/campaigns/{id}/start");
        self.expect(routes::START, reqwest::Method::POST, &path, None, 204)
            .await
            .map(drop)
    }

    pub async fn stats(&self, id: &str) -> Result<Value, LoadError> {
        let path = format!("/api/v1/campaigns/{id}/stats");
        self.expect(routes::STATS, reqwest::Method::GET, &path, None, 200)
            .await
    }

    pub async fn campaign(&self, id: &str) -> Result<Value, LoadError> {
        let path = format!("/api/v1/campaigns/{id}");
        self.expect(routes::CAMPAIGN, reqwest::Method::GET, &path, None, 200)
            .await
    }

    pub async fn text(&self, path: &str) -> Result<String, LoadError> {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|err| LoadError::Http(err.to_string()))?
            .text()
            .await
            .map_err(|err| LoadError::Http(err.to_string()))
    }

    pub fn latencies(&self) -> Vec<RouteLatency> {
        self.histograms()
            .iter()
            .map(|(route, h)| RouteLatency {
                route: (*route).to_owned(),
                requests: h.len(),
                p50_ms: h.value_at_quantile(0.50) as f64 / 1000.0,
                p95_ms: h.value_at_quantile(0.95) as f64 / 1000.0,
                p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
                max_ms: h.max() as f64 / 1000.0,
            })
            .collect()
    }
}

/// Reads `outbound_mock_provider_peak_active_calls` per campaign from a Prometheus page.
pub fn peaks_from_metrics(text: &str) -> BTreeMap<String, u64> {
    let prefix = "outbound_mock_provider_peak_active_calls{campaign_id=\"";
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(prefix)?;
            let (id, value) = rest.split_once("\"} ")?;
            Some((id.to_owned(), value.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

/// An error with its causes, which reqwest's own message leaves out.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Reads one request head from a connection.
    async fn read_head(socket: &mut tokio::net::TcpStream) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
    }

    #[tokio::test]
    async fn a_get_whose_pooled_connection_is_closed_unanswered_is_sent_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let ok =
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
            // The first connection answers once, then drops the second request it is given
            // without a word: what a server's keep-alive timeout does to a reused connection.
            let (mut first, _) = listener.accept().await.expect("accept");
            read_head(&mut first).await;
            first.write_all(ok).await.expect("write");
            read_head(&mut first).await;
            drop(first);
            let (mut second, _) = listener.accept().await.expect("accept");
            read_head(&mut second).await;
            second.write_all(ok).await.expect("write");
        });
        let client = ApiClient::new(&format!("http://{addr}"), 1).expect("client");
        for _ in 0..2 {
            let (status, _) = client
                .send(routes::STATS, reqwest::Method::GET, "/stats", None)
                .await
                .expect("answered");
            assert_eq!(status, 200);
        }
        server.await.expect("server");
    }

    #[test]
    fn reads_peaks() {
        let text = "# HELP x\noutbound_mock_provider_peak_active_calls{campaign_id=\"a\"} 7\n\
                    outbound_mock_provider_active_calls{campaign_id=\"a\"} 2\n";
        let peaks = peaks_from_metrics(text);
        assert_eq!(peaks.get("a"), Some(&7));
        assert_eq!(peaks.len(), 1);
    }
}
