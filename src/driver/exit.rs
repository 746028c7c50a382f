//! How a stopped ECS task becomes Nomad's exit result.

use crate::aws::ecs::Task;

/// The exit of one task as Nomad sees it (ExitResult in the protocol).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExitResult {
    pub exit_code: i32,
    pub signal: i32,
    pub oom_killed: bool,
    /// Set when the task did not end with a container exit code (image pull failure, the task
    /// vanished, ...): Nomad reports the task as failed with this text.
    pub err: Option<String>,
}

impl ExitResult {
    pub fn code(exit_code: i32) -> Self {
        ExitResult {
            exit_code,
            ..Default::default()
        }
    }

    pub fn failed(exit_code: i32, err: impl Into<String>) -> Self {
        ExitResult {
            exit_code,
            err: Some(err.into()),
            ..Default::default()
        }
    }
}

/// Derives the exit result of a STOPPED task from its essential containers.
///
/// `essential` names the essential containers when the task definition is known; `None`
/// considers every container. Rules: the first non-zero exit code of an essential container
/// wins; otherwise 0 when any essential container reported a code; with no exit code at all
/// (the container never ran: image pull failure, capacity, ...) the result is exit code 1
/// with `err` set to ECS's stoppedReason.
pub fn exit_from_task(task: &Task, essential: Option<&[String]>) -> ExitResult {
    from_containers(task, essential)
}

/// Why ECS, not a container, ended the task; None when an essential container exited or when
/// Nomad asked for the stop (`stopped_by_nomad`).
pub fn ecs_stop_cause(task: &Task, stopped_by_nomad: bool) -> Option<String> {
    let code = task.stop_code.as_deref().unwrap_or_default();
    let reason = task
        .stopped_reason
        .as_deref()
        .filter(|r| !r.is_empty())
        .unwrap_or("no reason given");
    match code {
        "" | "EssentialContainerExited" => None,
        "UserInitiated" if stopped_by_nomad => None,
        "UserInitiated" => Some(format!("the ECS task was stopped outside Nomad: {reason}")),
        "SpotInterruption" => Some(format!(
            "ECS stopped the task (SpotInterruption: Fargate Spot capacity was reclaimed): {reason}"
        )),
        "TaskFailedToStart" => Some(format!("ECS could not start the task (TaskFailedToStart): {reason}")),
        other => Some(format!("ECS stopped the task ({other}): {reason}")),
    }
}

/// The exit result as Nomad sees it: the containers' result, and when ECS ended the task
/// (spot reclaim, failed start, someone outside Nomad), that cause as the error, so the task
/// counts as failed and Nomad's restart policy applies.
pub fn exit_result(task: &Task, essential: Option<&[String]>, stopped_by_nomad: bool) -> ExitResult {
    let mut r = from_containers(task, essential);
    if let Some(cause) = ecs_stop_cause(task, stopped_by_nomad) {
        r.err = Some(match r.err.take() {
            Some(e) if !cause.contains(&e) => format!("{cause} ({e})"),
            _ => cause,
        });
    }
    r
}

fn from_containers(task: &Task, essential: Option<&[String]>) -> ExitResult {
    let considered: Vec<_> = task
        .containers
        .iter()
        .filter(|c| essential.is_none_or(|names| names.iter().any(|n| n == &c.name)))
        .collect();
    let oom = considered
        .iter()
        .any(|c| c.reason.as_deref().is_some_and(|r| r.contains("OutOfMemory")));
    if let Some(c) = considered.iter().find(|c| c.exit_code.is_some_and(|code| code != 0)) {
        let code = c.exit_code.unwrap_or(1);
        let exit_code = i32::try_from(code).unwrap_or(if code < 0 { i32::MIN } else { i32::MAX });
        return ExitResult {
            exit_code,
            signal: 0,
            oom_killed: oom,
            err: None,
        };
    }
    if considered.iter().any(|c| c.exit_code.is_some()) {
        return ExitResult {
            oom_killed: oom,
            ..ExitResult::code(0)
        };
    }
    let reason = match (task.stop_code.as_deref(), task.stopped_reason.as_deref()) {
        (_, Some(r)) if !r.is_empty() => r.to_string(),
        (Some(code), _) => {
            format!("ECS stopped the task ({code}) before any essential container reported an exit code")
        }
        _ => "ECS stopped the task before any essential container reported an exit code".to_string(),
    };
    ExitResult {
        oom_killed: oom,
        ..ExitResult::failed(1, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ecs::Container;

    fn container(name: &str, code: Option<i64>) -> Container {
        Container {
            name: name.into(),
            exit_code: code,
            ..Default::default()
        }
    }

    fn task(containers: Vec<Container>) -> Task {
        Task {
            task_arn: "arn:aws:ecs:us-east-1:1:task/c/abc".into(),
            last_status: "STOPPED".into(),
            desired_status: "STOPPED".into(),
            stop_code: Some("EssentialContainerExited".into()),
            stopped_reason: Some("Essential container in task exited".into()),
            containers,
            ..Default::default()
        }
    }

    #[test]
    fn ecs_initiated_stops_are_errors_and_container_exits_are_not() {
        let mut t = task(vec![container("a", Some(143))]);
        assert_eq!(
            exit_result(&t, None, false),
            ExitResult::code(143),
            "EssentialContainerExited"
        );
        t.stop_code = Some("SpotInterruption".into());
        t.stopped_reason = Some("Your Spot Task was interrupted.".into());
        let r = exit_result(&t, None, false);
        assert_eq!(r.exit_code, 143, "the container's own code is kept");
        let err = r.err.unwrap();
        assert!(
            err.contains("SpotInterruption") && err.contains("Your Spot Task was interrupted."),
            "{err}"
        );
        t.stop_code = Some("UserInitiated".into());
        t.stopped_reason = Some("Stopped by Nomad".into());
        assert_eq!(exit_result(&t, None, true).err, None, "Nomad's own stop is no failure");
        let err = exit_result(&t, None, false).err.unwrap();
        assert!(err.contains("outside Nomad"), "{err}");
        t.stop_code = Some("ServiceSchedulerInitiated".into());
        assert!(exit_result(&t, None, false)
            .err
            .unwrap()
            .contains("ServiceSchedulerInitiated"));
        let mut failed = task(vec![container("a", None)]);
        failed.stop_code = Some("TaskFailedToStart".into());
        failed.stopped_reason = Some("ResourceInitializationError: unable to pull secrets".into());
        let r = exit_result(&failed, None, false);
        assert_eq!(r.exit_code, 1);
        assert_eq!(
            r.err.as_deref(),
            Some(
                "ECS could not start the task (TaskFailedToStart): ResourceInitializationError: unable to pull secrets"
            )
        );
    }

    #[test]
    fn first_non_zero_essential_code_wins() {
        let t = task(vec![
            container("a", Some(0)),
            container("b", Some(137)),
            container("c", Some(2)),
        ]);
        assert_eq!(exit_from_task(&t, None), ExitResult::code(137));
    }

    #[test]
    fn non_essential_codes_are_ignored() {
        let t = task(vec![container("web", Some(0)), container("sidecar", Some(3))]);
        let essential = vec!["web".to_string()];
        assert_eq!(exit_from_task(&t, Some(&essential)), ExitResult::code(0));
        assert_eq!(exit_from_task(&t, None), ExitResult::code(3));
    }

    #[test]
    fn all_zero_is_success() {
        let t = task(vec![container("a", Some(0)), container("b", None)]);
        assert_eq!(exit_from_task(&t, None), ExitResult::code(0));
    }

    #[test]
    fn no_exit_code_is_a_failure_with_the_reason() {
        let mut t = task(vec![container("a", None)]);
        t.stop_code = Some("TaskFailedToStart".into());
        t.stopped_reason = Some("CannotPullContainerError: pull access denied".into());
        let r = exit_from_task(&t, None);
        assert_eq!(r.exit_code, 1);
        assert_eq!(r.err.as_deref(), Some("CannotPullContainerError: pull access denied"));

        t.stopped_reason = None;
        let r = exit_from_task(&t, None);
        assert!(r.err.unwrap().contains("TaskFailedToStart"));

        let r = exit_from_task(&task(vec![]), None);
        assert_eq!(r.exit_code, 1);
        assert!(r.err.is_some());
    }

    #[test]
    fn oom_is_flagged() {
        let mut c = container("a", Some(137));
        c.reason = Some("OutOfMemoryError: Container killed due to memory usage".into());
        let r = exit_from_task(&task(vec![c]), None);
        assert_eq!(r.exit_code, 137);
        assert!(r.oom_killed);
    }

    #[test]
    fn huge_codes_saturate() {
        let r = exit_from_task(&task(vec![container("a", Some(1 << 40))]), None);
        assert_eq!(r.exit_code, i32::MAX);
    }
}
