//! `shylock`: run a command under a distributed lock kept in MongoDB or
//! ArangoDB, inspect a lock, or set up the lock collection.
//!
//! ```text
//! shylock run [OPTIONS] <NAME> -- <COMMAND> [ARGS...]
//! shylock inspect [OPTIONS] <NAME> [--json]
//! shylock setup [OPTIONS]
//! shylock list [OPTIONS] [--prefix P] [--json]
//! shylock release --force <NAME> --reason <TEXT> [--yes] [OPTIONS]
//! shylock watch [OPTIONS] [--prefix P]
//! ```
//!
//! See `shylock --help` and the README's "Command line" section.

// Every line of shylock's own goes through `say!` and `out!`, which
// ignore write errors: `eprintln!` and `println!` panic on EPIPE.
#![deny(clippy::print_stderr, clippy::print_stdout)]

#[macro_use]
mod exit;
mod admin;
mod backend;
mod cli;
mod inspect;
mod run;

use std::io::Write;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                std::process::exit(0);
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                // Bare `shylock` (or a subcommand without its own): the
                // help, as it is, not as an error.
                let _ = e.print();
                std::process::exit(exit::USAGE);
            }
            // One line: the error and clap's tips ("a similar argument
            // exists: '--timeout'"), without the usage.
            let rendered = e.render().to_string();
            let text: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .filter(|l| {
                    !l.is_empty()
                        && !l.starts_with("Usage:")
                        && !l.starts_with("For more information")
                        // "to pass '--x' as a value, use '-- --x'": after
                        // `--` comes the command.
                        && !l.starts_with("tip: to pass")
                })
                .collect();
            let text = exit::one_line(&text.join("; "));
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            say!("shylock: {text} (see shylock --help)");
            std::process::exit(exit::USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say!("shylock: cannot start the async runtime: {e}");
            std::process::exit(exit::SOFTWARE);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Inspect(args) => inspect::inspect(args).await,
            Command::Setup(args) => inspect::setup(args).await,
            Command::List(args) => admin::list(args).await,
            Command::Release(args) => admin::release(args).await,
            Command::Watch(args) => admin::watch(args).await,
        }
    });
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // Exit without dropping the runtime: nothing of it is needed any more,
    // and its shutdown could wait for the driver's blocking tasks.
    std::process::exit(code);
}
