//! Encodes config values the way Nomad does: go-cty's msgpack marshaller (PROTOCOL.md §4).
//! Objects are maps with every attribute present and keys sorted; null is nil; integers use
//! the smallest encoding; non-integral numbers are float64 when exact, else decimal strings.

use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub enum Cty {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A number that is not exact in binary (e.g. 0.1): cty sends its decimal text.
    Decimal(String),
    Str(String),
    List(Vec<Cty>),
    Object(BTreeMap<String, Cty>),
}

pub fn s(v: &str) -> Cty {
    Cty::Str(v.to_string())
}

pub fn list(items: &[&str]) -> Cty {
    Cty::List(items.iter().map(|i| s(i)).collect())
}

pub fn obj(entries: Vec<(&str, Cty)>) -> Cty {
    Cty::Object(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

pub fn encode(v: &Cty) -> Vec<u8> {
    let mut out = Vec::new();
    enc(v, &mut out);
    out
}

fn str_header(len: usize, out: &mut Vec<u8>) {
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len < 256 {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len < 65536 {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn int(i: i64, out: &mut Vec<u8>) {
    if (0..128).contains(&i) {
        out.push(i as u8);
    } else if (-32..0).contains(&i) {
        out.push(i as i8 as u8);
    } else if i >= 0 {
        if i <= u8::MAX as i64 {
            out.extend_from_slice(&[0xcc, i as u8]);
        } else if i <= u16::MAX as i64 {
            out.push(0xcd);
            out.extend_from_slice(&(i as u16).to_be_bytes());
        } else if i <= u32::MAX as i64 {
            out.push(0xce);
            out.extend_from_slice(&(i as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(i as u64).to_be_bytes());
        }
    } else if i >= i8::MIN as i64 {
        out.extend_from_slice(&[0xd0, i as i8 as u8]);
    } else if i >= i16::MIN as i64 {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= i32::MIN as i64 {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

fn enc(v: &Cty, out: &mut Vec<u8>) {
    match v {
        Cty::Null => out.push(0xc0),
        Cty::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Cty::Int(i) => int(*i, out),
        Cty::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Cty::Decimal(d) | Cty::Str(d) => {
            str_header(d.len(), out);
            out.extend_from_slice(d.as_bytes());
        }
        Cty::List(items) => {
            if items.len() < 16 {
                out.push(0x90 | items.len() as u8);
            } else {
                out.push(0xdc);
                out.extend_from_slice(&(items.len() as u16).to_be_bytes());
            }
            items.iter().for_each(|i| enc(i, out));
        }
        Cty::Object(map) => {
            if map.len() < 16 {
                out.push(0x80 | map.len() as u8);
            } else {
                out.push(0xde);
                out.extend_from_slice(&(map.len() as u16).to_be_bytes());
            }
            for (k, v) in map {
                enc(&Cty::Str(k.clone()), out);
                enc(v, out);
            }
        }
    }
}

/// The plugin stanza as Nomad encodes it (every attribute of the schema present).
pub fn plugin_config(
    enabled: Option<bool>,
    cluster: Option<&str>,
    region: Option<&str>,
    endpoint: Option<&str>,
    poll: Option<&str>,
) -> Vec<u8> {
    plugin_config_with(enabled, cluster, region, endpoint, poll, &[])
}

/// As [`plugin_config`], with more string attributes set (e.g. `("request_timeout", "1s")`).
pub fn plugin_config_with(
    enabled: Option<bool>,
    cluster: Option<&str>,
    region: Option<&str>,
    endpoint: Option<&str>,
    poll: Option<&str>,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let values: Vec<(&str, Cty)> = extra.iter().map(|(k, v)| (*k, s(v))).collect();
    plugin_config_values(enabled, cluster, region, endpoint, poll, values)
}

/// As [`plugin_config`], with more attributes of any type set (e.g. `("stream_logs", Cty::Bool(false))`).
pub fn plugin_config_values(
    enabled: Option<bool>,
    cluster: Option<&str>,
    region: Option<&str>,
    endpoint: Option<&str>,
    poll: Option<&str>,
    extra: Vec<(&str, Cty)>,
) -> Vec<u8> {
    let opt = |v: Option<&str>| v.map(s).unwrap_or(Cty::Null);
    let mut entries = vec![
        // `enabled` has a default literal in the schema: Nomad always sends a bool.
        ("enabled", Cty::Bool(enabled.unwrap_or(false))),
        ("cluster", opt(cluster)),
        ("region", opt(region)),
        ("endpoint", opt(endpoint)),
        ("poll_interval", opt(poll)),
        ("connect_timeout", Cty::Null),
        ("request_timeout", Cty::Null),
        ("profile", Cty::Null),
        ("role_arn", Cty::Null),
        ("external_id", Cty::Null),
        ("role_session_name", Cty::Null),
        ("sts_endpoint", Cty::Null),
        ("ca_file", Cty::Null),
        ("address_timeout", Cty::Null),
        ("stream_logs", Cty::Bool(true)),
        ("logs_poll_interval", Cty::Null),
        ("logs_endpoint", Cty::Null),
        // A default literal in the schema: Nomad always sends a bool.
        ("use_fips_endpoint", Cty::Bool(false)),
        ("nomad_address", Cty::Null),
        ("nomad_token", Cty::Null),
        ("nomad_token_file", Cty::Null),
        ("nomad_ca_file", Cty::Null),
        ("adopt_lost", Cty::Bool(true)),
        ("drain_handoff", Cty::Bool(true)),
        ("drain_handoff_window", Cty::Null),
        ("reap_interval", Cty::Null),
        ("reap_grace", Cty::Null),
        ("reap_dry_run", Cty::Bool(false)),
        ("nomad_cluster", Cty::Null),
        ("reap_clusters", Cty::Null),
        ("reap_max_stop", Cty::Null),
        ("reap_max_stop_percent", Cty::Null),
        ("family_prefix", Cty::Null),
    ];
    for (k, v) in extra {
        entries.retain(|(key, _)| *key != k);
        entries.push((k, v));
    }
    encode(&obj(entries))
}

/// The seed job's task stanza, with optional overrides (None = attribute absent → null).
pub struct TaskStanza<'a> {
    pub launch_type: Option<&'a str>,
    pub task_definition: Option<&'a str>,
    pub assign_public_ip: Option<&'a str>,
    pub security_groups: Option<Vec<String>>,
    pub subnets: Option<Vec<String>>,
    /// false → no network_configuration block at all.
    pub network: bool,
}

impl TaskStanza<'_> {
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(Vec::new())
    }

    /// As [`TaskStanza::encode`], with more attributes or blocks in the task block.
    pub fn encode_with(&self, extra: Vec<(&str, Cty)>) -> Vec<u8> {
        let opt = |v: Option<&str>| v.map(s).unwrap_or(Cty::Null);
        let strs = |v: &Option<Vec<String>>| match v {
            Some(items) => Cty::List(items.iter().map(|i| s(i)).collect()),
            None => Cty::Null,
        };
        let network = if self.network {
            obj(vec![(
                "aws_vpc_configuration",
                obj(vec![
                    ("assign_public_ip", opt(self.assign_public_ip)),
                    ("security_groups", strs(&self.security_groups)),
                    ("subnets", strs(&self.subnets)),
                ]),
            )])
        } else {
            Cty::Null
        };
        let mut fields = vec![
            ("launch_type", opt(self.launch_type)),
            ("task_definition", opt(self.task_definition)),
            // Nomad sends every attribute of the schema; `extra` may set these two.
            ("task_definition_json", Cty::Null),
            ("task_definition_file", Cty::Null),
            ("network_configuration", network),
        ];
        for (k, v) in extra {
            fields.retain(|(key, _)| *key != k);
            fields.push((k, v));
        }
        encode(&obj(vec![("task", obj(fields))]))
    }
}
