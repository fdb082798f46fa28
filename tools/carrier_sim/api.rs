//! The REST surface: Twilio's 2010-04-01 Calls and Account resources, and `/sim/*` for
//! operators and the load test.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rand::Rng;
use serde_json::{json, Value};

use super::life::{self, Callbacks, Detection, Event, Method, Outcome, Plan};
use super::state::{Ending, Record};
use super::{is_final_status, Inner, OutcomeMix, SimCall, SimSummary};

const API: &str = "/2010-04-01";

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/2010-04-01/Accounts/{account}/Calls.json")
            .route(web::post().to(create_call))
            .route(web::get().to(list_calls)),
    )
    .service(
        web::resource("/2010-04-01/Accounts/{account}/Calls/{call}.json")
            .route(web::get().to(fetch_call))
            .route(web::post().to(update_call)),
    )
    .service(web::resource("/2010-04-01/Accounts/{account}.json").route(web::get().to(account)))
    .service(web::resource("/sim/calls").route(web::get().to(sim_calls)))
    .service(web::resource("/sim/summary").route(web::get().to(sim_summary)));
}

/// Twilio's error envelope.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(super) struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 20003, "Authenticate")
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status).json(json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status.as_u16(),
        }));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Twilio API\""),
            );
        }
        response
    }
}

pub(super) async fn not_found() -> HttpResponse {
    ApiError::new(
        StatusCode::NOT_FOUND,
        20404,
        "The requested resource was not found",
    )
    .error_response()
}

/// HTTP basic `AccountSid:AuthToken`, checked against the current token; then the account in
/// the path must be the authenticated one.
fn authenticate(req: &HttpRequest, sim: &Inner, path_account: &str) -> Result<(), ApiError> {
    let credentials = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, encoded)| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .and_then(|decoded| String::from_utf8(decoded).ok());
    let refused = || {
        sim.unauthorized.fetch_add(1, Ordering::Relaxed);
        ApiError::unauthenticated()
    };
    let Some((user, password)) = credentials.as_deref().and_then(|c| c.split_once(':')) else {
        return Err(refused());
    };
    if user != sim.config.account_sid || password != sim.token() {
        tracing::debug!(account_sid = user, "carrier simulator rejected credentials");
        return Err(refused());
    }
    if path_account != user {
        sim.unauthorized.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            20003,
            "Authenticated account does not match the account in the URL",
        ));
    }
    Ok(())
}

/// A read authenticated like any request, then refused once more if the simulator was told to
/// refuse reads.
fn authenticate_read(req: &HttpRequest, sim: &Inner, path_account: &str) -> Result<(), ApiError> {
    authenticate(req, sim, path_account)?;
    let take = sim
        .refuse_reads
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(1)
        });
    if take.is_ok() {
        sim.unauthorized.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::unauthenticated());
    }
    Ok(())
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn first<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

fn is_absolute_http_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

/// `campaign`, `call` and `attempt` from the StatusCallback URL's query.
fn attempt_of(url: &str) -> (Option<String>, Option<String>, Option<u32>) {
    let query = url
        .split_once('?')
        .map_or("", |(_, q)| q.split('#').next().unwrap_or(""));
    let (mut campaign, mut call, mut attempt) = (None, None, None);
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "campaign" if campaign.is_none() => campaign = Some(value.into_owned()),
            "call" if call.is_none() => call = Some(value.into_owned()),
            "attempt" if attempt.is_none() => attempt = value.parse().ok(),
            _ => {}
        }
    }
    (campaign, call, attempt)
}

/// What a create asked for, validated.
struct Request {
    to: String,
    from: String,
    /// `Url`: where the call's TwiML is fetched, when not given inline.
    voice_url: Option<String>,
    /// `AsyncAmdStatusCallback`: where the verdict on who answered goes.
    amd_callback: Option<String>,
    callbacks: Option<(String, Method, Vec<Event>)>,
    timeout: Duration,
    detection: Option<Detection>,
}

/// Twilio's default ring timeout, and its maximum.
const DEFAULT_TIMEOUT_SECS: u64 = 60;
const MAX_TIMEOUT_SECS: u64 = 600;

fn validate(sim: &Inner, params: &[(String, String)]) -> Result<Request, ApiError> {
    let to = first(params, "To")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request(21201, "No 'To' number is specified"))?;
    let from = first(params, "From")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request(21213, "No 'From' number is specified"))?;
    let url = first(params, "Url").filter(|v| !v.is_empty());
    let twiml = first(params, "Twiml").filter(|v| !v.is_empty());
    match (url, twiml) {
        (None, None) => {
            return Err(ApiError::bad_request(
                21205,
                "Url parameter is required (or Twiml)",
            ))
        }
        (Some(url), _) if !is_absolute_http_url(url) => {
            return Err(ApiError::bad_request(
                21205,
                format!("Url is not a valid URL: {url}"),
            ))
        }
        _ => {}
    }
    if !is_e164(to) {
        return Err(ApiError::bad_request(
            21211,
            format!("Invalid 'To' Phone Number: {to}"),
        ));
    }
    if sim
        .config
        .refused_callers
        .iter()
        .any(|caller| caller == from)
    {
        return Err(ApiError::bad_request(
            21210,
            format!(
                "The source phone number provided, {from}, is not yet verified for your account"
            ),
        ));
    }
    if sim
        .config
        .unreachable_prefixes
        .iter()
        .any(|prefix| !prefix.is_empty() && to.starts_with(prefix.as_str()))
    {
        return Err(ApiError::bad_request(
            21217,
            format!("Phone number does not appear to be valid: {to}"),
        ));
    }
    let mut events = Vec::new();
    for (_, value) in params
        .iter()
        .filter(|(key, _)| key == "StatusCallbackEvent")
    {
        // Each event is its own repeated parameter; a space-separated list is an error here as
        // it is a silent misconfiguration at Twilio.
        let event = Event::parse(value).ok_or_else(|| {
            ApiError::bad_request(21626, format!("Invalid StatusCallbackEvent: {value}"))
        })?;
        if !events.contains(&event) {
            events.push(event);
        }
    }
    if events.is_empty() {
        events.push(Event::Completed);
    }
    let callbacks = match first(params, "StatusCallback").filter(|v| !v.is_empty()) {
        None => None,
        Some(url) if !is_absolute_http_url(url) => {
            return Err(ApiError::bad_request(
                21609,
                format!("Invalid StatusCallback URL: {url}"),
            ))
        }
        Some(url) => {
            let method = match first(params, "StatusCallbackMethod").unwrap_or("POST") {
                m if m.eq_ignore_ascii_case("POST") => Method::Post,
                m if m.eq_ignore_ascii_case("GET") => Method::Get,
                other => {
                    return Err(ApiError::bad_request(
                        21608,
                        format!("Invalid StatusCallbackMethod: {other}"),
                    ))
                }
            };
            Some((url.to_owned(), method, events))
        }
    };
    let timeout = match first(params, "Timeout") {
        None | Some("") => DEFAULT_TIMEOUT_SECS,
        Some(value) => value
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(21216, format!("Invalid Timeout: {value}")))?
            .min(MAX_TIMEOUT_SECS),
    };
    let detection = match first(params, "MachineDetection") {
        None | Some("") => None,
        Some(value) => Some(Detection::parse(value).ok_or_else(|| {
            ApiError::bad_request(21626, format!("Invalid MachineDetection: {value}"))
        })?),
    };
    Ok(Request {
        to: to.to_owned(),
        from: from.to_owned(),
        voice_url: url.map(str::to_owned),
        amd_callback: first(params, "AsyncAmdStatusCallback")
            .filter(|url| !url.is_empty())
            .map(str::to_owned),
        callbacks,
        timeout: Duration::from_secs(timeout),
        detection,
    })
}

fn pick_outcome(mix: &OutcomeMix, draw: f64) -> Outcome {
    let weights = [
        (Outcome::Human, mix.human),
        (Outcome::Machine, mix.machine),
        (Outcome::Busy, mix.busy),
        (Outcome::NoAnswer, mix.no_answer),
        (Outcome::FailedPermanent, mix.failed_permanent),
        (Outcome::FailedTransient, mix.failed_transient),
    ];
    let weight = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
    let total: f64 = weights.iter().map(|&(_, w)| weight(w)).sum();
    if total <= 0.0 {
        return Outcome::Human;
    }
    let mut point = draw * total;
    for &(outcome, w) in &weights {
        let w = weight(w);
        if point < w {
            return outcome;
        }
        point -= w;
    }
    weights
        .iter()
        .rev()
        .find(|&&(_, w)| weight(w) > 0.0)
        .map_or(Outcome::Human, |&(outcome, _)| outcome)
}

fn uniform(range: (Duration, Duration), draw: f64) -> Duration {
    let (low, high) = if range.0 <= range.1 {
        range
    } else {
        (range.1, range.0)
    };
    low + (high - low).mul_f64(draw.clamp(0.0, 1.0))
}

/// Everything random about one call, drawn under one lock so a seeded run repeats itself.
struct Draws {
    sid: String,
    outcome: Outcome,
    ring: Duration,
    talk: Duration,
    reorder: bool,
    drop_final: bool,
    hang: bool,
    seed: u64,
}

fn draw(sim: &Inner) -> Draws {
    let config = &sim.config;
    let mut rng = sim.rng();
    let mut sid = String::with_capacity(34);
    sid.push_str("CA");
    for _ in 0..16 {
        let _ = write!(sid, "{:02x}", rng.random::<u8>());
    }
    Draws {
        sid,
        outcome: pick_outcome(&config.mix, rng.random()),
        ring: uniform(config.ring, rng.random()),
        talk: uniform(config.talk, rng.random()),
        reorder: rng.random::<f64>() < config.reorder_rate,
        drop_final: rng.random::<f64>() < config.drop_final_rate,
        hang: rng.random::<f64>() < config.hang_rate,
        seed: rng.random(),
    }
}

async fn create_call(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    sim: web::Data<Inner>,
) -> Result<HttpResponse, ApiError> {
    authenticate(&req, &sim, &path)?;
    let refused = sim
        .refuse_creates
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(1)
        });
    if refused.is_ok() {
        sim.state().invalid += 1;
        let code = u32::try_from(sim.refuse_code.load(Ordering::Relaxed)).unwrap_or(21000);
        return Err(ApiError::bad_request(code, "Refused by the simulator"));
    }
    let params = form(&body);
    let request = match validate(&sim, &params) {
        Ok(request) => request,
        Err(err) => {
            sim.state().invalid += 1;
            tracing::debug!(code = err.code, error = %err.message, "create rejected");
            return Err(err);
        }
    };
    // Only requests that would place a call spend the budget: Twilio's CPS counts calls.
    if sim.throttle_all.load(Ordering::Relaxed) || !super::lock(&sim.gcra).admit(Instant::now()) {
        let mut state = sim.state();
        state.throttled += 1;
        state.throttled_numbers.insert(request.to.clone());
        drop(state);
        tracing::debug!(to = %request.to, "create throttled");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            20429,
            "Too Many Requests",
        ));
    }
    let draws = draw(&sim);
    let mut outcome = draws.outcome;
    if sim.config.blocked_callers.contains(&request.from) {
        outcome = Outcome::Blocked;
    }
    let mut ring = draws.ring;
    if ring > request.timeout {
        outcome = Outcome::NoAnswer;
        ring = request.timeout;
    }
    let now = Utc::now();
    let callback_url = request.callbacks.as_ref().map(|(url, _, _)| url.clone());
    let (campaign, call_id, attempt) = callback_url
        .as_deref()
        .map_or((None, None, None), attempt_of);
    let call = SimCall {
        sid: draws.sid.clone(),
        to: request.to.clone(),
        from: request.from.clone(),
        status: "queued".into(),
        answered_by: None,
        sip_code: None,
        duration_secs: None,
        created_at: now,
        ended_at: None,
        status_callback: callback_url,
        voice_url: request.voice_url.clone(),
        amd_callback: request.amd_callback.clone(),
        twiml_updates: Vec::new(),
        heard: Vec::new(),
        pressed: String::new(),
        campaign,
        call: call_id,
        attempt,
        final_callback_sent: false,
    };
    let hangup = tokio_util::sync::CancellationToken::new();
    let record = Record {
        call: call.clone(),
        updated_at: now,
        start_time: None,
        answered_at: None,
        hangup: hangup.clone(),
    };
    let created = resource(&sim, &record);
    sim.state().insert(record, Instant::now());
    if let Some(journal) = &sim.journal {
        journal.write("start", &call, std::time::SystemTime::now());
    }
    tracing::debug!(
        sid = %draws.sid,
        to = %request.to,
        campaign = call.campaign.as_deref().unwrap_or("-"),
        outcome = ?outcome,
        "call created"
    );
    let plan = Plan {
        sid: draws.sid,
        queue: sim.config.queue_for,
        outcome,
        ring,
        talk: draws.talk,
        detection: request.detection,
        seed: draws.seed,
        callbacks: request.callbacks.map(|(url, method, events)| Callbacks {
            url,
            method,
            events,
            reorder: draws.reorder,
            drop_final: draws.drop_final,
            duplicate_rate: sim.config.duplicate_rate,
            seed: draws.seed,
        }),
    };
    let shared: Arc<Inner> = sim.clone().into_inner();
    sim.runtime.spawn(life::run(shared, plan, call, hangup));

    let mut delay = sim.config.create_delay;
    if draws.hang {
        delay += sim.config.hang_for;
    }
    if !delay.is_zero() {
        tokio::select! {
            () = sim.cancel.cancelled() => {}
            () = tokio::time::sleep(delay) => {}
        }
    }
    Ok(HttpResponse::Created().json(created))
}

/// A time filter value: RFC 2822, RFC 3339, a naive date-time (UTC) or a date (its midnight UTC).
fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc2822(value) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(value, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;

async fn list_calls(
    req: HttpRequest,
    path: web::Path<String>,
    sim: web::Data<Inner>,
) -> Result<HttpResponse, ApiError> {
    authenticate_read(&req, &sim, &path)?;
    let mut filters: Vec<(String, String)> = Vec::new();
    let (mut to, mut from, mut status) = (None, None, None);
    let (mut after, mut before) = (None, None);
    let (mut page_size, mut page) = (DEFAULT_PAGE_SIZE, 0usize);
    let time = |key: &str, value: &str| {
        parse_time(value)
            .ok_or_else(|| ApiError::bad_request(20001, format!("Invalid {key}: {value}")))
    };
    for (key, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        match key.as_ref() {
            "To" => to = Some(value.to_string()),
            "From" => from = Some(value.to_string()),
            "Status" => status = Some(value.to_string()),
            // Unencoded, `StartTime>=X` splits at its own `=` into the key `StartTime>`.
            "StartTime>=" | "StartTime>" => after = Some(time("StartTime>=", &value)?),
            "StartTime<=" | "StartTime<" => before = Some(time("StartTime<=", &value)?),
            "PageSize" => {
                page_size = value
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        ApiError::bad_request(20001, format!("Invalid PageSize: {value}"))
                    })?
                    .min(MAX_PAGE_SIZE);
                continue;
            }
            "Page" => {
                page = value
                    .parse()
                    .map_err(|_| ApiError::bad_request(20001, format!("Invalid Page: {value}")))?;
                continue;
            }
            _ => continue,
        }
        let key = match key.as_ref() {
            "StartTime>" => "StartTime>=".to_owned(),
            "StartTime<" => "StartTime<=".to_owned(),
            other => other.to_owned(),
        };
        filters.push((key, value.into_owned()));
    }
    let (calls, total) = {
        let state = sim.state();
        let matching: Vec<&Record> = state
            .records
            .iter()
            .rev()
            .filter(|r| to.as_deref().is_none_or(|to| r.call.to == to))
            .filter(|r| from.as_deref().is_none_or(|from| r.call.from == from))
            .filter(|r| status.as_deref().is_none_or(|s| r.call.status == s))
            // As Twilio documents it: on the call's start time (a call still queued has none
            // and matches no StartTime filter), by date, on the carrier's clock.
            .filter(|r| {
                after.is_none_or(|after| {
                    r.start_time.is_some_and(|start| {
                        sim.carrier_time(start).date_naive() >= after.date_naive()
                    })
                })
            })
            .filter(|r| {
                before.is_none_or(|before| {
                    r.start_time.is_some_and(|start| {
                        sim.carrier_time(start).date_naive() <= before.date_naive()
                    })
                })
            })
            .collect();
        let calls: Vec<Value> = matching
            .iter()
            .skip(page.saturating_mul(page_size))
            .take(page_size)
            .map(|r| resource(&sim, r))
            .collect();
        (calls, matching.len())
    };
    let base = format!("{API}/Accounts/{}/Calls.json", sim.config.account_sid);
    let page_uri = |page: usize| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.extend_pairs(&filters);
        query.append_pair("PageSize", &page_size.to_string());
        query.append_pair("Page", &page.to_string());
        format!("{base}?{}", query.finish())
    };
    let start = page.saturating_mul(page_size);
    let has_next = start.saturating_add(page_size) < total;
    Ok(HttpResponse::Ok().json(json!({
        "first_page_uri": page_uri(0),
        "next_page_uri": if has_next { Value::from(page_uri(page + 1)) } else { Value::Null },
        "previous_page_uri": if page > 0 { Value::from(page_uri(page - 1)) } else { Value::Null },
        "uri": page_uri(page),
        "page": page,
        "page_size": page_size,
        "start": start,
        "end": start + calls.len().saturating_sub(1),
        "calls": calls,
    })))
}

fn call_not_found(sid: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        20404,
        format!("The requested resource /2010-04-01/Calls/{sid}.json was not found"),
    )
}

async fn fetch_call(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    sim: web::Data<Inner>,
) -> Result<HttpResponse, ApiError> {
    let (account, sid) = path.into_inner();
    authenticate_read(&req, &sim, &account)?;
    let state = sim.state();
    let record = state.get(&sid).ok_or_else(|| call_not_found(&sid))?;
    Ok(HttpResponse::Ok().json(resource(&sim, record)))
}

/// Modify a call: `Status=canceled` ends a queued or ringing call, `Status=completed` hangs up
/// any live call. Other parameters (a new Url or Twiml) are accepted and have no effect.
async fn update_call(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    sim: web::Data<Inner>,
) -> Result<HttpResponse, ApiError> {
    let (account, sid) = path.into_inner();
    authenticate(&req, &sim, &account)?;
    let params = form(&body);
    let requested = first(&params, "Status");
    if let Some(value) = requested {
        if value != "canceled" && value != "completed" {
            return Err(ApiError::bad_request(
                20001,
                format!("Invalid Status: {value}"),
            ));
        }
    }
    let twiml = first(&params, "Twiml").map(str::to_owned);
    let (current, answered_at, hangup) = {
        let mut state = sim.state();
        let record = state.get_mut(&sid).ok_or_else(|| call_not_found(&sid))?;
        if let Some(twiml) = twiml.filter(|_| !is_final_status(&record.call.status)) {
            record.call.twiml_updates.push(twiml);
        }
        (
            record.call.clone(),
            record.answered_at,
            record.hangup.clone(),
        )
    };
    if current.is_final() {
        return Err(ApiError::bad_request(
            21220,
            "Call is not in-progress. Cannot redirect.",
        ));
    }
    let answered = current.status == "in-progress";
    let ending = match requested {
        Some("completed") if answered => Some(Ending {
            status: "completed",
            sip_code: 200,
            duration_secs: answered_at.map_or(0, |at| {
                life::whole_seconds((Utc::now() - at).to_std().unwrap_or_default())
            }),
            answered_by: current.answered_by.clone(),
        }),
        Some(_) if !answered => Some(Ending {
            status: "canceled",
            sip_code: 487,
            duration_secs: 0,
            answered_by: None,
        }),
        _ => None,
    };
    if let Some(ending) = ending {
        if life::finish(&sim, &sid, &ending).is_some() {
            // Wakes the call's task, which sends the final callback for this ending.
            hangup.cancel();
        }
    }
    let state = sim.state();
    let record = state.get(&sid).ok_or_else(|| call_not_found(&sid))?;
    Ok(HttpResponse::Ok().json(resource(&sim, record)))
}

async fn account(
    req: HttpRequest,
    path: web::Path<String>,
    sim: web::Data<Inner>,
) -> Result<HttpResponse, ApiError> {
    authenticate(&req, &sim, &path)?;
    let sid = &sim.config.account_sid;
    Ok(HttpResponse::Ok().json(json!({
        "sid": sid,
        "owner_account_sid": sid,
        "friendly_name": "carrier simulator",
        "status": "active",
        "type": "Full",
        "uri": format!("{API}/Accounts/{sid}.json"),
    })))
}

async fn sim_calls(sim: web::Data<Inner>) -> HttpResponse {
    let calls: Vec<SimCall> = sim.state().records.iter().map(|r| r.call.clone()).collect();
    HttpResponse::Ok().json(calls)
}

async fn sim_summary(sim: web::Data<Inner>) -> HttpResponse {
    HttpResponse::Ok().json(summary(&sim))
}

pub(super) fn summary(sim: &Inner) -> SimSummary {
    let state = sim.state();
    let mut by_status = BTreeMap::new();
    for record in &state.records {
        *by_status.entry(record.call.status.clone()).or_insert(0) += 1;
    }
    SimSummary {
        url: sim.url.clone(),
        created: state.records.len() as u64,
        live: state.live(),
        peak_live_total: state.peak_total,
        peak_live_by_campaign: state
            .peak_by_campaign
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        max_creates_in_any_second: state.max_creates_per_second,
        throttled: state.throttled,
        invalid: state.invalid,
        numbers_live_twice: state.numbers_live_twice.iter().cloned().collect(),
        by_status,
        callbacks: sim.counters.snapshot(),
        spoken_to: state
            .records
            .iter()
            .filter(|r| !r.call.heard.is_empty())
            .count() as u64,
        keys_pressed: {
            let mut keys = BTreeMap::new();
            for key in state.records.iter().flat_map(|r| r.call.pressed.chars()) {
                *keys.entry(key.to_string()).or_insert(0) += 1;
            }
            keys
        },
        updated: state
            .records
            .iter()
            .filter(|r| !r.call.twiml_updates.is_empty())
            .count() as u64,
    }
}

/// `(415) 555-1212` for a North American number, the number itself otherwise.
fn formatted(number: &str) -> String {
    match number.strip_prefix("+1") {
        Some(n) if n.len() == 10 && n.bytes().all(|b| b.is_ascii_digit()) => {
            format!("({}) {}-{}", &n[..3], &n[3..6], &n[6..])
        }
        _ => number.to_owned(),
    }
}

/// The Call resource as Twilio renders it.
fn resource(sim: &Inner, record: &Record) -> Value {
    let call = &record.call;
    let account = &sim.config.account_sid;
    let rfc2822 = |t: Option<DateTime<Utc>>| {
        t.map_or(Value::Null, |t| {
            Value::from(sim.carrier_time(t).to_rfc2822())
        })
    };
    json!({
        "sid": call.sid,
        "account_sid": account,
        "parent_call_sid": null,
        "to": call.to,
        "to_formatted": formatted(&call.to),
        "from": call.from,
        "from_formatted": formatted(&call.from),
        "phone_number_sid": null,
        "status": call.status,
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "date_created": sim.carrier_time(call.created_at).to_rfc2822(),
        "date_updated": sim.carrier_time(record.updated_at).to_rfc2822(),
        "start_time": rfc2822(record.start_time),
        "end_time": rfc2822(call.ended_at),
        "duration": call.duration_secs.map_or(Value::Null, |d| Value::from(d.to_string())),
        "answered_by": call.answered_by,
        "price": null,
        "price_unit": "USD",
        "forwarded_from": null,
        "group_sid": null,
        "caller_name": null,
        "queue_time": "0",
        "trunk_sid": null,
        "uri": format!("{API}/Accounts/{account}/Calls/{}.json", call.sid),
        "subresource_uris": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_weights() {
        let mix = OutcomeMix {
            human: 1.0,
            machine: 0.0,
            busy: 1.0,
            no_answer: 0.0,
            failed_permanent: 0.0,
            failed_transient: 2.0,
        };
        assert_eq!(pick_outcome(&mix, 0.0), Outcome::Human);
        assert_eq!(pick_outcome(&mix, 0.3), Outcome::Busy);
        assert_eq!(pick_outcome(&mix, 0.6), Outcome::FailedTransient);
        assert_eq!(pick_outcome(&mix, 0.999_999), Outcome::FailedTransient);
        let none = OutcomeMix {
            human: 0.0,
            machine: 0.0,
            busy: 0.0,
            no_answer: 0.0,
            failed_permanent: 0.0,
            failed_transient: 0.0,
        };
        assert_eq!(pick_outcome(&none, 0.5), Outcome::Human);
    }

    #[test]
    fn numbers_and_times_parse_as_twilio_writes_them() {
        assert!(is_e164("+15551230001"));
        assert!(!is_e164("15551230001"));
        assert!(!is_e164("+1555"));
        assert!(!is_e164(" 15551230001"));
        assert_eq!(formatted("+14155551212"), "(415) 555-1212");
        assert_eq!(formatted("+442071838750"), "+442071838750");
        let t = parse_time("Tue, 31 Aug 2010 20:36:28 +0000");
        assert_eq!(t, parse_time("2010-08-31T20:36:28Z"));
        assert_eq!(t, parse_time("2010-08-31 20:36:28"));
        assert_eq!(
            parse_time("2010-08-31"),
            parse_time("2010-08-31T00:00:00+00:00")
        );
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn the_attempt_comes_from_the_callback_query() {
        assert_eq!(
            attempt_of("http://h/webhooks/twilio/status?campaign=c1&call=k2&attempt=3#x"),
            (Some("c1".into()), Some("k2".into()), Some(3))
        );
        assert_eq!(attempt_of("http://h/status"), (None, None, None));
    }
}
