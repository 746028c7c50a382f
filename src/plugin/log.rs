//! Logging as go-plugin hosts expect it: one hclog-style JSON object per line on stderr.
//!
//! The Nomad agent parses each line (PROTOCOL.md §2.1): `@level`, `@message` and `@timestamp`
//! must be JSON strings (anything else crashes old agents), `@timestamp` must have exactly six
//! fractional digits and an offset, and every other key is shown as a key/value pair. Values
//! of structured fields are always rendered as strings. Write errors (a host that went away)
//! are ignored, never a panic.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variable with an env_logger filter (e.g. `debug`, `nomad_driver_ecs=trace`).
pub const LOG_FILTER_ENV: &str = "NOMAD_DRIVER_ECS_LOG";
const DEFAULT_FILTER: &str = "warn,nomad_driver_ecs=debug";
const CRATE_PREFIX: &str = "nomad_driver_ecs";

/// Crates whose debug/trace output can carry request headers (ureq logs every header it
/// writes, session tokens included): capped at info whatever the filter says.
const HEADER_LOGGING_CRATES: &[&str] = &["ureq", "rustls"];

/// Installs the global logger. Safe to call more than once (later calls do nothing).
pub fn init() {
    let filter = std::env::var(LOG_FILTER_ENV).unwrap_or_else(|_| DEFAULT_FILTER.to_string());
    let inner = env_logger::Builder::new()
        .parse_filters(&filter)
        .target(env_logger::Target::Stderr)
        .format(|buf, record| {
            let line = format_record(record, SystemTime::now());
            writeln!(buf, "{line}")
        })
        .build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(RedactingLogger { inner })).is_ok() {
        log::set_max_level(max);
    }
}

/// env_logger behind a guard that drops records which may contain secrets.
struct RedactingLogger {
    inner: env_logger::Logger,
}

fn may_carry_secrets(metadata: &log::Metadata<'_>) -> bool {
    metadata.level() > log::Level::Info
        && HEADER_LOGGING_CRATES
            .iter()
            .any(|c| metadata.target() == *c || metadata.target().starts_with(&format!("{c}::")))
}

impl log::Log for RedactingLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        !may_carry_secrets(metadata) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !may_carry_secrets(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "error",
        log::Level::Warn => "warn",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

/// `nomad_driver_ecs::driver::task` → `ecs.driver.task`; other crates keep their target.
fn module_name(target: &str) -> String {
    match target.strip_prefix(CRATE_PREFIX) {
        Some(rest) => format!("ecs{}", rest.replace("::", ".")),
        None => target.replace("::", "."),
    }
}

struct KvCollector<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for KvCollector<'_> {
    fn visit_pair(&mut self, key: log::kv::Key<'kvs>, value: log::kv::Value<'kvs>) -> Result<(), log::kv::Error> {
        let mut k = key.as_str().to_string();
        if k.starts_with('@') {
            // Reserved keys belong to the envelope.
            k.insert(0, '_');
        }
        self.0.insert(k, serde_json::Value::String(value.to_string()));
        Ok(())
    }
}

/// Renders one record as a JSON line (without the newline).
pub fn format_record(record: &log::Record<'_>, now: SystemTime) -> String {
    let mut map = serde_json::Map::new();
    let _ = record.key_values().visit(&mut KvCollector(&mut map));
    map.insert("@level".into(), level_name(record.level()).into());
    map.insert("@message".into(), record.args().to_string().into());
    map.insert("@module".into(), module_name(record.target()).into());
    map.insert("@timestamp".into(), timestamp(now).into());
    serde_json::Value::Object(map).to_string()
}

/// Go layout `2006-01-02T15:04:05.000000Z07:00`, in UTC with an explicit `+00:00` offset.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, m, day) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamp_has_six_digits_and_offset() {
        let t = UNIX_EPOCH + Duration::new(1_795_000_000, 123_456_789);
        assert_eq!(timestamp(t), "2026-11-18T11:06:40.123456+00:00");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000+00:00");
        // Leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(t), "2000-02-29T00:00:00.000000+00:00");
    }

    #[test]
    fn record_is_hclog_json_with_string_values() {
        let kvs: &[(&str, i64)] = &[("attempt", 3)];
        let rec = log::Record::builder()
            .level(log::Level::Warn)
            .target("nomad_driver_ecs::driver::task")
            .args(format_args!("ECS call failed: \"quoted\"\n"))
            .key_values(&kvs)
            .build();
        let line = format_record(&rec, UNIX_EPOCH);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let obj = v.as_object().unwrap();
        for (k, val) in obj {
            assert!(val.is_string(), "{k} is not a string");
        }
        assert_eq!(obj["@level"], "warn");
        assert_eq!(obj["@module"], "ecs.driver.task");
        assert_eq!(obj["@message"], "ECS call failed: \"quoted\"\n");
        assert_eq!(obj["attempt"], "3");
        assert_eq!(obj["@timestamp"], "1970-01-01T00:00:00.000000+00:00");
    }

    #[test]
    fn header_logging_crates_are_capped_at_info() {
        let md = |level, target| log::Metadata::builder().level(level).target(target).build();
        assert!(may_carry_secrets(&md(log::Level::Debug, "ureq::unit")));
        assert!(may_carry_secrets(&md(log::Level::Trace, "ureq")));
        assert!(!may_carry_secrets(&md(log::Level::Info, "ureq::unit")));
        assert!(!may_carry_secrets(&md(log::Level::Debug, "ureqx")));
        assert!(!may_carry_secrets(&md(
            log::Level::Debug,
            "nomad_driver_ecs::aws::http"
        )));
    }

    #[test]
    fn reserved_keys_cannot_be_overridden_by_fields() {
        let kvs: &[(&str, &str)] = &[("@level", "fatal")];
        let rec = log::Record::builder()
            .level(log::Level::Info)
            .target("x::y")
            .args(format_args!("m"))
            .key_values(&kvs)
            .build();
        let v: serde_json::Value = serde_json::from_str(&format_record(&rec, UNIX_EPOCH)).unwrap();
        assert_eq!(v["@level"], "info");
        assert_eq!(v["_@level"], "fatal");
        assert_eq!(v["@module"], "x.y");
    }
}
