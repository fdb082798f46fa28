//! Prometheus metrics, registered once per process and served by the api role at `/metrics`.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub attempts: IntCounter,
    pub outcomes: IntCounterVec,
    pub dispatched: IntCounterVec,
    pub queue_depth: IntGaugeVec,
    pub dialing: IntGauge,
    pub mock_active: IntGaugeVec,
    pub mock_peak: IntGaugeVec,
    pub mock_active_total: IntGauge,
    pub mock_peak_total: IntGauge,
    pub dead_letters: IntCounterVec,
    pub timeline_exported: IntCounter,
    pub provider_requests: HistogramVec,
    pub throttled_dials: IntCounter,
    pub carrier_callbacks: IntCounterVec,
    pub carrier_outcomes: IntCounterVec,
    pub blocked_calls: IntCounterVec,
    pub webhook_deliveries: IntCounterVec,
    pub webhook_delivery_seconds: HistogramVec,
    pub webhook_backlog: IntGauge,
}

/// Makes each metric and registers it at once, so none can be made and left unregistered.
struct Registrar(Registry);

impl Registrar {
    fn add<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        metric: M,
    ) -> Result<M, prometheus::Error> {
        self.0.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    fn counter(&self, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
        self.add(IntCounter::new(name, help)?)
    }

    fn counters(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        self.add(IntGauge::new(name, help)?)
    }

    fn gauges(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, prometheus::Error> {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn histograms(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> Result<HistogramVec, prometheus::Error> {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(HistogramVec::new(opts, labels)?)
    }
}

fn build() -> Result<Metrics, prometheus::Error> {
    let r = Registrar(Registry::new());
    let campaign = &["campaign_id"];
    Ok(Metrics {
        http_requests: r.counters(
            "outbound_http_requests_total",
            "HTTP requests by route and status",
            &["method", "route", "status"],
        )?,
        http_duration: r.histograms(
            "outbound_http_request_duration_seconds",
            "HTTP request latency",
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
            &["method", "route"],
        )?,
        // No campaign label: one series per campaign ever run would grow without bound; the
        // stats API has the per-campaign figures.
        attempts: r.counter("outbound_attempts_total", "call attempts claimed")?,
        outcomes: r.counters(
            "outbound_attempt_outcomes_total",
            "attempt results recorded",
            &["outcome"],
        )?,
        dispatched: r.counters(
            "outbound_bus_messages_total",
            "messages published on the bus",
            &["topic"],
        )?,
        queue_depth: r.gauges(
            "outbound_queue_depth",
            "calls waiting, by state, over all campaigns",
            &["state"],
        )?,
        dialing: r.gauge(
            "outbound_dialing_calls",
            "calls being dialed by this process",
        )?,
        mock_active: r.gauges(
            "outbound_mock_provider_active_calls",
            "calls the mock provider is carrying now, by campaign",
            campaign,
        )?,
        mock_peak: r.gauges(
            "outbound_mock_provider_peak_active_calls",
            "highest number of simultaneous calls the mock provider carried, by campaign",
            campaign,
        )?,
        mock_active_total: r.gauge(
            "outbound_mock_provider_active_calls_total",
            "calls the mock provider is carrying now, all campaigns",
        )?,
        mock_peak_total: r.gauge(
            "outbound_mock_provider_peak_active_calls_total",
            "highest number of simultaneous calls the mock provider carried, all campaigns",
        )?,
        dead_letters: r.counters(
            "outbound_dead_letters_total",
            "poison messages moved to the dead-letter queue, by original topic",
            &["topic"],
        )?,
        timeline_exported: r.counter(
            "outbound_timeline_exported_total",
            "finished attempts copied from the store to the timeline",
        )?,
        provider_requests: r.histograms(
            "outbound_provider_request_duration_seconds",
            "requests to the carrier's REST API, by operation and result",
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
            &["operation", "result"],
        )?,
        throttled_dials: r.counter(
            "outbound_throttled_dials_total",
            "creates that waited for the account's pace or were throttled by the carrier",
        )?,
        carrier_callbacks: r.counters(
            "outbound_carrier_callbacks_total",
            "status callbacks received, by result (recorded, progress, bad_signature, unknown, malformed, unavailable)",
            &["result"],
        )?,
        carrier_outcomes: r.counters(
            "outbound_carrier_outcomes_total",
            "final call statuses reported by the carrier",
            &["status"],
        )?,
        blocked_calls: r.counters(
            "outbound_blocked_calls_total",
            "final statuses reporting a call the called party's side blocked (SIP 603, 607, 608), by caller ID",
            &["caller_id"],
        )?,
        webhook_deliveries: r.counters(
            "outbound_webhook_deliveries_total",
            "tries of webhook deliveries, by result (delivered, failed, refused, timeout)",
            &["result"],
        )?,
        webhook_delivery_seconds: r.histograms(
            "outbound_webhook_delivery_seconds",
            "time from sending a webhook delivery to its response or failure",
            &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            &[],
        )?,
        webhook_backlog: r.gauge(
            "outbound_webhook_backlog",
            "webhook deliveries still to make, every endpoint together",
        )?,
        registry: r.0,
    })
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| match build() {
    Ok(metrics) => metrics,
    // Only a programming error (a duplicate or malformed metric name) gets here.
    Err(err) => panic!("metric definitions are invalid: {err}"),
});

pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// The registry in Prometheus' text format.
pub fn render() -> String {
    let mut buffer = Vec::new();
    let families = metrics().registry.gather();
    if TextEncoder::new().encode(&families, &mut buffer).is_err() {
        return String::new();
    }
    String::from_utf8(buffer).unwrap_or_default()
}
