//! The `barrage` binary as a person meets it: exit statuses, error lines,
//! logging, colour, completions and the manual.
//!
//! Every mistake is one line on stderr, `barrage: error: …`, that says what
//! was expected and where; 2 for a mistake on the command line or in a
//! config file, 1 for a failure while running.

mod common;

use std::net::TcpListener;

use common::process::*;

/// A port nobody listens on, so a case that wrongly starts cannot connect
/// anywhere (and then fails to exit, which the deadline reports).
const CLOSED: &str = "127.0.0.1:1";

/// Runs each case and checks the exit status and the one error line.
fn check_errors(code: i32, cases: &[(&[&str], &[&str])]) {
    for (args, mentions) in cases {
        let finished = run_barrage(args);
        let stderr = &finished.stderr;
        assert_eq!(finished.status.code(), Some(code), "barrage {args:?}: {}\n{stderr}", finished.status);
        assert_eq!(stderr.lines().count(), 1, "barrage {args:?} printed:\n{stderr}");
        assert!(stderr.starts_with("barrage: error: "), "barrage {args:?}: {stderr}");
        for mention in *mentions {
            assert!(stderr.contains(mention), "barrage {args:?} should mention {mention:?}: {stderr}");
        }
    }
}

#[test]
fn a_command_line_mistake_exits_2_and_says_what_was_expected() {
    check_errors(
        2,
        &[
            (&["watch", "abc"], &["\"abc\" is not a Douyu room", "(see 'barrage watch --help')"]),
            (&["watch", "https://example.com/288016"], &["is not a Douyu room"]),
            (&["watch", "--server", "http://h:80", "1"], &["unknown transport \"http\""]),
            (&["watch", "--server", "nohost", "1"], &["expected HOST:PORT", "nohost"]),
            (&["watch", "--server", "127.0.0.1:99999", "1"], &["port 99999", "out of range (1 to 65535)"]),
            (&["watch", "--format", "xml", "1"], &["'xml'", "[possible values: json, text]", "barrage watch --help"]),
            (&["watch", "--server", CLOSED, "--shard", "4/4", "1"], &["4/4"]),
            (&["watch", "--server", CLOSED, "--heartbeat", "-1", "1"], &["expected a number of seconds"]),
            (&["watch", "--server", CLOSED, "--heartbeat", "200", "1"], &["idle_timeout", "(--heartbeat)"]),
            (&["watch", "--server", CLOSED, "--connect-rate", "0", "1"], &["(--connect-rate)"]),
            (&["watch", "--server", CLOSED, "--count", "0", "1"], &["at least 1"]),
            (&["watch", "--server", CLOSED, "--duration", "0", "1"], &["above 0"]),
            (&["watch", "--server", CLOSED, "--metrics", "9100", "1"], &["expected HOST:PORT"]),
            // As `serve --listen` takes it; a port already taken is a failure while running.
            (
                &["watch", "--server", CLOSED, "--metrics", "no-such-host.invalid:9100", "1"],
                &["cannot resolve --metrics no-such-host.invalid:9100"],
            ),
            (&["watch", "--server", CLOSED], &["no rooms to watch"]),
            (&["watch", "--heartbeet", "45", "1"], &["a similar argument exists: '--heartbeat'"]),
            (&["demo", "--rooms", "-1"], &["expected a whole number of rooms from 1 to 10000", "barrage demo --help"]),
            (&["demo", "--rooms", "0"], &["from 1 to 10000"]),
            (&["bench", "--rooms", "-1"], &["expected a whole number of rooms"]),
            (&["bench", "--connect-rate", "0"], &["connect_rate must be above 0", "(--connect-rate)"]),
            // Told before barrage is measured, not after.
            (
                &["bench", "--peer", "/nonexistent/tokio_peer"],
                &["cannot run --peer /nonexistent/tokio_peer: No such file"],
            ),
            (&["bench", "--peer", "./Cargo.toml"], &["cannot run --peer ./Cargo.toml: not executable"]),
            (&["replay", "--speed", "0"], &["expected a speed above 0"]),
            (
                &["serve", "--drop-every", "0"],
                &["expected a whole number of messages, at least 1", "barrage serve --help"],
            ),
            (&["replay", "--rooms", "x"], &["\"x\" is not a Douyu room"]),
            (&["serve", "--listen", "127.0.0.1:70000"], &["port 70000", "out of range (0 to 65535)", "--listen"]),
            (&["serve", "--http", "localhost:99999"], &["port 99999", "out of range (0 to 65535)", "--http"]),
            (&["serve", "--listen", "8601"], &["expected HOST:PORT", "\"8601\""]),
            (
                &["serve", "--replay", "no-such-recording.jsonl"],
                &["cannot read the recording no-such-recording.jsonl: No such file", "(--replay)"],
            ),
            (&["serve", "--replay", "x", "--replay-start-rooms", "0"], &["a whole number of rooms from 1"]),
            (&["serve", "--speed", "2"], &["required arguments were not provided: --replay <FILE>"]),
            (&["completions", "tcsh"], &["[possible values: bash"]),
            (&["man", "nope"], &["no subcommand \"nope\"", "watch"]),
            (&["nope"], &["(see 'barrage --help')"]),
        ],
    );
}

#[test]
fn a_config_file_mistake_exits_2_and_names_the_file_line_column_and_key() {
    let dir = TempDir::new("cli-config");
    let write = |name: &str, text: &str| {
        let path = dir.path(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let quoted = write("quoted.toml", "rooms = [\"abc\"]\n");
    let typo = write("typo.toml", "rooms = [1]\nromos = [2]\n");
    let heartbeat = write("heartbeat.toml", "rooms = [1]\nheartbeat = 200\n");
    let shard = write("shard.toml", "rooms = [1]\n\nshard = \"4/4\"\n");
    let syntax = write("syntax.toml", "rooms = [1,\n");
    let metrics = write("metrics.toml", "rooms = [1]\nmetrics = \"localhost\"\n");
    let unresolved = write("unresolved.toml", "rooms = [1]\nmetrics = \"no-such-host.invalid:9100\"\n");
    let missing = dir.path("missing.toml");
    let missing = missing.to_str().unwrap();
    let config = |path| -> Vec<&str> { vec!["watch", "--server", CLOSED, "--config", path] };
    check_errors(
        2,
        &[
            (&config(&quoted), &[&format!("{quoted}:1:10: rooms: \"abc\" is not a Douyu room")]),
            (&config(&typo), &[&format!("{typo}:2:1: unknown field `romos`")]),
            (&config(&heartbeat), &[&format!("{heartbeat}:2:1: heartbeat (200 s) must be shorter than idle_timeout")]),
            (&config(&shard), &[&format!("{shard}:3:1: shard: expected K/N")]),
            (&config(&syntax), &[&format!("{syntax}:1:12: unclosed array")]),
            (&config(&metrics), &[&format!("{metrics}:2:1: metrics: expected HOST:PORT")]),
            (&config(&unresolved), &[&format!("{unresolved}:2:1: metrics: cannot resolve no-such-host.invalid:9100")]),
            (&config(missing), &["cannot read", missing]),
        ],
    );
    // The flag, not the file, is named when the flag set the value.
    let mut args = config(&heartbeat);
    args.extend(["--heartbeat", "300"]);
    check_errors(2, &[(&args, &["heartbeat (300 s)", "(--heartbeat)"])]);
}

#[test]
fn a_ca_file_that_cannot_be_used_exits_2_and_names_the_flag_or_the_config_line() {
    let dir = TempDir::new("cli-ca-file");
    let write = |name: &str, text: &str| {
        let path = dir.path(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let missing = dir.path("missing.pem");
    let missing = missing.to_str().unwrap();
    let not_pem = write("not.pem", "hello\n");
    let empty = write("empty.pem", "");
    let garbled = write("garbled.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let config = write("ca.toml", &format!("rooms = [1]\n\nca_file = {not_pem:?}\n"));
    let output = dir.path("out.jsonl");
    let output = output.to_str().unwrap();
    // Checked whether or not a server needs it: the file is a mistake either way.
    let watch = |ca_file: &str| -> Vec<String> {
        ["watch", "--server", "wss://127.0.0.1:1", "--output", output, "--ca-file", ca_file, "1"]
            .map(String::from)
            .to_vec()
    };
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (watch(missing), vec![format!("cannot read --ca-file {missing}: No such file or directory")]),
        (watch(&not_pem), vec![format!("--ca-file {not_pem} holds no PEM certificate")]),
        (watch(&empty), vec![format!("--ca-file {empty} holds no PEM certificate")]),
        (watch(&garbled), vec![format!("--ca-file {garbled} holds no PEM certificate OpenSSL can read (")]),
        (
            ["watch", "--server", CLOSED, "--config", &config].map(String::from).to_vec(),
            vec![format!("{config}:3:1: ca_file: {not_pem} holds no PEM certificate")],
        ),
    ];
    for (args, mentions) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mentions: Vec<&str> = mentions.iter().map(String::as_str).collect();
        check_errors(2, &[(&args, &mentions)]);
        let stderr = run_barrage(&args).stderr;
        assert!(!stderr.contains("out.jsonl") && !stderr.contains("crypto/"), "{stderr}");
    }
}

#[test]
fn a_failure_while_running_exits_1_and_names_what_failed() {
    let dir = TempDir::new("cli-runtime");
    let nowhere = dir.path("no-such-dir").join("out.jsonl");
    let nowhere = nowhere.to_str().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let missing = dir.path("missing.jsonl");
    let missing = missing.to_str().unwrap();
    let sink = dir.path("no-such-dir").join("sink.jsonl");
    let sink = sink.to_str().unwrap();
    check_errors(
        1,
        &[
            (&["watch", "--server", CLOSED, "--output", nowhere, "1"], &["cannot open", nowhere]),
            (&["watch", "--server", CLOSED, "--metrics", &taken, "1"], &["cannot serve metrics on", &taken]),
            (&["bench", "--rooms", "1", "--duration", "1", "--sink", sink], &["cannot write to --sink", sink]),
        ],
    );
    // replay reports the file, then its last word.
    let finished = run_barrage(&["replay", missing]);
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert!(finished.stderr.starts_with(&format!("barrage: cannot read {missing}: ")), "{}", finished.stderr);
    assert!(finished.stderr.contains("barrage: error: 1 file could not be read"), "{}", finished.stderr);
}

#[test]
fn each_subcommand_documents_only_its_own_log_level() {
    for (subcommand, default) in [
        ("watch", "[default: the level in RUST_LOG, else log_level in --config, else info]"),
        ("demo", "[default: the level in RUST_LOG, else info]"),
        ("serve", "[default: the level in RUST_LOG, else info]"),
        ("bench", "[default: the level in RUST_LOG, else warn]"),
    ] {
        let help = run_barrage(&[subcommand, "--help"]);
        assert!(help.status.success());
        let text = help.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(text.contains(default), "{subcommand} --help:\n{}", help.stdout);
        assert!(!text.contains("bench:") && !text.contains("(bench"), "{subcommand} --help:\n{}", help.stdout);
    }
    for subcommand in ["replay", "completions", "man"] {
        let help = run_barrage(&[subcommand, "--help"]);
        assert!(!help.stdout.contains("--log-level"), "{subcommand} logs nothing:\n{}", help.stdout);
    }
}

/// `demo` for a moment, with `env` and `args`.
fn demo(env: &[(&str, &str)], args: &[&str]) -> Finished {
    let mut command = barrage(&["demo", "--rooms", "1", "--rate", "20", "--duration", "0.5"]);
    command.args(args).envs(env.iter().copied()).env_remove("NO_COLOR");
    if env.iter().all(|(name, _)| *name != "RUST_LOG") {
        command.env_remove("RUST_LOG");
    }
    run_command(command, b"")
}

#[test]
fn rust_log_sets_the_level_unless_log_level_is_given() {
    let started = "demo: a simulated Douyu server on";
    assert!(demo(&[], &[]).stderr.contains(started), "info by default");
    let quiet = demo(&[("RUST_LOG", "warn")], &[]);
    assert!(quiet.status.success() && !quiet.stderr.contains(started), "{}", quiet.stderr);
    assert!(demo(&[("RUST_LOG", "debug")], &[]).stderr.contains(" DEBUG "), "RUST_LOG=debug");
    let flag = demo(&[("RUST_LOG", "warn")], &["--log-level", "info"]);
    assert!(flag.stderr.contains(started), "--log-level wins over RUST_LOG:\n{}", flag.stderr);
}

#[test]
fn text_is_coloured_only_on_a_terminal_or_when_asked() {
    // A pipe is not a terminal.
    let piped = demo(&[], &[]);
    assert!(piped.stdout.contains("[100001] "), "{}", piped.stdout);
    assert!(!piped.stdout.contains('\x1b'), "colour in a pipe:\n{}", piped.stdout);
    let asked = demo(&[("NO_COLOR", "1")], &["--color", "always"]);
    assert!(asked.stdout.contains("\x1b[2m[100001]\x1b[0m "), "--color always:\n{}", asked.stdout);
    assert!(!demo(&[], &["--json", "--color", "always"]).stdout.contains('\x1b'), "never in JSON");
}

/// On a terminal (a pseudo-terminal from `script`), text is coloured,
/// unless NO_COLOR is set or --color never.
#[test]
fn on_a_terminal_text_is_coloured_unless_no_color_is_set() {
    let on_terminal = |env: &[(&str, &str)], flags: &str| {
        let demo = format!(
            "{} demo --rooms 1 --rate 20 --duration 0.5 --log-level error {flags}",
            env!("CARGO_BIN_EXE_barrage")
        );
        let mut command = std::process::Command::new("script");
        command.args(["-q", "-e", "-c", &demo, "/dev/null"]).env_remove("NO_COLOR").envs(env.iter().copied());
        let finished = run_command(command, b"");
        assert!(finished.status.success(), "{}\n{}", finished.status, finished.stderr);
        assert!(finished.stdout.contains("[100001]"), "no messages on the terminal:\n{}", finished.stdout);
        finished.stdout
    };
    assert!(on_terminal(&[], "").contains("\x1b[2m[100001]\x1b[0m"), "no colour on a terminal");
    assert!(!on_terminal(&[("NO_COLOR", "1")], "").contains('\x1b'), "NO_COLOR");
    assert!(!on_terminal(&[], "--color never").contains('\x1b'), "--color never");
}

#[test]
fn completions_and_man_pages_come_from_the_same_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let script = run_barrage(&["completions", shell]);
        assert!(script.status.success(), "{shell}: {}", script.stderr);
        // fish spells a long flag `-l duration`.
        for word in ["watch", "replay", "duration", "count", "color"] {
            assert!(script.stdout.contains(word), "{shell} completions lack {word}");
        }
    }
    let page = run_barrage(&["man"]);
    assert!(page.status.success() && page.stdout.contains(".TH barrage 1"), "{}", page.stdout);
    assert!(page.stdout.contains("barrage\\-replay(1)"), "{}", page.stdout);
    let watch = run_barrage(&["man", "watch"]);
    assert!(watch.stdout.contains(".TH barrage-watch 1"), "{}", watch.stdout);
    assert!(watch.stdout.contains("\\-\\-duration"), "{}", watch.stdout);

    let dir = TempDir::new("cli-man");
    let written = run_barrage(&["man", "--dir", dir.path("").to_str().unwrap()]);
    assert!(written.status.success(), "{}", written.stderr);
    for page in ["barrage.1", "barrage-watch.1", "barrage-replay.1", "barrage-serve.1"] {
        assert!(dir.path(page).is_file(), "no {page}");
    }
}
