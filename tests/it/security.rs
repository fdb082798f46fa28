//! Keys, roles, the audit log and the rate limit, through the real API.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use outbound::domain::access::{Access, Role};
use outbound::roles::api::endpoints;
use outbound::roles::api::keys::new_key;
use outbound::settings::AuthMode;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{targets, unique_name, Mode, TestApp};
use crate::in_both_modes;

/// Makes a key on the app's store, as `outbound keys create` does.
async fn key(app: &TestApp, role: Role) -> String {
    let issued = new_key(format!("{role}-key"), role);
    app.ctx
        .store
        .create_key(issued.record, Utc::now(), None)
        .await
        .expect("key stored");
    issued.key
}

async fn call(
    app: &TestApp,
    method: &Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.client.request(method.clone(), app.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request sent")
}

async fn audit_entries(app: &TestApp, admin: &str) -> Vec<Value> {
    let response = call(
        app,
        &Method::GET,
        "/api/v1/audit?limit=1000",
        Some(admin),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    body["entries"].as_array().expect("entries").clone()
}

/// An audit entry as compared: key name, method, route, target, status.
type Audited = (Option<String>, String, String, Option<String>, u16);

/// Walks the route table: without a key every route but the contract document answers 401;
/// each role gets 403 exactly on the routes above it; every request that was not a read is in
/// the audit log with its key, route, target and status.
async fn every_route_answers_as_its_role_allows(mode: Mode) {
    let app = TestApp::spawn_in(mode, |s| s.auth.mode = AuthMode::Keys).await;
    let mut keys = HashMap::new();
    for role in Role::ALL {
        keys.insert(role, key(&app, role).await);
    }
    let resource = uuid::Uuid::now_v7().to_string();
    let mut expected_audit: Vec<Audited> = Vec::new();
    for endpoint in endpoints() {
        let method = Method::from_bytes(endpoint.method.as_str().as_bytes()).expect("method");
        let number = "+15555550100";
        let path = endpoint
            .path
            .replace("{id}", &resource)
            .replace("{number}", number);
        let target = if endpoint.path.contains("{id}") {
            Some(resource.clone())
        } else {
            endpoint
                .path
                .contains("{number}")
                .then(|| number.to_owned())
        };
        let body = (method != Method::GET).then(|| json!({}));
        let mut callers: Vec<(Option<Role>, Option<&str>)> = vec![(None, None)];
        callers.extend(
            Role::ALL
                .iter()
                .map(|role| (Some(*role), Some(keys[role].as_str()))),
        );
        for (role, key) in callers {
            // Refusals from one address are limited (50 a second): the walk keeps under it.
            tokio::time::sleep(Duration::from_millis(30)).await;
            let response = call(&app, &method, &path, key, body.clone()).await;
            let status = response.status().as_u16();
            let allowed = match (endpoint.access, role) {
                (Access::Public, _) => true,
                (_, None) => false,
                (access, Some(role)) => role.may(access),
            };
            let refusal = match role {
                None => 401,
                Some(_) => 403,
            };
            if allowed {
                assert!(
                    status != 401 && status != 403,
                    "{} {} as {role:?}: {status}",
                    endpoint.method,
                    endpoint.path
                );
            } else {
                assert_eq!(
                    status, refusal,
                    "{} {} as {role:?}",
                    endpoint.method, endpoint.path
                );
                let body: Value = response.json().await.expect("error body");
                let code = if refusal == 401 {
                    "unauthorized"
                } else {
                    "forbidden"
                };
                assert_eq!(body["code"], code);
                assert!(body["trace_id"].is_string());
            }
            if method != Method::GET {
                expected_audit.push((
                    role.map(|role| format!("{role}-key")),
                    endpoint.method.to_string(),
                    endpoint.path.to_owned(),
                    target.clone(),
                    status,
                ));
            }
        }
    }
    // Refusals without a key are written together, once a second per client address: their
    // entries stand for them all, by count.
    let anonymous = expected_audit.iter().filter(|e| e.0.is_none()).count();
    expected_audit.retain(|e| e.0.is_some());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let entries = audit_entries(&app, &keys[&Role::Admin]).await;
    let (strangers, entries): (Vec<Value>, Vec<Value>) =
        entries.into_iter().partition(|e| e["key_name"].is_null());
    let counted: u64 = strangers
        .iter()
        .map(|e| e["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(counted as usize, anonymous, "{strangers:#?}");
    assert!(
        strangers.iter().all(|e| e["status"] == 401),
        "{strangers:#?}"
    );
    let mut found: Vec<Audited> = entries
        .iter()
        .map(|e| {
            (
                e["key_name"].as_str().map(str::to_owned),
                e["method"].as_str().expect("method").to_owned(),
                e["route"].as_str().expect("route").to_owned(),
                e["resource_id"].as_str().map(str::to_owned),
                e["status"].as_u64().expect("status") as u16,
            )
        })
        .collect();
    for entry in &expected_audit {
        let at = found
            .iter()
            .position(|f| f == entry)
            .unwrap_or_else(|| panic!("not in the audit log: {entry:?}\nlog: {entries:#?}"));
        found.swap_remove(at);
    }
    app.shutdown().await;
}
in_both_modes!(every_route_answers_as_its_role_allows);

/// A successful change and its audit entry commit together, naming what was touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_audited_with_their_target() {
    let app = TestApp::spawn_with(|s| s.auth.mode = AuthMode::Keys).await;
    let admin = key(&app, Role::Admin).await;
    let response = call(
        &app,
        &Method::POST,
        "/api/v1/campaigns",
        Some(&admin),
        Some(json!({"name": unique_name("audited"), "time_zone": "UTC", "targets": targets(2, 0)})),
    )
    .await;
    assert_eq!(response.status(), 201);
    let campaign: Value = response.json().await.expect("json");
    let id = campaign["id"].as_str().expect("id").to_owned();
    let start = format!("/api/v1/campaigns/{id}/start");
    assert_eq!(
        call(&app, &Method::POST, &start, Some(&admin), None)
            .await
            .status(),
        204
    );
    // Another method on a known path: 405 with Allow, audited like any request that is not a
    // read; without a key it is refused first.
    let patch = Method::from_bytes(b"PATCH").expect("method");
    let path = format!("/api/v1/campaigns/{id}");
    assert_eq!(call(&app, &patch, &path, None, None).await.status(), 401);
    let not_allowed = call(&app, &patch, &path, Some(&admin), None).await;
    assert_eq!(not_allowed.status(), 405);
    assert_eq!(
        not_allowed
            .headers()
            .get("allow")
            .expect("Allow")
            .to_str()
            .expect("ascii"),
        "GET, PUT"
    );
    // The refusal is written with the others of its second, at the next flush.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let entries = audit_entries(&app, &admin).await;
    assert_eq!(entries.len(), 4, "{entries:#?}");
    assert_eq!(entries[1]["count"], 1);
    assert_eq!(entries[0]["status"], 405);
    assert_eq!(entries[0]["method"], "PATCH");
    assert_eq!(entries[0]["route"], "/api/v1/campaigns/{id}");
    assert_eq!(entries[1]["status"], 401);
    let entries: Vec<Value> = entries.into_iter().skip(2).collect();
    // Newest first.
    assert_eq!(entries[0]["route"], "/api/v1/campaigns/{id}/start");
    assert_eq!(entries[0]["status"], 204);
    assert_eq!(entries[0]["resource_id"], id.as_str());
    assert_eq!(entries[1]["route"], "/api/v1/campaigns");
    assert_eq!(entries[1]["status"], 201);
    assert_eq!(entries[1]["resource_id"], id.as_str());
    assert_eq!(entries[1]["key_name"], "admin-key");
    // Paging: one at a time, newest first.
    let first = call(
        &app,
        &Method::GET,
        "/api/v1/audit?limit=3",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(first.status(), 200);
    let page: Value = first.json().await.expect("json");
    assert_eq!(page["entries"][2]["id"], entries[0]["id"]);
    let token = page["next_page_token"].as_str().expect("a second page");
    let next: Value = call(
        &app,
        &Method::GET,
        &format!("/api/v1/audit?limit=1&page_token={token}"),
        Some(&admin),
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(next["entries"][0]["id"], entries[1]["id"]);
    app.shutdown().await;
}

/// A key revoked through one process is refused by another within 5 s, and a key made by the
/// CLI works at once everywhere.
async fn a_revoked_key_stops_working_everywhere(mode: Mode) {
    let first = TestApp::spawn_in(mode, |s| s.auth.mode = AuthMode::Keys).await;
    let url = first.ctx.settings.storage.url.clone();
    let second = TestApp::spawn_in(mode, |s| {
        s.auth.mode = AuthMode::Keys;
        s.storage.url = url;
    })
    .await;
    let admin = key(&first, Role::Admin).await;
    // Made on the first process, used at once on the second.
    let created: Value = call(
        &first,
        &Method::POST,
        "/api/v1/keys",
        Some(&admin),
        Some(json!({"name": "short-lived", "role": "viewer"})),
    )
    .await
    .json()
    .await
    .expect("json");
    let viewer = created["key"].as_str().expect("key").to_owned();
    assert!(viewer.starts_with("obk_"));
    for app in [&first, &second] {
        let status = call(app, &Method::GET, "/api/v1/campaigns", Some(&viewer), None)
            .await
            .status();
        assert_eq!(status, 200);
    }
    let listed: Value = call(&second, &Method::GET, "/api/v1/keys", Some(&admin), None)
        .await
        .json()
        .await
        .expect("json");
    assert!(
        !listed.to_string().contains(&viewer),
        "a key list never shows a key"
    );
    let id = created["id"].as_str().expect("id");
    let revoked = call(
        &first,
        &Method::DELETE,
        &format!("/api/v1/keys/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(revoked.status(), 204);
    assert_eq!(
        call(
            &first,
            &Method::GET,
            "/api/v1/campaigns",
            Some(&viewer),
            None
        )
        .await
        .status(),
        401,
        "refused at once where it was revoked"
    );
    let since = Instant::now();
    loop {
        let status = call(
            &second,
            &Method::GET,
            "/api/v1/campaigns",
            Some(&viewer),
            None,
        )
        .await
        .status();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "the other process still accepts a revoked key"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.shutdown().await;
    first.shutdown().await;
}
in_both_modes!(a_revoked_key_stops_working_everywhere);

/// The CLI makes the first key of a deployment, lists keys without their secrets and revokes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_makes_lists_and_revokes_keys() {
    let app = TestApp::spawn_with(|s| s.auth.mode = AuthMode::Keys).await;
    let env = [(
        "OUTBOUND__STORAGE__URL".to_owned(),
        app.ctx.settings.storage.url.clone(),
    )];
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_outbound"))
            .args(args)
            .current_dir(app.dir.path())
            .envs(env.iter().cloned())
            .output()
            .expect("outbound keys runs");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    };
    let created = run(&["keys", "create", "--name", "first admin", "--role", "admin"]);
    let key = created.lines().last().expect("a line").trim().to_owned();
    assert!(key.starts_with("obk_"), "{created}");
    assert_eq!(
        call(&app, &Method::GET, "/api/v1/keys", Some(&key), None)
            .await
            .status(),
        200
    );
    let as_json: Value = serde_json::from_str(&run(&[
        "keys", "create", "--name", "ci", "--role", "viewer", "--json",
    ]))
    .expect("json");
    assert_eq!(as_json["role"], "viewer");
    assert!(as_json["key"].as_str().expect("key").starts_with("obk_"));
    let listed = run(&["keys", "list"]);
    assert!(
        listed.contains("first admin") && listed.contains("ci"),
        "{listed}"
    );
    assert!(!listed.contains(&key));
    let id = as_json["id"].as_str().expect("id");
    run(&["keys", "revoke", id]);
    let listed: Value = serde_json::from_str(&run(&["keys", "list", "--json"])).expect("json");
    let revoked = listed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["id"] == id)
        .expect("listed");
    assert!(revoked["revoked_at"].is_string());
    // A bad role is refused with a message, not a panic.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_outbound"))
        .args(["keys", "create", "--name", "x", "--role", "root"])
        .current_dir(app.dir.path())
        .envs(env.iter().cloned())
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("role"));
    app.shutdown().await;
}

/// `auth.mode = "auto"`: no key on a loopback bind, a key on any other address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_asks_for_keys_off_loopback() {
    let local = TestApp::spawn().await;
    assert_eq!(local.ctx.settings.auth.mode, AuthMode::Auto);
    assert_eq!(local.get("/api/v1/campaigns").await.0, 200);
    // Without keys, a credential the server does not know (a proxy's token) limits nothing.
    let foreign = call(
        &local,
        &Method::GET,
        "/api/v1/campaigns",
        Some("some-proxy-token"),
        None,
    )
    .await;
    assert_eq!(foreign.status(), 200);
    local.shutdown().await;

    let open = TestApp::spawn_with(|s| s.http.bind = "0.0.0.0:0".into()).await;
    let url = format!("http://127.0.0.1:{}/api/v1/campaigns", open.addr.port());
    let status = open.client.get(&url).send().await.expect("sent").status();
    assert_eq!(status, 401);
    open.shutdown().await;
}

/// A tunnel or a reverse proxy in front of a loopback listener, or a page of another site that
/// rebinds its name to 127.0.0.1, never gets the API without a key under `auth.mode = auto`:
/// each forwarding header, a foreign `Host` and a configured public URL all ask for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_asks_for_keys_through_a_tunnel_a_proxy_or_a_foreign_host() {
    let app = TestApp::spawn().await;
    let admin = key(&app, Role::Admin).await;
    let url = app.url("/api/v1/campaigns");
    let create = json!({"name": unique_name("tunnel"), "targets": targets(1, 0)});
    for (header, value) in [
        ("Forwarded", "for=203.0.113.7;proto=https"),
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Host", "dialer.trycloudflare.com"),
        ("X-Forwarded-Proto", "https"),
        ("X-Real-IP", "203.0.113.7"),
        ("CF-Connecting-IP", "203.0.113.7"),
        ("True-Client-IP", "203.0.113.7"),
    ] {
        let response = app
            .client
            .post(&url)
            .header(header, value)
            .json(&create)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 401, "{header}");
        let body: Value = response.json().await.expect("error body");
        assert_eq!(body["code"], "unauthorized", "{header}");
        let keyed = app
            .client
            .get(&url)
            .header(header, value)
            .bearer_auth(&admin)
            .send()
            .await
            .expect("sent");
        assert_eq!(keyed.status(), 200, "{header} with a key");
    }
    for host in [
        "dialer.example.com",
        "127.0.0.1.nip.io:8081",
        "attacker.example:80",
    ] {
        let response = app
            .client
            .get(&url)
            .header("Host", host)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 401, "Host: {host}");
    }
    // What the console shows: the policy, and whether this request needed a key.
    let (status, who) = app.get("/api/v1/whoami").await;
    assert_eq!(status, 200);
    assert_eq!(who["auth_mode"], "auto");
    assert_eq!(who["auth"], "off");
    let response = app
        .client
        .get(app.url("/api/v1/whoami"))
        .header("X-Forwarded-For", "203.0.113.7")
        .bearer_auth(&admin)
        .send()
        .await
        .expect("sent");
    let who: Value = response.json().await.expect("json");
    assert_eq!(
        (who["auth_mode"].as_str(), who["auth"].as_str()),
        (Some("auto"), Some("keys"))
    );
    // A plain local request still needs nothing.
    assert_eq!(app.get("/api/v1/campaigns").await.0, 200);
    app.shutdown().await;

    let public = TestApp::spawn_with(|s| {
        s.telephony.twilio.public_url = "https://dialer.example.com".into();
    })
    .await;
    assert_eq!(public.get("/api/v1/campaigns").await.0, 401);
    let (status, body) = public.get("/api/v1/whoami").await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    public.shutdown().await;
}

/// Past its rate a key gets 429 with Retry-After; another key is not slowed by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_past_its_rate_is_told_when_to_retry() {
    let app = TestApp::spawn_with(|s| {
        s.auth.mode = AuthMode::Keys;
        s.auth.rate_limit = 5;
    })
    .await;
    let busy = key(&app, Role::Viewer).await;
    let calm = key(&app, Role::Viewer).await;
    let mut limited = None;
    for _ in 0..30 {
        let response = call(&app, &Method::GET, "/api/v1/campaigns", Some(&busy), None).await;
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), 200);
    }
    let limited = limited.expect("30 requests at once exceed 5 per second");
    let retry_after: u64 = limited
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
    let body: Value = limited.json().await.expect("json");
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(
        call(&app, &Method::GET, "/api/v1/campaigns", Some(&calm), None)
            .await
            .status(),
        200
    );
    app.shutdown().await;
}

/// Every route of the table is in the contract document, and the document has no other
/// `/api/v1` route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_table_and_the_contract_document_agree() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if path.starts_with("/api/v1") && method != "parameters" {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let mut registered: Vec<String> = endpoints()
        .iter()
        .filter(|e| e.path != "/api/v1/openapi.json")
        .map(|e| format!("{} {}", e.method, e.path))
        .collect();
    documented.sort();
    registered.sort();
    assert_eq!(documented, registered);
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for endpoint in endpoints()
        .iter()
        .filter(|e| e.path != "/api/v1/openapi.json")
    {
        let op = &doc["paths"][endpoint.path][endpoint.method.as_str().to_lowercase()];
        let security = op["security"].as_array().expect("security stated");
        let responses = op["responses"].as_object().expect("responses");
        if endpoint.access == Access::Public {
            assert!(security.is_empty(), "{}", endpoint.path);
        } else {
            assert_eq!(security.len(), 1, "{}", endpoint.path);
            for status in ["401", "403", "429"] {
                assert!(responses.contains_key(status), "{} {status}", endpoint.path);
            }
            assert!(op["responses"]["429"]["headers"]["Retry-After"].is_object());
        }
        if endpoint.path.contains("{id}") {
            let id = &op["parameters"][0];
            assert_eq!(id["name"], "id");
            assert_eq!(id["in"], "path");
            assert_eq!(id["schema"]["format"], "uuid");
            assert!(responses.contains_key("400") && responses.contains_key("404"));
        }
        if op.get("requestBody").is_some() {
            for status in ["400", "408", "413", "415"] {
                assert!(responses.contains_key(status), "{} {status}", endpoint.path);
            }
        }
    }
    // A create links to what it created, with OpenAPI's spelling.
    let link =
        &doc["paths"]["/api/v1/campaigns"]["post"]["responses"]["201"]["links"]["get_campaign"];
    assert_eq!(link["operationId"], "get_campaign");
    assert_eq!(link["parameters"]["id"], "$response.body#/id");
    // What the handlers parse by hand is stated: numbers and durations as patterns, a query
    // parameter that is JSON as JSON content.
    let schemas = &doc["components"]["schemas"];
    for (schema, property) in [
        ("TargetInput", "phone_number"),
        ("TriggerCallRequest", "phone_number"),
        ("CreateCampaignRequest", "caller_id"),
        ("RetryPolicyInput", "base_delay"),
        ("RetryPolicyInput", "max_delay"),
        ("RecipientLimitInput", "per"),
        ("BusinessHourInput", "start"),
        ("BusinessHourInput", "end"),
    ] {
        let pattern = &schemas[schema]["properties"][property]["pattern"];
        assert!(pattern.is_string(), "{schema}.{property}");
    }
    assert!(schemas["DncRequest"]["properties"]["numbers"]["items"]["pattern"].is_string());
    let parameter = |path: &str, name: &str| {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .expect("parameter")
    };
    let number = parameter("/api/v1/dnc/{number}", "number");
    assert!(number["schema"]["pattern"].is_string());
    let filter = parameter("/api/v1/campaigns/{id}/calls", "phone_number");
    assert!(filter["schema"]["pattern"].is_string());
    let hours = parameter("/api/v1/campaigns/{id}/forecast", "business_hours");
    assert!(hours.get("schema").is_none());
    assert_eq!(
        hours["content"]["application/json"]["schema"]["items"]["$ref"],
        "#/components/schemas/BusinessHourInput"
    );
    // 405 names the methods a path takes.
    let response = app
        .client
        .delete(app.url("/api/v1/campaigns"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 405);
    assert_eq!(
        response
            .headers()
            .get("allow")
            .expect("Allow")
            .to_str()
            .expect("ascii"),
        "POST, GET"
    );
    app.shutdown().await;
}

/// With `http.tls` set the listener speaks HTTPS only: a client trusting the certificate gets
/// answers, plain HTTP to the same port reaches no handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_serves_https_only() {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("certificate");
    let files = tempfile::tempdir().expect("dir");
    let cert_path = files.path().join("cert.pem");
    let key_path = files.path().join("key.pem");
    std::fs::write(&cert_path, cert.pem()).expect("cert written");
    std::fs::write(&key_path, signing_key.serialize_pem()).expect("key written");
    let app = TestApp::spawn_with(|s| {
        s.http.tls.cert = cert_path.display().to_string();
        s.http.tls.key = key_path.display().to_string();
    })
    .await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).expect("pem"))
        .build()
        .expect("client");
    let port = app.addr.port();
    for host in ["127.0.0.1", "localhost"] {
        let response = client
            .get(format!("https://{host}:{port}/api/v1/campaigns"))
            .send()
            .await
            .expect("https answers");
        assert_eq!(response.status(), 200);
    }
    let plain = app
        .client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    // A client that does not trust the certificate is refused, not downgraded.
    let untrusting = reqwest::Client::new()
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(untrusting.is_err());
    app.shutdown().await;

    // A key file that is not a key stops the start, naming the setting.
    std::fs::write(&key_path, "not a key").expect("written");
    let mut settings = crate::helpers::test_settings(files.path());
    settings.http.tls.cert = cert_path.display().to_string();
    settings.http.tls.key = key_path.display().to_string();
    let built = outbound::runtime::Node::build(settings, true).await;
    let err = built.err().expect("refused").to_string();
    assert!(err.contains("http.tls.key"), "{err}");
}

fn tls_env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests through scripts/test.sh"))
}

/// The distributed backends over TLS: PostgreSQL with `sslmode=verify-full` (as a role the
/// server admits over TLS only) and Redis at a `rediss://` URL, both checked against the test
/// certificate authority; a campaign runs to completion through them. A server whose
/// certificate the configured authority did not sign is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_distributed_backends_are_reached_over_tls() {
    use outbound::adapters::postgres::{self, PgStore};
    use outbound::adapters::redis::RedisLimiter;

    let ca = tls_env("OUTBOUND_TEST_TLS_CA");
    let server = tls_env("OUTBOUND_TEST_DATABASE_TLS_URL");
    let verified = format!("{server}?sslmode=verify-full&sslrootcert={ca}");
    // The role is refused without TLS: what works below was encrypted.
    let plain = PgStore::connect(&format!("{server}?sslmode=disable"), 1).await;
    assert!(plain.is_err(), "the tls_only role connected in plain text");
    let name = format!("t_{}", uuid::Uuid::now_v7().simple());
    let database = postgres::create_database(&verified, &name)
        .await
        .expect("database created over tls");
    assert!(database.contains("sslmode=verify-full"), "{database}");
    // Encrypted without checking the certificate, as libpq's `require` does.
    let required = database.replace("sslmode=verify-full", "sslmode=require");
    PgStore::connect(&required, 1)
        .await
        .expect("sslmode=require connects");

    // Another authority: the server's certificate is refused.
    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let files = tempfile::tempdir().expect("dir");
    let stranger_ca = files.path().join("stranger.pem");
    std::fs::write(&stranger_ca, stranger.cert.pem()).expect("written");
    let misled = format!(
        "{server}?sslmode=verify-full&sslrootcert={}",
        stranger_ca.display()
    );
    assert!(PgStore::connect(&misled, 1).await.is_err());

    let rediss = tls_env("OUTBOUND_TEST_REDIS_TLS_URL");
    let wrong = RedisLimiter::connect(
        &rediss,
        Some(&stranger_ca),
        10,
        Duration::from_secs(10),
        "tls-test:",
    )
    .await;
    assert!(
        wrong.is_err(),
        "a redis certificate from another authority was accepted"
    );

    let app = TestApp::spawn_in(Mode::Distributed, |s| {
        s.storage.url = database.clone();
        s.limiter.url = rediss.clone();
        s.limiter.ca_file = ca.clone();
    })
    .await;
    let created = app
        .create_campaign(json!({
            "name": unique_name("over-tls"),
            "time_zone": "UTC",
            "max_concurrent_calls": 3,
            "targets": targets(10, 0),
        }))
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    app.start(&id).await;
    let stats = app.wait_completed(&id, Duration::from_secs(60)).await;
    assert_eq!(stats["total_targets"], 10, "{stats}");
    app.shutdown().await;
}

/// Sends `head` (and `body`) on a fresh connection and returns what the server answers before
/// it closes or `wait` passes.
async fn raw_exchange(app: &TestApp, head: &str, body: &[u8], wait: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head sent");
    stream.write_all(body).await.expect("body sent");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
        if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// A client that sends its head or its body too slowly is cut off with 408 and holds nothing;
/// an oversized head is refused; the listener keeps serving everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_oversized_requests_are_cut_off() {
    let app = TestApp::spawn_with(|s| {
        s.http.request_timeout = Duration::from_secs(1).into();
        s.http.body_timeout = Duration::from_secs(1).into();
    })
    .await;
    let started = Instant::now();
    let slow_body = raw_exchange(
        &app,
        "POST /api/v1/campaigns HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n",
        b"{\"name\":",
        Duration::from_secs(10),
    )
    .await;
    assert!(slow_body.starts_with("HTTP/1.1 408"), "{slow_body}");
    assert!(slow_body.contains("request_timeout"), "{slow_body}");
    assert!(started.elapsed() < Duration::from_secs(8));

    let slow_head = raw_exchange(
        &app,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n",
        b"",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        slow_head.is_empty() || slow_head.starts_with("HTTP/1.1 408"),
        "{slow_head}"
    );

    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let refused = raw_exchange(&app, &huge, b"", Duration::from_secs(10)).await;
    assert!(
        refused.is_empty()
            || refused.starts_with("HTTP/1.1 431")
            || refused.starts_with("HTTP/1.1 400"),
        "{refused}"
    );
    // The carrier's callback route answers in the API's envelope too.
    let slow_callback = raw_exchange(
        &app,
        "POST /webhooks/twilio/status?campaign=x HTTP/1.1\r\nHost: localhost\r\nX-Twilio-Signature: s\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n",
        b"CallSid=",
        Duration::from_secs(10),
    )
    .await;
    assert!(slow_callback.starts_with("HTTP/1.1 408"), "{slow_callback}");
    assert!(slow_callback.contains("request_timeout"), "{slow_callback}");
    let big = vec![b'a'; 100 * 1024];
    let too_big = raw_exchange(
        &app,
        &format!(
            "POST /webhooks/twilio/status?campaign=x HTTP/1.1\r\nHost: localhost\r\nX-Twilio-Signature: s\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            big.len()
        ),
        &big,
        Duration::from_secs(10),
    )
    .await;
    assert!(too_big.starts_with("HTTP/1.1 413"), "{too_big}");
    assert!(too_big.contains("payload_too_large"), "{too_big}");
    assert_eq!(app.get("/healthz").await.0, 200);
    app.shutdown().await;
}

/// Large bodies are taken one at a time (`http.max_large_bodies = 1`): a second waits for the
/// first to finish while small requests go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_take_turns() {
    let app = TestApp::spawn_with(|s| {
        s.http.max_large_bodies = 1;
        s.http.body_timeout = Duration::from_secs(3).into();
    })
    .await;
    let big = 2 * 1024 * 1024;
    let head = format!(
        "POST /api/v1/campaigns HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {big}\r\n\r\n"
    );
    // The first sends half its body and stalls, holding the turn until its body times out.
    let first_started = Instant::now();
    let first = {
        let app_addr = app.addr;
        let head = head.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(app_addr)
                .await
                .expect("connect");
            stream.write_all(head.as_bytes()).await.expect("head");
            stream.write_all(&vec![b' '; big / 2]).await.expect("half");
            let mut answer = vec![0u8; 4096];
            let n = stream.read(&mut answer).await.unwrap_or(0);
            String::from_utf8_lossy(&answer[..n]).into_owned()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Small requests do not wait for the turn.
    let small = Instant::now();
    assert_eq!(app.get("/api/v1/campaigns").await.0, 200);
    assert!(small.elapsed() < Duration::from_secs(2));
    let mut body = vec![b' '; big];
    body[0] = b'{';
    body[big - 1] = b'}';
    let second = raw_exchange(&app, &head, &body, Duration::from_secs(20)).await;
    let second_done = Instant::now();
    let first_answer = first.await.expect("first joins");
    assert!(first_answer.starts_with("HTTP/1.1 408"), "{first_answer}");
    // The second got its turn only once the first gave it back, when its 3 s body deadline
    // passed; without turns it would have been answered within a fraction of that.
    assert!(
        second_done.duration_since(first_started) >= Duration::from_millis(2500),
        "the second large body did not wait for the first"
    );
    assert!(second.starts_with("HTTP/1.1 400"), "{second}");
    app.shutdown().await;
}

/// `GET /api/v1/whoami` names the caller and lists exactly the routes its role may use, from
/// the same rule the gate applies; with keys off, every route.
#[tokio::test]
async fn whoami_lists_what_the_caller_may_do() {
    let app = TestApp::spawn_with(|s| s.auth.mode = AuthMode::Keys).await;
    for role in Role::ALL {
        let key = key(&app, role).await;
        let response = call(&app, &Method::GET, "/api/v1/whoami", Some(&key), None).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["auth"], "keys");
        assert_eq!(body["role"], role.as_str());
        assert_eq!(body["key_name"], format!("{role}-key"));
        let allowed: Vec<&str> = body["allowed"]
            .as_array()
            .expect("allowed")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for endpoint in endpoints() {
            let route = format!("{} {}", endpoint.method, endpoint.path);
            assert_eq!(
                allowed.contains(&route.as_str()),
                endpoint.access == Access::Public || role.may(endpoint.access),
                "{role}: {route}"
            );
        }
    }
    let response = call(&app, &Method::GET, "/api/v1/whoami", None, None).await;
    assert_eq!(response.status(), 401);
    app.shutdown().await;

    let open = TestApp::spawn_with(|s| s.auth.mode = AuthMode::Off).await;
    let (status, body) = open.get("/api/v1/whoami").await;
    assert_eq!(status, 200);
    assert_eq!(body["auth"], "off");
    assert!(body.get("role").is_none());
    assert_eq!(
        body["allowed"].as_array().expect("allowed").len(),
        endpoints().len()
    );
    open.shutdown().await;
}

/// Opens a campaign's event stream with `key`, answering with the response as it stands.
async fn open_stream(app: &TestApp, campaign: &str, key: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/api/v1/campaigns/{campaign}/events")))
        .bearer_auth(key)
        .send()
        .await
        .expect("request sent")
}

/// Reads a stream until it ends, for up to `limit`: whether it ended.
async fn ends_within(mut stream: reqwest::Response, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.chunk()).await {
            Err(_) => return false,
            Ok(Ok(Some(_))) => continue,
            Ok(_) => return true,
        }
    }
}

/// Event streams are bounded: the ninth of a key and the one past the process's limit get 429
/// `too_many_streams`, while with every place taken health answers and a campaign still runs to
/// its end (claims, heartbeats and callbacks keep going); a closed stream frees its place within
/// 5 s, and a revoked key's streams end within 5 s.
async fn event_streams_are_bounded_per_key_and_per_process(mode: Mode) {
    let app = TestApp::spawn_in(mode, |s| {
        s.auth.mode = AuthMode::Keys;
        s.http.max_streams = 12;
    })
    .await;
    assert_eq!(app.ctx.settings.http.max_streams_per_key, 8);
    let admin = key(&app, Role::Admin).await;
    let (first, second) = (key(&app, Role::Viewer).await, key(&app, Role::Viewer).await);
    let created: Value = call(
        &app,
        &Method::POST,
        "/api/v1/campaigns",
        Some(&admin),
        Some(
            json!({"name": unique_name("streams"), "targets": targets(40, 0), "time_zone": "UTC",
            "max_concurrent_calls": 4}),
        ),
    )
    .await
    .json()
    .await
    .expect("json");
    let campaign = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    let mut held = Vec::new();
    for _ in 0..8 {
        let stream = open_stream(&app, &campaign, &first).await;
        assert_eq!(stream.status(), 200);
        held.push(stream);
    }
    let ninth = open_stream(&app, &campaign, &first).await;
    assert_eq!(ninth.status(), 429);
    assert!(ninth.headers().contains_key("retry-after"));
    let body: Value = ninth.json().await.expect("error body");
    assert_eq!(body["code"], "too_many_streams");
    let mut others = Vec::new();
    for _ in 0..4 {
        let stream = open_stream(&app, &campaign, &second).await;
        assert_eq!(stream.status(), 200);
        others.push(stream);
    }
    let past_process = open_stream(&app, &campaign, &second).await;
    assert_eq!(past_process.status(), 429);
    let body: Value = past_process.json().await.expect("error body");
    assert_eq!(body["code"], "too_many_streams");

    // Every place taken: the process still serves health and runs a campaign to its end.
    for _ in 0..5 {
        let health = app
            .client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("sent");
        assert_eq!(health.status(), 200);
    }
    let started = call(
        &app,
        &Method::POST,
        &format!("/api/v1/campaigns/{campaign}/start"),
        Some(&admin),
        None,
    )
    .await;
    assert!(started.status().is_success(), "{}", started.status());
    let since = Instant::now();
    loop {
        let read: Value = call(
            &app,
            &Method::GET,
            &format!("/api/v1/campaigns/{campaign}"),
            Some(&admin),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
        if read["status"] == "completed" {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "the campaign did not complete with every stream place taken: {read}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A stream its client closed gives its place back.
    drop(held.pop());
    let since = Instant::now();
    loop {
        let stream = open_stream(&app, &campaign, &first).await;
        if stream.status() == 200 {
            held.push(stream);
            break;
        }
        assert_eq!(stream.status(), 429);
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "a closed stream still holds its place"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Revoking the second key ends its streams.
    let second_id = outbound::domain::access::claimed_id(&second).expect("key id");
    let revoked = call(
        &app,
        &Method::DELETE,
        &format!("/api/v1/keys/{second_id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(revoked.status(), 204);
    let ended = futures::future::join_all(
        others
            .into_iter()
            .map(|stream| ends_within(stream, Duration::from_secs(5))),
    )
    .await;
    assert!(ended.iter().all(|ended| *ended), "{ended:?}");
    // The first key's streams go on.
    let still = futures::future::join_all(
        held.into_iter()
            .map(|stream| ends_within(stream, Duration::from_millis(1500))),
    )
    .await;
    assert!(still.iter().all(|ended| !*ended), "{still:?}");
    app.shutdown().await;
}
in_both_modes!(event_streams_are_bounded_per_key_and_per_process);

/// A reload whose read began before a revocation (it still shows the key active) does not bring
/// the key back on the process that revoked it, nor does a lookup that raced it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_began_before_a_revocation_does_not_bring_the_key_back() {
    use outbound::domain::access::KeyPolicy;
    use outbound::roles::api::access::Gate;
    let dir = tempfile::tempdir().expect("temp dir");
    let store: std::sync::Arc<dyn outbound::ports::Store> =
        crate::fixtures::sqlite_store(&dir).await;
    let gate = Gate::new(store.clone(), KeyPolicy::Always, 100);
    let issued = new_key("racing".into(), Role::Viewer);
    let id = issued.record.id;
    store
        .create_key(issued.record, Utc::now(), None)
        .await
        .expect("key stored");
    gate.refresh().await.expect("reloaded");
    assert!(!gate.revoked(id));
    let asked_at = Instant::now();
    let before = store.list_keys().await.expect("keys read");
    let revoked = store
        .revoke_key(id, Utc::now(), None)
        .await
        .expect("revoked");
    gate.remember(revoked);
    assert!(gate.revoked(id));
    gate.reloaded(before.clone(), asked_at);
    assert!(
        gate.revoked(id),
        "a stale reload brought a revoked key back"
    );
    let stale = before.into_iter().find(|key| key.id == id).expect("listed");
    gate.remember(stale);
    assert!(
        gate.revoked(id),
        "a stale lookup brought a revoked key back"
    );
}

/// A flood of `/healthz` and `/readyz` is answered from a state probed at most once a second:
/// however many ask, the backends are probed a handful of times (each answer says when).
async fn a_flood_of_health_checks_probes_the_backends_once_a_second(mode: Mode) {
    let app = TestApp::spawn_in(mode, |_| {}).await;
    let started = Instant::now();
    let asks = (0..400).map(|i| {
        let path = if i % 2 == 0 { "/healthz" } else { "/readyz" };
        let request = app.client.get(app.url(path)).send();
        async move {
            let body: Value = request.await.expect("sent").json().await.expect("json");
            body["checked_at"].as_str().expect("checked_at").to_owned()
        }
    });
    let stamps: std::collections::HashSet<String> =
        futures::future::join_all(asks).await.into_iter().collect();
    let seconds = started.elapsed().as_secs() as usize;
    assert!(
        stamps.len() <= seconds + 2,
        "{} probes in {seconds} s for 400 health checks",
        stamps.len()
    );
    app.shutdown().await;
}
in_both_modes!(a_flood_of_health_checks_probes_the_backends_once_a_second);

async fn send_upload(
    app: &TestApp,
    method: Method,
    path: &str,
    csv: bool,
    body: String,
) -> (u16, Value) {
    let media = if csv { "text/csv" } else { "application/json" };
    let response = app
        .client
        .request(method, app.url(path))
        .header("content-type", media)
        .body(body)
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Asserts a 400 whose details name `field`.
fn refused_naming(answer: &(u16, Value), field: &str) {
    assert_eq!(answer.0, 400, "{field}: {}", answer.1);
    assert_eq!(answer.1["code"], "validation_failed", "{}", answer.1);
    assert!(
        answer.1["details"].to_string().contains(field),
        "{field}: {}",
        answer.1
    );
}

/// Every upload is bounded: a CSV's columns and header, a target's metadata, a description;
/// beyond them 400 naming the line or field, and a CSV whose stored form would outgrow the
/// largest body (each row repeats its column names), or a do-not-call listing that repeats a
/// long reason for every number, is refused with 413 before it is held.
async fn uploads_are_bounded_and_name_what_is_too_large(mode: Mode) {
    let app = TestApp::spawn_in(mode, |s| s.http.body_limit_bytes = 256 * 1024).await;
    let create_csv = "/api/v1/campaigns?name=bounded&time_zone=UTC";
    let wide: Vec<String> = (0..65).map(|i| format!("c{i}")).collect();
    let header = format!("phone_number,{}", wide.join(","));
    let answer = send_upload(
        &app,
        Method::POST,
        create_csv,
        true,
        format!("{header}\n+15555550100\n"),
    )
    .await;
    refused_naming(&answer, "line 1: at most 64 columns");
    let long_header = format!("phone_number,{}\n+15555550100\n", "n".repeat(5000));
    let answer = send_upload(&app, Method::POST, create_csv, true, long_header).await;
    refused_naming(&answer, "line 1: the header row must be at most 4096 bytes");
    let wide_row = format!(
        "phone_number,note\n+15555550100,x\n+15555550101{}\n",
        ",x".repeat(70)
    );
    let answer = send_upload(&app, Method::POST, create_csv, true, wide_row).await;
    refused_naming(&answer, "line 3: at most 64 columns");
    let long_cell = format!("phone_number,note\n+15555550100,{}\n", "x".repeat(5000));
    let answer = send_upload(&app, Method::POST, create_csv, true, long_cell).await;
    refused_naming(&answer, "line 2: metadata");

    let many_keys: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!(i))).collect();
    let create = |metadata: Value, description: &str| {
        json!({"name": unique_name("bounded"), "time_zone": "UTC", "description": description,
            "targets": [{"phone_number": "+15555550100"},
                {"phone_number": "+15555550101", "metadata": metadata}]})
        .to_string()
    };
    let answer = send_upload(
        &app,
        Method::POST,
        "/api/v1/campaigns",
        false,
        create(Value::Object(many_keys.clone()), ""),
    )
    .await;
    refused_naming(&answer, "targets[1].metadata");
    let answer = send_upload(
        &app,
        Method::POST,
        "/api/v1/campaigns",
        false,
        create(json!({"note": "x".repeat(4100)}), ""),
    )
    .await;
    refused_naming(&answer, "targets[1].metadata");
    let answer = send_upload(
        &app,
        Method::POST,
        "/api/v1/campaigns",
        false,
        create(json!({"note": "ok"}), &"d".repeat(2001)),
    )
    .await;
    refused_naming(&answer, "description");
    let answer = send_upload(
        &app,
        Method::POST,
        "/api/v1/campaigns",
        false,
        create(json!({"note": "ok"}), &"d".repeat(2000)),
    )
    .await;
    assert_eq!(answer.0, 201, "{}", answer.1);
    let campaign = answer.1["id"].as_str().expect("id").to_owned();
    let answer = send_upload(
        &app,
        Method::PUT,
        &format!("/api/v1/campaigns/{campaign}"),
        false,
        json!({"description": "é".repeat(2001)}).to_string(),
    )
    .await;
    refused_naming(&answer, "description");
    let answer = send_upload(
        &app,
        Method::POST,
        "/api/v1/calls",
        false,
        json!({"campaign_id": campaign, "phone_number": "+15555550100",
            "metadata": Value::Object(many_keys)})
        .to_string(),
    )
    .await;
    refused_naming(&answer, "metadata");
    // The metadata kept is what was sent, as JSON.
    let (_, calls) = app
        .get(&format!("/api/v1/campaigns/{campaign}/calls"))
        .await;
    assert!(
        calls.to_string().contains(r#""metadata":{"note":"ok"}"#),
        "{calls}"
    );

    // 40 long column names and one-character cells: each row's metadata takes about 3.5 KB,
    // 2,500 rows about 9 MB, for a body of 200 KB.
    let names: Vec<String> = (0..40).map(|i| format!("{i:0>80}")).collect();
    let mut csv = format!("phone_number,{}\n", names.join(","));
    for row in 0..2_500 {
        csv.push_str(&format!("+1555555{row:04}{}\n", ",x".repeat(40)));
    }
    assert!(csv.len() < 256 * 1024);
    let answer = send_upload(&app, Method::POST, create_csv, true, csv).await;
    assert_eq!(answer.0, 413, "{}", answer.1);
    assert_eq!(answer.1["code"], "payload_too_large");

    let answer = send_upload(
        &app,
        Method::POST,
        "/api/v1/dnc",
        true,
        format!("{header}\n+15555550100\n"),
    )
    .await;
    refused_naming(&answer, "line 1: at most 64 columns");
    let numbers: Vec<String> = (0..1_000).map(|i| format!("+1555556{i:04}")).collect();
    let answer = send_upload(
        &app,
        Method::POST,
        "/api/v1/dnc",
        false,
        json!({"numbers": numbers, "reason": "r".repeat(500)}).to_string(),
    )
    .await;
    assert_eq!(answer.0, 413, "{}", answer.1);
    assert_eq!(answer.1["code"], "payload_too_large");
    app.shutdown().await;
}
in_both_modes!(uploads_are_bounded_and_name_what_is_too_large);

/// Explaining a campaign reads a bounded sample of its waiting calls: every call of a small
/// campaign (`exact`), 2,000 of a larger one, whose counts are then estimates for all.
async fn a_large_campaign_is_explained_from_a_bounded_sample(mode: Mode) {
    let app = TestApp::spawn_in(mode, |_| {}).await;
    for (count, exact, sampled) in [(10, true, Value::Null), (5_000, false, json!(2_000))] {
        let created = app
            .create_campaign(json!({"name": unique_name("explain"), "time_zone": "UTC",
                "targets": targets(count, 0)}))
            .await;
        let id = created["id"].as_str().expect("id");
        let (status, why) = app.get(&format!("/api/v1/campaigns/{id}/explain")).await;
        assert_eq!(status, 200, "{why}");
        assert_eq!(why["exact"], exact, "{why}");
        assert_eq!(
            why.get("sampled_calls").cloned().unwrap_or(Value::Null),
            sampled
        );
        assert_eq!(
            why["pending_by_reason"]["campaign_not_running"], count,
            "{why}"
        );
    }
    app.shutdown().await;
}
in_both_modes!(a_large_campaign_is_explained_from_a_bounded_sample);

/// A flood of changes refused for a missing or unknown key grows the audit log by one entry
/// per client address per second, each counting the requests it stands for (forged forwarding
/// headers change nothing); entries past `audit.retention` are removed.
async fn refused_floods_and_old_entries_keep_the_audit_log_bounded(mode: Mode) {
    let app = TestApp::spawn_in(mode, |s| s.auth.mode = AuthMode::Keys).await;
    let admin = key(&app, Role::Admin).await;
    const FLOOD: usize = 600;
    let started = Instant::now();
    let sends = (0..FLOOD).map(|i| {
        let mut request = app
            .client
            .post(app.url("/api/v1/campaigns"))
            .header("X-Forwarded-For", format!("198.51.100.{}", i % 250))
            .json(&json!({"name": "flood"}));
        if i % 2 == 0 {
            request = request.bearer_auth(format!("obk_{}", "A".repeat(64)));
        }
        async move { request.send().await.expect("sent").status().as_u16() }
    });
    let statuses = futures::future::join_all(sends).await;
    let elapsed = started.elapsed().as_secs() as usize;
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let entries = audit_entries(&app, &admin).await;
    let strangers: Vec<&Value> = entries.iter().filter(|e| e["key_name"].is_null()).collect();
    assert!(
        strangers.len() <= elapsed + 3,
        "{} entries for a flood of {elapsed} s",
        strangers.len()
    );
    let counted: u64 = strangers
        .iter()
        .map(|e| e["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(counted as usize, FLOOD);

    // Retention: an entry past it goes, a recent one stays.
    let url = app.ctx.settings.storage.url.clone();
    let old = |age: chrono::Duration, route: &str| outbound::domain::access::AuditEntry {
        id: uuid::Uuid::now_v7(),
        at: Utc::now() - age,
        key_id: None,
        key_name: Some("retention".into()),
        method: "POST".into(),
        route: route.into(),
        resource_id: None,
        status: 201,
        count: 1,
    };
    app.ctx
        .store
        .record_audit(&[
            old(chrono::Duration::days(3), "/expired"),
            old(chrono::Duration::hours(1), "/kept"),
        ])
        .await
        .expect("recorded");
    let pruning = TestApp::spawn_in(mode, |s| {
        s.auth.mode = AuthMode::Keys;
        s.storage.url = url;
        s.audit.retention = outbound::settings::Days(Duration::from_secs(2 * 24 * 3600));
    })
    .await;
    let since = Instant::now();
    loop {
        let routes: Vec<String> = audit_entries(&pruning, &admin)
            .await
            .iter()
            .filter_map(|e| e["route"].as_str().map(str::to_owned))
            .collect();
        assert!(routes.contains(&"/kept".to_owned()), "{routes:?}");
        if !routes.contains(&"/expired".to_owned()) {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the expired entry stays"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pruning.shutdown().await;
    app.shutdown().await;
}
in_both_modes!(refused_floods_and_old_entries_keep_the_audit_log_bounded);
