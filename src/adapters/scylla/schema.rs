//! What the Scylla timeline needs before it talks to a cluster: the schema under `cql/` as
//! statements, and the text of every statement the adapter prepares. All pure, so it is
//! unit-tested without a server. Where the cluster is (the `timeline.url`) is read with the
//! settings.

pub use crate::settings::scylla_url::{ScyllaUrl, UrlError};

/// The CQL schema files, compiled in and applied in this order.
pub const SCHEMA_FILES: [(&str, &str); 4] = [
    (
        "010_keyspace.cql",
        include_str!("../../../cql/010_keyspace.cql"),
    ),
    (
        "020_call_attempts.cql",
        include_str!("../../../cql/020_call_attempts.cql"),
    ),
    (
        "030_campaign_attempts.cql",
        include_str!("../../../cql/030_campaign_attempts.cql"),
    ),
    (
        "040_attempt_details.cql",
        include_str!("../../../cql/040_attempt_details.cql"),
    ),
];

/// The table and column an `ALTER TABLE {keyspace}.{table} ADD {column} {type}` statement adds;
/// `None` for any other statement. CQL has no `ADD IF NOT EXISTS`, so the migration asks the
/// cluster's schema first and skips a column already there.
pub fn added_column(statement: &str) -> Option<(String, String)> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    match words.as_slice() {
        [alter, table_word, qualified, add, column, _type]
            if alter.eq_ignore_ascii_case("ALTER")
                && table_word.eq_ignore_ascii_case("TABLE")
                && add.eq_ignore_ascii_case("ADD") =>
        {
            let (_, table) = qualified.split_once('.')?;
            Some((table.to_owned(), (*column).to_owned()))
        }
        _ => None,
    }
}

/// Partitions per campaign in `campaign_attempts`; fixed by the data already written.
pub const BUCKETS: u8 = 16;

/// Splits a CQL script into statements: `;` ends one, except inside quotes; `--` and `//`
/// comments run to the end of the line and `/* */` comments to their end. Statements come back
/// trimmed, without the `;`, and empty ones are dropped.
pub fn split_statements(script: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                current.push(c);
                // A doubled quote inside is an escaped quote: the loop sees it as the end of one
                // quoted run and the start of the next, which keeps both characters.
                for inner in chars.by_ref() {
                    current.push(inner);
                    if inner == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = '\0';
                for inner in chars.by_ref() {
                    if previous == '*' && inner == '/' {
                        break;
                    }
                    previous = inner;
                }
                current.push(' ');
            }
            ';' => {
                push_statement(&mut statements, &current);
                current.clear();
            }
            other => current.push(other),
        }
    }
    push_statement(&mut statements, &current);
    statements
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if c == '\n' {
            break;
        }
    }
}

fn push_statement(statements: &mut Vec<String>, text: &str) {
    let text = text.trim();
    if !text.is_empty() {
        statements.push(text.to_owned());
    }
}

/// Every schema statement for `keyspace`, in order, with the file it comes from.
pub fn schema_statements(keyspace: &str) -> Vec<(&'static str, String)> {
    SCHEMA_FILES
        .iter()
        .flat_map(|(file, script)| {
            split_statements(script)
                .into_iter()
                .map(move |statement| (*file, statement.replace("{keyspace}", keyspace)))
        })
        .collect()
}

/// The columns `040_attempt_details.cql` adds to both tables, in the order the adapter binds
/// and reads them.
const DETAILS: &str = "carrier, answered_by, response, digits, voicemail_left";

/// The statements the adapter prepares, for one keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statements {
    pub insert_call_attempt: String,
    pub insert_campaign_attempt: String,
    pub select_call_attempts: String,
    pub select_campaign_bucket: String,
}

impl Statements {
    pub fn new(keyspace: &str) -> Self {
        Self {
            insert_call_attempt: format!(
                "INSERT INTO {keyspace}.call_attempts (call_id, attempt, campaign_id, status, \
                 error, started_at, ended_at, duration_ms, {DETAILS}) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            insert_campaign_attempt: format!(
                "INSERT INTO {keyspace}.campaign_attempts (campaign_id, bucket, call_id, \
                 attempt, status, error, started_at, ended_at, duration_ms, {DETAILS}) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            select_call_attempts: format!(
                "SELECT campaign_id, attempt, status, error, started_at, ended_at, duration_ms, \
                 {DETAILS} FROM {keyspace}.call_attempts WHERE call_id = ?"
            ),
            select_campaign_bucket: format!(
                "SELECT call_id, attempt, status, error, started_at, ended_at, duration_ms, \
                 {DETAILS} FROM {keyspace}.campaign_attempts WHERE campaign_id = ? AND bucket = ?"
            ),
        }
    }
}

/// The `campaign_attempts` partition of a call: its id's last byte, which UUID v7 (and v4)
/// fill at random, so a campaign's calls spread evenly.
pub fn bucket_of(call_id: &uuid::Uuid) -> u8 {
    call_id.as_bytes()[15] % BUCKETS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_around_comments_and_quotes() {
        let script = "-- heading; not a statement\n\
            CREATE KEYSPACE k WITH replication = {'class': 'Simple;Strategy'}; // trailing\n\
            /* block; comment */ CREATE TABLE k.t (a int PRIMARY KEY, b text);\n\
            INSERT INTO k.t (a, b) VALUES (1, 'it''s -- fine');\n\
            ;;  \n-- the end";
        assert_eq!(
            split_statements(script),
            vec![
                "CREATE KEYSPACE k WITH replication = {'class': 'Simple;Strategy'}",
                "CREATE TABLE k.t (a int PRIMARY KEY, b text)",
                "INSERT INTO k.t (a, b) VALUES (1, 'it''s -- fine')",
            ]
        );
    }

    #[test]
    fn schema_names_the_keyspace_everywhere() {
        let statements = schema_statements("timeline_test");
        assert_eq!(statements.len(), 13);
        assert_eq!(statements[0].0, "010_keyspace.cql");
        assert!(statements[0]
            .1
            .starts_with("CREATE KEYSPACE IF NOT EXISTS timeline_test"));
        assert!(statements[1]
            .1
            .starts_with("CREATE TABLE IF NOT EXISTS timeline_test.call_attempts"));
        assert!(statements[2]
            .1
            .starts_with("CREATE TABLE IF NOT EXISTS timeline_test.campaign_attempts"));
        for (_, statement) in &statements {
            assert!(!statement.contains("{keyspace}"), "{statement}");
            assert!(!statement.contains("--"), "{statement}");
            // Applied again, every statement changes nothing: by its own words, or because the
            // migration skips a column already there.
            assert!(
                statement.contains("IF NOT EXISTS") || added_column(statement).is_some(),
                "{statement}"
            );
        }
    }

    #[test]
    fn added_columns_are_read_from_their_statement() {
        assert_eq!(
            added_column("ALTER TABLE ks.call_attempts ADD answered_by text"),
            Some(("call_attempts".to_owned(), "answered_by".to_owned()))
        );
        assert_eq!(
            added_column("alter table ks.t add voicemail_left boolean"),
            Some(("t".to_owned(), "voicemail_left".to_owned()))
        );
        for other in [
            "CREATE TABLE IF NOT EXISTS ks.t (a int PRIMARY KEY)",
            "ALTER TABLE ks.t DROP answered_by",
            "ALTER TABLE t ADD answered_by text",
            "ALTER TABLE ks.t WITH comment = 'x'",
        ] {
            assert_eq!(added_column(other), None, "{other}");
        }
        let added: Vec<(String, String)> = schema_statements("ks")
            .iter()
            .filter_map(|(_, statement)| added_column(statement))
            .collect();
        assert_eq!(added.len(), 10);
        // Every column the details name is added to both tables.
        for table in ["call_attempts", "campaign_attempts"] {
            for column in DETAILS.split(", ") {
                assert!(
                    added.contains(&(table.to_owned(), column.to_owned())),
                    "{table}.{column}"
                );
            }
        }
    }

    #[test]
    fn statements_match_the_schema_columns() {
        let statements = Statements::new("ks");
        // Placeholders and columns agree, so a prepared insert binds every column.
        for text in [
            &statements.insert_call_attempt,
            &statements.insert_campaign_attempt,
        ] {
            let columns = text
                .split_once('(')
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(columns, _)| columns.split(',').count())
                .unwrap_or_default();
            assert_eq!(columns, text.matches('?').count(), "{text}");
        }
        assert!(statements.insert_call_attempt.contains("ks.call_attempts"));
        assert!(statements
            .select_campaign_bucket
            .ends_with("WHERE campaign_id = ? AND bucket = ?"));
        // Every column the statements name exists in the table they name.
        let schema = schema_statements("ks");
        let added = |table: &str| -> String {
            schema
                .iter()
                .filter(|(_, s)| added_column(s).is_some_and(|(t, _)| t == table))
                .map(|(_, s)| s.clone() + " ")
                .collect()
        };
        let call_table = schema[1].1.clone() + &added("call_attempts");
        let campaign_table = schema[2].1.clone() + &added("campaign_attempts");
        for (statement, table) in [
            (&statements.insert_call_attempt, &call_table),
            (&statements.insert_campaign_attempt, &campaign_table),
        ] {
            let columns = statement
                .split_once('(')
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(columns, _)| columns)
                .unwrap_or_default();
            for column in columns.split(',') {
                assert!(
                    table.contains(&format!("{} ", column.trim())),
                    "{column} missing from {table}"
                );
            }
        }
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        let id = uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00ff);
        assert_eq!(bucket_of(&id), 0xff % BUCKETS);
        let mut seen = [0u32; BUCKETS as usize];
        for _ in 0..4_000 {
            seen[bucket_of(&uuid::Uuid::now_v7()) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 100), "{seen:?}");
    }
}
