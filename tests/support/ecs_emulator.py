#!/usr/bin/env python3
"""ECS emulator for the integration tests: moto's server, in-process, plus test-only control endpoints.

This docstring is the contract the Rust integration tests follow.

Runs every moto service (exactly what ``python -m moto.server`` serves) as a WSGI app under werkzeug on
127.0.0.1, behind a small WSGI middleware that answers the control endpoints under ``/_test/`` and can inject
faults. Everything else (AWS API calls, ``/moto-api/...``) goes to moto unchanged. Requirements: Python 3.11,
moto 5.2.x, flask, flask-cors, werkzeug (boto3/botocore come with moto).

Command line
------------
    python3 tests/support/ecs_emulator.py [--port N] [--auth]

``--port N``  port to listen on, 127.0.0.1 only; 0 (the default) picks a free port.
``--tls-dir D`` serve HTTPS (not HTTP) with a certificate for localhost and 127.0.0.1 from a CA made at start;
              the CA certificate is written to ``D/ca.pem`` before READY. Control endpoints are HTTPS too.
``--auth``    signature checking on from the start, with no free calls: only requests signed with a key
              from ``POST /_test/auth-user`` pass. Without ``--auth`` any credentials are accepted (the env
              variable INITIAL_NO_AUTH_ACTION_COUNT is ignored either way).

Once the server accepts connections, exactly one line ``READY <port>`` goes to stdout; nothing else is ever
written to stdout (logs go to stderr; werkzeug's per-request lines only when ECS_EMULATOR_VERBOSE=1).
ECS, EC2 (us-east-1) and IAM are loaded before READY, so the first API call is as fast as the later ones.
Every response carries ``Connection: close``. If the port cannot be bound the process exits with status 1
without printing READY (stdout simply closes).

The process exits with status 0 on SIGTERM or SIGINT, and when its stdin reaches EOF (the parent died): give it
``Stdio::piped()`` for stdin and keep the write end open for the emulator's lifetime. (If stdin is /dev/null the
EOF watch is skipped, so ``Stdio::null()`` does not make it exit at once.)

At start ECS task state transitions are pinned (moto state manager, model ``ecs::task``, progression manual,
times 1000000): a task stays RUNNING until StopTask or ``POST /_test/stop-task``. The pin survives
``POST /moto-api/reset``.

Talking to moto
---------------
Endpoint ``http://127.0.0.1:<port>``. ECS requests: ``POST /``, ``Content-Type: application/x-amz-json-1.1``,
``X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Op>``, SigV4 ``Authorization`` whose credential scope is
``<key>/<date>/<region>/ecs/aws4_request`` (moto routes on the scope's service; the region selects a separate
state store). Account id is 123456789012.

Control endpoints
-----------------
All take and return JSON (``Content-Type: application/json``). A missing or empty body means ``{}``. Errors come
back as ``{"error": "<text>"}`` with status 400 (bad input), 404 (unknown endpoint or object) or 500. They are
never counted in ``/_test/calls`` and never subject to auth or faults.

``GET /_test/health``
    -> 200 ``{"ok": true, "port": <int>, "auth": <bool>}``

``POST /_test/setup``
    body (every key optional; defaults shown)::

        {"region": "us-east-1", "cluster": "default", "task_definition_family": "my-task-definition",
         "containers": [{"name": "web", "essential": true}],
         "subnet_ids": [], "security_group_ids": []}

    Creates the cluster (kept if it already exists and is ACTIVE) and registers the task definition: networkMode
    awsvpc, requiresCompatibilities [FARGATE], cpu "256", memory "512"; each container is
    ``{"image": "nginx", "memory": 512, "essential": true, "portMappings": []}`` updated with the given
    container object (so extra keys such as "command" or "image" pass through; "name" is required). If the
    family's latest ACTIVE revision already has the same definition it is reused, so calling setup twice is fine.
    ``subnet_ids`` (strings starting with ``subnet-``) and ``security_group_ids`` (strings starting with ``sg-``)
    are ids that must exist afterwards in moto's EC2 of that region, under exactly those ids: each missing
    subnet is created in the default VPC (not default-for-AZ), in an availability zone none of the listed
    subnets uses yet (zones in name order; they are reused only when there are more subnets than zones), with
    the first free /20 of the VPC's CIDR (172.31.0.0/16; then /24, /28); each missing security group is created
    in the default VPC with name ``ecs-emulator-<id>``. Ids that already exist are kept as they are (so setup is
    idempotent), repeated ids count once, a wrong prefix -> 400. moto itself makes the objects under the
    wanted id, so DescribeSubnets / DescribeSecurityGroups list them and RunTask accepts them in
    awsvpcConfiguration (ENI attachment with ``subnetId`` = the first subnet). ``POST /moto-api/reset`` deletes
    them: call setup again.
    -> 200 ``{"cluster_arn": "...", "task_definition_arn": "...:<revision>",
              "subnets": ["subnet-...", ...], "security_group": "sg-...", "security_groups": ["sg-...", ...]}``
    ``subnets`` are the requested ``subnet_ids`` in the given order, then the default VPC's other subnets in
    that region (sorted by availability zone, then id). ``security_groups`` are the requested
    ``security_group_ids`` in the given order, then the default VPC's default security group;
    ``security_group`` is its first element (the default security group when none were requested).

``POST /_test/stop-task``
    body::

        {"region": "us-east-1", "cluster": "default", "task": "<task ARN or task id>",
         "exit_code": 137,                     # int or null; absent = null
         "container": "web",                   # optional: only this container gets exit_code
         "exit_codes": {"web": 0, "sidecar": 3},   # optional, per container, overrides exit_code
         "stop_code": "EssentialContainerExited",  # default shown; null = no stopCode
         "stopped_reason": "Essential container in task exited",   # default shown
         "container_reason": "OutOfMemoryError",   # optional: reason on every affected container
         "container_reasons": {"sidecar": "..."}}  # optional, per container

    Edits the task in moto's memory the way an external stop looks in real ECS: lastStatus and desiredStatus
    STOPPED, stopCode, stoppedReason, stoppingAt/executionStoppedAt/stoppedAt = now. ``containers[]`` is first
    completed to hold one entry per container of the task definition (moto's RunTask lists only the first).
    Every container gets lastStatus STOPPED. A container's exitCode is exit_codes[name] if given, else
    exit_code if "container" is absent or names it; when that value is null, or the container gets no code,
    the ``exitCode`` key is absent (as real ECS shows a container that never ran). "Affected" containers (the
    ones named by "container", all if absent, plus those in exit_codes) get ``reason`` = container_reason.
    Unknown container names -> 400; unknown task -> 404.
    -> 200 the task object exactly as DescribeTasks serializes it (without tags).

``POST /_test/forget-task``
    body ``{"region": "us-east-1", "cluster": "default", "task": "<task ARN or task id>"}`` ("task" required).
    Removes the task from moto's memory altogether, as if ECS had expired it: DescribeTasks, ListTasks and
    ``GET /_test/tasks`` no longer return it (moto's DescribeTasks then gives empty ``tasks`` and empty
    ``failures``, not real ECS's MISSING failure). Its ENI stays in EC2. Unknown task -> 404.
    -> 200 ``{"removed": true, "task_arn": "<task ARN>"}``

``POST /_test/fault``
    body ``{"operation": "DescribeTasks", "count": 1, "status": 400, "type": "ThrottlingException",
    "message": "Rate exceeded", "delay_ms": 0, "body": null, "close": false}`` (only "operation" required;
    defaults shown).
    The next ``count`` requests whose X-Amz-Target ends with ``.<operation>`` (``"*"``: every ECS request) are
    answered by the middleware, after sleeping delay_ms, without reaching moto: HTTP ``status``, headers
    ``X-Amzn-Errortype: <type>``, ``Content-Type: application/x-amz-json-1.1``, ``x-amzn-RequestId``, body
    ``{"__type": "<type>", "message": "<message>"}``. Default type by status: 400/429 ThrottlingException,
    500 ServerException, 503 ServiceUnavailableException, other 5xx ServerException, other 4xx
    ClientException; default message "Rate exceeded" for ThrottlingException, otherwise "Injected fault".
    Several faults may be queued; the oldest matching one with calls left is used.

    ``"body": {...}`` (a JSON object; anything else -> 400): the response body is exactly that JSON instead,
    with status ``status`` (default 200 when body is given), ``Content-Type: application/x-amz-json-1.1``,
    ``x-amzn-RequestId``, and ``X-Amzn-Errortype`` only if ``type`` is given (no default type, message
    unused). E.g. ``{"operation": "RunTask", "body": {"tasks": [], "failures": [{"arn": "arn:...",
    "reason": "RESOURCE:MEMORY"}]}}`` makes RunTask answer 200 with that failure.

    ``"close": true``: after delay_ms the connection is closed with a TCP reset (SO_LINGER 0) without any
    response bytes (the client sees "connection reset by peer"); status/type/message/body are ignored. It
    wins over ``body``. (Only if the middleware ever runs under another WSGI server than this script's does
    it fall back to HTTP 502 with a text/html body.)
    -> 200 ``{"queued": <number of queued faults>}``
``GET /_test/fault`` -> the queue, ``[{"operation", "remaining", "status", "type", "message", "delay_ms",
    "body", "close"}]`` (``type`` and ``message`` may be null for body faults).
``POST /_test/fault/clear`` -> ``{"cleared": <n>}``.

``GET /_test/calls``
    -> ``{"RunTask": 3, "DescribeTasks": 10, ...}``: ECS operations received (X-Amz-Target
    ``AmazonEC2ContainerServiceV20141113.*``, faulted ones included) since start or the last reset.
    Query-protocol calls (STS: form-encoded POSTs with an ``Action``) are counted under their Action too, and
    CloudWatch Logs calls (``X-Amz-Target: Logs_20140328.*``) under their operation.
``POST /_test/calls/reset`` -> ``{"ok": true}``; clears counts and recorded bodies.
``GET /_test/access-keys?operation=DescribeClusters`` -> ``["AKID...", null, ...]``: the access key id of each
    recorded call's SigV4 signature, in order (null when the call was unsigned). ECS operations and STS Actions.
``POST /_test/eni-delay`` body ``{"describe_tasks": N}`` -> ``{"describe_tasks": N}``: from now on RunTask answers show
    the ENI attachment as PRECREATED without ``privateIPv4Address``, and DescribeTasks shows it so for the first N
    answers about each task (an ENI still being attached, as on real ECS); 0 turns it off. ``/_test/tasks`` always
    has the address (``private_ipv4``).
``POST /_test/log-events`` body ``{"region": "us-east-1", "group": "/ecs/web", "stream": "web/web/<task id>",
    "messages": ["line 1", "line 2"]}`` -> ``{"put": 2}``: appends the messages to that CloudWatch Logs stream in
    moto (group and stream created when missing), with strictly increasing millisecond timestamps.
``POST /_test/role`` body ``{"role_name": "..."}`` (optional) -> ``{"role_arn": "arn:aws:iam::123456789012:role/..."}``:
    creates (or reuses) an IAM role anyone may assume (AssumeRole and AssumeRoleWithWebIdentity) with an allow-all
    inline policy, so assumed-role credentials pass auth mode.
``GET /_test/last-request?operation=RunTask`` -> the last ECS request body of that operation, as parsed JSON
    (a string if it was not JSON; for an STS Action the form as an object); 404 if none.
``GET /_test/requests?operation=RunTask`` -> list of all recorded bodies of that operation, oldest first
    (``[]`` if none).

``POST /_test/auth-user``
    body optional ``{"user_name": "..."}`` (default ``ecs-emulator-user-<n>``). Creates, straight in moto's IAM
    backend (so it works while auth is on), an IAM user with an access key and an inline policy allowing
    ``*`` on ``*``.
    -> 200 ``{"access_key_id": "AKIA...", "secret_access_key": "...", "user_name": "...",
              "account_id": "123456789012"}``
    ``POST /moto-api/reset`` deletes the user: create another one afterwards.

``GET /_test/tasks?region=us-east-1&cluster=<name or ARN>``
    -> every task of that cluster in moto's memory, in creation order:
    ``[{"arn", "last_status", "desired_status", "started_by", "task_definition_arn", "stopped_reason",
    "client_token"?, "private_ipv4"?}]``. ``client_token`` is present when the RunTask that created the task carried a
    clientToken (moto itself ignores clientToken; the middleware remembers it). Unknown cluster -> ``[]``.

``GET /_test/task-tags?region=us-east-1&cluster=<name or ARN>&task=<task ARN or task id>``
    -> the task's tags as moto holds them (RunTask ``tags``, then TagResource / UntagResource):
    ``[{"key": "...", "value": "..."}]`` (``value`` "" when the tag has none). Unknown task -> 404.

ListTasks paging
----------------
moto's ListTasks ignores ``maxResults`` and ``nextToken`` and answers every matching ARN. The middleware pages
moto's answer the way ECS does: the request (filters ``startedBy``, ``family``, ``desiredStatus``, ... included)
goes to moto unchanged, then the ARNs, in moto's order, are cut to ``maxResults`` (default 100) starting at the
position that ``nextToken`` names, and ``nextToken`` (an opaque string) is added when more remain; the last page
has no ``nextToken``. The token is only a position: tasks started or removed between pages shift the pages.
``maxResults`` that is not a whole number from 1 to 100, or a ``nextToken`` this emulator did not make, -> 400
``InvalidParameterException`` (headers and body as moto's errors), without reaching moto. Counted and recorded in
``/_test/calls`` like any call; faults apply first.

RunTask with a capacity provider strategy
-----------------------------------------
moto ignores ``capacityProviderStrategy`` and, without ``launchType`` FARGATE, wants container instances. A RunTask
whose strategy names only ``FARGATE`` / ``FARGATE_SPOT`` (and no launchType) reaches moto with launchType FARGATE,
as real ECS would run it on Fargate. ``/_test/requests`` shows the body as the client sent it.

RunTask idempotency
-------------------
moto ignores ``clientToken``; real ECS does not start a second task for a token it has seen. The middleware
plays ECS's part: the first successful (200) RunTask answer for a clientToken is kept, and a later RunTask with
the same token (in any region) gets that same answer without reaching moto, so no second task is made. Requests
with the same token are serialised, so a retry racing the original cannot slip past. Counted in
``/_test/calls`` like any call. ``POST /_test/forget-task`` drops the token of the task it removes.

In auth mode moto answers a bad signature with HTTP 403 and an XML body (SignatureDoesNotMatch,
InvalidClientTokenId, AccessDenied), not JSON.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import importlib
import io
import itertools
import json
import logging
import os
import signal
import socket
import stat
import struct
import sys
import threading
import time
import traceback
import uuid
from datetime import datetime, timezone
from urllib.parse import parse_qs

ACCOUNT_ID = "123456789012"
ECS_TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."
ECS_TASK_TRANSITION = {"progression": "manual", "times": 1000000}
LIST_TASKS_MAX_RESULTS = 100  # ECS's page size when maxResults is absent, and its largest
LIST_TASKS_TOKEN_PREFIX = "ecs-emulator:list-tasks:"

log = logging.getLogger("ecs_emulator")


class ControlError(Exception):
    """An error answered as ``{"error": message}`` with the given HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------------------------------------------
# Helpers for moto's in-memory state
# --------------------------------------------------------------------------------------------------------------


def ecs_backend(region: str):
    from moto.ecs.models import ecs_backends

    return ecs_backends[ACCOUNT_ID][region]


def ec2_backend(region: str):
    from moto.ec2.models import ec2_backends

    return ec2_backends[ACCOUNT_ID][region]


def cluster_name_of(cluster: str) -> str:
    return cluster.split("/")[-1]


def serialize_task(task) -> dict:
    """The task as moto's DescribeTasks would serialize it (tags excluded, as without include=["TAGS"])."""
    from moto.core.serialize import XFormedAttributePicker, get_serializer_class, never_return
    from moto.core.utils import get_service_model

    service_model = get_service_model("ecs")
    operation_model = service_model.operation_model("DescribeTasks")
    serializer_cls = get_serializer_class(service_model.service_name, "json")
    picker = XFormedAttributePicker(
        response_transformers={"DescribeTasksResponse.tasks.Task.tags": never_return}
    )
    serializer = serializer_cls(operation_model=operation_model, pretty_print=False, value_picker=picker)
    serialized = serializer.serialize({"tasks": [task], "failures": []})
    body = serialized["body"]
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    return json.loads(body)["tasks"][0]


def default_type_for_status(status: int) -> str:
    if status in (400, 429):
        return "ThrottlingException"
    if status == 503:
        return "ServiceUnavailableException"
    if status >= 500:
        return "ServerException"
    return "ClientException"


# --------------------------------------------------------------------------------------------------------------
# The middleware
# --------------------------------------------------------------------------------------------------------------


class Emulator:
    """WSGI middleware: /_test/ control endpoints, fault injection and call recording in front of moto."""

    def __init__(self, moto_app, auth: bool):
        self.moto_app = moto_app
        self.auth = auth
        self.port = 0
        self.lock = threading.Lock()
        self.faults: list[dict] = []
        self.calls: dict[str, int] = {}
        self.bodies: dict[str, list] = {}
        self.client_tokens: dict[str, str] = {}  # task ARN -> clientToken of the RunTask that made it
        self.access_keys: dict[str, list] = {}  # operation -> access key id of each call's signature (or None)
        self.eni_delay = 0  # DescribeTasks answers per task that still lack the ENI address
        self.eni_seen: dict[str, int] = {}  # task ARN -> DescribeTasks answers given so far
        self.run_task_answers: dict[str, tuple[str, list, bytes]] = {}  # clientToken -> first 200 answer
        self.token_locks: dict[str, threading.Lock] = {}
        self.user_seq = itertools.count(1)
        self.routes = {
            ("GET", "/_test/health"): self.health,
            ("POST", "/_test/setup"): self.setup,
            ("POST", "/_test/stop-task"): self.stop_task,
            ("POST", "/_test/forget-task"): self.forget_task,
            ("POST", "/_test/fault"): self.add_fault,
            ("GET", "/_test/fault"): self.list_faults,
            ("POST", "/_test/fault/clear"): self.clear_faults,
            ("GET", "/_test/calls"): self.get_calls,
            ("POST", "/_test/calls/reset"): self.reset_calls,
            ("GET", "/_test/last-request"): self.last_request,
            ("GET", "/_test/requests"): self.all_requests,
            ("POST", "/_test/auth-user"): self.auth_user,
            ("GET", "/_test/tasks"): self.list_tasks,
            ("GET", "/_test/access-keys"): self.get_access_keys,
            ("POST", "/_test/role"): self.create_role,
            ("POST", "/_test/eni-delay"): self.set_eni_delay,
            ("POST", "/_test/log-events"): self.put_log_events,
            ("GET", "/_test/task-tags"): self.task_tags,
        }

    # ---- WSGI entry point ----------------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/_test" or path.startswith("/_test/"):
            return self.control(environ, start_response)

        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target:
            content_type = environ.get("CONTENT_TYPE", "")
            if environ.get("REQUEST_METHOD") == "POST" and content_type.startswith("application/x-www-form-urlencoded"):
                self.record_query_call(environ)
            return self.moto_app(environ, start_response)

        operation = target.rsplit(".", 1)[-1]
        is_ecs = target.startswith(ECS_TARGET_PREFIX)
        # Always consume the body here: a faulted request must not leave unread bytes on a kept-alive connection.
        body = parse_json_or_text(read_body(environ))
        if is_ecs or target.startswith("Logs_20140328."):
            with self.lock:
                self.calls[operation] = self.calls.get(operation, 0) + 1
                self.bodies.setdefault(operation, []).append(body)
                self.access_keys.setdefault(operation, []).append(signing_key(environ))

        fault = self.take_fault(operation, is_ecs)
        if fault is not None:
            return self.fault_response(fault, environ, start_response)

        if is_ecs and operation == "RunTask" and isinstance(body, dict):
            fargate_by_strategy(environ, body)
        if is_ecs and operation == "RunTask" and isinstance(body, dict) and body.get("clientToken"):
            return self.run_task_recording_token(environ, start_response, str(body["clientToken"]))
        if is_ecs and operation in ("RunTask", "DescribeTasks") and self.eni_delay > 0:
            return self.delaying_eni_address(environ, start_response)
        if is_ecs and operation == "ListTasks" and isinstance(body, dict):
            return self.list_tasks_paged(environ, start_response, body)
        return self.moto_app(environ, start_response)

    # ---- ListTasks paging ----------------------------------------------------------------------------------

    @staticmethod
    def ecs_error(start_response, status: int, error_type: str, message: str):
        """An ECS JSON error answer, shaped like moto's (``__type``, ``message`` and ``Message``)."""
        data = json.dumps({"__type": error_type, "message": message, "Message": message}).encode("utf-8")
        start_response(
            f"{status} {http_reason(status)}",
            [
                ("Content-Type", "application/x-amz-json-1.1"),
                ("X-Amzn-Errortype", error_type),
                ("x-amzn-RequestId", str(uuid.uuid4())),
                ("Content-Length", str(len(data))),
            ],
        )
        return [data]

    @staticmethod
    def list_tasks_token(offset: int) -> str:
        return base64.urlsafe_b64encode(f"{LIST_TASKS_TOKEN_PREFIX}{offset}".encode("ascii")).decode("ascii")

    @staticmethod
    def list_tasks_offset(token) -> int | None:
        """The position a nextToken of ours names, or None when it is not one of ours."""
        if not isinstance(token, str) or not token:
            return None
        try:
            text = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
        except (binascii.Error, UnicodeError, ValueError):
            return None
        if not text.startswith(LIST_TASKS_TOKEN_PREFIX):
            return None
        digits = text[len(LIST_TASKS_TOKEN_PREFIX):]
        return int(digits) if digits.isdigit() else None

    def list_tasks_paged(self, environ, start_response, body: dict):
        max_results = body.get("maxResults", LIST_TASKS_MAX_RESULTS)
        if max_results is None:
            max_results = LIST_TASKS_MAX_RESULTS
        if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= 100:
            return self.ecs_error(
                start_response, 400, "InvalidParameterException", "maxResults must be between 1 and 100."
            )
        offset = 0
        if body.get("nextToken") is not None:
            offset = self.list_tasks_offset(body.get("nextToken"))
            if offset is None:
                return self.ecs_error(
                    start_response, 400, "InvalidParameterException", "Invalid nextToken provided."
                )

        def page(data: bytes) -> bytes:
            try:
                answer = json.loads(data)
            except ValueError:
                return data
            if not isinstance(answer, dict):
                return data
            arns = answer.get("taskArns") or []
            end = offset + max_results
            answer["taskArns"] = arns[offset:end]
            answer.pop("nextToken", None)
            if end < len(arns):
                answer["nextToken"] = self.list_tasks_token(end)
            return json.dumps(answer).encode("utf-8")

        status, headers, data = self.call_moto(environ, page)
        start_response(status, headers)
        return [data]

    def put_log_events(self, body, query):
        from moto.logs.models import logs_backends

        region = body.get("region") or "us-east-1"
        group = body.get("group")
        stream = body.get("stream")
        messages = body.get("messages") or []
        if not group or not stream or not isinstance(messages, list):
            raise ControlError(400, "group, stream and messages (a list) are required")
        logs = logs_backends[ACCOUNT_ID][region]
        if group not in logs.groups:
            logs.create_log_group(group, {})
        if stream not in logs.groups[group].streams:
            logs.create_log_stream(group, stream)
        with self.lock:
            self.log_clock = max(getattr(self, "log_clock", 0) + 1, int(time.time() * 1000))
            first = self.log_clock
            self.log_clock += len(messages)
        events = [{"timestamp": first + i, "message": str(m)} for i, m in enumerate(messages)]
        logs.put_log_events(group, stream, events)
        return {"put": len(events)}

    def set_eni_delay(self, body, query):
        polls = body.get("describe_tasks")
        if not isinstance(polls, int) or polls < 0:
            raise ControlError(400, "describe_tasks must be a whole number")
        with self.lock:
            self.eni_delay = polls
            self.eni_seen.clear()
        return {"describe_tasks": polls}

    def strip_eni_address(self, data: bytes, operation: str) -> bytes:
        """Drops privateIPv4Address from the tasks of a RunTask answer, and from DescribeTasks answers until
        that task has been described ``eni_delay`` times (an ENI still being attached, as in real ECS)."""
        try:
            answer = json.loads(data)
        except ValueError:
            return data
        for task in answer.get("tasks", []) if isinstance(answer, dict) else []:
            arn = task.get("taskArn")
            with self.lock:
                if operation == "DescribeTasks":
                    self.eni_seen[arn] = self.eni_seen.get(arn, 0) + 1
                hide = operation == "RunTask" or self.eni_seen.get(arn, 0) <= self.eni_delay
            if hide:
                for attachment in task.get("attachments", []):
                    attachment["status"] = "PRECREATED"
                    attachment["details"] = [
                        d for d in attachment.get("details", []) if d.get("name") != "privateIPv4Address"
                    ]
        return json.dumps(answer).encode("utf-8")

    def call_moto(self, environ, rewrite=None) -> tuple[str, list, bytes]:
        """Runs the request through moto and returns its whole answer (status, headers, body), the body of a 200
        answer passed through ``rewrite`` first and Content-Length set to match."""
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"] = status
            captured["headers"] = list(headers)
            return lambda _data: None

        app_iter = self.moto_app(environ, capture)
        try:
            data = b"".join(app_iter)
        finally:
            if hasattr(app_iter, "close"):
                app_iter.close()
        status = captured.get("status", "500 INTERNAL SERVER ERROR")
        if rewrite is not None and status.startswith("200"):
            data = rewrite(data)
        headers = [(k, v) for k, v in captured.get("headers", []) if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(data))))
        return status, headers, data

    def delaying_eni_address(self, environ, start_response):
        operation = environ.get("HTTP_X_AMZ_TARGET", "").rsplit(".", 1)[-1]
        status, headers, data = self.call_moto(environ, lambda d: self.strip_eni_address(d, operation))
        start_response(status, headers)
        return [data]

    def record_query_call(self, environ):
        """A query-protocol call (STS): counted, its form body and signing key kept, by its Action."""
        form = {k: v[-1] for k, v in parse_qs(read_body(environ), keep_blank_values=True).items()}
        action = form.get("Action")
        if not action:
            return
        with self.lock:
            self.calls[action] = self.calls.get(action, 0) + 1
            self.bodies.setdefault(action, []).append(form)
            self.access_keys.setdefault(action, []).append(signing_key(environ))

    def run_task_recording_token(self, environ, start_response, token: str):
        with self.lock:
            token_lock = self.token_locks.setdefault(token, threading.Lock())
        with token_lock:
            with self.lock:
                seen = self.run_task_answers.get(token)
            if seen is not None:
                status, headers, data = seen
                start_response(status, headers)
                return [data]
            rewrite = (lambda d: self.strip_eni_address(d, "RunTask")) if self.eni_delay > 0 else None
            status, headers, data = self.call_moto(environ, rewrite)
            if status.startswith("200"):
                with self.lock:
                    self.run_task_answers[token] = (status, headers, data)
                try:
                    for task in json.loads(data).get("tasks", []):
                        with self.lock:
                            self.client_tokens[task["taskArn"]] = token
                except (ValueError, AttributeError, KeyError, TypeError):
                    log.warning("could not read RunTask response to record its clientToken")
            start_response(status, headers)
            return [data]

    # ---- faults --------------------------------------------------------------------------------------------

    def take_fault(self, operation: str, is_ecs: bool) -> dict | None:
        with self.lock:
            for fault in self.faults:
                if fault["operation"] == operation or (fault["operation"] == "*" and is_ecs):
                    fault["remaining"] -= 1
                    if fault["remaining"] <= 0:
                        self.faults.remove(fault)
                    return dict(fault)
        return None

    @staticmethod
    def fault_response(fault: dict, environ, start_response):
        if fault["delay_ms"] > 0:
            time.sleep(fault["delay_ms"] / 1000.0)
        if fault.get("close"):
            if environ.get(RESET_SUPPORTED_KEY):
                # ResetHandler turns this into a TCP reset: no status line, no bytes at all.
                raise ResetConnection()
            # Not served by our request handler (should not happen): the documented fallback.
            body = b"<html><body><h1>502 Bad Gateway</h1><p>Injected connection close</p></body></html>"
            start_response(
                "502 Bad Gateway",
                [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
            )
            return [body]
        status = fault["status"]
        if fault.get("body") is not None:
            body = json.dumps(fault["body"]).encode("utf-8")
        else:
            body = json.dumps({"__type": fault["type"], "message": fault["message"]}).encode("utf-8")
        headers = [("Content-Type", "application/x-amz-json-1.1")]
        if fault["type"] is not None:
            headers.append(("X-Amzn-Errortype", fault["type"]))
        headers += [("x-amzn-RequestId", str(uuid.uuid4())), ("Content-Length", str(len(body)))]
        start_response(f"{status} {http_reason(status)}", headers)
        return [body]

    # ---- control dispatch ----------------------------------------------------------------------------------

    def control(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "").rstrip("/")
        handler = self.routes.get((method, path))
        try:
            if handler is None:
                raise ControlError(404, f"unknown control endpoint: {method} {path}")
            raw = read_body(environ)
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ControlError(400, "body must be a JSON object")
            query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            status, result = 200, handler(body, query)
        except ControlError as e:
            status, result = e.status, {"error": e.message}
        except json.JSONDecodeError as e:
            status, result = 400, {"error": f"body is not JSON: {e}"}
        except Exception as e:  # noqa: BLE001 - report everything to the test
            log.error("control endpoint %s %s failed:\n%s", method, path, traceback.format_exc())
            status, result = 500, {"error": f"{type(e).__name__}: {e}"}
        data = json.dumps(result).encode("utf-8")
        start_response(
            f"{status} {http_reason(status)}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
        )
        return [data]

    # ---- endpoints -----------------------------------------------------------------------------------------

    def health(self, body, query):
        return {"ok": True, "port": self.port, "auth": self.auth}

    def setup(self, body, query):
        from moto.ecs.models import TaskDefinition

        region = body.get("region") or "us-east-1"
        cluster_name = cluster_name_of(body.get("cluster") or "default")
        family = body.get("task_definition_family") or "my-task-definition"
        containers = body.get("containers") or [{"name": "web", "essential": True}]

        definitions = []
        for c in containers:
            if not isinstance(c, dict) or not c.get("name"):
                raise ControlError(400, "each container needs a name")
            d = {"image": "nginx", "memory": 512, "essential": True, "portMappings": []}
            d.update(c)
            definitions.append(d)

        ecs = ecs_backend(region)
        cluster = ecs.clusters.get(cluster_name)
        if cluster is None or cluster.status != "ACTIVE":
            cluster = ecs.create_cluster(cluster_name)

        td_kwargs = dict(
            network_mode="awsvpc", requires_compatibilities=["FARGATE"], cpu="256", memory="512"
        )
        wanted = TaskDefinition(family, 0, definitions, ACCOUNT_ID, region, **td_kwargs)
        task_definition = None
        active = [td for td in ecs.task_definitions.get(family, {}).values() if td.status == "ACTIVE"]
        if active:
            latest = max(active, key=lambda td: td.revision)
            same = (
                json.dumps(latest.container_definitions, sort_keys=True)
                == json.dumps(wanted.container_definitions, sort_keys=True)
                and (latest.network_mode, latest.cpu, latest.memory, latest.requires_compatibilities)
                == (wanted.network_mode, wanted.cpu, wanted.memory, wanted.requires_compatibilities)
            )
            if same:
                task_definition = latest
        if task_definition is None:
            task_definition = ecs.register_task_definition(family, definitions, **td_kwargs)

        subnet_ids = string_list(body, "subnet_ids", "subnet-")
        security_group_ids = string_list(body, "security_group_ids", "sg-")

        ec2 = ec2_backend(region)
        vpc = ec2.get_default_vpc()
        if vpc is None:
            raise ControlError(500, f"moto has no default VPC in {region}")
        ensure_subnets(ec2, vpc, subnet_ids)
        ensure_security_groups(ec2, vpc, security_group_ids)
        subnets = sorted(
            ec2.describe_subnets(filters={"vpc-id": [vpc.id]}),
            key=lambda s: (s.availability_zone, s.id),
        )
        sg = ec2.get_default_security_group(vpc.id)
        default_sg = [sg.id] if sg is not None else []
        security_groups = security_group_ids + [g for g in default_sg if g not in security_group_ids]
        return {
            "cluster_arn": cluster.arn,
            "task_definition_arn": task_definition.arn,
            "subnets": subnet_ids + [s.id for s in subnets if s.id not in subnet_ids],
            "security_group": security_groups[0] if security_groups else None,
            "security_groups": security_groups,
        }

    def stop_task(self, body, query):
        from moto.ecs.models import Container

        region = body.get("region") or "us-east-1"
        cluster_name = cluster_name_of(body.get("cluster") or "default")
        task_ref = body.get("task")
        if not task_ref:
            raise ControlError(400, "task is required")
        ecs = ecs_backend(region)
        task = find_task(ecs, cluster_name, str(task_ref))
        if task is None:
            raise ControlError(404, f"task {task_ref} not found in cluster {cluster_name} ({region})")

        # moto's RunTask lists only the first container: complete containers[] from the task definition.
        try:
            task_def = ecs.describe_task_definition(task.task_definition_arn)
            definitions = task_def.container_definitions
        except Exception:  # noqa: BLE001 - task definition deregistered/deleted: keep what the task has
            task_def, definitions = None, []
        have = {c.name for c in task.containers}
        for d in definitions:
            if d.get("name") not in have:
                c = Container(task_def)
                c.name = d.get("name")
                c.image = d.get("image")
                c.cpu = d.get("cpu")
                c.memory = d.get("memory")
                c.environment = d.get("environment")
                c.command = d.get("command")
                task.containers.append(c)
        if definitions:
            order = {d.get("name"): i for i, d in enumerate(definitions)}
            task.containers.sort(key=lambda c: order.get(c.name, len(order)))
        names = [c.name for c in task.containers]

        target = body.get("container")
        exit_code = body.get("exit_code")
        exit_codes = body.get("exit_codes") or {}
        reasons = body.get("container_reasons") or {}
        for name in ([target] if target else []) + list(exit_codes) + list(reasons):
            if name not in names:
                raise ControlError(400, f"task has no container {name!r} (containers: {names})")
        for value in [exit_code, *exit_codes.values()]:
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ControlError(400, f"exit codes must be integers or null, got {value!r}")

        now = datetime.now(timezone.utc)
        task.last_status = "STOPPED"
        task.desired_status = "STOPPED"
        task.stop_code = body.get("stop_code", "EssentialContainerExited")
        task.stopped_reason = body.get("stopped_reason", "Essential container in task exited")
        task.stopping_at = now
        task.execution_stopped_at = now
        task.stopped_at = now

        for c in task.containers:
            c.last_status = "STOPPED"
            affected = target is None or c.name == target
            code = exit_codes[c.name] if c.name in exit_codes else (exit_code if affected else None)
            # exitCode is read first, exit_code as fallback: keep exactly one (or none) of them.
            for attr in ("exitCode", "exit_code"):
                if attr in c.__dict__:
                    delattr(c, attr)
            if code is not None:
                c.exitCode = int(code)
            reason = reasons.get(c.name)
            if reason is None and (affected or c.name in exit_codes):
                reason = body.get("container_reason")
            if reason is not None:
                c.reason = reason

        return serialize_task(task)

    def forget_task(self, body, query):
        region = body.get("region") or "us-east-1"
        cluster_name = cluster_name_of(body.get("cluster") or "default")
        task_ref = body.get("task")
        if not task_ref:
            raise ControlError(400, "task is required")
        ecs = ecs_backend(region)
        tasks = ecs.tasks.get(cluster_name, {})
        task = find_task(ecs, cluster_name, str(task_ref))
        if task is None:
            raise ControlError(404, f"task {task_ref} not found in cluster {cluster_name} ({region})")
        # Swap in a new dict instead of popping: a DescribeTasks/ListTasks iterating the old one in another
        # thread (the driver polling) must not fail with "dictionary changed size during iteration".
        ecs.tasks[cluster_name] = {k: t for k, t in list(tasks.items()) if t is not task}
        with self.lock:
            token = self.client_tokens.pop(task.task_arn, None)
            if token is not None:
                self.run_task_answers.pop(token, None)
        return {"removed": True, "task_arn": task.task_arn}

    def add_fault(self, body, query):
        operation = body.get("operation")
        if not operation or not isinstance(operation, str):
            raise ControlError(400, "operation is required")
        response_body = body.get("body")
        if response_body is not None and not isinstance(response_body, dict):
            raise ControlError(400, "body must be a JSON object")
        close = body.get("close", False)
        if not isinstance(close, bool):
            raise ControlError(400, "close must be true or false")
        status = int(body.get("status") or (200 if response_body is not None else 400))
        if response_body is not None:
            ftype = body.get("type") or None
            message = body.get("message")
        else:
            ftype = body.get("type") or default_type_for_status(status)
            message = body.get("message")
            if message is None:
                message = "Rate exceeded" if ftype == "ThrottlingException" else "Injected fault"
        count = int(body.get("count", 1))
        if count < 1:
            raise ControlError(400, "count must be at least 1")
        fault = {
            "operation": operation,
            "remaining": count,
            "status": status,
            "type": ftype,
            "message": message,
            "delay_ms": int(body.get("delay_ms") or 0),
            "body": response_body,
            "close": close,
        }
        with self.lock:
            self.faults.append(fault)
            return {"queued": len(self.faults)}

    def list_faults(self, body, query):
        with self.lock:
            return [dict(f) for f in self.faults]

    def clear_faults(self, body, query):
        with self.lock:
            n = len(self.faults)
            self.faults.clear()
        return {"cleared": n}

    def get_calls(self, body, query):
        with self.lock:
            return dict(self.calls)

    def reset_calls(self, body, query):
        with self.lock:
            self.calls.clear()
            self.bodies.clear()
            self.access_keys.clear()
        return {"ok": True}

    def last_request(self, body, query):
        operation = required_query(query, "operation")
        with self.lock:
            bodies = self.bodies.get(operation)
            if not bodies:
                raise ControlError(404, f"no {operation} request recorded")
            return bodies[-1]

    def get_access_keys(self, body, query):
        operation = required_query(query, "operation")
        with self.lock:
            return list(self.access_keys.get(operation, []))

    def create_role(self, body, query):
        from moto.iam.models import iam_backends

        iam = iam_backends[ACCOUNT_ID]["aws"]
        name = body.get("role_name") or "nomad-ecs-test-role"
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
                                                        "Action": ["sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"]}]}
        try:
            role = iam.get_role(name)
        except Exception:  # noqa: BLE001 - moto raises its own NoSuchEntity type
            role = iam.create_role(name, json.dumps(trust), "/", None, "test role", [], None)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_role_policy(name, "allow-all", json.dumps(policy))
        return {"role_arn": role.arn}

    def all_requests(self, body, query):
        operation = required_query(query, "operation")
        with self.lock:
            return list(self.bodies.get(operation, []))

    def auth_user(self, body, query):
        from moto.iam.models import iam_backends

        iam = iam_backends[ACCOUNT_ID]["aws"]
        user_name = body.get("user_name") or f"ecs-emulator-user-{next(self.user_seq)}"
        while user_name in iam.users and not body.get("user_name"):
            user_name = f"ecs-emulator-user-{next(self.user_seq)}"
        if user_name not in iam.users:
            iam.create_user("us-east-1", user_name)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(user_name, "allow-all", json.dumps(policy))
        key = iam.create_access_key(user_name)
        return {
            "access_key_id": key.access_key_id,
            "secret_access_key": key.secret_access_key,
            "user_name": user_name,
            "account_id": ACCOUNT_ID,
        }

    def task_tags(self, body, query):
        region = query.get("region") or "us-east-1"
        cluster_name = cluster_name_of(required_query(query, "cluster"))
        task_ref = required_query(query, "task")
        task = find_task(ecs_backend(region), cluster_name, task_ref)
        if task is None:
            raise ControlError(404, f"task {task_ref} not found in cluster {cluster_name} ({region})")
        return [{"key": t.get("key"), "value": t.get("value") or ""} for t in (task.tags or [])]

    def list_tasks(self, body, query):
        region = query.get("region") or "us-east-1"
        cluster_name = cluster_name_of(required_query(query, "cluster"))
        ecs = ecs_backend(region)
        result = []
        with self.lock:
            tokens = dict(self.client_tokens)
        for arn, task in list(ecs.tasks.get(cluster_name, {}).items()):
            entry = {
                "arn": task.task_arn,
                "last_status": task.last_status,
                "desired_status": task.desired_status,
                "started_by": task.started_by,
                "task_definition_arn": task.task_definition_arn,
                "stopped_reason": task.stopped_reason,
            }
            for attachment in getattr(task, "attachments", []) or []:
                for detail in attachment.get("details", []):
                    if detail.get("name") == "privateIPv4Address":
                        entry["private_ipv4"] = detail.get("value")
            token = tokens.get(task.task_arn) or tokens.get(arn)
            if token is not None:
                entry["client_token"] = token
            result.append(entry)
        return result


# moto makes subnet and security group ids with these module-level generators; ensure_* swaps them for a moment
# so that moto itself creates the object under the wanted id (ARNs, ACL associations and rules stay consistent).
_ID_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def moto_id(module_name: str, function_name: str, wanted: str):
    """While active, the calling thread's next call of ``module.function()`` returns ``wanted``."""
    module = importlib.import_module(module_name)
    me = threading.get_ident()
    with _ID_PATCH_LOCK:
        original = getattr(module, function_name)
        handed_out = []

        def generate(*args, **kwargs):
            if threading.get_ident() == me and not handed_out:
                handed_out.append(wanted)
                return wanted
            return original(*args, **kwargs)

        setattr(module, function_name, generate)
        try:
            yield
        finally:
            setattr(module, function_name, original)


def string_list(body: dict, key: str, prefix: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.startswith(prefix) for v in value):
        raise ControlError(400, f"{key} must be a list of strings starting with {prefix!r}")
    return list(dict.fromkeys(value))  # drop repeats, keep order


def ensure_subnets(ec2, vpc, subnet_ids: list[str]) -> None:
    """Create the subnets that do not exist yet in the VPC, one AZ each where possible, free CIDR blocks."""
    import ipaddress

    from moto.ec2.exceptions import InvalidSubnetIdError

    existing = {}
    for subnet_id in subnet_ids:
        try:
            existing[subnet_id] = ec2.get_subnet(subnet_id)
        except InvalidSubnetIdError:
            pass
    zones = sorted(z.name for z in ec2.describe_availability_zones())
    if not zones:
        raise ControlError(500, "moto knows no availability zone in this region")
    used_zones = {s.availability_zone for s in existing.values()}
    vpc_block = ipaddress.ip_network(vpc.cidr_block)
    for index, subnet_id in enumerate(subnet_ids):
        if subnet_id in existing:
            continue
        free_zones = [z for z in zones if z not in used_zones]
        zone = free_zones[0] if free_zones else zones[index % len(zones)]
        taken = [s.cidr for s in ec2.describe_subnets(filters={"vpc-id": [vpc.id]})]
        cidr = next(
            (
                block
                for prefix in sorted({max(vpc_block.prefixlen, 20), max(vpc_block.prefixlen, 24), 28})
                for block in vpc_block.subnets(new_prefix=prefix)
                if not any(block.overlaps(t) for t in taken)
            ),
            None,
        )
        if cidr is None:
            raise ControlError(500, f"no free CIDR block left in {vpc.id} ({vpc.cidr_block})")
        with moto_id("moto.ec2.models.subnets", "random_subnet_id", subnet_id):
            subnet = ec2.create_subnet(vpc_id=vpc.id, cidr_block=str(cidr), availability_zone=zone)
        if subnet.id != subnet_id:  # moto changed how it makes ids
            ec2.delete_subnet(subnet.id)
            raise ControlError(500, f"could not create subnet {subnet_id}: moto made {subnet.id}")
        used_zones.add(zone)


def ensure_security_groups(ec2, vpc, group_ids: list[str]) -> None:
    for group_id in group_ids:
        if ec2.get_security_group_from_id(group_id) is not None:
            continue
        with moto_id("moto.ec2.models.security_groups", "random_security_group_id", group_id):
            group = ec2.create_security_group(
                name=f"ecs-emulator-{group_id}", description="ecs_emulator test group", vpc_id=vpc.id
            )
        if group.id != group_id:
            ec2.delete_security_group(group_id=group.id)
            raise ControlError(500, f"could not create security group {group_id}: moto made {group.id}")


def find_task(ecs, cluster_name: str, task_ref: str):
    tasks = ecs.tasks.get(cluster_name, {})
    task_id = task_ref.split("/")[-1]
    for arn, task in tasks.items():
        if task_ref in (arn, task.task_arn) or task.id == task_id:
            return task
    return None


def required_query(query: dict, name: str) -> str:
    value = query.get(name)
    if not value:
        raise ControlError(400, f"query parameter {name} is required")
    return value


def read_body(environ) -> str:
    """Read the whole request body and put it back so that moto can read it again."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return ""
    length = environ.get("CONTENT_LENGTH")
    if length:
        data = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):  # chunked: werkzeug gives a stream that ends at the body's end
        data = stream.read()
    else:
        data = b""
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    return data.decode("utf-8", errors="replace")


def fargate_by_strategy(environ, body: dict) -> None:
    """moto only runs a task without instances when launchType is FARGATE, and ignores capacityProviderStrategy.
    Real ECS runs a task whose strategy names only FARGATE / FARGATE_SPOT on Fargate: give moto that launchType
    (the recorded request keeps what the client sent)."""
    strategy = body.get("capacityProviderStrategy")
    if body.get("launchType") or not isinstance(strategy, list) or not strategy:
        return
    providers = {item.get("capacityProvider") for item in strategy if isinstance(item, dict)}
    if providers and providers <= {"FARGATE", "FARGATE_SPOT"}:
        rewritten = dict(body, launchType="FARGATE")
        data = json.dumps(rewritten).encode("utf-8")
        environ["wsgi.input"] = io.BytesIO(data)
        environ["CONTENT_LENGTH"] = str(len(data))


def signing_key(environ) -> str | None:
    """The access key id in the SigV4 Authorization header's Credential=, if any."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    marker = "Credential="
    if marker not in auth:
        return None
    return auth.split(marker, 1)[1].split("/", 1)[0].strip() or None


def parse_json_or_text(raw: str):
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        return raw


def http_reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


# --------------------------------------------------------------------------------------------------------------
# Start-up
# --------------------------------------------------------------------------------------------------------------


RESET_SUPPORTED_KEY = "ecs_emulator.reset_supported"


class ResetConnection(ConnectionResetError):
    """Raised by the middleware to have ResetHandler drop the connection with a TCP reset."""


def make_reset_handler():
    from werkzeug.serving import WSGIRequestHandler

    class ResetHandler(WSGIRequestHandler):
        """werkzeug's handler, plus: a ResetConnection from the app closes the socket with RST, writing nothing."""

        reset = False

        def make_environ(self):
            environ = super().make_environ()
            environ[RESET_SUPPORTED_KEY] = True
            return environ

        def connection_dropped(self, error, environ=None):
            if isinstance(error, ResetConnection):
                self.reset = True
                self.close_connection = True  # do not wait for another request on this connection
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            super().connection_dropped(error, environ)

        def finish(self):
            super().finish()
            if self.reset:
                # close() with SO_LINGER 0 sends RST; the server's later shutdown()/close() are then no-ops.
                self.connection.close()

    return ResetHandler


def watch_stdin() -> None:
    """Exit the process when stdin reaches EOF (the parent test process died). Skipped for /dev/null."""
    try:
        st = os.fstat(0)
        devnull = os.stat(os.devnull)
    except OSError:
        log.info("stdin is closed: not watching it")
        return
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == devnull.st_rdev:
        log.info("stdin is /dev/null: not watching it")
        return

    def run() -> None:
        try:
            while os.read(0, 65536):
                pass
        except OSError:
            pass
        log.info("stdin closed: exiting")
        os._exit(0)

    threading.Thread(target=run, name="stdin-watch", daemon=True).start()


def warm_up(moto_app) -> None:
    """Load what the first ECS call would otherwise load lazily (about a second), before READY."""
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    from moto.ec2.models import ec2_backends
    from moto.iam.models import iam_backends

    ec2_backends[ACCOUNT_ID]["us-east-1"]  # creates the default VPC and subnets
    iam_backends[ACCOUNT_ID]["aws"]
    import moto.iam.access_control  # noqa: F401 - used by signature checking

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d")
    for target, scope in ((f"{ECS_TARGET_PREFIX}ListClusters", "ecs"),):
        builder = EnvironBuilder(
            path="/",
            method="POST",
            data=b"{}",
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": target,
                "X-Amz-Date": datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
                "Authorization": (
                    f"AWS4-HMAC-SHA256 Credential=AKIAWARMUP000000000/{stamp}/us-east-1/{scope}/aws4_request, "
                    "SignedHeaders=host;x-amz-date;x-amz-target, Signature=" + "0" * 64
                ),
            },
        )
        try:
            app_iter, status, _ = run_wsgi_app(moto_app, builder.get_environ(), buffered=True)
            if not status.startswith("200"):
                log.warning("warm-up %s answered %s", target, status)
        except Exception:  # noqa: BLE001 - warm-up is best effort
            log.warning("warm-up %s failed:\n%s", target, traceback.format_exc())


def write_test_certs(directory: str, rsa_keys: bool = False) -> tuple[str, str, str]:
    """A new CA and a server certificate for localhost / 127.0.0.1 signed by it (one day), with ECDSA P-256 keys,
    or RSA 2048 ones (as AWS's own certificates) when ``rsa_keys``. Writes ``ca.pem`` (the CA certificate, for the
    client to trust), ``server.pem`` and ``server.key`` into ``directory``; returns those three paths."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def new_key():
        if rsa_keys:
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return ec.generate_private_key(ec.SECP256R1())

    os.makedirs(directory, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ecs-emulator test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = os.path.join(directory, "ca.pem")
    cert_path = os.path.join(directory, "server.pem")
    key_path = os.path.join(directory, "server.key")
    with open(ca_path, "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return ca_path, cert_path, key_path


def make_tls(directory: str):
    """A TLS server context with a certificate from a CA made now (see ``write_test_certs``)."""
    import ssl

    _, cert_path, key_path = write_test_certs(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: pick a free one)")
    parser.add_argument("--auth", action="store_true", help="check request signatures from the start")
    parser.add_argument(
        "--tls-dir", help="serve HTTPS with a certificate from a fresh test CA; writes ca.pem into this directory"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()

    # stdout carries only the READY line: keep a private copy of it and point fd 1 (and sys.stdout) at stderr,
    # so stray prints (moto prints some warnings) cannot end up there.
    ready_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    verbose = os.environ.get("ECS_EMULATOR_VERBOSE") == "1"
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if verbose else logging.WARNING,
        format="ecs_emulator %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("werkzeug").setLevel(logging.INFO if verbose else logging.ERROR)

    def on_signal(signum, frame):
        os._exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watch_stdin()

    from moto import settings

    settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")  # no checking while warming up

    from werkzeug.serving import make_server

    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.moto_api import state_manager
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    state_manager.set_transition("ecs::task", dict(ECS_TASK_TRANSITION))
    moto_app = DomainDispatcherApplication(create_backend_app)
    warm_up(moto_app)

    if args.auth:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0

    emulator = Emulator(moto_app, auth=args.auth)
    ssl_context = make_tls(args.tls_dir) if args.tls_dir else None
    server = make_server(
        "127.0.0.1", args.port, emulator, threaded=True, request_handler=make_reset_handler(), ssl_context=ssl_context
    )
    emulator.port = server.socket.getsockname()[1]
    log.info("listening on 127.0.0.1:%d after %.2f s", emulator.port, time.monotonic() - started)

    ready_out.write(f"READY {emulator.port}\n")
    ready_out.flush()
    try:
        server.serve_forever()
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()
