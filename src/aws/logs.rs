//! CloudWatch Logs, the one call the driver needs: `GetLogEvents` (JSON 1.1 like ECS, signing
//! name `logs`, target prefix `Logs_20140328`), to tail a container's `awslogs` stream.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::credentials::CredentialSource;
use super::error::{AwsError, ErrorKind};
use super::http::{HttpConfig, JsonClient};

pub const SERVICE: &str = "logs";
pub const TARGET_PREFIX: &str = "Logs_20140328";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogEvents {
    pub events: Vec<LogEvent>,
    /// Equal to the token sent when the end of the stream was reached.
    pub next_forward_token: Option<String>,
}

/// Where to read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    /// The stream's first event.
    Head,
    /// A `nextForwardToken` from an earlier answer (valid for 24 hours).
    Token(String),
    /// Events at or after this time (milliseconds since the epoch).
    Time(i64),
}

#[derive(Debug)]
pub struct LogsClient {
    json: JsonClient,
}

impl LogsClient {
    pub fn new(
        endpoint: &str,
        region: &str,
        creds: Arc<dyn CredentialSource>,
        cfg: &HttpConfig,
    ) -> Result<Self, AwsError> {
        Ok(LogsClient {
            json: JsonClient::new(endpoint, region, SERVICE, TARGET_PREFIX, creds, cfg)?,
        })
    }

    pub fn endpoint(&self) -> &str {
        self.json.endpoint()
    }

    pub fn get_log_events(&self, group: &str, stream: &str, from: &From) -> Result<LogEvents, AwsError> {
        const OP: &str = "GetLogEvents";
        let v = self.json.call(OP, &get_log_events_request(group, stream, from))?;
        parse_get_log_events(&v).map_err(|what| {
            AwsError::new(
                ErrorKind::Decode,
                OP,
                "InvalidResponse",
                format!("the response has no valid {what}"),
                None,
            )
        })
    }
}

/// The GetLogEvents request body (forward, oldest first).
pub fn get_log_events_request(group: &str, stream: &str, from: &From) -> Value {
    let mut body = Map::new();
    body.insert("logGroupName".into(), json!(group));
    body.insert("logStreamName".into(), json!(stream));
    body.insert("startFromHead".into(), json!(true));
    match from {
        From::Head => {}
        From::Token(t) => {
            body.insert("nextToken".into(), json!(t));
        }
        From::Time(ms) => {
            body.insert("startTime".into(), json!(ms));
        }
    }
    Value::Object(body)
}

/// GetLogEvents' answer. Err names the field that is missing or of the wrong type.
pub fn parse_get_log_events(v: &Value) -> Result<LogEvents, &'static str> {
    let o = v.as_object().ok_or("response")?;
    let events = match o.get("events") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|e| {
                let e = e.as_object().ok_or("events[]")?;
                let timestamp = e
                    .get("timestamp")
                    .and_then(|t| t.as_i64().or_else(|| t.as_f64().map(|f| f as i64)))
                    .ok_or("events[].timestamp")?;
                let message = e.get("message").and_then(Value::as_str).ok_or("events[].message")?;
                Ok(LogEvent {
                    timestamp,
                    message: message.to_string(),
                })
            })
            .collect::<Result<_, &'static str>>()?,
        Some(_) => return Err("events"),
    };
    let next_forward_token = match o.get("nextForwardToken") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("nextForwardToken"),
    };
    Ok(LogEvents {
        events,
        next_forward_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shapes() {
        assert_eq!(
            get_log_events_request("/ecs/web", "web/app/abc", &From::Head),
            json!({"logGroupName": "/ecs/web", "logStreamName": "web/app/abc", "startFromHead": true})
        );
        assert_eq!(
            get_log_events_request("g", "s", &From::Token("f/123".into()))["nextToken"],
            "f/123"
        );
        assert_eq!(get_log_events_request("g", "s", &From::Time(1700))["startTime"], 1700);
    }

    #[test]
    fn answers() {
        let v = json!({"events": [{"timestamp": 1700000000000i64, "message": "hello", "ingestionTime": 1},
                                  {"timestamp": 1700000000001i64, "message": "world"}],
                       "nextForwardToken": "f/2", "nextBackwardToken": "b/1"});
        let e = parse_get_log_events(&v).unwrap();
        assert_eq!(e.events.len(), 2);
        assert_eq!(e.events[1].message, "world");
        assert_eq!(e.next_forward_token.as_deref(), Some("f/2"));
        assert_eq!(parse_get_log_events(&json!({})).unwrap(), LogEvents::default());
        assert_eq!(
            parse_get_log_events(&json!({"events": [{"message": "x"}]})).unwrap_err(),
            "events[].timestamp"
        );
        assert_eq!(parse_get_log_events(&json!({"events": 3})).unwrap_err(), "events");
    }
}
