//! RunTask's `overrides` for one Nomad task: the job's `container_overrides`, plus the Nomad
//! task's environment (its `env` and the NOMAD_* variables) for the containers that should see
//! it. Pure logic; the size limit ECS puts on the result is checked here, not discovered later.

use std::collections::BTreeMap;

use crate::aws::ecs::{overrides_json, ContainerOverride, TaskOverride, MAX_OVERRIDES_BYTES};

use super::config::TaskSpec;

/// Variables never copied into ECS: anyone with `ecs:DescribeTasks` (and CloudTrail) can read
/// RunTask overrides, so the tokens Nomad puts into a task's environment stay out of them
/// (Nomad 1.10 to 2.0, `client/taskenv/env.go` and the task runner's hooks): the default
/// workload identity's `NOMAD_TOKEN`, Vault's `VAULT_TOKEN`, and Consul's `CONSUL_TOKEN` and
/// `CONSUL_HTTP_TOKEN` (consul and Connect native hooks)...
pub const WITHHELD_ENV: [&str; 4] = ["NOMAD_TOKEN", "VAULT_TOKEN", "CONSUL_TOKEN", "CONSUL_HTTP_TOKEN"];

/// ...and every other workload identity with `env = true`: `NOMAD_TOKEN_<identity name>`.
pub const WITHHELD_ENV_PREFIX: &str = "NOMAD_TOKEN_";

/// Is `name` one of the token variables that never go into RunTask?
pub fn is_withheld(name: &str) -> bool {
    WITHHELD_ENV.contains(&name) || name.starts_with(WITHHELD_ENV_PREFIX)
}

/// The part of the Nomad environment that may go to ECS.
fn injectable(env: &BTreeMap<String, String>) -> impl Iterator<Item = (&String, &String)> {
    env.iter().filter(|(k, _)| !is_withheld(k))
}

/// Why the overrides cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverridesError {
    pub field: &'static str,
    pub message: String,
}

/// Does the task need the task definition's essential containers to build its overrides?
pub fn needs_essential_containers(spec: &TaskSpec, env: &BTreeMap<String, String>) -> bool {
    spec.inject_env && spec.env_containers.is_none() && injectable(env).next().is_some()
}

/// Builds the overrides. `essential`: the essential containers of the task definition (used
/// when `env_containers` is not set).
pub fn build(
    spec: &TaskSpec,
    env: &BTreeMap<String, String>,
    essential: &[String],
) -> Result<TaskOverride, OverridesError> {
    let mut containers: Vec<ContainerOverride> = spec.container_overrides.clone();
    let nomad_env: Vec<(String, String)> = injectable(env).map(|(k, v)| (k.clone(), v.clone())).collect();
    if spec.inject_env && !nomad_env.is_empty() {
        let targets: Vec<String> = match &spec.env_containers {
            Some(names) => names.clone(),
            None => essential.to_vec(),
        };
        for name in targets {
            match containers.iter_mut().find(|c| c.name == name) {
                Some(explicit) => {
                    // The job's own container_overrides entry wins for the names it sets.
                    let mut merged: Vec<(String, String)> = nomad_env
                        .iter()
                        .filter(|(k, _)| !explicit.environment.iter().any(|(ek, _)| ek == k))
                        .cloned()
                        .collect();
                    merged.append(&mut explicit.environment);
                    explicit.environment = merged;
                }
                None => containers.push(ContainerOverride {
                    name,
                    environment: nomad_env.clone(),
                    ..Default::default()
                }),
            }
        }
    }
    let overrides = TaskOverride {
        task_role_arn: spec.task_role_arn.clone(),
        execution_role_arn: spec.execution_role_arn.clone(),
        cpu: spec.cpu.clone(),
        memory: spec.memory.clone(),
        container_overrides: containers,
    };
    let size = overrides_json(&overrides).to_string().len();
    if size > MAX_OVERRIDES_BYTES {
        let env_bytes: usize = nomad_env.iter().map(|(k, v)| k.len() + v.len() + 22).sum();
        return Err(OverridesError {
            field: "task.container_overrides",
            message: format!(
                "the RunTask overrides would be {size} bytes, over ECS's limit of {MAX_OVERRIDES_BYTES}; the Nomad \
                 environment alone is about {env_bytes} bytes per container: list fewer containers in env_containers, \
                 set inject_env = false, or trim the job's env and container_overrides"
            ),
        });
    }
    Ok(overrides)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn env_goes_to_essential_containers_and_explicit_values_win() {
        let spec = TaskSpec {
            container_overrides: vec![ContainerOverride {
                name: "app".into(),
                command: Some(vec!["run".into()]),
                environment: vec![("MODE".into(), "explicit".into())],
                ..Default::default()
            }],
            ..TaskSpec::default()
        };
        let e = env(&[
            ("MODE", "from-nomad"),
            ("NOMAD_ALLOC_ID", "a1"),
            ("NOMAD_TOKEN", "secret"),
        ]);
        let o = build(&spec, &e, &["app".into(), "sidecar".into()]).unwrap();
        assert_eq!(o.container_overrides.len(), 2);
        let app = &o.container_overrides[0];
        assert_eq!(app.name, "app");
        assert_eq!(app.command.as_deref(), Some(&["run".to_string()][..]));
        assert_eq!(
            app.environment,
            vec![
                ("NOMAD_ALLOC_ID".into(), "a1".into()),
                ("MODE".into(), "explicit".into())
            ]
        );
        let side = &o.container_overrides[1];
        assert_eq!(side.name, "sidecar");
        assert_eq!(
            side.environment,
            vec![
                ("MODE".into(), "from-nomad".into()),
                ("NOMAD_ALLOC_ID".into(), "a1".into())
            ]
        );
        assert!(
            !overrides_json(&o).to_string().contains("secret"),
            "tokens are withheld"
        );
    }

    #[test]
    fn every_token_nomad_sets_is_withheld() {
        let e = env(&[
            ("NOMAD_ALLOC_ID", "a1"),
            ("NOMAD_TOKEN", "default-identity-jwt"),
            ("NOMAD_TOKEN_aws", "aws-identity-jwt"),
            ("NOMAD_TOKEN_vault_default", "vault-identity-jwt"),
            ("VAULT_TOKEN", "hvs.vault-token"),
            ("CONSUL_TOKEN", "consul-token"),
            ("CONSUL_HTTP_TOKEN", "consul-http-token"),
            ("NOMAD_TOKENS_SEEN", "kept: not one of Nomad's token variables"),
        ]);
        let o = build(&TaskSpec::default(), &e, &["app".into()]).unwrap();
        let names: Vec<&str> = o.container_overrides[0]
            .environment
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(names, ["NOMAD_ALLOC_ID", "NOMAD_TOKENS_SEEN"]);
        let shown = overrides_json(&o).to_string();
        for secret in ["jwt", "token\"", "hvs."] {
            assert!(!shown.contains(secret), "{shown}");
        }
        // Only tokens: nothing to inject, so no essential containers to look up.
        let only_tokens = env(&[("NOMAD_TOKEN_aws", "jwt"), ("CONSUL_HTTP_TOKEN", "t")]);
        assert!(!needs_essential_containers(&TaskSpec::default(), &only_tokens));
        assert!(build(&TaskSpec::default(), &only_tokens, &["app".into()])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn env_containers_and_opt_out() {
        let e = env(&[("A", "1")]);
        let spec = TaskSpec {
            env_containers: Some(vec!["web".into()]),
            ..TaskSpec::default()
        };
        let o = build(&spec, &e, &["ignored".into()]).unwrap();
        assert_eq!(o.container_overrides.len(), 1);
        assert_eq!(o.container_overrides[0].name, "web");
        assert!(!needs_essential_containers(&spec, &e));
        let off = TaskSpec {
            inject_env: false,
            ..TaskSpec::default()
        };
        assert!(build(&off, &e, &["app".into()]).unwrap().is_empty());
        assert!(needs_essential_containers(&TaskSpec::default(), &e));
    }

    #[test]
    fn the_8192_byte_limit_is_an_error_naming_the_size() {
        let big: BTreeMap<String, String> = (0..100).map(|i| (format!("VAR_{i:03}"), "x".repeat(100))).collect();
        let e = build(&TaskSpec::default(), &big, &["app".into()]).unwrap_err();
        assert_eq!(e.field, "task.container_overrides");
        assert!(e.message.contains("over ECS's limit of 8192"), "{}", e.message);
        let size: usize = e
            .message
            .split("would be ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(size > 8192);
        // Just under the limit passes.
        let fits: BTreeMap<String, String> = (0..60).map(|i| (format!("VAR_{i:03}"), "x".repeat(100))).collect();
        let o = build(&TaskSpec::default(), &fits, &["app".into()]).unwrap();
        assert!(overrides_json(&o).to_string().len() <= MAX_OVERRIDES_BYTES);
    }
}
