//! `gaffer validate [DIR] [--output json]`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{CliError, CmdResult};

/// Arguments of `gaffer validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The state repository working tree (default: the current directory).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Output format: one `path:line:col: message` line per problem, or a JSON document.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Output formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Output {
    /// Lines for people and editors.
    Text,
    /// One JSON document for tools.
    Json,
}

/// Runs `gaffer validate`.
pub fn cmd_validate(args: ValidateArgs) -> CmdResult {
    if !args.dir.is_dir() {
        return Err(CliError::usage(format!(
            "{} is not a directory",
            args.dir.display()
        ))
        .hint("give the path of a state repository working tree, e.g. `gaffer validate example-state-repo`"));
    }
    let report = crate::validate::validate_dir(&args.dir)
        .map_err(|e| CliError::user(format!("cannot read {}: {e}", args.dir.display())))?;
    match args.output {
        Output::Text => {
            for p in &report.problems {
                println!("{p}");
            }
            for w in settings_warnings(&args.dir) {
                println!("gaffer.yaml: warning: {w}");
            }
            println!("{}", report.summary());
        }
        Output::Json => {
            let json = serde_json::to_string_pretty(&report)
                .map_err(|e| CliError::internal(e.to_string()))?;
            println!("{json}");
        }
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Warnings about a valid `gaffer.yaml` in `dir` (none when it is missing or invalid: those
/// are problems, reported already).
fn settings_warnings(dir: &std::path::Path) -> Vec<String> {
    std::fs::read(dir.join("gaffer.yaml"))
        .ok()
        .and_then(|b| crate::state::yaml::parse::<crate::state::spec::Settings>(&b).ok())
        .map(|s| s.warnings())
        .unwrap_or_default()
}
