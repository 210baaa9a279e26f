//! `barrage completions SHELL` and `barrage man`: shell completions and
//! manual pages, generated from the same clap definitions that parse the
//! command line, so they cannot fall behind it.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use clap_complete::Shell;

use super::Failure;

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// The subcommand whose page to print (barrage-watch(1), …).
    /// [default: barrage(1)]
    #[arg(value_name = "SUBCOMMAND")]
    subcommand: Option<String>,

    /// Write every page (barrage.1, barrage-watch.1, …) into this directory
    /// instead, e.g. /usr/local/share/man/man1.
    #[arg(long, value_name = "DIR", conflicts_with = "subcommand")]
    dir: Option<PathBuf>,
}

pub(crate) fn completions(args: &CompletionsArgs, command: &mut clap::Command) -> Result<(), Failure> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, command, "barrage", &mut script);
    write_stdout(&script)
}

pub(crate) fn man(args: &ManArgs, command: clap::Command) -> Result<(), Failure> {
    // `help` is clap's, not ours: no page of its own. Building names each
    // subcommand `barrage-NAME`, as its page is called.
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let page = |command: clap::Command| {
        clap_mangen::Man::new(command).source(format!("barrage {}", env!("CARGO_PKG_VERSION")))
    };
    if let Some(dir) = &args.dir {
        let cannot = |e: std::io::Error| Failure::Runtime(format!("cannot write the pages to {}: {e}", dir.display()));
        for subcommand in command.get_subcommands() {
            page(subcommand.clone()).generate_to(dir).map_err(cannot)?;
        }
        page(command).generate_to(dir).map_err(cannot)?;
        return Ok(());
    }
    let command = match &args.subcommand {
        None => command,
        Some(name) => command.find_subcommand(name).cloned().ok_or_else(|| {
            let names: Vec<&str> = command.get_subcommands().map(clap::Command::get_name).collect();
            Failure::Usage(format!("no subcommand {name:?}: barrage has {}", names.join(", ")))
        })?,
    };
    let mut roff = Vec::new();
    page(command).render(&mut roff).map_err(|e| Failure::Runtime(e.to_string()))?;
    write_stdout(&roff)
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::Runtime(e.to_string())),
        _ => Ok(()),
    }
}
