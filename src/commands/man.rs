//! `koidc man`: the manual pages, generated from the clap definitions (descriptions, options,
//! environment variables, examples), so `man koidc` says exactly what `--help` says.
//!
//! `koidc man` prints koidc(1) on stdout, `koidc man COMMAND` prints koidc-COMMAND(1), and
//! `--out-dir DIR` writes all of them (`install.sh` uses it). Pages are world-readable (0644):
//! they are documentation, not state.

use std::path::Path;

use anyhow::{Context as _, bail};

use crate::cli::ManArgs;
use crate::printer::Printer;

/// Prints or writes the manual pages.
pub fn run(args: &ManArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.out_dir {
        let written = write_all(dir)?;
        Printer::default().info(format_args!(
            "wrote {} manual pages to {}",
            written,
            dir.display()
        ));
        return Ok(());
    }
    let page = page(args.command.as_deref())?;
    Printer::default().result(&page)?;
    Ok(())
}

/// The built command tree (subcommands get their display names, e.g. `koidc-get-token`).
fn command_tree() -> clap::Command {
    let mut command = crate::cli::options::display_command().disable_help_subcommand(true);
    command.build();
    command
}

/// The roff source of koidc(1), or of koidc-`name`(1) for a subcommand.
pub fn page(name: Option<&str>) -> anyhow::Result<String> {
    let tree = command_tree();
    let command = match name {
        None => tree,
        Some(name) => match tree.find_subcommand(name) {
            Some(sub) => sub.clone(),
            None => bail!(
                "there is no command {name:?}; commands: {}",
                tree.get_subcommands()
                    .map(|s| s.get_name().to_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    render(command)
}

fn render(command: clap::Command) -> anyhow::Result<String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .manual("koidc manual")
        .source(concat!("koidc ", env!("CARGO_PKG_VERSION")))
        .render(&mut out)
        .context("cannot render the manual page")?;
    let text = String::from_utf8_lossy(&out).into_owned();
    Ok(title_first(&text))
}

/// Moves the `.TH` line in front of the roff preamble clap_mangen starts with, so the page
/// begins with its title as man pages conventionally do.
fn title_first(text: &str) -> String {
    let Some(th) = text.lines().find(|l| l.starts_with(".TH ")) else {
        return text.to_owned();
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(th);
    out.push('\n');
    let mut moved = false;
    for line in text.lines() {
        if !moved && line == th {
            moved = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Writes koidc.1 and koidc-COMMAND.1 for every command into `dir` (created when missing);
/// returns how many pages it wrote.
fn write_all(dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tree = command_tree();
    let mut pages = vec![("koidc.1".to_owned(), render(tree.clone())?)];
    for sub in tree.get_subcommands().filter(|s| !s.is_hide_set()) {
        let file = format!("koidc-{}.1", sub.get_name());
        pages.push((file, render(sub.clone())?));
    }
    for (file, text) in &pages {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .with_context(|| format!("cannot set the mode of {}", path.display()))?;
        }
    }
    Ok(pages.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_main_page_starts_with_its_title_and_lists_the_commands() {
        let text = page(None).unwrap();
        assert!(
            text.starts_with(".TH koidc 1 "),
            "{}",
            &text[..80.min(text.len())]
        );
        assert!(text.contains("get\\-token"), "no get-token in the page");
        for command in ["clean", "version", "logout"] {
            assert!(
                text.contains(&format!("koidc\\-{command}(1)")),
                "no {command} in the page"
            );
        }
        assert!(text.contains(".ds Aq"), "the apostrophe preamble was lost");
    }

    #[test]
    fn a_command_page_has_its_options_and_examples() {
        let text = page(Some("get-token")).unwrap();
        assert!(
            text.starts_with(".TH koidc-get-token 1 "),
            "{}",
            &text[..80.min(text.len())]
        );
        assert!(text.contains("\\-\\-profile"), "no --profile");
        assert!(text.contains("\"koidc 0."), "the source names koidc");
        assert!(text.contains("Examples:"), "no examples");
        let err = page(Some("nope")).unwrap_err().to_string();
        assert!(err.contains("commands: get-token, login"), "{err}");
    }

    #[test]
    fn out_dir_gets_one_readable_page_per_command() {
        let dir = tempfile::tempdir().unwrap();
        let n = write_all(dir.path()).unwrap();
        assert!(n >= 8, "{n}");
        for file in [
            "koidc.1",
            "koidc-get-token.1",
            "koidc-man.1",
            "koidc-completions.1",
        ] {
            let path = dir.path().join(file);
            assert!(
                std::fs::read_to_string(&path).unwrap().starts_with(".TH "),
                "{file}"
            );
        }
    }
}
