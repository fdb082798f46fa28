//! The benchmark scenarios of the calling rules: what held calls cost the dialer, and how fast
//! the do-not-call list loads.

use std::time::{Duration, Instant};

use chrono::Timelike;
use serde_json::{json, Value};

use super::bench::{cpu_time, peak_rss_bytes, Bench};
use super::client::ApiClient;
use super::{EmbeddedServer, LoadError};
use crate::settings::GoDuration;

/// Targets of each campaign of the `held` scenario.
const TARGETS: usize = 1_000_000;
/// One target in `DIALABLE_EVERY` lives where it is daytime; the others sleep.
const DIALABLE_EVERY: usize = 10;
/// Numbers loaded into the do-not-call list by the `dnc` scenario.
const LISTED: usize = 1_000_000;

/// A fixed-offset IANA zone whose local hour is `local_hour` now. `Etc/GMT-5` is UTC+5: the
/// sign of those names is inverted.
fn zone_at_local_hour(local_hour: u32) -> String {
    let utc_hour = i64::from(chrono::Utc::now().hour());
    // The offset in -12..=11 that takes the UTC hour to the local one.
    let offset = (i64::from(local_hour) - utc_hour + 36).rem_euclid(24) - 12;
    match offset {
        0 => "Etc/UTC".to_owned(),
        east if east > 0 => format!("Etc/GMT-{east}"),
        west => format!("Etc/GMT+{}", -west),
    }
}

/// A campaign of `TARGETS` under the default recipient hours (08:00–21:00), every target's zone
/// given: `held_zone` for all but one in `dialable_every`, when that is set.
fn campaign_body(name: &str, day_zone: &str, held: Option<&str>) -> String {
    let mut targets = String::with_capacity(TARGETS * 64);
    for i in 0..TARGETS {
        if i > 0 {
            targets.push(',');
        }
        let zone = match held {
            Some(night_zone) if i % DIALABLE_EVERY != 0 => night_zone,
            _ => day_zone,
        };
        targets.push_str(&format!(
            "{{\"phone_number\":\"+1555{i:07}\",\"time_zone\":\"{zone}\"}}"
        ));
    }
    format!(
        "{{\"name\":\"{name}\",\"time_zone\":\"UTC\",\"max_concurrent_calls\":10000,\
         \"retry_policy\":{{\"max_attempts\":1,\"base_delay\":\"1s\",\"max_delay\":\"1s\"}},\
         \"targets\":[{targets}]}}"
    )
}

/// Claims per second for a campaign of `TARGETS`: the time from start until `dialable` calls
/// ended, and what the dialer spends afterwards on the calls still held.
async fn claims(bench: &Bench, held: bool) -> Result<Value, LoadError> {
    let mut settings = bench.settings().await?;
    settings.telephony.mock.min_duration = GoDuration(Duration::ZERO);
    settings.telephony.mock.max_duration = GoDuration(Duration::ZERO);
    settings.telephony.mock.success_rate = 1.0;
    settings.scheduler.batch_size = 10_000;
    let server = EmbeddedServer::start(settings).await?;
    let client = ApiClient::new(&server.base, 4)?;
    let (day, night) = (zone_at_local_hour(14), zone_at_local_hour(2));
    let label = if held { "held" } else { "none-held" };
    let body = campaign_body(
        &bench.name(&format!("held-{label}")),
        &day,
        held.then_some(night.as_str()),
    );
    let registered = Instant::now();
    let id = client.create_campaign(body).await?;
    let register_seconds = registered.elapsed().as_secs_f64();
    // Both campaigns are timed over the same number of claims: the held one's dialable calls.
    let dialable = (TARGETS / DIALABLE_EVERY) as u64;
    let started = Instant::now();
    client.start(&id).await?;
    let mut stats;
    loop {
        stats = client.stats(&id).await?;
        let ended = stats["completed_calls"].as_u64().unwrap_or(0)
            + stats["failed_calls"].as_u64().unwrap_or(0);
        if ended >= dialable {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            return Err(LoadError::Http(format!(
                "{label}: {ended} calls ended after 900 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let ended = stats["completed_calls"].as_u64().unwrap_or(0)
        + stats["failed_calls"].as_u64().unwrap_or(0);
    // What the scheduler's passes cost once only held calls are left.
    let mut idle = Value::Null;
    if held {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu_before = cpu_time();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let cpu = cpu_time().saturating_sub(cpu_before);
        let after = client.stats(&id).await?;
        idle = json!({
            "cpu_share": cpu.as_secs_f64() / 5.0,
            "pending_calls": after["pending_calls"],
            "ended_calls": after["completed_calls"].as_u64().unwrap_or(0)
                + after["failed_calls"].as_u64().unwrap_or(0),
        });
    }
    server.stop().await?;
    Ok(json!({
        "targets": TARGETS,
        "held_zone": held.then_some(night),
        "day_zone": day,
        "register_seconds": register_seconds,
        "calls_ended": ended,
        "seconds": seconds,
        "claims_per_sec": ended as f64 / seconds,
        "after_the_dialable": idle,
    }))
}

/// Claims per second with 90% of a 1M-target campaign outside its recipients' hours against
/// none: the held calls are set aside until their window opens, so they should cost almost
/// nothing.
pub(super) async fn held(bench: &Bench) -> Result<Value, LoadError> {
    let none_held = claims(bench, false).await?;
    let held = claims(bench, true).await?;
    let rate = |run: &Value| run["claims_per_sec"].as_f64().unwrap_or(0.0);
    let ratio = rate(&held) / rate(&none_held).max(f64::MIN_POSITIVE);
    Ok(bench.line(
        "held",
        json!({
            "ratio": ratio,
            "held_90_percent": held,
            "none_held": none_held,
            "peak_rss_bytes": peak_rss_bytes(),
        }),
    ))
}

/// Seconds to load `LISTED` numbers into the do-not-call list with one CSV upload.
pub(super) async fn dnc(bench: &Bench) -> Result<Value, LoadError> {
    let settings = bench.settings().await?;
    let server = EmbeddedServer::start(settings).await?;
    let client = ApiClient::new(&server.base, 4)?;
    let mut body = String::with_capacity(LISTED * 14 + 16);
    body.push_str("phone_number\n");
    for i in 0..LISTED {
        body.push_str(&format!("+1555{i:07}\n"));
    }
    let bytes = body.len();
    let started = Instant::now();
    let (status, added) = client
        .send_as(
            "POST /api/v1/dnc",
            reqwest::Method::POST,
            "/api/v1/dnc",
            "text/csv",
            body,
        )
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    if status != 200 || added["added"].as_u64() != Some(LISTED as u64) {
        return Err(LoadError::Api {
            route: "POST /api/v1/dnc",
            status,
            body: added.to_string(),
        });
    }
    // One lookup after the load, as an operator's check would do it.
    let looked_up = Instant::now();
    let (status, _) = client
        .send(
            "GET /api/v1/dnc/{number}",
            reqwest::Method::GET,
            "/api/v1/dnc/%2B15550500000",
            None,
        )
        .await?;
    let lookup_ms = looked_up.elapsed().as_secs_f64() * 1000.0;
    let rss = peak_rss_bytes();
    server.stop().await?;
    Ok(bench.line(
        "dnc",
        json!({
            "numbers": LISTED,
            "body_bytes": bytes,
            "seconds": seconds,
            "numbers_per_sec": LISTED as f64 / seconds,
            "lookup_status": status,
            "lookup_ms": lookup_ms,
            "peak_rss_bytes": rss,
        }),
    ))
}
