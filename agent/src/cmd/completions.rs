//! `rehost completions SHELL`: the shell's completion script, generated from
//! the same clap definitions as the parser, so it never lags behind a new
//! flag. The Debian package ships these scripts (`packaging/completions/`,
//! kept current by `agent/tests/packaging.rs`).

use std::io::Write;

use anyhow::Context;
use clap::{CommandFactory, ValueEnum};

use crate::cli::Args;

/// The shells whose scripts are tested and packaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    pub const ALL: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

    fn generator(self) -> clap_complete::Shell {
        match self {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// The completion script for `shell`. Generated into memory: clap_complete
/// panics on a failed write, which a closed stdout must not turn into.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell.generator(), &mut Args::command(), "rehost", &mut out);
    out
}

pub fn run(shell: Shell) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script(shell))
        .and_then(|()| stdout.flush())
        .context("write the completion script to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_completes_the_subcommands_and_their_flags() {
        for shell in Shell::ALL {
            let text = String::from_utf8(script(shell)).unwrap();
            let long = |flag: &str| match shell {
                Shell::Fish => format!("-l {flag}"),
                Shell::Bash | Shell::Zsh => format!("--{flag}"),
            };
            let words = ["restore", "backups", "completions"].map(String::from);
            let flags = ["at", "dry-run", "no-run"].map(long);
            for word in words.iter().chain(&flags) {
                assert!(
                    text.contains(word.as_str()),
                    "{shell:?} script lacks {word}"
                );
            }
        }
    }
}
