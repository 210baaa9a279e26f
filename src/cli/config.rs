//! `barrage watch --config FILE`: the TOML file, read and checked.
//!
//! Every key is optional, and an unknown key is an error (a typo must not
//! be silently ignored). Every error names the file, the line and column,
//! and the key: `watch.toml:1:10: rooms: invalid type: string "288016",
//! expected u64`. A file is checked whole when it is read: the forms of
//! its values here, their ranges by the settings that use them (an error
//! found there is located in the file too, see [`FileConfig::place_of`]).
//!
//! The file is read at start and on SIGHUP. A reload applies its rooms;
//! [`FileConfig::changed_settings`] says which other settings changed and
//! so wait for a restart.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::monitor::shard::Shard;

use super::watch::{ForeignChatArg, FormatArg, parse_room, parse_server, parse_web_base};
use super::{LogLevel, host_port, parse_milliseconds};
use crate::http::Url;
use crate::monitor::Endpoint;

/// The file as written: what TOML and serde check.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rooms: Vec<RoomEntry>,
    #[serde(default)]
    servers: Vec<String>,
    ca_file: Option<PathBuf>,
    /// `false`: do not look up room ids (`--resolve never`).
    resolve: Option<bool>,
    status_check: Option<f64>,
    web_base: Option<String>,
    foreign_chat: Option<ForeignChatArg>,
    output: Option<PathBuf>,
    format: Option<FormatArg>,
    types: Option<Vec<String>>,
    heartbeat: Option<f64>,
    idle_timeout: Option<f64>,
    connect_timeout: Option<f64>,
    login_timeout: Option<f64>,
    flush_timeout: Option<f64>,
    connect_rate: Option<f64>,
    metrics: Option<String>,
    shard: Option<String>,
    log_level: Option<LogLevel>,
    status_interval: Option<f64>,
    /// Milliseconds, like `--poll-interval` (the unit is in the name: every
    /// other duration in the file is in seconds).
    poll_interval_ms: Option<f64>,
}

/// A room in the file: a number, or a string as on the command line (a
/// number or an address), read at once so that an error points at it.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[serde(transparent)]
struct RoomEntry(u64);

impl<'de> Deserialize<'de> for RoomEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RoomEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a room number (288016) or address (\"https://www.douyu.com/288016\")")
            }
            fn visit_u64<E: serde::de::Error>(self, id: u64) -> Result<RoomEntry, E> {
                self.visit_str(&id.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, id: i64) -> Result<RoomEntry, E> {
                self.visit_str(&id.to_string())
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RoomEntry, E> {
                parse_room(text).map(RoomEntry).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The file, checked: each value in the form `watch` uses.
#[derive(Debug, Default)]
pub(crate) struct FileConfig {
    pub(crate) rooms: Vec<u64>,
    pub(crate) servers: Vec<Endpoint>,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) resolve: Option<bool>,
    pub(crate) status_check: Option<Duration>,
    pub(crate) web_base: Option<Url>,
    pub(crate) foreign_chat: Option<ForeignChatArg>,
    pub(crate) output: Option<PathBuf>,
    pub(crate) format: Option<FormatArg>,
    pub(crate) types: Option<Vec<String>>,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) login_timeout: Option<Duration>,
    pub(crate) flush_timeout: Option<Duration>,
    pub(crate) connect_rate: Option<f64>,
    /// `HOST:PORT`, resolved when the endpoint starts.
    pub(crate) metrics: Option<String>,
    pub(crate) shard: Option<Shard>,
    pub(crate) log_level: Option<LogLevel>,
    pub(crate) status_interval: Option<Duration>,
    pub(crate) poll_interval: Option<Duration>,
    /// What the file said, key by key, to tell what a reload changed.
    table: toml::Table,
    /// `file:line:column` of each key, for errors found later.
    places: BTreeMap<String, String>,
}

impl FileConfig {
    /// Reads and checks the file; every error is one line naming the file.
    pub(crate) fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        FileConfig::parse(&text, &path.display().to_string())
    }

    /// Parses and checks the text of a config file called `name`.
    pub(crate) fn parse(text: &str, name: &str) -> Result<FileConfig, String> {
        let raw: RawFile = toml::from_str(text).map_err(|e| located_error(text, name, &e))?;
        let keys = key_spans(text);
        let places: BTreeMap<String, String> = keys
            .iter()
            .map(|(key, span)| {
                let (line, column) = line_column(text, span.start);
                (key.clone(), format!("{name}:{line}:{column}"))
            })
            .collect();
        let error = |key: &str, message: String| match places.get(key) {
            Some(place) => format!("{place}: {key}: {message}"),
            None => format!("{name}: {key}: {message}"),
        };
        let rooms = raw.rooms.iter().map(|room| room.0).collect();
        let servers = raw
            .servers
            .iter()
            .map(|server| parse_server(server))
            .collect::<Result<_, _>>()
            .map_err(|e| error("servers", e))?;
        let web_base = raw.web_base.as_deref().map(parse_web_base).transpose().map_err(|e| error("web_base", e))?;
        if let Some(metrics) = &raw.metrics {
            host_port(metrics, true).map_err(|e| error("metrics", e))?;
        }
        let shard = raw.shard.as_deref().map(str::parse::<Shard>).transpose().map_err(|e| error("shard", e))?;
        let seconds = |value: Option<f64>, key: &str| -> Result<Option<Duration>, String> {
            value
                .map(|secs| {
                    Duration::try_from_secs_f64(secs)
                        .map_err(|_| error(key, format!("expected a number of seconds, e.g. 45 or 0.5, not {secs}")))
                })
                .transpose()
        };
        let poll_interval = raw
            .poll_interval_ms
            .map(|ms| parse_milliseconds(&ms.to_string()).map_err(|e| error("poll_interval_ms", e)))
            .transpose()?;
        let table = toml::Table::try_from(&raw).map_err(|e| format!("{name}: {e}"))?;
        Ok(FileConfig {
            heartbeat: seconds(raw.heartbeat, "heartbeat")?,
            idle_timeout: seconds(raw.idle_timeout, "idle_timeout")?,
            connect_timeout: seconds(raw.connect_timeout, "connect_timeout")?,
            login_timeout: seconds(raw.login_timeout, "login_timeout")?,
            flush_timeout: seconds(raw.flush_timeout, "flush_timeout")?,
            status_interval: seconds(raw.status_interval, "status_interval")?,
            status_check: seconds(raw.status_check, "status_check")?,
            poll_interval,
            shard,
            rooms,
            servers,
            ca_file: raw.ca_file,
            resolve: raw.resolve,
            web_base,
            foreign_chat: raw.foreign_chat,
            output: raw.output,
            format: raw.format,
            types: raw.types,
            connect_rate: raw.connect_rate,
            metrics: raw.metrics,
            log_level: raw.log_level,
            table,
            places,
        })
    }

    /// Where the file sets `setting` (as a `SettingError` names it), as
    /// `file:line:column`, if it does.
    pub(crate) fn place_of(&self, setting: &str) -> Option<&str> {
        let key = if setting == "poll_interval" { "poll_interval_ms" } else { setting };
        self.places.get(key).map(String::as_str)
    }

    /// The keys other than `rooms` whose values differ in `newer`.
    pub(crate) fn changed_settings(&self, newer: &FileConfig) -> Vec<String> {
        let keys: std::collections::BTreeSet<&String> = self.table.keys().chain(newer.table.keys()).collect();
        keys.into_iter()
            .filter(|key| *key != "rooms" && self.table.get(*key) != newer.table.get(*key))
            .cloned()
            .collect()
    }
}

/// A TOML or serde error as one line: file, line, column, key, message.
fn located_error(text: &str, name: &str, error: &toml::de::Error) -> String {
    let message = error.message().lines().next().unwrap_or("invalid TOML").to_string();
    let Some(span) = error.span() else { return format!("{name}: {message}") };
    let (line, column) = line_column(text, span.start);
    // The top-level key whose entry holds the error (none for a syntax error).
    let key = key_spans(text).into_iter().find(|(_, entry)| entry.start <= span.start && span.end <= entry.end);
    match key {
        // "unknown field `romos`" names its key already.
        Some((key, _)) if !message.contains(&format!("`{key}`")) => {
            format!("{name}:{line}:{column}: {key}: {message}")
        }
        _ => format!("{name}:{line}:{column}: {message}"),
    }
}

/// Each top-level key and the bytes of its entry, from the start of the key
/// to the end of its value; none if the text is not TOML.
fn key_spans(text: &str) -> Vec<(String, Range<usize>)> {
    let Ok(table) = toml::de::DeTable::parse(text) else { return Vec::new() };
    table.get_ref().iter().map(|(key, value)| (key.get_ref().to_string(), key.span().start..value.span().end)).collect()
}

/// The 1-based line and column (in characters) of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_into_its_form() {
        let text = r#"
            rooms = [288016, 9999]
            servers = ["127.0.0.1:8601"]
            output = "/tmp/out.jsonl"
            format = "json"
            types = ["chatmsg", "dgb"]
            heartbeat = 30
            idle_timeout = 90.5
            connect_timeout = 3
            login_timeout = 20
            flush_timeout = 5
            connect_rate = 50
            metrics = "localhost:9100"
            shard = "1/2"
            log_level = "debug"
            status_interval = 10
            poll_interval_ms = 20
        "#;
        let config = FileConfig::parse(text, "watch.toml").unwrap();
        assert_eq!(config.rooms, [288016, 9999]);
        let web = "rooms = [6657, \"https://www.douyu.com/topic/x?rid=288016\"]\nservers = [\"wss://h:8502\"]\n\
                   ca_file = \"ca.pem\"\nresolve = false\nstatus_check = 600\nweb_base = \"http://127.0.0.1:8080\"\n\
                   foreign_chat = \"write\"";
        let with_web = FileConfig::parse(web, "watch.toml").unwrap();
        assert_eq!(with_web.rooms, [6657, 288016]);
        assert_eq!(with_web.servers[0].to_string(), "wss://h:8502/");
        assert_eq!((with_web.resolve, with_web.status_check), (Some(false), Some(Duration::from_secs(600))));
        assert_eq!(with_web.web_base.as_ref().unwrap().to_string(), "http://127.0.0.1:8080/");
        assert_eq!(with_web.foreign_chat, Some(ForeignChatArg::Write));
        assert_eq!(config.log_level, Some(LogLevel::Debug));
        assert_eq!(config.idle_timeout, Some(Duration::from_millis(90_500)));
        assert_eq!(config.poll_interval, Some(Duration::from_millis(20)));
        assert_eq!(config.shard, Some(Shard { index: 1, count: 2 }));
        assert_eq!(config.metrics.as_deref(), Some("localhost:9100"));
        assert_eq!(config.place_of("heartbeat"), Some("watch.toml:7:13"));
        assert_eq!(config.place_of("poll_interval"), Some("watch.toml:17:13"));
    }

    #[test]
    fn an_error_names_the_file_line_column_and_key() {
        let error = |text: &str| FileConfig::parse(text, "watch.toml").unwrap_err();
        assert_eq!(
            error("rooms = [true]"),
            "watch.toml:1:10: rooms: invalid type: boolean `true`, expected a room number (288016) or address \
             (\"https://www.douyu.com/288016\")"
        );
        assert!(
            error("heartbeat = 30\nrooms = [\n  1,\n  \"x\",\n]")
                .starts_with("watch.toml:4:3: rooms: \"x\" is not a Douyu room: give its number"),
            "{}",
            error("heartbeat = 30\nrooms = [\n  1,\n  \"x\",\n]")
        );
        assert!(
            error("rooms = [1]\nromos = [2]").starts_with("watch.toml:2:1: unknown field `romos`, expected one of")
        );
        assert_eq!(error("rooms = ["), "watch.toml:1:10: unclosed array, expected `]`");
        assert!(error("\n\nrooms = [0]").starts_with("watch.toml:3:10: rooms: \"0\" is not a Douyu room"));
        assert_eq!(
            error("shard = \"4/4\""),
            "watch.toml:1:1: shard: expected K/N with 0 <= K < N, e.g. 0/4, not \"4/4\""
        );
        assert!(error("heartbeat = -1").starts_with("watch.toml:1:1: heartbeat: expected a number of seconds"));
        assert!(error("poll_interval_ms = -5").starts_with("watch.toml:1:1: poll_interval_ms: expected a number of"));
        assert!(error("servers = [\"h:99999\"]").contains("servers: port 99999 of \"h:99999\" is out of range"));
        assert!(error("web_base = \"ftp://x\"").starts_with("watch.toml:1:1: web_base: "));
        assert!(error("metrics = \"9100\"").starts_with("watch.toml:1:1: metrics: expected HOST:PORT"));
        assert!(error("format = \"xml\"").starts_with("watch.toml:1:10: format: unknown variant `xml`"));
    }

    #[test]
    fn a_reload_tells_which_settings_changed() {
        let old = FileConfig::parse("rooms = [1]\nheartbeat = 45\ntypes = [\"chatmsg\"]", "a").unwrap();
        let new =
            FileConfig::parse("rooms = [2, 3]\nheartbeat = 30\ntypes = [\"chatmsg\"]\nshard = \"0/2\"", "a").unwrap();
        assert_eq!(old.changed_settings(&new), ["heartbeat", "shard"]);
        assert!(new.changed_settings(&new).is_empty());
    }
}
