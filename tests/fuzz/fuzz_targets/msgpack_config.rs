//! Nomad's cty-msgpack configs (SetConfig's `msgpack_config`, StartTask's
//! `msgpack_driver_config`): the raw decoder, then both typed decoders on the same bytes.
//!
//! The strings inside a config are hard to reach through msgpack's length prefixes, so the
//! input also goes, as text, straight to the duration parser (poll_interval, timeouts).
//!
//! Checked besides "never panics": decode errors point inside the input; a decoded value
//! re-encoded by the small writer below decodes to the same value; whatever the typed
//! decoders accept obeys the rules they enforce.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use nomad_driver_ecs::nomad::config::{decode_plugin_config, decode_task_config, parse_duration};
use nomad_driver_ecs::nomad::msgpack::{self, Value};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(d) = parse_duration(text) {
            assert!(!text.trim().is_empty(), "{text:?} gave {d:?}");
        }
    }

    match msgpack::decode(data) {
        Ok(v) => {
            let again = msgpack::decode(&write(&v)).expect("a re-encoded value decodes");
            assert!(same(&v, &again), "re-encoding changed {v:?} into {again:?}");
        }
        Err(e) => {
            assert!(
                e.offset <= data.len(),
                "error offset {} past {} bytes",
                e.offset,
                data.len()
            );
            assert!(!e.to_string().is_empty());
        }
    }

    match decode_plugin_config(data) {
        Ok(c) => {
            assert!(c.poll_interval >= Duration::from_millis(200), "{c:?}");
            assert!(!c.cluster.trim().is_empty(), "{c:?}");
            let http = Duration::from_millis(100)..=Duration::from_secs(300);
            assert!(
                http.contains(&c.connect_timeout) && http.contains(&c.request_timeout),
                "{c:?}"
            );
            assert!(c.connect_timeout <= c.request_timeout, "{c:?}");
            if let Some(r) = &c.region {
                assert!(!r.is_empty(), "{c:?}");
                assert!(
                    r.chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-'),
                    "{c:?}"
                );
            }
            if let Some(e) = &c.endpoint {
                assert!(e.starts_with("http://") || e.starts_with("https://"), "{c:?}");
                assert!(!e.ends_with('/'), "{c:?}");
            }
        }
        Err(e) => assert!(!e.field.is_empty() && !e.message.is_empty(), "{e:?}"),
    }

    match decode_task_config(data) {
        Ok(t) => {
            assert!(!t.task_definition.is_empty(), "{t:?}");
            assert_eq!(t.task_definition, t.task_definition.trim(), "{t:?}");
            if let Some(vpc) = &t.vpc {
                assert!((1..=16).contains(&vpc.subnets.len()), "{t:?}");
                assert!(vpc.security_groups.len() <= 5, "{t:?}");
                assert!(vpc
                    .subnets
                    .iter()
                    .chain(&vpc.security_groups)
                    .all(|s| !s.trim().is_empty()));
                assert!(matches!(
                    vpc.assign_public_ip.as_deref(),
                    None | Some("ENABLED" | "DISABLED")
                ));
            }
        }
        Err(e) => assert!(!e.field.is_empty() && !e.message.is_empty(), "{e:?}"),
    }
});

/// Equality with floats compared bit for bit, so that NaN equals itself.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((k1, v1), (k2, v2))| same(k1, k2) && same(v1, v2))
        }
        _ => a == b,
    }
}

/// A plain msgpack writer (widest fixed forms; no attempt at the shortest encoding).
fn write(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    put(v, &mut out);
    out
}

fn put(v: &Value, out: &mut Vec<u8>) {
    fn len32(tag: u8, n: usize, out: &mut Vec<u8>) {
        out.push(tag);
        out.extend_from_slice(&u32::try_from(n).expect("fits u32").to_be_bytes());
    }
    match v {
        Value::Nil => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Int(i) => {
            out.push(0xd3);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::UInt(u) => {
            out.push(0xcf);
            out.extend_from_slice(&u.to_be_bytes());
        }
        Value::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Str(s) => {
            len32(0xdb, s.len(), out);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bin(b) => {
            len32(0xc6, b.len(), out);
            out.extend_from_slice(b);
        }
        Value::Array(items) => {
            len32(0xdd, items.len(), out);
            items.iter().for_each(|i| put(i, out));
        }
        Value::Map(entries) => {
            len32(0xdf, entries.len(), out);
            for (k, v) in entries {
                put(k, out);
                put(v, out);
            }
        }
        Value::Ext(ty, data) => {
            len32(0xc9, data.len(), out);
            out.push(*ty as u8);
            out.extend_from_slice(data);
        }
    }
}
