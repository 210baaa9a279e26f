//! `barrage replay FILE…`: recorded JSON lines, shown again.
//!
//! Each line of each file (or of stdin, `-`) is read with
//! [`recording::read_line`], which checks the line contract; a line that
//! breaks it is reported on stderr with its file and line number and
//! skipped, and the exit status is then 1 (so a script can check a
//! recording). The messages kept by `--rooms` and `--types` are written by
//! the formatter `watch` uses: as text, coloured on a terminal, or as
//! JSON, where a line that keeps the contract comes out as it went in.
//!
//! `--speed X` paces the lines by their `ts`: the first at once, each
//! later one when its distance from the first, divided by X, has passed.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use crate::monitor::format::{Format, write_line};
use crate::monitor::visible::visible;
use crate::plural::plural;
use crate::recording::{self, Pace, Recorded};

use super::watch::{FormatArg, parse_room, unknown_types};
use super::{ColorChoice, Failure, parse_speed, stdout_is_terminal};

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Recorded JSON lines (from `watch --format json`); `-` is stdin.
    /// [default: stdin]
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,

    /// Output format: text, or JSON lines (the recorded lines, filtered).
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,

    /// Colour in text output (auto: on a terminal, unless NO_COLOR is set).
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    color: ColorChoice,

    /// Only these message types, comma separated (e.g. chatmsg,dgb).
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    types: Vec<String>,

    /// Only these rooms, comma separated (e.g. 288016,9999).
    #[arg(long, value_name = "ROOMS", value_delimiter = ',', value_parser = parse_room)]
    rooms: Vec<u64>,

    /// Pace the lines by their receive times, X times as fast as they came
    /// (1: in real time, 60: an hour in a minute). [default: no pause]
    #[arg(long, value_name = "X", value_parser = parse_speed, allow_negative_numbers = true)]
    speed: Option<f64>,
}

/// What a replay read, for its last word.
#[derive(Default)]
struct Tally {
    lines: u64,
    skipped: u64,
    unreadable: u64,
}

pub(crate) fn run(args: &ReplayArgs) -> Result<(), Failure> {
    if let Some(warning) = unknown_types(args.types.iter()) {
        eprintln!("barrage: warning: --types: {warning}");
    }
    let format = match args.format {
        FormatArg::Json => Format::Json,
        FormatArg::Text => args.color.text_format(stdout_is_terminal()),
    };
    let stdin = PathBuf::from("-");
    let files = if args.files.is_empty() { std::slice::from_ref(&stdin) } else { &args.files[..] };
    let mut out = BufWriter::new(io::stdout().lock());
    let mut pace = args.speed.map(Pace::new);
    let mut tally = Tally::default();
    for path in files {
        let reader: Box<dyn BufRead> = if path == Path::new("-") {
            Box::new(io::stdin().lock())
        } else {
            match File::open(path) {
                Ok(file) => Box::new(BufReader::new(file)),
                Err(e) => {
                    eprintln!("barrage: cannot read {}: {e}", path.display());
                    tally.unreadable += 1;
                    continue;
                }
            }
        };
        let name = if path == Path::new("-") { "stdin".to_string() } else { path.display().to_string() };
        match replay_one(reader, &name, args, format, &mut pace, &mut out, &mut tally) {
            Ok(()) => {}
            // The reader left (`barrage replay … | head`): nothing more to do.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(Failure::Runtime(format!("cannot write the output: {e}"))),
        }
    }
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            return Err(Failure::Runtime(format!("cannot write the output: {e}")));
        }
        _ => {}
    }
    let mut problems = Vec::new();
    if tally.skipped > 0 {
        problems.push(format!("{} of {} skipped as malformed", tally.skipped, plural(tally.lines, "line")));
    }
    if tally.unreadable > 0 {
        problems.push(format!("{} could not be read to the end", plural(tally.unreadable, "file")));
    }
    if problems.is_empty() { Ok(()) } else { Err(Failure::Runtime(problems.join("; "))) }
}

/// Replays the lines of one source; fails only if the output does. A read
/// error ends this source (reported, counted as unreadable).
fn replay_one(
    reader: impl BufRead,
    name: &str,
    args: &ReplayArgs,
    format: Format,
    pace: &mut Option<Pace>,
    out: &mut impl Write,
    tally: &mut Tally,
) -> io::Result<()> {
    let mut line_out = Vec::new();
    for (index, line) in reader.split(b'\n').enumerate() {
        let number = index + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                eprintln!("barrage: {name}:{number}: cannot read on: {e}");
                tally.unreadable += 1;
                return Ok(());
            }
        };
        tally.lines += 1;
        let recorded = std::str::from_utf8(&line)
            .map_err(|e| format!("not UTF-8 ({e})"))
            .and_then(|text| recording::read_line(text).map_err(|e| e.to_string()));
        let Recorded { ts_ms, room, message } = match recorded {
            Ok(recorded) => recorded,
            Err(why) => {
                // The reason quotes the line (serde names an unknown key),
                // and the line is the server's text.
                eprintln!("barrage: {name}:{number}: {}; skipped", visible(&why));
                tally.skipped += 1;
                continue;
            }
        };
        let wanted_room = args.rooms.is_empty() || args.rooms.contains(&room);
        let wanted_type = args.types.is_empty() || args.types.iter().any(|t| t == message.msg_type());
        if !(wanted_room && wanted_type) {
            continue;
        }
        if let Some(pace) = pace {
            // Show what is due before waiting for the next.
            out.flush()?;
            let due = pace.due(ts_ms, Instant::now());
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        line_out.clear();
        write_line(&mut line_out, format, ts_ms, room, &message);
        out.write_all(&line_out)?;
    }
    Ok(())
}
