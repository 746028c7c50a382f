//! The HCL schemas the plugin hands Nomad: the plugin stanza (ConfigSchema) and the task
//! stanza (TaskConfigSchema). Nomad validates job and agent files against them and encodes
//! the values as cty-msgpack (decoded in `nomad::config`).

use crate::proto::hclspec::{Attr, Block, BlockList, Default as DefaultSpec, Literal, Object, Spec};

fn attr(name: &str, ty: &str) -> Spec {
    let mut s = Spec::new();
    s.set_Attr(Attr {
        name: name.into(),
        type_: ty.into(),
        required: false,
        ..Default::default()
    });
    s
}

fn with_default(primary: Spec, literal_hcl: &str) -> Spec {
    let mut lit = Spec::new();
    lit.set_literal(Literal {
        value: literal_hcl.into(),
        ..Default::default()
    });
    let mut s = Spec::new();
    s.set_default(DefaultSpec {
        primary: Some(primary).into(),
        default: Some(lit).into(),
        ..Default::default()
    });
    s
}

fn object(fields: Vec<(&str, Spec)>) -> Spec {
    let mut o = Object::new();
    for (k, v) in fields {
        o.attributes.insert(k.to_string(), v);
    }
    let mut s = Spec::new();
    s.set_object(o);
    s
}

fn block(name: &str, nested: Spec) -> Spec {
    let mut s = Spec::new();
    s.set_block_value(Block {
        name: name.into(),
        required: false,
        nested: Some(nested).into(),
        ..Default::default()
    });
    s
}

fn block_list(name: &str, nested: Spec, max_items: u64) -> Spec {
    let mut s = Spec::new();
    s.set_block_list(BlockList {
        name: name.into(),
        min_items: 0,
        max_items,
        nested: Some(nested).into(),
        ..Default::default()
    });
    s
}

/// `plugin "nomad-driver-ecs" { config { ... } }`.
pub fn plugin_config_spec() -> Spec {
    object(vec![
        ("enabled", with_default(attr("enabled", "bool"), "false")),
        ("cluster", attr("cluster", "string")),
        ("region", attr("region", "string")),
        ("endpoint", attr("endpoint", "string")),
        ("poll_interval", attr("poll_interval", "string")),
        ("connect_timeout", attr("connect_timeout", "string")),
        ("request_timeout", attr("request_timeout", "string")),
        ("profile", attr("profile", "string")),
        ("role_arn", attr("role_arn", "string")),
        ("external_id", attr("external_id", "string")),
        ("role_session_name", attr("role_session_name", "string")),
        ("sts_endpoint", attr("sts_endpoint", "string")),
        ("ca_file", attr("ca_file", "string")),
        ("address_timeout", attr("address_timeout", "string")),
        ("stream_logs", with_default(attr("stream_logs", "bool"), "true")),
        ("logs_poll_interval", attr("logs_poll_interval", "string")),
        ("logs_endpoint", attr("logs_endpoint", "string")),
        (
            "use_fips_endpoint",
            with_default(attr("use_fips_endpoint", "bool"), "false"),
        ),
        ("nomad_address", attr("nomad_address", "string")),
        ("nomad_token", attr("nomad_token", "string")),
        ("nomad_token_file", attr("nomad_token_file", "string")),
        ("nomad_ca_file", attr("nomad_ca_file", "string")),
        ("adopt_lost", with_default(attr("adopt_lost", "bool"), "true")),
        ("drain_handoff", with_default(attr("drain_handoff", "bool"), "true")),
        ("drain_handoff_window", attr("drain_handoff_window", "string")),
        ("reap_interval", attr("reap_interval", "string")),
        ("reap_grace", attr("reap_grace", "string")),
        ("reap_dry_run", with_default(attr("reap_dry_run", "bool"), "false")),
        ("nomad_cluster", attr("nomad_cluster", "string")),
        ("reap_clusters", attr("reap_clusters", "list(string)")),
        ("reap_max_stop", attr("reap_max_stop", "number")),
        ("reap_max_stop_percent", attr("reap_max_stop_percent", "number")),
        ("family_prefix", attr("family_prefix", "string")),
        ("task_definition_cleanup", attr("task_definition_cleanup", "string")),
    ])
}

/// A task's `config { task { ... } }`: the seed job's stanza.
pub fn task_config_spec() -> Spec {
    let vpc = object(vec![
        ("assign_public_ip", attr("assign_public_ip", "string")),
        ("security_groups", attr("security_groups", "list(string)")),
        ("subnets", attr("subnets", "list(string)")),
    ]);
    let network = object(vec![("aws_vpc_configuration", block("aws_vpc_configuration", vpc))]);
    let capacity = object(vec![
        ("capacity_provider", attr("capacity_provider", "string")),
        ("weight", attr("weight", "number")),
        ("base", attr("base", "number")),
    ]);
    let constraint = object(vec![
        ("type", attr("type", "string")),
        ("expression", attr("expression", "string")),
    ]);
    let strategy = object(vec![
        ("type", attr("type", "string")),
        ("field", attr("field", "string")),
    ]);
    let container = object(vec![
        ("name", attr("name", "string")),
        ("command", attr("command", "list(string)")),
        ("environment", attr("environment", "map(string)")),
        ("cpu", attr("cpu", "number")),
        ("memory", attr("memory", "number")),
        ("memory_reservation", attr("memory_reservation", "number")),
    ]);
    let task = object(vec![
        ("launch_type", attr("launch_type", "string")),
        ("task_definition", attr("task_definition", "string")),
        ("task_definition_json", attr("task_definition_json", "string")),
        ("task_definition_file", attr("task_definition_file", "string")),
        ("network_configuration", block("network_configuration", network)),
        ("cluster", attr("cluster", "string")),
        (
            "capacity_provider_strategy",
            block_list("capacity_provider_strategy", capacity, 20),
        ),
        ("platform_version", attr("platform_version", "string")),
        ("enable_execute_command", attr("enable_execute_command", "bool")),
        ("enable_ecs_managed_tags", attr("enable_ecs_managed_tags", "bool")),
        ("propagate_tags", attr("propagate_tags", "string")),
        ("tags", attr("tags", "map(string)")),
        (
            "placement_constraints",
            block_list("placement_constraints", constraint, 10),
        ),
        ("placement_strategy", block_list("placement_strategy", strategy, 5)),
        ("group", attr("group", "string")),
        ("started_by", attr("started_by", "string")),
        ("task_role_arn", attr("task_role_arn", "string")),
        ("execution_role_arn", attr("execution_role_arn", "string")),
        ("cpu", attr("cpu", "string")),
        ("memory", attr("memory", "string")),
        ("container_overrides", block_list("container_overrides", container, 100)),
        ("inject_env", with_default(attr("inject_env", "bool"), "true")),
        ("env_containers", attr("env_containers", "list(string)")),
    ]);
    object(vec![("task", block("task", task))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::hclspec::spec::Block as B;

    fn obj(s: &Spec) -> &Object {
        match &s.block {
            Some(B::Object(o)) => o,
            other => panic!("not an object: {other:?}"),
        }
    }

    fn nested(s: &Spec) -> &Spec {
        match &s.block {
            Some(B::BlockValue(b)) => b.nested.as_ref().unwrap(),
            other => panic!("not a block: {other:?}"),
        }
    }

    #[test]
    fn every_attr_has_a_type_and_a_name() {
        fn walk(s: &Spec, seen: &mut Vec<String>) {
            match &s.block {
                Some(B::Attr(a)) => {
                    assert!(!a.type_.is_empty(), "attr {} has no type", a.name);
                    assert!(!a.name.is_empty());
                    seen.push(a.name.clone());
                }
                Some(B::Object(o)) => o.attributes.values().for_each(|v| walk(v, seen)),
                Some(B::BlockValue(b)) => walk(b.nested.as_ref().unwrap(), seen),
                Some(B::BlockList(b)) => walk(b.nested.as_ref().unwrap(), seen),
                Some(B::Default(d)) => walk(d.primary.as_ref().unwrap(), seen),
                Some(B::Literal(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        let mut names = Vec::new();
        walk(&task_config_spec(), &mut names);
        names.sort();
        names.dedup();
        assert_eq!(
            names,
            [
                "assign_public_ip",
                "base",
                "capacity_provider",
                "cluster",
                "command",
                "cpu",
                "enable_ecs_managed_tags",
                "enable_execute_command",
                "env_containers",
                "environment",
                "execution_role_arn",
                "expression",
                "field",
                "group",
                "inject_env",
                "launch_type",
                "memory",
                "memory_reservation",
                "name",
                "platform_version",
                "propagate_tags",
                "security_groups",
                "started_by",
                "subnets",
                "tags",
                "task_definition",
                "task_definition_file",
                "task_definition_json",
                "task_role_arn",
                "type",
                "weight"
            ]
        );
        let mut names = Vec::new();
        walk(&plugin_config_spec(), &mut names);
        names.sort();
        assert_eq!(
            names,
            [
                "address_timeout",
                "adopt_lost",
                "ca_file",
                "cluster",
                "connect_timeout",
                "drain_handoff",
                "drain_handoff_window",
                "enabled",
                "endpoint",
                "external_id",
                "family_prefix",
                "logs_endpoint",
                "logs_poll_interval",
                "nomad_address",
                "nomad_ca_file",
                "nomad_cluster",
                "nomad_token",
                "nomad_token_file",
                "poll_interval",
                "profile",
                "reap_clusters",
                "reap_dry_run",
                "reap_grace",
                "reap_interval",
                "reap_max_stop",
                "reap_max_stop_percent",
                "region",
                "request_timeout",
                "role_arn",
                "role_session_name",
                "stream_logs",
                "sts_endpoint",
                "task_definition_cleanup",
                "use_fips_endpoint"
            ]
        );
    }

    #[test]
    fn task_stanza_shape_matches_the_seed() {
        let root = task_config_spec();
        let task = nested(&obj(&root).attributes["task"]);
        let net = nested(&obj(task).attributes["network_configuration"]);
        let vpc = nested(&obj(net).attributes["aws_vpc_configuration"]);
        match &obj(vpc).attributes["subnets"].block {
            Some(B::Attr(a)) => assert_eq!(a.type_, "list(string)"),
            other => panic!("{other:?}"),
        }
    }
}
