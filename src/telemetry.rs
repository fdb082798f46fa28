//! Logging and tracing: an `EnvFilter`, a pretty or JSON fmt layer, and an OpenTelemetry layer.
//!
//! The OpenTelemetry layer is always installed so every span has a real trace id (error bodies
//! and bus headers carry it); spans leave the process only when `otel.endpoint` is set.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::{LogFormat, Settings};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("otel.endpoint: cannot build the OTLP exporter: {0}")]
    Exporter(String),
    #[error("log.level: {0}")]
    Filter(String),
    #[error("a global subscriber is already installed")]
    AlreadyInstalled,
}

/// Flushes spans on drop of the process; call `shutdown` just before exit.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl TelemetryGuard {
    pub async fn shutdown(self) {
        let provider = self.provider;
        let flush = tokio::task::spawn_blocking(move || provider.shutdown());
        let _ = tokio::time::timeout(Duration::from_secs(5), flush).await;
    }
}

static INSTALLED: OnceLock<()> = OnceLock::new();

pub fn init(settings: &Settings) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directive) if !directive.is_empty() => EnvFilter::try_new(directive),
        _ => EnvFilter::try_new(&settings.log.level),
    }
    .map_err(|err| TelemetryError::Filter(err.to_string()))?;

    let resource = Resource::builder_empty()
        .with_service_name(settings.otel.service_name.clone())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &settings.otel.endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|err| TelemetryError::Exporter(err.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer("outbound");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let format = settings
        .log
        .format
        .unwrap_or(if std::io::stdout().is_terminal() {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        });
    let fmt_layer = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .boxed(),
    };
    // The log level filters logs only: spans always reach the OpenTelemetry layer, so trace
    // ids exist (in error bodies and bus headers) whatever the log level.
    let span_filter =
        tracing_subscriber::filter::Targets::new().with_target("outbound", tracing::Level::INFO);
    tracing_subscriber::registry()
        .with(fmt_layer.with_filter(filter))
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(span_filter),
        )
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    let _ = INSTALLED.set(());
    Ok(TelemetryGuard { provider })
}

/// Installs tracing once for tests (logs only with `TEST_LOG=1`), so trace ids exist.
pub fn init_for_tests() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let mut settings = Settings::default();
        settings.log.format = Some(LogFormat::Pretty);
        settings.log.level = if std::env::var("TEST_LOG").is_ok() {
            "info".into()
        } else {
            "off".into()
        };
        if let Ok(guard) = init(&settings) {
            // Tests never export; keep the provider alive for the process.
            std::mem::forget(guard);
        }
    });
}

/// The current span's trace id as 32 hex digits, or empty when there is none.
pub fn current_trace_id() -> String {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    if span_context.is_valid() {
        span_context.trace_id().to_string()
    } else {
        String::new()
    }
}

struct HeaderInjector<'a>(&'a mut Vec<(String, String)>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

struct HeaderExtractor<'a>(&'a [(String, String)]);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_str()).collect()
    }
}

/// Writes the current span's context into bus message headers.
pub fn inject_context(headers: &mut Vec<(String, String)>) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Makes `span` a child of the context carried in `headers`, so a trace crosses the bus.
pub fn follow_headers(span: &tracing::Span, headers: &[(String, String)]) {
    let parent: Context = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}
