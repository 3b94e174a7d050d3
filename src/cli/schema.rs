//! `gaffer schema [--out DIR] [--check]`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{CliError, CmdResult};

/// Arguments of `gaffer schema`.
#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Where to write the `*.schema.json` files.
    #[arg(long, default_value = "schema")]
    pub out: PathBuf,
    /// Do not write; exit 1 if any file in --out differs from the generated schema.
    #[arg(long)]
    pub check: bool,
}

/// Runs `gaffer schema`.
pub fn cmd_schema(args: SchemaArgs) -> CmdResult {
    let mut stale = Vec::new();
    if !args.check {
        std::fs::create_dir_all(&args.out)
            .map_err(|e| CliError::user(format!("cannot create {}: {e}", args.out.display())))?;
    }
    for (name, text) in crate::schema::all() {
        let path = args.out.join(name);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(text.as_str()) {
            continue;
        }
        if args.check {
            stale.push(path.display().to_string());
        } else {
            std::fs::write(&path, text)
                .map_err(|e| CliError::user(format!("cannot write {}: {e}", path.display())))?;
            println!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        for s in &stale {
            println!("{s}: differs from the schema generated from the types");
        }
        return Err(
            CliError::user(format!("{} schema file(s) out of date", stale.len()))
                .hint("run `gaffer schema` (or `task schema`) and commit the result"),
        );
    }
    if args.check {
        println!("ok: schemas in {} are up to date", args.out.display());
    }
    Ok(ExitCode::SUCCESS)
}
