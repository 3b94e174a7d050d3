//! `gaffer lab list` and `gaffer lab cleanup`: the lab namespaces recorded in the state
//! repository, checked against the cluster; old ones removed and their records updated.

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use super::status::open_snapshot;
use super::{CliError, CmdResult};
use crate::lab::cluster::ClusterDeployer;
use crate::names::ProjectRef;
use crate::state::StatePath;
use crate::state::status::LabStatus;
use crate::store::{Identity, StatusWriter, Transport, Update, WriterConfig, WriterRole};

/// `gaffer lab ...`.
#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// The lab namespaces: age, last deploy and task, URL, and whether the cluster has them.
    List(ListArgs),
    /// Remove lab namespaces whose last deploy is older than --older-than, and record that in
    /// the state repository.
    Cleanup(CleanupArgs),
    /// Print the logs of a project's lab: the last lines of every container of every pod in
    /// its namespace, or one container's log as it grows (--follow). Reads the cluster of
    /// KUBECONFIG (or the pod's service account), not the state repository.
    Logs(LogsArgs),
}

/// Arguments of `gaffer lab logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The project, CATEGORY/PROJECT; its lab namespace is CATEGORY-PROJECT-lab.
    pub project: String,
    /// Only this pod.
    #[arg(long)]
    pub pod: Option<String>,
    /// Only this container (the pod's only one, or each, by default).
    #[arg(long, short)]
    pub container: Option<String>,
    /// Lines from the end of each log.
    #[arg(long, default_value_t = 50)]
    pub tail: i64,
    /// The container's run before its last restart (what a crash loop printed).
    #[arg(long, short)]
    pub previous: bool,
    /// Keep printing as the log grows (one container: name it with --pod, and --container
    /// when the pod has several).
    #[arg(long, short)]
    pub follow: bool,
}

/// Where the state is.
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// The state repository (a local bare repo path or a URL git can fetch and push).
    #[arg(long, env = "GAFFER_STATE")]
    pub state: String,
    /// The branch the state lives on.
    #[arg(long, default_value = "main")]
    pub branch: String,
}

/// Arguments of `gaffer lab list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Where the state is.
    #[command(flatten)]
    pub state: StateArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `gaffer lab cleanup`.
#[derive(Debug, clap::Args)]
pub struct CleanupArgs {
    /// Where the state is.
    #[command(flatten)]
    pub state: StateArgs,
    /// Remove namespaces whose last deploy (or creation) is older than this: 14d, 36h, 90m.
    #[arg(long, default_value = "14d", value_parser = parse_age)]
    pub older_than: Duration,
    /// Only these projects, CATEGORY/PROJECT (repeatable).
    #[arg(long)]
    pub project: Vec<String>,
    /// Say what would be removed; remove and record nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `14d`, `36h`, `90m`, `30s`.
pub(super) fn parse_age(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, e.g. 14d"))?;
    let secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(format!("{s:?}: the unit is one of d, h, m, s")),
    };
    Ok(Duration::from_secs(n * secs))
}

#[derive(Debug, Serialize)]
struct Row {
    project: String,
    namespace: String,
    mode: String,
    created_at: Option<String>,
    age: String,
    last_deploy_task: Option<String>,
    last_deploy_at: Option<String>,
    url: Option<String>,
    /// `yes`, `no`, `deleted` (by cleanup) or `unknown` (no cluster).
    in_cluster: String,
    #[serde(skip)]
    idle: Duration,
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

async fn rows(
    labs: &[(ProjectRef, LabStatus)],
    cluster: Option<&ClusterDeployer>,
) -> Result<Vec<Row>, CliError> {
    let now = jiff::Timestamp::now();
    let since = |t: Option<jiff::Timestamp>| {
        t.map(|t| Duration::from_secs(now.duration_since(t).as_secs().max(0) as u64))
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (p, l) in labs {
        let in_cluster = match (l.deleted, cluster) {
            (true, _) => "deleted".to_string(),
            (false, None) => "unknown".to_string(),
            (false, Some(c)) => match c.namespace_exists(&l.namespace).await {
                Ok(true) => "yes".into(),
                Ok(false) => "no".into(),
                Err(e) => return Err(CliError::user(e.to_string())),
            },
        };
        let last = l.last_deploy.as_ref();
        out.push(Row {
            project: p.to_string(),
            namespace: l.namespace.clone(),
            mode: l.mode.clone().unwrap_or_default(),
            created_at: l.created_at.map(|t| t.to_string()),
            age: human(since(l.created_at)),
            last_deploy_task: last.map(|d| d.task.to_string()),
            last_deploy_at: last.map(|d| d.at.to_string()),
            url: l.urls.first().cloned(),
            in_cluster,
            idle: since(last.map(|d| d.at).or(l.created_at)),
        });
    }
    Ok(out)
}

fn labs_of(snapshot: &crate::state::snapshot::Snapshot) -> Vec<(ProjectRef, LabStatus)> {
    snapshot
        .projects
        .iter()
        .filter_map(|(p, e)| e.lab.clone().map(|l| (p.clone(), l)))
        .collect()
}

async fn cluster() -> Option<ClusterDeployer> {
    let dir = std::env::temp_dir().join("gaffer-lab-cli");
    match ClusterDeployer::connect(&dir, Duration::from_secs(5)).await {
        Ok(c) => Some(c),
        Err(why) => {
            eprintln!("note: {why}; namespaces are not checked against a cluster");
            None
        }
    }
}

/// Runs `gaffer lab ...`.
pub fn cmd_lab(cmd: LabCommand) -> CmdResult {
    let rt = tokio::runtime::Runtime::new().map_err(|e| CliError::internal(e.to_string()))?;
    match cmd {
        LabCommand::List(args) => rt.block_on(list(args)),
        LabCommand::Cleanup(args) => rt.block_on(cleanup(args)),
        LabCommand::Logs(args) => rt.block_on(logs(args)),
    }
}

async fn logs(args: LogsArgs) -> CmdResult {
    let project = ProjectRef::parse(&args.project).map_err(|e| CliError::user(e.to_string()))?;
    for name in [&args.pod, &args.container].into_iter().flatten() {
        if !crate::lab::cluster::logs::valid_name(name) {
            return Err(CliError::user(format!(
                "{name:?} is not a pod or container name (lowercase letters, digits, '-' and '.')"
            )));
        }
    }
    let ns = project.lab_namespace();
    let dir = std::env::temp_dir().join("gaffer-lab-cli");
    let c = ClusterDeployer::connect(&dir, Duration::from_secs(5))
        .await
        .map_err(|why| CliError::user(format!("cannot read the lab's logs: {why}")))?;
    let user = |e: crate::lab::LabError| CliError::user(e.to_string());
    let pods: Vec<(String, Vec<String>)> = c
        .pods(&ns)
        .await
        .map_err(user)?
        .into_iter()
        .filter(|(p, _)| args.pod.as_ref().is_none_or(|want| want == p))
        .collect();
    if pods.is_empty() {
        return Err(CliError::user(match &args.pod {
            Some(p) => format!("no pod {p} in {ns}"),
            None => format!("no pods in {ns} (has the project been deployed?)"),
        }));
    }
    let mut targets = Vec::new();
    for (pod, containers) in &pods {
        for container in containers {
            if args.container.as_ref().is_none_or(|want| want == container) {
                targets.push((pod.clone(), container.clone()));
            }
        }
    }
    let Some(first) = targets.first().cloned() else {
        return Err(CliError::user(format!(
            "no container {} in the pods of {ns}",
            args.container.as_deref().unwrap_or("")
        )));
    };
    if args.follow {
        if targets.len() > 1 {
            let names: Vec<String> = targets.iter().map(|(p, c)| format!("{p}/{c}")).collect();
            return Err(CliError::user(format!(
                "--follow reads one container; name it with --pod (and --container): {}",
                names.join(", ")
            )));
        }
        let mut out = std::io::stdout();
        c.follow_logs(&ns, &first.0, &first.1, Some(args.tail), &mut out)
            .await
            .map_err(user)?;
        return Ok(ExitCode::SUCCESS);
    }
    let many = targets.len() > 1;
    for (pod, container) in targets {
        let text = c
            .logs(&ns, &pod, &container, Some(args.tail), args.previous)
            .await
            .map_err(user)?;
        if many {
            println!("==> {pod}/{container} <==");
        }
        print!("{text}");
        if many && !text.ends_with('\n') && !text.is_empty() {
            println!();
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(args: ListArgs) -> CmdResult {
    let (snapshot, _tmp) = open_snapshot(&args.state.state, &args.state.branch)?;
    let labs = labs_of(&snapshot);
    let c = cluster().await;
    let rows = rows(&labs, c.as_ref()).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(|e| CliError::internal(e.to_string()))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no lab namespaces recorded in {}", args.state.state);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<32} {:<24} {:>5} {:<24} {:<10} {:<8} URL",
        "NAMESPACE", "PROJECT", "AGE", "LAST DEPLOY", "CLUSTER", "MODE"
    );
    for r in rows {
        let last = match (&r.last_deploy_task, &r.last_deploy_at) {
            (Some(t), Some(at)) => format!("{t} {}", &at[..at.len().min(16)]),
            _ => "-".into(),
        };
        println!(
            "{:<32} {:<24} {:>5} {:<24} {:<10} {:<8} {}",
            r.namespace,
            r.project,
            r.age,
            last,
            r.in_cluster,
            r.mode,
            r.url.unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn cleanup(args: CleanupArgs) -> CmdResult {
    let only: Vec<ProjectRef> = args
        .project
        .iter()
        .map(|p| ProjectRef::parse(p))
        .collect::<Result<_, _>>()?;
    let (snapshot, _tmp) = open_snapshot(&args.state.state, &args.state.branch)?;
    let labs: Vec<(ProjectRef, LabStatus)> = labs_of(&snapshot)
        .into_iter()
        .filter(|(p, l)| !l.deleted && (only.is_empty() || only.contains(p)))
        .collect();
    let c = cluster().await;
    let rows = rows(&labs, c.as_ref()).await?;
    let old: Vec<(&(ProjectRef, LabStatus), &Row)> = labs
        .iter()
        .zip(&rows)
        .filter(|(_, r)| r.idle >= args.older_than)
        .collect();
    if old.is_empty() {
        println!(
            "nothing to clean up: no lab namespace idle for {} or more",
            human(args.older_than)
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.dry_run {
        for ((p, l), r) in &old {
            println!(
                "would remove {} ({p}, idle {}, in cluster: {})",
                l.namespace,
                human(r.idle),
                r.in_cluster
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(c) = c else {
        return Err(CliError::user(
            "no reachable cluster: nothing removed (set KUBECONFIG or the current context)",
        ));
    };
    let mut updates = Vec::new();
    for ((p, l), r) in &old {
        let removed = c
            .delete_namespace(&l.namespace)
            .await
            .map_err(|e| CliError::user(e.to_string()))?;
        println!(
            "{} {} ({p}, idle {})",
            if removed { "removed" } else { "already gone:" },
            l.namespace,
            human(r.idle)
        );
        let mut rec = l.clone();
        rec.deleted = true;
        rec.inventory.clear();
        let body =
            crate::state::yaml::to_string(&rec).map_err(|e| CliError::internal(e.to_string()))?;
        updates.push(Update::put(
            StatePath::LabStatus(p.clone()),
            body,
            format!(
                "{p} lab namespace {} removed by gaffer lab cleanup",
                l.namespace
            ),
        ));
    }
    let tmp = tempfile::tempdir().map_err(|e| CliError::internal(e.to_string()))?;
    let transport = Transport::open(&args.state.state, &args.state.branch, tmp.path(), false)
        .map_err(|e| CliError::user(format!("cannot open {}: {e}", args.state.state)))?;
    let writer = StatusWriter::spawn(
        transport,
        WriterConfig::new(
            WriterRole::LabCleanup,
            Identity {
                name: "gaffer lab cleanup".into(),
                email: "lab-cleanup@gaffer.invalid".into(),
            },
        ),
    );
    let id = writer
        .write(updates)
        .await
        .map_err(|e| CliError::user(format!("removed, but recording it failed: {e}")))?;
    println!(
        "recorded in {} ({})",
        args.state.state,
        &id.to_string()[..12]
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_take_a_unit() {
        assert_eq!(parse_age("14d").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse_age("90m").unwrap(), Duration::from_secs(5_400));
        assert!(parse_age("14").unwrap_err().contains("unit"));
        assert!(parse_age("d").is_err());
    }
}
