//! The settings' tests: defaults, layering, validation and masking.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]
use std::collections::BTreeSet;

use super::address::MOCK_FETCH_WAIT;
use super::*;

#[test]
fn defaults_are_valid_and_match_the_spec() {
    let settings = Settings::default();
    settings.validate().unwrap();
    assert_eq!(settings.http.bind, "127.0.0.1:8081");
    assert_eq!(settings.storage.url, "sqlite://data/outbound.db");
    assert_eq!(settings.campaign.default_max_concurrent_calls, 500);
    assert_eq!(settings.throttle.global_concurrency, 50_000);
    assert_eq!(
        settings.telephony.mock.min_duration.0,
        Duration::from_secs(1)
    );
}

#[test]
fn layers_apply_in_order_and_env_wins() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "custom.toml",
            "[http]\nbind = \"127.0.0.1:9000\"\n[telephony.mock]\nmin_duration = \"0s\"\nmax_duration = \"50ms\"\n",
        )?;
        jail.set_env("OUTBOUND__HTTP__BIND", "127.0.0.1:9001");
        let settings = Settings::load(Some(Path::new("custom.toml"))).expect("loads");
        assert_eq!(settings.http.bind, "127.0.0.1:9001");
        assert_eq!(
            settings.telephony.mock.max_duration.0,
            Duration::from_millis(50)
        );
        Ok(())
    });
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("bad.toml", "[http]\nbindd = \"x\"\n")?;
        let err = Settings::load(Some(Path::new("bad.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bindd"), "{err}");
        jail.create_file("bad2.toml", "[telephony.mock]\nsuccess_rate = 1.5\n")?;
        let err = Settings::load(Some(Path::new("bad2.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("telephony.mock.success_rate"), "{err}");
        jail.set_env("OUTBOUND__SCHEDULER__INTERVAL", "soon");
        let err = Settings::load(None).unwrap_err().to_string();
        assert!(err.to_lowercase().contains("scheduler.interval"), "{err}");
        Ok(())
    });
}

#[test]
fn memory_bus_refuses_a_role_subset() {
    let mut settings = Settings::default();
    settings.runtime.roles = vec![RoleName::Api];
    let err = settings.validate().unwrap_err().to_string();
    assert!(err.contains("bus.kind"), "{err}");
}

#[test]
fn a_files_roles_stand_unless_the_flag_names_others() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "call.toml",
            "[runtime]\nroles = [\"call\"]\n[bus]\nkind = \"kafka\"\n\
             [limiter]\nurl = \"redis://127.0.0.1/\"\n",
        )?;
        let file = Some(Path::new("call.toml"));
        let settings = Settings::load_for_roles(file, None).expect("loads");
        assert_eq!(settings.runtime.roles, vec![RoleName::Call]);
        let settings = Settings::load_for_roles(file, Some(vec![RoleName::Api, RoleName::Status]))
            .expect("loads");
        assert_eq!(
            settings.runtime.roles,
            vec![RoleName::Api, RoleName::Status]
        );
        let settings = Settings::load_for_roles(None, None).expect("loads");
        assert_eq!(settings.runtime.roles, vec![RoleName::All]);
        Ok(())
    });
}

/// Dotted paths of every key of a serialized value; `null` (an unset optional key) counts.
fn key_paths(value: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let serde_json::Value::Object(map) = value {
        for (key, child) in map {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            if child.is_object() {
                key_paths(child, &path, out);
            } else {
                out.insert(path);
            }
        }
    }
}

/// Dotted paths of the keys a TOML text sets or shows commented out (`# key = value`).
fn documented_keys(text: &str) -> BTreeSet<String> {
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = header.to_owned();
            continue;
        }
        let assignment = line.strip_prefix('#').map_or(line, str::trim);
        let Some((key, _)) = assignment.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            keys.insert(format!("{section}.{key}"));
        }
    }
    keys
}

#[test]
fn default_toml_documents_every_key() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"))
        .expect("config/default.toml exists");
    // Unset optional keys are not serialized: set each, so every key is expected. A new
    // optional key belongs here too.
    let mut every_key_set = Settings::default();
    every_key_set.telephony.mock.seed = Some(42);
    every_key_set.telephony.mock.journal = Some(String::new());
    every_key_set.log.format = Some(LogFormat::Json);
    every_key_set.otel.endpoint = Some(String::new());
    every_key_set.compliance.max_attempts_per_number = Some(NumberCapSettings {
        count: 3,
        per: "24h".into(),
    });
    every_key_set
        .compliance
        .zone_overrides
        .insert("1808".into(), vec!["Pacific/Honolulu".into()]);
    let mut expected = BTreeSet::new();
    key_paths(
        &serde_json::to_value(every_key_set).expect("serializes"),
        "",
        &mut expected,
    );
    let documented = documented_keys(&text);
    // A key holding a table (`max_attempts_per_number = {...}`) documents its fields.
    let within = |key: &String, table: &String| key.starts_with(&format!("{table}."));
    let missing: Vec<_> = expected
        .iter()
        .filter(|key| !documented.contains(*key) && !documented.iter().any(|t| within(key, t)))
        .collect();
    let unknown: Vec<_> = documented
        .iter()
        .filter(|key| !expected.contains(*key) && !expected.iter().any(|k| within(k, key)))
        .collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "config/default.toml lacks {missing:?} and names unknown {unknown:?}"
    );
}

#[test]
fn default_toml_matches_defaults() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"))
        .expect("config/default.toml exists");
    let parsed: Settings = Figment::from(Toml::string(&text))
        .extract()
        .expect("parses");
    assert_eq!(parsed, Settings::default());
}

#[test]
fn the_distributed_example_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/distributed.toml");
    let mut settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
        .merge(Toml::file_exact(path))
        .extract()
        .expect("parses");
    settings.runtime.roles = vec![RoleName::Call];
    settings
        .validate()
        .expect("a role subset is valid with kafka");
    settings.bus.session_timeout = GoDuration(Duration::from_millis(500));
    let err = settings.validate().unwrap_err().to_string();
    assert!(err.contains("bus.session_timeout"), "{err}");
}

#[test]
fn addresses_are_parsed_by_one_rule_each() {
    assert_eq!(
        StoreAddress::parse("sqlite://data/x.db"),
        Ok(StoreAddress::Sqlite {
            path: "data/x.db".into()
        })
    );
    assert!(matches!(
        StoreAddress::parse("postgresql://u:p@h/db"),
        Ok(StoreAddress::Postgres { .. })
    ));
    for bad in ["sqlite://", "mysql://h/db", ""] {
        assert!(StoreAddress::parse(bad).is_err(), "{bad:?}");
    }
    let refused = StoreAddress::parse("mysql://u:secret@h/db").unwrap_err();
    assert!(!refused.contains("secret"), "{refused}");
    assert_eq!(LimiterAddress::parse("local"), Ok(LimiterAddress::Local));
    assert!(matches!(
        LimiterAddress::parse("rediss://h:6380/0"),
        Ok(LimiterAddress::Redis { .. })
    ));
    assert!(LimiterAddress::parse("memcached://h").is_err());
    assert_eq!(TimelineAddress::parse("store"), Ok(TimelineAddress::Store));
    assert!(matches!(
        TimelineAddress::parse("scylla://h1:9042,h2/ks"),
        Ok(TimelineAddress::Scylla(_))
    ));
    assert!(TimelineAddress::parse("cassandra://h/ks").is_err());
}

#[test]
fn the_mock_brokers_run_every_role_in_one_process_and_fetch_quickly() {
    let mut settings = Settings::default();
    settings.bus.kind = BusKind::Kafka;
    settings.bus.brokers = MOCK_BROKERS.into();
    settings.limiter.url = "redis://127.0.0.1/".into();
    assert_eq!(settings.bus.address(), BusAddress::MockKafka);
    assert_eq!(settings.bus.effective_fetch_wait(), MOCK_FETCH_WAIT);
    settings.validate().expect("all roles in one process");
    settings.runtime.roles = vec![RoleName::Call];
    let err = settings.validate().unwrap_err().to_string();
    assert!(err.contains("bus.brokers"), "{err}");
    settings.bus.fetch_wait = GoDuration(Duration::from_millis(7));
    assert_eq!(
        settings.bus.effective_fetch_wait(),
        Duration::from_millis(7)
    );
    settings.bus.brokers = "k1:9092,k2:9092".into();
    assert_eq!(
        settings.bus.address(),
        BusAddress::Kafka {
            brokers: "k1:9092,k2:9092".into()
        }
    );
    assert_eq!(
        settings.bus.effective_fetch_wait(),
        Duration::from_millis(7)
    );
}

#[test]
fn credentials_in_every_url_setting_are_masked_in_debug_and_dump() {
    assert_eq!(
        mask_url("postgres://u:secret@h:5432/db?sslmode=require&password=other"),
        "postgres://u:***@h:5432/db?sslmode=require&password=***"
    );
    assert_eq!(
        mask_url("redis://:secret@h:6379/0"),
        "redis://:***@h:6379/0"
    );
    assert_eq!(
        mask_url("https://h/path@x?auth_token=secret#f"),
        "https://h/path@x?auth_token=***#f"
    );
    assert_eq!(
        mask_url("host=db user=u password=secret dbname=x"),
        "host=db user=u password=*** dbname=x"
    );
    assert_eq!(mask_url("scylla://h:9042/ks"), "scylla://h:9042/ks");
    let mut settings = Settings::default();
    settings.storage.url = "postgres://u:pgsecret@h/db?sslpassword=pgsslsecret".into();
    settings.limiter.url = "rediss://:redissecret@h:6380".into();
    settings.timeline.url = "scylla://u:scyllasecret@h:9042/ks".into();
    settings.otel.endpoint = Some("https://u:otelsecret@collector:4318".into());
    settings.telephony.twilio.api_base = "https://u:apisecret@carrier.example".into();
    settings.telephony.twilio.public_url = "https://u:publicsecret@dialer.example".into();
    settings.telephony.twilio.auth_token = Secret::new("tokensecret");
    let debug = format!("{settings:?}");
    let dump = settings.dump().unwrap();
    for secret in [
        "pgsecret",
        "pgsslsecret",
        "redissecret",
        "scyllasecret",
        "otelsecret",
        "apisecret",
        "publicsecret",
        "tokensecret",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
        assert!(!dump.contains(secret), "{secret} in {dump}");
    }
    assert!(debug.contains("postgres://u:***@h/db"), "{debug}");
    assert!(dump.contains("rediss://:***@h:6380"), "{dump}");
}

#[test]
fn dump_masks_passwords() {
    assert_eq!(
        mask_url("postgres://u:secret@h/db"),
        "postgres://u:***@h/db"
    );
    assert_eq!(mask_url("sqlite://data/x.db"), "sqlite://data/x.db");
}

#[test]
fn numbers_from_the_environment_stay_strings() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("OUTBOUND__TELEPHONY__TWILIO__FROM", "+15555550100");
        jail.set_env("OUTBOUND__TELEPHONY__TWILIO__AUTH_TOKEN", "12345");
        let settings: Settings = Settings::figment(None).extract()?;
        assert_eq!(settings.telephony.twilio.from, "+15555550100");
        assert_eq!(settings.telephony.twilio.auth_token.expose(), "12345");
        Ok(())
    });
}

#[test]
fn kafka_properties_pass_through_with_their_secrets_masked() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "kafka.toml",
            "[bus]\nkind = \"kafka\"\nbrokers = \"b1:9093\"\n[bus.properties]\n\
             \"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"PLAIN\"\n\
             \"sasl.username\" = \"svc\"\n\"sasl.password\" = \"hunter2\"\n\
             \"socket.timeout.ms\" = 30000\n",
        )?;
        let settings = Settings::load(Some(Path::new("kafka.toml")))
            .map_err(|e| figment::Error::from(e.to_string()))?;
        let properties = &settings.bus.properties;
        assert_eq!(properties["sasl.password"].value(), "hunter2");
        assert_eq!(properties["socket.timeout.ms"].value(), "30000");
        let dump = settings
            .dump()
            .map_err(|e| figment::Error::from(e.to_string()))?;
        assert!(!dump.contains("hunter2"), "{dump}");
        assert!(dump.contains("\"sasl.password\" = \"***\""), "{dump}");
        assert!(dump.contains("\"sasl.username\" = \"svc\""), "{dump}");
        assert!(!format!("{settings:?}").contains("hunter2"));

        jail.create_file(
            "reserved.toml",
            "[bus.properties]\n\"group.id\" = \"mine\"\n",
        )?;
        let err = Settings::load(Some(Path::new("reserved.toml")))
            .expect_err("a reserved property is refused")
            .to_string();
        assert!(
            err.contains("bus.properties") && err.contains("group.id"),
            "{err}"
        );
        Ok(())
    });
    assert!(is_secret_property("ssl.key.password"));
    assert!(is_secret_property("sasl.oauthbearer.client.secret"));
    assert!(!is_secret_property("ssl.ca.location"));
}

#[test]
fn auto_auth_waives_keys_only_on_a_loopback_bind_without_a_public_url() {
    let mut settings = Settings::default();
    assert_eq!(settings.auth.mode, AuthMode::Auto);
    for (ip, policy) in [
        ("127.0.0.1", KeyPolicy::UnlessLocal),
        ("127.0.0.53", KeyPolicy::UnlessLocal),
        ("::1", KeyPolicy::UnlessLocal),
        ("0.0.0.0", KeyPolicy::Always),
        ("::", KeyPolicy::Always),
        ("10.1.2.3", KeyPolicy::Always),
    ] {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        assert_eq!(settings.key_policy(ip), policy, "{ip}");
    }
    let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    for url in [
        "https://dialer.example.com",
        "https://abc.trycloudflare.com/x",
        "http://10.0.0.5:8081",
        "https://u:p@dialer.example.com",
    ] {
        settings.telephony.twilio.public_url = url.into();
        assert_eq!(settings.key_policy(loopback), KeyPolicy::Always, "{url}");
    }
    // A carrier simulator on this host reaches the listener on loopback: nothing opens.
    for url in [
        "http://127.0.0.1:8081",
        "http://localhost:9000/",
        "http://[::1]:80",
    ] {
        settings.telephony.twilio.public_url = url.into();
        assert_eq!(
            settings.key_policy(loopback),
            KeyPolicy::UnlessLocal,
            "{url}"
        );
    }
    settings.telephony.twilio.public_url = String::new();
    settings.auth.mode = AuthMode::Keys;
    assert_eq!(settings.key_policy(loopback), KeyPolicy::Always);
    settings.auth.mode = AuthMode::Off;
    assert_eq!(
        settings.key_policy("0.0.0.0".parse().unwrap()),
        KeyPolicy::Never
    );
}

#[test]
fn a_split_call_role_on_a_carrier_keeps_one_pace_and_rings_at_least_15_seconds() {
    let mut settings = Settings::default();
    settings.telephony.provider = crate::settings::ProviderName::Twilio;
    settings.telephony.twilio.auth_token = Secret::new("t");
    settings.telephony.twilio.account_sid = "AC0123456789abcdef0123456789abcdef".into();
    settings.telephony.twilio.from = "+15555550100".into();
    settings.telephony.twilio.public_url = "https://dialer.example.com".into();
    settings.bus.kind = BusKind::Kafka;
    settings.bus.brokers = "kafka-1:9092".into();
    settings
        .validate()
        .expect("every role in one process paces alone");
    settings.runtime.roles = vec![RoleName::Api, RoleName::Status];
    settings.validate().expect("no call role, no pace");
    settings.runtime.roles = vec![RoleName::Call];
    let err = settings.validate().unwrap_err().to_string();
    assert!(err.contains("limiter.url"), "{err}");
    settings.limiter.url = "redis://127.0.0.1/".into();
    settings.validate().expect("a shared limiter");
    settings.telephony.twilio.ring_timeout = Duration::from_secs(14).into();
    let err = settings.validate().unwrap_err().to_string();
    assert!(err.contains("telephony.twilio.ring_timeout"), "{err}");
    settings.telephony.twilio.ring_timeout = Duration::from_secs(15).into();
    settings.telephony.twilio.place_deadline = Duration::ZERO.into();
    let err = settings.validate().unwrap_err().to_string();
    assert!(err.contains("telephony.twilio.place_deadline"), "{err}");
}

#[test]
fn the_carriers_auth_token_never_shows() {
    let mut settings = Settings::default();
    settings.telephony.provider = crate::settings::ProviderName::Twilio;
    settings.telephony.twilio.auth_token = Secret::new("s3cr3t-token");
    settings.telephony.twilio.account_sid = "AC0123456789abcdef0123456789abcdef".into();
    settings.telephony.twilio.from = "+15555550100".into();
    settings.telephony.twilio.public_url = "https://dialer.example.com".into();
    settings.validate().unwrap();
    let dump = settings.dump().unwrap();
    assert!(!dump.contains("s3cr3t"), "{dump}");
    assert!(dump.contains("auth_token = \"***\""), "{dump}");
    assert!(!format!("{settings:?}").contains("s3cr3t"));

    settings.telephony.twilio.auth_token = Secret::new(" ");
    let err = settings.validate().unwrap_err().to_string();
    assert!(err.contains("telephony.twilio.auth_token"), "{err}");
    settings.telephony.twilio.auth_token = Secret::new("t");
    for (key, bad) in [
        ("account_sid", "AC123"),
        ("from", "555-0100"),
        ("public_url", "dialer.example.com"),
    ] {
        let mut copy = settings.clone();
        match key {
            "account_sid" => copy.telephony.twilio.account_sid = bad.into(),
            "from" => copy.telephony.twilio.from = bad.into(),
            _ => copy.telephony.twilio.public_url = bad.into(),
        }
        let err = copy.validate().unwrap_err().to_string();
        assert!(err.contains(&format!("telephony.twilio.{key}")), "{err}");
    }
    let mut copy = settings.clone();
    copy.telephony.twilio.cps = 0.0;
    assert!(copy.validate().is_err());
}

#[test]
fn enumerated_keys_name_their_choices() {
    for (toml, key, choices) in [
        (
            "[telephony]\nprovider = \"nexmo\"",
            "telephony.provider",
            "`mock` or `twilio`",
        ),
        (
            "[telephony.twilio]\nmachine_detection = \"on\"",
            "telephony.twilio.machine_detection",
            "`off`, `Enable`, `DetectMessageEnd`",
        ),
    ] {
        let err = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(toml))
            .extract::<Settings>()
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains(choices), "{err}");
    }
}
