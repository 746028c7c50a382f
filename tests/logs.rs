//! Container output in `nomad alloc logs`: the awslogs stream of each container is tailed from
//! CloudWatch Logs (moto) into the task's stdout FIFO, lifecycle lines go to its stderr FIFO;
//! a plugin restart resumes without repeating or losing lines; a missing reader blocks nothing.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nomad_driver_ecs::proto::driver::TaskConfig;
use serde_json::json;
use support::cty::{self, Cty};
use support::emulator::REGION;
use support::host::{self, Launch, Plugin};
use support::{World, TEST_POLL, WAIT};

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
    p.set_config(
        cty::plugin_config_values(
            Some(true),
            Some(cluster),
            Some(REGION),
            Some(endpoint),
            Some(TEST_POLL),
            opts,
        ),
        true,
    )
    .expect("SetConfig");
}

impl LogWorld {
    fn task(&self, alloc: &str) -> TaskConfig {
        let mut cfg = host::task_config(alloc, "web", "a1b2c3d4", self.w.stanza());
        cfg.stdout_path = self.dir.join(format!("{alloc}.stdout.fifo")).display().to_string();
        cfg.stderr_path = self.dir.join(format!("{alloc}.stderr.fifo")).display().to_string();
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
    lw.w.plugin.stop_task(&cfg.id, Duration::from_secs(10), "").unwrap();
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
