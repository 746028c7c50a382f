#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into <target>/ beside this script (README
"Fuzzing"); .ci/fuzz copies them into the working corpus. Run from anywhere.

msgpack_config: plugin and task stanzas shaped as go-cty marshals them (objects as maps with
every attribute present and keys sorted, null as nil, short strings as fixstr), and a few
duration texts.
driver_state: what TaskState::encode writes. aws_json: ECS answers of the shapes the ECS API
model gives. aws_error_body: 2-byte status, 1 header-selector byte, then the body (see the
target's comment).
The crash-* files beside the generated ones are inputs that once crashed a target (each is also
a unit test next to the code it broke); this script leaves them alone."""

import json
import os
import struct

NIL = object()


def enc(v):
    if v is NIL or v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        head = bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])
        return head + b
    if isinstance(v, bytes):  # pre-encoded (e.g. cty's unknown-value extension)
        return v
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b"".join(enc(i) for i in v)
    if isinstance(v, dict):
        keys = sorted(v)
        return bytes([0x80 | len(keys)]) + b"".join(enc(k) + enc(v[k]) for k in keys)
    raise TypeError(v)


def plugin(**over):
    base = {
        "cluster": None,
        "connect_timeout": None,
        "enabled": None,
        "endpoint": None,
        "poll_interval": None,
        "region": None,
        "request_timeout": None,
    }
    base.update(over)
    return base


def task(**over):
    vpc = {"assign_public_ip": None, "security_groups": None, "subnets": None}
    vpc.update(over.pop("vpc", {}))
    t = {
        "launch_type": None,
        "network_configuration": {"aws_vpc_configuration": vpc},
        "task_definition": None,
    }
    t.update(over)
    return {"task": t}


UNKNOWN = b"\xd4\x00\x00"

SEEDS = {
    "plugin-empty": plugin(),
    "plugin-full": plugin(
        cluster="nomad-remote-driver-cluster",
        connect_timeout="5s",
        enabled=True,
        endpoint="http://127.0.0.1:5000",
        poll_interval="5s",
        region="us-east-1",
        request_timeout="1m30s",
    ),
    "plugin-durations": plugin(enabled="true", poll_interval="1h2m3.5s", connect_timeout="500ms"),
    "plugin-unknown": plugin(enabled=True, region=UNKNOWN),
    "task-minimal": task(task_definition="my-task-definition:1"),
    "task-fargate-vpc": task(
        launch_type="FARGATE",
        task_definition="arn:aws:ecs:us-east-1:123456789012:task-definition/web:3",
        vpc={
            "assign_public_ip": "ENABLED",
            "security_groups": ["sg-05f444f6c0dda876d"],
            "subnets": ["subnet-0a1b2c3d", "subnet-0e1f2a3b"],
        },
    ),
    "task-no-network": {"task": {"launch_type": "EC2", "network_configuration": None, "task_definition": "web"}},
    "numbers": {"a": 1.5, "b": -7, "c": 1 << 40, "d": [0, 127, "0.1"]},
}

STATE = {
    "version": 1,
    "task_arn": "arn:aws:ecs:us-east-1:123456789012:task/nomad-remote-driver-cluster/0123456789abcdef",
    "cluster": "nomad-remote-driver-cluster",
    "region": "us-east-1",
    "endpoint": "http://127.0.0.1:5000",
    "task_definition": "my-task-definition:1",
    "started_at_unix_nanos": "1795000000987654321",
    "stdout_path": "/alloc/logs/.web.stdout.fifo",
    "stderr_path": "/alloc/logs/.web.stderr.fifo",
}

STATES = {
    "state-full": STATE,
    "state-no-endpoint": dict(STATE, endpoint=None, started_at_unix_nanos="0"),
    "state-extra-field": dict(STATE, added_later={"x": [1, 2.5, True, None]}),
}

TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/c1/0123456789abcdef"
TASK = {
    "taskArn": TASK_ARN,
    "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/c1",
    "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3",
    "lastStatus": "STOPPED",
    "desiredStatus": "STOPPED",
    "stopCode": "EssentialContainerExited",
    "stoppedReason": "Essential container in task exited",
    "createdAt": 1795000000.123,
    "startedAt": "1795000001.5",
    "stoppingAt": 1795000100,
    "stoppedAt": 1795000101.0,
    "startedBy": "nomad",
    "launchType": "FARGATE",
    "containers": [
        {"name": "web", "containerArn": "arn:aws:ecs:us-east-1:123456789012:container/x", "lastStatus": "STOPPED",
         "exitCode": 0, "reason": None},
        {"name": "sidecar", "lastStatus": "STOPPED", "exitCode": 137.0},
    ],
}

ANSWERS = {
    "describe-clusters": {
        "clusters": [{"clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/c1", "clusterName": "c1",
                      "status": "ACTIVE"}],
        "failures": [{"arn": "arn:aws:ecs:us-east-1:123456789012:cluster/c2", "reason": "MISSING"}],
    },
    "describe-tasks": {"tasks": [TASK], "failures": [{"arn": TASK_ARN, "reason": "MISSING", "detail": None}]},
    "run-task-running": {"tasks": [dict(TASK, lastStatus="PROVISIONING", desiredStatus="RUNNING", launchType="")],
                         "failures": []},
    "stop-task": {"task": TASK},
    "describe-task-definition": {
        "taskDefinition": {
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3",
            "family": "web",
            "revision": 3,
            "containerDefinitions": [{"name": "web", "essential": True}, {"name": "log-router", "essential": False},
                                     {"name": "x"}],
        }
    },
    "empty": {},
}

ERRORS = {
    "json-typed": (400, None, '{"__type":"com.amazonaws.ecs#ClusterNotFoundException","message":"Cluster not found."}'),
    "json-header": (400, "UnrecognizedClientException:http://internal.amazon.com/coral/com.amazon.coral.service/",
                    '{"message":"The security token included in the request is invalid."}'),
    "json-throttle": (400, None, '{"__type":"ThrottlingException","Message":"Rate exceeded"}'),
    "xml-error-response": (403, None, '<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="x"><Error>'
                           '<Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>a &amp; &quot;b&quot;'
                           '</Message></Error><RequestId>7a62</RequestId></ErrorResponse>'),
    "xml-response-errors": (503, None, "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request "
                            "limit exceeded.</Message></Error></Errors></Response>"),
    "html-500": (500, None, "<!doctype html><html><head><title>500 Internal Server Error</title><style>b{}</style>"
                 "</head><body><h1>Oops</h1><script>var x = '<b>';</script>&nbsp;&lt;p&gt;</body></html>"),
    "empty-429": (429, "com.amazonaws.ecs#ThrottlingException", ""),
    "text-502": (502, None, "Bad Gateway"),
}


def write(target, name, data):
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), target)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


if __name__ == "__main__":
    for name, value in SEEDS.items():
        write("msgpack_config", name + ".msgpack", enc(value))
    for i, text in enumerate(["5s", "1h2m3.5s", "250ms"]):  # the target also parses its input as a duration
        write("msgpack_config", "duration-%d.txt" % i, text.encode())
    for name, value in STATES.items():
        write("driver_state", name + ".json", json.dumps(value, separators=(",", ":")).encode())
    for name, value in ANSWERS.items():
        write("aws_json", name + ".json", json.dumps(value).encode())
    for name, (status, header, body) in ERRORS.items():
        head = struct.pack(">H", status) + (b"\x01" + header.encode() + b"\x00" if header else b"\x00")
        write("aws_error_body", name + ".bin", head + body.encode())
