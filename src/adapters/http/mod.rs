//! Webhook deliveries over HTTP(S) with reqwest: a client that connects only to the addresses
//! the deployment allows, checked when connecting (its resolver drops forbidden addresses, so a
//! name that resolves elsewhere at delivery than at create is judged again), follows no
//! redirect and uses no proxy.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::webhook::{forbidden, EndpointUrl, TryResult};
use crate::ports::WebhookSender;

/// A connection refused because every address of the host is forbidden.
#[derive(Debug, thiserror::Error)]
#[error("forbidden address ({0})")]
struct Forbidden(&'static str);

/// Resolves names through the system resolver and keeps only the addresses a delivery may
/// reach.
#[derive(Debug, Clone, Copy)]
struct ScreenedResolver {
    allow_private: bool,
}

impl ScreenedResolver {
    async fn lookup(
        self,
        host: String,
    ) -> Result<Vec<SocketAddr>, Box<dyn StdError + Send + Sync>> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
        let mut refused = None;
        let allowed: Vec<SocketAddr> = found
            .into_iter()
            .filter(|addr| match forbidden(addr.ip()) {
                Some(class) if !self.allow_private => {
                    refused = Some(class);
                    false
                }
                _ => true,
            })
            .collect();
        match (allowed.is_empty(), refused) {
            (true, Some(class)) => Err(Box::new(Forbidden(class))),
            _ => Ok(allowed),
        }
    }
}

impl Resolve for ScreenedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = *self;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolver.lookup(host).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Most of a receiver's answer read to keep its connection.
const DRAIN_LIMIT: usize = 64 * 1024;
/// How long an endpoint's create waits for its name to resolve.
const SCREEN_LOOKUP: Duration = Duration::from_secs(2);

pub struct HttpWebhookSender {
    client: reqwest::Client,
    resolver: ScreenedResolver,
    allow_http: bool,
}

impl HttpWebhookSender {
    pub fn new(
        timeout: Duration,
        allow_http: bool,
        allow_private_networks: bool,
    ) -> Result<Self, reqwest::Error> {
        let resolver = ScreenedResolver {
            allow_private: allow_private_networks,
        };
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(resolver))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("outbound-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            resolver,
            allow_http,
        })
    }

    /// The class of a forbidden IP literal: a literal host is never resolved, so the resolver
    /// would not see it.
    fn literal_refused(&self, url: &EndpointUrl) -> Option<&'static str> {
        if self.resolver.allow_private {
            return None;
        }
        url.ip_literal().and_then(forbidden)
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(&self, url: &str, headers: &[(&'static str, String)], body: String) -> TryResult {
        let parsed = match EndpointUrl::parse(url, self.allow_http) {
            Ok(parsed) => parsed,
            Err(err) => return TryResult::Other(err.to_string()),
        };
        if let Some(class) = self.literal_refused(&parsed) {
            return TryResult::Refused(class);
        }
        let mut request = self
            .client
            .post(parsed.url().clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        match request.send().await {
            Ok(mut response) => {
                let status = response.status().as_u16();
                // What the receiver says is not read, but a body left unread costs the
                // connection: take up to a little of it so the connection can be used again.
                let mut drained = 0;
                while drained < DRAIN_LIMIT {
                    match response.chunk().await {
                        Ok(Some(chunk)) => drained += chunk.len(),
                        Ok(None) | Err(_) => break,
                    }
                }
                TryResult::from_status(status)
            }
            Err(err) => classify(&err),
        }
    }

    async fn screen(&self, url: &str) -> Result<(), &'static str> {
        let Ok(parsed) = EndpointUrl::parse(url, true) else {
            return Ok(());
        };
        if let Some(class) = self.literal_refused(&parsed) {
            return Err(class);
        }
        if parsed.ip_literal().is_some() {
            return Ok(());
        }
        // A resolver that does not answer in time leaves the check to the connections.
        let lookup = self.resolver.lookup(parsed.host().to_owned());
        match tokio::time::timeout(SCREEN_LOOKUP, lookup).await {
            Ok(Err(err)) => match err.downcast_ref::<Forbidden>() {
                Some(Forbidden(class)) => Err(class),
                None => Ok(()),
            },
            Ok(Ok(_)) | Err(_) => Ok(()),
        }
    }
}

/// What a failed request came to, from the error and its causes.
fn classify(err: &reqwest::Error) -> TryResult {
    if err.is_timeout() {
        return TryResult::Timeout;
    }
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(Forbidden(class)) = cause.downcast_ref::<Forbidden>() {
            return TryResult::Refused(class);
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return TryResult::ConnectionRefused,
                std::io::ErrorKind::TimedOut => return TryResult::Timeout,
                _ => {}
            }
        }
        source = cause.source();
    }
    TryResult::Other(describe(err))
}

/// The error with its causes, as one line.
fn describe(err: &reqwest::Error) -> String {
    let mut text = String::from(if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    });
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

    fn sender(allow_private: bool) -> HttpWebhookSender {
        HttpWebhookSender::new(Duration::from_secs(2), true, allow_private).expect("client")
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_when_connecting() {
        let refused = sender(false)
            .send("http://localhost:9/hook", &[], "{}".into())
            .await;
        assert_eq!(refused, TryResult::Refused("loopback"));
        assert_eq!(
            sender(false).screen("https://localhost/hook").await,
            Err("loopback")
        );
    }

    #[tokio::test]
    async fn a_forbidden_literal_is_refused_before_any_connection() {
        for (url, class) in [
            ("http://127.0.0.1:9/", "loopback"),
            ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
            ("http://[::ffff:10.0.0.1]/", "private"),
            ("http://0.0.0.0:9/", "unspecified"),
        ] {
            assert_eq!(
                sender(false).send(url, &[], "{}".into()).await,
                TryResult::Refused(class),
                "{url}"
            );
            assert_eq!(sender(false).screen(url).await, Err(class), "{url}");
        }
    }

    #[tokio::test]
    async fn allowed_private_networks_are_reached() {
        // Nothing listens on port 9 here: the try is made and refused by the host.
        let tried = sender(true)
            .send("http://127.0.0.1:9/", &[], "{}".into())
            .await;
        assert_eq!(tried, TryResult::ConnectionRefused);
        assert_eq!(sender(true).screen("http://localhost/").await, Ok(()));
    }
}
