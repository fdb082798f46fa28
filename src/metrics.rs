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
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let http_requests = IntCounterVec::new(
        Opts::new(
            "outbound_http_requests_total",
            "HTTP requests by route and status",
        ),
        &["method", "route", "status"],
    )?;
    let http_duration = HistogramVec::new(
        HistogramOpts::new(
            "outbound_http_request_duration_seconds",
            "HTTP request latency",
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ]),
        &["method", "route"],
    )?;
    // No campaign label: one series per campaign ever run would grow without bound; the stats
    // API has the per-campaign figures.
    let attempts = IntCounter::new("outbound_attempts_total", "call attempts claimed")?;
    let outcomes = IntCounterVec::new(
        Opts::new(
            "outbound_attempt_outcomes_total",
            "attempt results recorded",
        ),
        &["outcome"],
    )?;
    let dispatched = IntCounterVec::new(
        Opts::new(
            "outbound_bus_messages_total",
            "messages published on the bus",
        ),
        &["topic"],
    )?;
    let queue_depth = IntGaugeVec::new(
        Opts::new(
            "outbound_queue_depth",
            "calls waiting, by state, over all campaigns",
        ),
        &["state"],
    )?;
    let dialing = IntGauge::new(
        "outbound_dialing_calls",
        "calls being dialed by this process",
    )?;
    let mock_active = IntGaugeVec::new(
        Opts::new(
            "outbound_mock_provider_active_calls",
            "calls the mock provider is carrying now, by campaign",
        ),
        &["campaign_id"],
    )?;
    let mock_peak = IntGaugeVec::new(
        Opts::new(
            "outbound_mock_provider_peak_active_calls",
            "highest number of simultaneous calls the mock provider carried, by campaign",
        ),
        &["campaign_id"],
    )?;
    let mock_active_total = IntGauge::new(
        "outbound_mock_provider_active_calls_total",
        "calls the mock provider is carrying now, all campaigns",
    )?;
    let mock_peak_total = IntGauge::new(
        "outbound_mock_provider_peak_active_calls_total",
        "highest number of simultaneous calls the mock provider carried, all campaigns",
    )?;
    let dead_letters = IntCounterVec::new(
        Opts::new(
            "outbound_dead_letters_total",
            "poison messages moved to the dead-letter queue, by original topic",
        ),
        &["topic"],
    )?;
    let timeline_exported = IntCounter::new(
        "outbound_timeline_exported_total",
        "finished attempts copied from the store to the timeline",
    )?;
    let provider_requests = HistogramVec::new(
        HistogramOpts::new(
            "outbound_provider_request_duration_seconds",
            "requests to the carrier's REST API, by operation and result",
        )
        .buckets(vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]),
        &["operation", "result"],
    )?;
    let throttled_dials = IntCounter::new(
        "outbound_throttled_dials_total",
        "creates that waited for the account's pace or were throttled by the carrier",
    )?;
    let carrier_callbacks = IntCounterVec::new(
        Opts::new(
            "outbound_carrier_callbacks_total",
            "status callbacks received, by result (recorded, progress, bad_signature, unknown, malformed, unavailable)",
        ),
        &["result"],
    )?;
    let carrier_outcomes = IntCounterVec::new(
        Opts::new(
            "outbound_carrier_outcomes_total",
            "final call statuses reported by the carrier",
        ),
        &["status"],
    )?;
    let blocked_calls = IntCounterVec::new(
        Opts::new(
            "outbound_blocked_calls_total",
            "final statuses reporting a call the called party's side blocked (SIP 603, 607, 608), by caller ID",
        ),
        &["caller_id"],
    )?;
    registry.register(Box::new(blocked_calls.clone()))?;
    registry.register(Box::new(provider_requests.clone()))?;
    registry.register(Box::new(throttled_dials.clone()))?;
    registry.register(Box::new(carrier_callbacks.clone()))?;
    registry.register(Box::new(carrier_outcomes.clone()))?;
    registry.register(Box::new(timeline_exported.clone()))?;
    registry.register(Box::new(dead_letters.clone()))?;
    registry.register(Box::new(mock_active_total.clone()))?;
    registry.register(Box::new(mock_peak_total.clone()))?;
    registry.register(Box::new(http_requests.clone()))?;
    registry.register(Box::new(http_duration.clone()))?;
    registry.register(Box::new(attempts.clone()))?;
    registry.register(Box::new(outcomes.clone()))?;
    registry.register(Box::new(dispatched.clone()))?;
    registry.register(Box::new(queue_depth.clone()))?;
    registry.register(Box::new(dialing.clone()))?;
    registry.register(Box::new(mock_active.clone()))?;
    registry.register(Box::new(mock_peak.clone()))?;
    Ok(Metrics {
        registry,
        http_requests,
        http_duration,
        attempts,
        outcomes,
        dispatched,
        queue_depth,
        dialing,
        mock_active,
        mock_peak,
        mock_active_total,
        mock_peak_total,
        dead_letters,
        timeline_exported,
        provider_requests,
        throttled_dials,
        carrier_callbacks,
        carrier_outcomes,
        blocked_calls,
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
