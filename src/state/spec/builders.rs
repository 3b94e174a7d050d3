//! Where a project's builder runs (`agent.host`), how it is confined (`agent.sandbox`), the
//! credentials it gets (`agent.env_from`), and what a builder pod is made of
//! (`project.yaml` `agent.pod`, defaults in `gaffer.yaml` `builders`). docs/kubernetes.md.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::hours::HumanDuration;

/// Where a project's builder runs.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum BuilderHostKind {
    /// A tmux session on gaffer's machine (or in gaffer's pod), the workspace on its disk.
    #[default]
    Tmux,
    /// A pod of its own in the project's lab namespace, the workspace on its volume.
    Pod,
}

/// How a builder's server is confined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxKind {
    /// bubblewrap: its own PID namespace, the toolchain read-only, only its workspace and
    /// HOME writable, nothing of gaffer's data or the person's HOME.
    #[default]
    Bwrap,
    /// No sandbox (a warning on every task's status).
    None,
}

/// One variable of a builder's environment and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvFrom {
    /// The variable the builder sees, e.g. `ANTHROPIC_API_KEY`.
    pub name: String,
    /// Take the value from this variable of gaffer's own environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Take the value from this file (its first line), e.g. a mounted secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl EnvFrom {
    /// The value, read from gaffer's environment or the file.
    pub fn resolve(&self) -> Result<String, String> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!(
                "agent.env_from: {:?} is not a variable name",
                self.name
            ));
        }
        match (&self.env, &self.file) {
            (Some(var), None) => std::env::var(var).map_err(|_| {
                format!(
                    "agent.env_from {}: gaffer's environment has no {var}",
                    self.name
                )
            }),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map(|t| t.lines().next().unwrap_or("").trim().to_string())
                .map_err(|e| format!("agent.env_from {}: {file}: {e}", self.name)),
            _ => Err(format!(
                "agent.env_from {}: give exactly one of env: or file:",
                self.name
            )),
        }
    }
}

/// `gaffer.yaml` `builders`: defaults for every project's builder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuilderDefaults {
    /// Where builders run unless a project says otherwise (`agent.host`).
    #[serde(default)]
    pub host: BuilderHostKind,
    /// The image of builder pods: gaffer's own image, which carries OpenCode, git and
    /// gaffer (for the workspace sidecar), e.g. `ghcr.io/you/gaffer:0.2.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The defaults of `agent.pod`.
    #[serde(default)]
    pub pod: PodSpec,
    /// A web terminal's link to a builder pod, shown beside its attach command: a template
    /// of `{{ namespace }}`, `{{ pod }}`, `{{ container }}`, `{{ project }}`, `{{ category }}`
    /// and `{{ builder }}`, e.g.
    /// `https://term.example.com/?ns={{ namespace }}&pod={{ pod }}&c={{ container }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_link: Option<String>,
}

impl Default for BuilderDefaults {
    fn default() -> Self {
        Self {
            host: BuilderHostKind::Tmux,
            image: None,
            pod: PodSpec::default(),
            terminal_link: None,
        }
    }
}

/// What a builder pod gets (`agent.pod` in `project.yaml`; unset fields come from
/// `builders.pod` in `gaffer.yaml`, then the defaults named here).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodSpec {
    /// The volume holding the workspace and OpenCode's data (default `20Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Quantity>,
    /// The builder container's resource requests (`cpu`, `memory`, `ephemeral-storage`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<ResourceName, Quantity>,
    /// The builder container's resource limits.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<ResourceName, Quantity>,
    /// A builder with no active task for this long is scaled to zero (its volume stays)
    /// and started again when a task needs it (default `30m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_suspend: Option<HumanDuration>,
}

impl PodSpec {
    /// `self` with unset fields taken from `defaults`.
    pub fn or(&self, defaults: &PodSpec) -> PodSpec {
        PodSpec {
            storage: self.storage.clone().or_else(|| defaults.storage.clone()),
            requests: if self.requests.is_empty() {
                defaults.requests.clone()
            } else {
                self.requests.clone()
            },
            limits: if self.limits.is_empty() {
                defaults.limits.clone()
            } else {
                self.limits.clone()
            },
            idle_suspend: self.idle_suspend.or(defaults.idle_suspend),
        }
    }

    /// The volume's size.
    pub fn storage(&self) -> &str {
        self.storage.as_ref().map_or("20Gi", |q| q.0.as_str())
    }

    /// How long an idle builder runs before it is suspended.
    pub fn idle_suspend(&self) -> jiff::SignedDuration {
        self.idle_suspend
            .map_or(jiff::SignedDuration::from_mins(30), HumanDuration::get)
    }

    /// The container's `resources`, as in a pod spec.
    pub fn resources(&self) -> serde_json::Value {
        let map = |m: &BTreeMap<ResourceName, Quantity>| {
            m.iter()
                .map(|(k, v)| (k.as_str().to_string(), serde_json::json!(v.0)))
                .collect::<serde_json::Map<_, _>>()
        };
        let mut out = serde_json::Map::new();
        if !self.requests.is_empty() {
            out.insert("requests".into(), map(&self.requests).into());
        }
        if !self.limits.is_empty() {
            out.insert("limits".into(), map(&self.limits).into());
        }
        out.into()
    }
}

/// A resource a builder container asks for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceName {
    /// CPU (`500m`, `2`).
    Cpu,
    /// Memory (`4Gi`).
    Memory,
    /// Scratch disk outside the volume (`10Gi`).
    EphemeralStorage,
}

impl ResourceName {
    /// The Kubernetes name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::EphemeralStorage => "ephemeral-storage",
        }
    }
}

/// A Kubernetes quantity (`500m`, `4Gi`, `1.5`), checked when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct Quantity(String);

impl TryFrom<String> for Quantity {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let suffix = &s[digits.len()..];
        let number_ok = !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
            && digits.matches('.').count() <= 1
            && !digits.starts_with('.')
            && !digits.ends_with('.');
        let suffix_ok = matches!(
            suffix,
            "" | "m" | "k" | "M" | "G" | "T" | "Ki" | "Mi" | "Gi" | "Ti"
        );
        if number_ok && suffix_ok && s.len() <= 32 {
            Ok(Quantity(s))
        } else {
            Err(format!(
                "{s:?} is not a Kubernetes quantity (a non-negative number with an optional \
                 unit m, k, M, G, T, Ki, Mi, Gi or Ti, e.g. 500m or 4Gi)"
            ))
        }
    }
}

impl From<Quantity> for String {
    fn from(q: Quantity) -> String {
        q.0
    }
}

/// Renders a `builders.terminal_link` template for `project`'s builder pod (names validated
/// before they got here); an error says why it is not a URL.
pub fn render_terminal_link(
    template: &str,
    project: &crate::names::ProjectRef,
) -> Result<String, String> {
    super::lab::render_url(
        template,
        minijinja::context! {
            namespace => project.lab_namespace(),
            pod => crate::agent::pod::POD,
            container => "opencode",
            project => project.project.as_str(),
            category => project.category.as_str(),
            builder => project.builder_name(),
        },
    )
}

impl super::ProjectSpec {
    /// The project with the builder defaults of `settings` filled in: `agent.host` always
    /// set, `agent.pod` complete. The reconciler reads projects this way only.
    pub fn with_builder_defaults(mut self, settings: &super::Settings) -> Self {
        self.agent.host = Some(self.agent.host.unwrap_or(settings.builders.host));
        self.agent.pod = self.agent.pod.or(&settings.builders.pod);
        self
    }

    /// Whether the project's builder is a pod.
    pub fn on_pod(&self) -> bool {
        self.agent.host == Some(BuilderHostKind::Pod)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_links_render_from_validated_names_into_urls_only() {
        let p = crate::names::ProjectRef::parse("ai-dev/api").unwrap();
        assert_eq!(
            render_terminal_link(
                "https://t.example.com/{{ namespace }}/{{ pod }}/{{ builder }}",
                &p
            )
            .unwrap(),
            "https://t.example.com/ai-dev-api-lab/gaffer-builder-0/ai-dev-api"
        );
        assert!(render_terminal_link("ftp://t/{{ pod }}", &p).is_err());
        assert!(render_terminal_link("https://t/{{ nope }}", &p).is_err());
        assert!(render_terminal_link("{{ pod }}", &p).is_err());
    }

    #[test]
    fn quantities_are_checked() {
        for ok in ["1", "500m", "4Gi", "1.5", "20Gi", "0"] {
            assert!(Quantity::try_from(ok.to_string()).is_ok(), "{ok}");
        }
        for bad in [
            "", "-1", "4GB", "1..5", ".5", "lots", "4 Gi", "1e3x", "$(rm)",
        ] {
            assert!(Quantity::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_project_pod_falls_back_to_the_defaults_field_by_field() {
        let defaults = PodSpec {
            storage: Some(Quantity("50Gi".into())),
            requests: [(ResourceName::Cpu, Quantity("1".into()))].into(),
            limits: BTreeMap::new(),
            idle_suspend: None,
        };
        let own = PodSpec {
            limits: [(ResourceName::Memory, Quantity("8Gi".into()))].into(),
            ..PodSpec::default()
        };
        let p = own.or(&defaults);
        assert_eq!(p.storage(), "50Gi");
        assert_eq!(
            p.resources(),
            serde_json::json!({"requests": {"cpu": "1"}, "limits": {"memory": "8Gi"}})
        );
        assert_eq!(p.idle_suspend(), jiff::SignedDuration::from_mins(30));
        assert_eq!(PodSpec::default().storage(), "20Gi");
    }
}
