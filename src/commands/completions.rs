//! `koidc completions SHELL`: print a completion script for bash, zsh, fish, PowerShell or elvish,
//! generated from the same clap definitions as the flags themselves, so it never goes stale.

use crate::cli::CompletionsArgs;
use crate::printer::Printer;

/// Prints the completion script of `args.shell` on stdout.
pub fn run(args: &CompletionsArgs) -> anyhow::Result<()> {
    Printer::default().result(&script(args.shell))?;
    Ok(())
}

/// The completion script for `shell`, for the program name `koidc`.
pub fn script(shell: clap_complete::Shell) -> String {
    let mut command = crate::cli::options::display_command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "koidc", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap_complete::Shell;

    #[test]
    fn every_shell_gets_a_script_that_knows_the_subcommands_and_profile_flag() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::PowerShell,
            Shell::Elvish,
        ] {
            let text = script(shell);
            for command in ["get-token", "clean", "version"] {
                assert!(text.contains(command), "{shell}: no {command}");
            }
            assert!(text.contains("profile"), "{shell}: no --profile");
        }
    }
}
