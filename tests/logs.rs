//! Container output in `nomad alloc logs`: the awslogs stream of each container is tailed from
//! CloudWatch Logs (moto) into the task's stdout FIFO, lifecycle lines go to its stderr FIFO;
//! a plugin restart resumes without repeating or losing lines; a missing reader blocks nothing.
//! What the allocation's other tasks can plant under `alloc/` (a link at a FIFO's name, a linked
//! `logs` directory) is refused with a task event, and a task definition's `awslogs-region`
//! never names the host the plugin calls.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nomad_driver_ecs::proto::driver::TaskConfig;
use serde_json::json;
use support::connect_proxy::ConnectProxy;
use support::cty::{self, Cty};
use support::emulator::REGION;
use support::host::{self, Launch, Plugin};
use support::logmon::Logmon;
use support::{World, WAIT};

const GROUP: &str = "/ecs/web";

/// A FIFO read the way Nomad's logmon reads it: reopened whenever the writer goes away.
struct FifoReader {
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FifoReader {
    fn start(path: &Path) -> FifoReader {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, st, p) = (Arc::clone(&lines), Arc::clone(&stop), path.to_path_buf());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                // Blocks until a writer opens the FIFO.
                let Ok(f) = std::fs::File::open(&p) else { return };
                for line in BufReader::new(f).lines().map_while(Result::ok) {
                    l.lock().unwrap().push(line);
                }
            }
        });
        FifoReader { lines, stop }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn wait_for(&self, what: &str, f: impl Fn(&[String]) -> bool) -> Vec<String> {
        host::eventually(WAIT, what, || {
            let l = self.lines();
            f(&l).then_some(l)
        })
    }
}

impl Drop for FifoReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().expect("mkfifo").success();
    assert!(ok, "mkfifo {}", path.display());
}

struct LogWorld {
    w: World,
    dir: PathBuf,
}

fn log_world(cluster: &str) -> LogWorld {
    let w = World::new(cluster);
    w.emu
        .setup_with(json!({"region": REGION, "cluster": cluster, "containers": [
        {"name": "web", "essential": true, "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": GROUP, "awslogs-region": REGION, "awslogs-stream-prefix": "web"}}}]}));
    configure(&w.plugin, &w.emu.endpoint(), cluster, Vec::new());
    let dir = std::env::temp_dir().join(format!("ecs-logs-{cluster}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    LogWorld { w, dir }
}

fn configure(p: &Plugin, endpoint: &str, cluster: &str, extra: Vec<(&str, Cty)>) {
    let mut opts = vec![
        ("logs_endpoint", cty::s(endpoint)),
        ("logs_poll_interval", cty::s("200ms")),
    ];
    opts.extend(extra);
    p.set_config(support::test_plugin_config(cluster, endpoint, opts), true)
        .expect("SetConfig");
}

impl LogWorld {
    /// A task laid out as Nomad lays it out, FIFOs not made yet: the allocation directory
    /// `<dir>/<alloc>`, the shared `alloc/logs` with the FIFO paths, the task's own directory.
    fn layout(&self, alloc: &str) -> TaskConfig {
        let mut cfg = host::task_config(alloc, "web", "a1b2c3d4", self.w.stanza());
        let alloc_dir = self.dir.join(alloc);
        std::fs::create_dir_all(alloc_dir.join("alloc/logs")).unwrap();
        std::fs::create_dir_all(alloc_dir.join("web")).unwrap();
        cfg.alloc_dir = alloc_dir.display().to_string();
        cfg.stdout_path = alloc_dir.join("alloc/logs/.web.stdout.fifo").display().to_string();
        cfg.stderr_path = alloc_dir.join("alloc/logs/.web.stderr.fifo").display().to_string();
        cfg
    }

    fn task(&self, alloc: &str) -> TaskConfig {
        let cfg = self.layout(alloc);
        mkfifo(Path::new(&cfg.stdout_path));
        mkfifo(Path::new(&cfg.stderr_path));
        cfg
    }

    fn stream_of(&self, cluster: &str, alloc: &str) -> String {
        let arn = support::arn_of_alloc(&self.w.emu, cluster, alloc);
        format!("web/web/{}", arn.rsplit('/').next().unwrap())
    }

    fn put(&self, stream: &str, messages: &[String]) {
        self.w.emu.post(
            "/_test/log-events",
            json!({"region": REGION, "group": GROUP, "stream": stream, "messages": messages}),
        );
    }
}

fn batch(tag: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{tag} line {i}")).collect()
}

#[test]
fn container_output_reaches_stdout_and_a_restart_neither_repeats_nor_loses_lines() {
    let lw = log_world("logs-main");
    let cfg = lw.task("ffffffff-0000-4000-8000-000000000001");
    let out = FifoReader::start(Path::new(&cfg.stdout_path));
    let err = FifoReader::start(Path::new(&cfg.stderr_path));
    let resp = lw.w.plugin.start_task(&cfg).expect("StartTask");
    let stream = lw.stream_of("logs-main", "ffffffff-0000-4000-8000-000000000001");

    let first = batch("first", 3);
    lw.put(&stream, &first);
    out.wait_for("the first batch", |l| l.len() >= 3);
    let second = batch("second", 4);
    lw.put(&stream, &second);
    out.wait_for("the second batch", |l| l.len() >= 7);
    err.wait_for("a lifecycle line on stderr", |l| {
        l.iter().any(|x| x.contains("Started ECS task"))
    });

    // The plugin dies; lines keep coming; a new plugin recovers the task from its handle.
    let mut w = lw.w;
    let old = std::mem::replace(&mut w.plugin, Plugin::launch(&Launch::test_credentials()));
    old.kill();
    let third = batch("third", 5);
    let lw = LogWorld { w, dir: lw.dir };
    lw.put(&stream, &third);
    configure(&lw.w.plugin, &lw.w.emu.endpoint(), "logs-main", Vec::new());
    let mut handle = resp.handle.clone().unwrap();
    handle.config.as_mut().unwrap().msgpack_driver_config.clear();
    lw.w.plugin.recover_task(&handle).expect("RecoverTask");
    let fourth = batch("fourth", 2);
    lw.put(&stream, &fourth);
    let lines = out.wait_for("every batch", |l| l.len() >= 14);
    let expected: Vec<String> = [first, second, third, fourth].concat();
    assert_eq!(lines, expected, "each line exactly once, in order");

    // No more lines appear later (nothing is repeated after a quiet spell).
    let polls = lw.w.emu.call_count("GetLogEvents");
    host::eventually(WAIT, "a few more reads", || {
        (lw.w.emu.call_count("GetLogEvents") >= polls + 3).then_some(())
    });
    assert_eq!(out.lines().len(), 14);
    // The positions were kept in the task's own directory, nothing beside the FIFOs.
    let alloc_dir = Path::new(&cfg.alloc_dir);
    assert!(alloc_dir.join("web/.nomad-driver-ecs-logpos.json").is_file());
    let mut in_logs: Vec<String> = std::fs::read_dir(alloc_dir.join("alloc/logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    in_logs.sort();
    assert_eq!(in_logs, [".web.stderr.fifo", ".web.stdout.fifo"]);
    lw.w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
}

/// Lets a few status polls pass (the tail runs meanwhile).
fn a_few_polls(w: &World) {
    let polls = w.emu.call_count("DescribeTasks");
    host::eventually(WAIT, "a few status polls", || {
        (w.emu.call_count("DescribeTasks") >= polls + 3).then_some(())
    });
}

#[test]
fn links_planted_under_alloc_logs_are_refused_with_a_task_event_and_never_written() {
    let lw = log_world("logs-links");
    let events = lw.w.plugin.task_events();
    // A host file outside the allocation directory, and a link to it at the stdout FIFO's name
    // (as a co-located task with /alloc mounted read-write could plant).
    let victim = lw.dir.join("crontab");
    std::fs::write(&victim, "# the host's crontab\n").unwrap();
    let alloc = "ffffffff-0000-4000-8000-000000000004";
    let cfg = lw.layout(alloc);
    std::os::unix::fs::symlink(&victim, &cfg.stdout_path).unwrap();
    mkfifo(Path::new(&cfg.stderr_path));
    let err = FifoReader::start(Path::new(&cfg.stderr_path));
    lw.w.plugin.start_task(&cfg).expect("StartTask");
    let stream = lw.stream_of("logs-links", alloc);
    lw.put(&stream, &["* * * * * root /tmp/evil".to_string()]);
    let ev = host::wait_event(&events, "is not a FIFO", WAIT);
    assert_eq!(
        ev.message,
        format!(
            "stdout path {} is not a FIFO (it is a symbolic link); the driver will not write the task's logs there",
            cfg.stdout_path
        )
    );
    assert_eq!(ev.task_id, cfg.id);
    // Lifecycle lines still reach the (real) stderr FIFO, the refusal among them.
    err.wait_for("the refusal on stderr", |l| {
        l.iter().any(|x| x.contains("is not a FIFO"))
    });
    a_few_polls(&lw.w);
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "# the host's crontab\n",
        "nothing written through the link"
    );
    assert!(std::fs::symlink_metadata(&cfg.stdout_path)
        .unwrap()
        .file_type()
        .is_symlink());
    let alloc_dir = Path::new(&cfg.alloc_dir);
    assert!(!Path::new(&format!("{}.nomad-driver-ecs.json", cfg.stdout_path)).exists());
    assert!(!alloc_dir.join("web/.nomad-driver-ecs-logpos.json").exists());
    lw.w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();

    // `alloc/logs` itself replaced by a link to a directory holding real FIFOs of the task's
    // names, with readers: refused as well, nothing reaches them.
    let alloc = "ffffffff-0000-4000-8000-000000000005";
    let cfg = lw.layout(alloc);
    let alloc_dir = PathBuf::from(&cfg.alloc_dir);
    let elsewhere = lw.dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    mkfifo(&elsewhere.join(".web.stdout.fifo"));
    mkfifo(&elsewhere.join(".web.stderr.fifo"));
    let out = FifoReader::start(&elsewhere.join(".web.stdout.fifo"));
    let err = FifoReader::start(&elsewhere.join(".web.stderr.fifo"));
    std::fs::remove_dir(alloc_dir.join("alloc/logs")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, alloc_dir.join("alloc/logs")).unwrap();
    lw.w.plugin.start_task(&cfg).expect("StartTask");
    let stream = lw.stream_of("logs-links", alloc);
    lw.put(&stream, &["not for the link".to_string()]);
    let refusals: Vec<String> = ["stdout", "stderr"]
        .iter()
        .map(|which| {
            let path = alloc_dir.join(format!("alloc/logs/.web.{which}.fifo"));
            format!(
                "{which} path {} is refused: {} on the way is a symbolic link, not a directory",
                path.display(),
                alloc_dir.join("alloc/logs").display()
            )
        })
        .collect();
    let mut seen = Vec::new();
    while !refusals.iter().all(|r| seen.iter().any(|m: &String| m.starts_with(r))) {
        match events.recv_timeout(WAIT) {
            Ok(Ok(ev)) => seen.push(ev.message),
            other => panic!("no refusal of both FIFOs ({other:?}); events: {seen:?}"),
        }
    }
    a_few_polls(&lw.w);
    assert!(
        out.lines().is_empty() && err.lines().is_empty(),
        "nothing written through the link"
    );
    lw.w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
}

#[test]
fn an_awslogs_region_that_is_not_a_region_names_no_host() {
    // Every https request goes through a recording proxy, and no logs_endpoint is set: the
    // region alone picks the CloudWatch Logs host, as in production.
    let proxy = ConnectProxy::start();
    let w = World::with_launch(
        "logs-region",
        Launch::test_credentials().with_env("HTTPS_PROXY", &proxy.url()),
    );
    let awslogs = |name: &str, region: &str| {
        json!({"name": name, "essential": true, "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": GROUP, "awslogs-region": region, "awslogs-stream-prefix": "web"}}})
    };
    w.emu
        .setup_with(json!({"region": REGION, "cluster": "logs-region", "containers": [
            awslogs("evil", "evil.example.com/"),
            awslogs("sneaky", "us-east-1.attacker.net"),
            awslogs("good", REGION),
        ]}));
    w.plugin
        .set_config(
            support::test_plugin_config(
                "logs-region",
                &w.emu.endpoint(),
                vec![
                    ("logs_poll_interval", cty::s("200ms")),
                    ("request_timeout", cty::s("2s")),
                    ("connect_timeout", cty::s("1s")),
                ],
            ),
            true,
        )
        .expect("SetConfig");
    let events = w.plugin.task_events();
    let cfg = host::task_config("ffffffff-0000-4000-8000-000000000006", "web", "a1b2c3d4", w.stanza());
    w.plugin.start_task(&cfg).expect("StartTask");
    for (container, region) in [("evil", "evil.example.com/"), ("sneaky", "us-east-1.attacker.net")] {
        let ev = host::wait_event(&events, &format!("container \"{container}\""), WAIT);
        assert!(
            ev.message
                .contains(&format!("awslogs-region \"{region}\" is not a valid AWS region name")),
            "{}",
            ev.message
        );
    }
    // The good container's stream is read (through the proxy) and read again after a failure;
    // by then every stream has had its turn. Only the region's own endpoint was ever asked for.
    let good = format!("CONNECT logs.{REGION}.amazonaws.com:443");
    host::eventually(WAIT, "two reads of the good container's stream", || {
        (proxy.seen().iter().filter(|l| l.starts_with(&good)).count() >= 2).then_some(())
    });
    let seen = proxy.seen();
    assert!(
        seen.iter().all(|l| l.starts_with(&good)),
        "no request to a host the task definition named: {seen:?}"
    );
    w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
}

#[test]
fn no_reader_blocks_nothing_and_loses_nothing() {
    let lw = log_world("logs-noreader");
    let cfg = lw.task("ffffffff-0000-4000-8000-000000000002");
    lw.w.plugin.start_task(&cfg).expect("StartTask without any FIFO reader");
    let stream = lw.stream_of("logs-noreader", "ffffffff-0000-4000-8000-000000000002");
    let lines = batch("early", 50);
    lw.put(&stream, &lines);
    // The logs are read while nobody listens, and every RPC still answers at once.
    host::eventually(WAIT, "the stream to be read", || {
        (lw.w.emu.call_count("GetLogEvents") >= 2).then_some(())
    });
    let t0 = Instant::now();
    lw.w.plugin.inspect_task(&cfg.id).expect("InspectTask");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "InspectTask is not held up by the FIFO"
    );
    // A reader comes (as logmon does after an agent restart): it gets everything.
    let out = FifoReader::start(Path::new(&cfg.stdout_path));
    let got = out.wait_for("the buffered lines", |l| l.len() >= 50);
    assert_eq!(got, lines);
    lw.w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
}

#[test]
fn stream_logs_false_reads_nothing() {
    let lw = log_world("logs-off");
    configure(
        &lw.w.plugin,
        &lw.w.emu.endpoint(),
        "logs-off",
        vec![("stream_logs", Cty::Bool(false))],
    );
    let cfg = lw.task("ffffffff-0000-4000-8000-000000000003");
    let out = FifoReader::start(Path::new(&cfg.stdout_path));
    lw.w.plugin.start_task(&cfg).unwrap();
    let stream = lw.stream_of("logs-off", "ffffffff-0000-4000-8000-000000000003");
    lw.put(&stream, &batch("ignored", 2));
    let polls = lw.w.emu.call_count("DescribeTasks");
    host::eventually(WAIT, "a few status polls", || {
        (lw.w.emu.call_count("DescribeTasks") >= polls + 3).then_some(())
    });
    assert_eq!(lw.w.emu.call_count("GetLogEvents"), 0);
    assert!(out.lines().is_empty());
    lw.w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
}

/// How many descriptors the plugin process holds on `path` (a FIFO shows its path in /proc).
fn plugin_fds_on(p: &Plugin, path: &str) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", p.pid()))
        .map(|d| {
            d.flatten()
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == Path::new(path)))
                .count()
        })
        .unwrap_or(0)
}

/// The CloudWatch stream of the `web` container of the ECS task a handle names.
fn stream_of_handle(handle: &nomad_driver_ecs::proto::driver::TaskHandle) -> String {
    let arn = support::handle_arn(handle);
    format!("web/web/{}", arn.rsplit('/').next().unwrap())
}

/// Nomad restarts a task in place (task_runner.go at v1.10.0: the ECS task exits, WaitTask
/// answers, DestroyTask, the prestart hooks run again, logmon's first, then StartTask with a new
/// task id and the same FIFO paths, built by buildTaskConfig). The hooks after logmon's may take
/// long (artifacts, templates): the test lets the old instance's stdout writer go before
/// StartTask, as a slow hook would. The new instance's output must reach logmon's log.
#[test]
fn an_in_place_restart_shows_the_new_instance_through_logmon() {
    let lw = log_world("logs-restart");
    let alloc = "ffffffff-0000-4000-8000-000000000011";
    let a = lw.layout(alloc);
    let mut logmon = Logmon::new(&a.stdout_path, &a.stderr_path);
    assert!(logmon.start(), "prestart");
    let first = lw.w.plugin.start_task(&a).expect("StartTask").handle.unwrap();
    lw.put(&stream_of_handle(&first), &batch("before", 3));
    host::eventually(WAIT, "the first instance's lines in logmon's log", || {
        (logmon.stdout_lines() == batch("before", 3)).then_some(())
    });

    // The ECS task exits by itself; Nomad hears it, destroys the handle, restarts the task.
    lw.w.emu
        .exit_task("logs-restart", &support::handle_arn(&first), Some(1), "crashed");
    lw.w.plugin.wait_task(&a.id, WAIT).expect("WaitTask");
    lw.w.plugin.destroy_task(&a.id, true).expect("DestroyTask");
    logmon.start();
    host::eventually(Duration::from_secs(20), "the old instance to let go of stdout", || {
        (plugin_fds_on(&lw.w.plugin, &a.stdout_path) == 0).then_some(())
    });
    let mut b = a.clone();
    b.id = format!("{alloc}/web/e5f6a7b8");
    let second = lw.w.plugin.start_task(&b).expect("StartTask again");
    assert_ne!(
        support::handle_arn(&first),
        support::handle_arn(second.handle.as_ref().unwrap())
    );
    // Opened at StartTask, before any line.
    host::eventually(WAIT, "the new instance's stdout writer", || {
        (plugin_fds_on(&lw.w.plugin, &b.stdout_path) == 1).then_some(())
    });
    lw.put(&stream_of_handle(second.handle.as_ref().unwrap()), &batch("after", 4));
    let expected = [batch("before", 3), batch("after", 4)].concat();
    let until = Instant::now() + WAIT;
    while logmon.stdout_lines() != expected && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        logmon.stdout_lines(),
        expected,
        "the new instance's lines in logmon's log"
    );
    assert!(logmon.stderr_lines().iter().any(|l| l.contains("Started ECS task")));
    lw.w.plugin.stop_task(&b.id, Duration::from_secs(10), "").unwrap();
    lw.w.plugin.wait_task(&b.id, WAIT).expect("WaitTask");
    let took = logmon.stop();
    assert!(logmon.warnings().is_empty(), "{:?}", logmon.warnings());
    assert!(took < Duration::from_secs(1), "logmon's stop took {took:?}");
}

/// The plugin dies while the task runs and a new one recovers it, as on an agent restart
/// (task_runner.go at v1.10.0: Restore calls RecoverTask, then Run runs the prestart hooks, so
/// logmon's Start, whose loops ended when the old plugin's writers went). The recovered task's
/// output reaches logmon's log, each line once.
#[test]
fn a_plugin_restart_shows_the_recovered_task_through_logmon() {
    let lw = log_world("logs-recover");
    let alloc = "ffffffff-0000-4000-8000-000000000012";
    let cfg = lw.layout(alloc);
    let mut logmon = Logmon::new(&cfg.stdout_path, &cfg.stderr_path);
    logmon.start();
    let resp = lw.w.plugin.start_task(&cfg).expect("StartTask");
    let stream = stream_of_handle(resp.handle.as_ref().unwrap());
    lw.put(&stream, &batch("first", 3));
    host::eventually(WAIT, "the first lines", || {
        (logmon.stdout_lines().len() == 3).then_some(())
    });

    let mut w = lw.w;
    let old = std::mem::replace(&mut w.plugin, Plugin::launch(&Launch::test_credentials()));
    old.kill();
    host::eventually(WAIT, "logmon's loops to end with the old plugin", || {
        (!logmon.is_running()).then_some(())
    });
    let lw = LogWorld { w, dir: lw.dir };
    lw.put(&stream, &batch("second", 2));
    configure(&lw.w.plugin, &lw.w.emu.endpoint(), "logs-recover", Vec::new());
    lw.w.plugin
        .recover_task(&support::persisted(resp.handle.as_ref().unwrap()))
        .expect("RecoverTask");
    assert!(logmon.start(), "prestart after the restore starts new loops");
    lw.put(&stream, &batch("third", 2));
    let expected = [batch("first", 3), batch("second", 2), batch("third", 2)].concat();
    let got = host::eventually(WAIT, "every line in logmon's log", || {
        let l = logmon.stdout_lines();
        (l.len() >= expected.len()).then_some(l)
    });
    assert_eq!(got, expected, "each line once, in order");
    lw.w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
    lw.w.plugin.wait_task(&cfg.id, WAIT).expect("WaitTask");
    let took = logmon.stop();
    assert!(
        logmon.warnings().is_empty() && took < Duration::from_secs(1),
        "{took:?} {:?}",
        logmon.warnings()
    );
}

/// `logs { disabled = true }`: Nomad sends /dev/null as both paths (logmon_hook.go at v1.10.0,
/// newLogMonHookConfig, os.DevNull) and starts no logmon. No GetLogEvents call, no position file,
/// nothing created next to /dev/null.
#[test]
fn logs_disabled_reads_no_stream_and_creates_nothing() {
    let lw = log_world("logs-disabled");
    let alloc = "ffffffff-0000-4000-8000-000000000013";
    let mut cfg = lw.layout(alloc);
    cfg.stdout_path = "/dev/null".into();
    cfg.stderr_path = "/dev/null".into();
    let dev_before: Vec<_> = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let resp = lw.w.plugin.start_task(&cfg).expect("StartTask");
    lw.put(&stream_of_handle(resp.handle.as_ref().unwrap()), &batch("unread", 2));
    a_few_polls(&lw.w);
    lw.w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
    lw.w.plugin.wait_task(&cfg.id, WAIT).expect("WaitTask");
    assert_eq!(lw.w.emu.call_count("GetLogEvents"), 0);
    let alloc_dir = Path::new(&cfg.alloc_dir);
    assert!(
        std::fs::read_dir(alloc_dir.join("web")).unwrap().next().is_none(),
        "no position file"
    );
    assert!(std::fs::read_dir(alloc_dir.join("alloc/logs"))
        .unwrap()
        .next()
        .is_none());
    let created: Vec<_> = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| !dev_before.contains(n) && n.to_string_lossy().starts_with("null"))
        .collect();
    assert!(created.is_empty(), "{created:?}");
    assert!(!Path::new("/dev/null.nomad-driver-ecs.json").exists());
}

/// A task whose containers do not use awslogs: its stdout FIFO carries nothing. Nomad's logmon
/// (logmon.go at v1.10.0, logRotatorWrapper.Close) waits at the task's stop up to 2 s for each
/// copy to end, and up to 2 s more with a warning for a FIFO never opened: both must cost
/// nothing.
#[test]
fn an_unused_stdout_costs_nothing_at_stop() {
    let w = World::new("logs-unused");
    configure(&w.plugin, &w.emu.endpoint(), "logs-unused", Vec::new());
    let lw = LogWorld {
        dir: std::env::temp_dir().join(format!("ecs-logs-logs-unused-{}", std::process::id())),
        w,
    };
    let _ = std::fs::remove_dir_all(&lw.dir);
    let cfg = lw.layout("ffffffff-0000-4000-8000-000000000014");
    let mut logmon = Logmon::new(&cfg.stdout_path, &cfg.stderr_path);
    logmon.start();
    lw.w.plugin.start_task(&cfg).expect("StartTask");
    a_few_polls(&lw.w);
    lw.w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
    lw.w.plugin.wait_task(&cfg.id, WAIT).expect("WaitTask");
    lw.w.plugin.destroy_task(&cfg.id, true).expect("DestroyTask");
    let took = logmon.stop();
    assert!(logmon.warnings().is_empty(), "{:?}", logmon.warnings());
    assert!(took < Duration::from_secs(1), "logmon's stop took {took:?}");
    assert!(logmon.stdout_lines().is_empty());
    assert!(logmon.stderr_lines().iter().any(|l| l.contains("Started ECS task")));
}

/// `stream_logs = false`: the plugin writes nothing, yet logmon (logmon.go at v1.10.0) must not
/// wait 2 s and warn at every stop for FIFOs nobody opened.
#[test]
fn stream_logs_false_leaves_no_fifo_waiting_at_stop() {
    let lw = log_world("logs-quiet");
    configure(
        &lw.w.plugin,
        &lw.w.emu.endpoint(),
        "logs-quiet",
        vec![("stream_logs", Cty::Bool(false))],
    );
    let cfg = lw.layout("ffffffff-0000-4000-8000-000000000015");
    let mut logmon = Logmon::new(&cfg.stdout_path, &cfg.stderr_path);
    logmon.start();
    lw.w.plugin.start_task(&cfg).expect("StartTask");
    a_few_polls(&lw.w);
    lw.w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
    lw.w.plugin.wait_task(&cfg.id, WAIT).expect("WaitTask");
    let took = logmon.stop();
    assert!(logmon.warnings().is_empty(), "{:?}", logmon.warnings());
    assert!(took < Duration::from_secs(1), "logmon's stop took {took:?}");
    assert!(logmon.stdout_lines().is_empty() && logmon.stderr_lines().is_empty());
    assert_eq!(lw.w.emu.call_count("GetLogEvents"), 0);
}
