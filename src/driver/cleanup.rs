//! Clean-up of the task definition revisions the driver registered for job-written
//! definitions (`task_definition_cleanup`, off by default): a revision that no task of the
//! swept ECS clusters runs and that no start has used for the grace time is deregistered.
//!
//! It runs in the orphan sweep's round, on the one client elected for it, and only after the
//! round has seen every swept cluster's tasks (a partial view could take a used revision for
//! an unused one). Its memory lives on the revisions, as ECS tags, so whichever client is
//! elected next round goes on where the last one stopped:
//! - `nomad:last-used`: written by every start that resolves the revision (at most every
//!   quarter of the grace time per client), so a live allocation between two runs of its task
//!   (a restart delay, a pending start) keeps its revision;
//! - `nomad:unused-since`: written by the sweeper the first round it finds the revision
//!   unused; valid only while newer than `nomad:last-used`.
//!
//! Only revisions tagged `nomad:managed-by` with a definition hash and the sweeper's own Nomad
//! identity (`nomad:region`, `nomad:cluster`) are ever deregistered; a revision registered by
//! hand, by another tool or by another Nomad cluster is never touched. A deregistered revision
//! keeps running tasks running (ECS only refuses new tasks of an INACTIVE revision), and a
//! later start of the same definition registers it again.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use super::handoff::{self, NomadIdentity};
use super::taskdef::{self, Registry};
use crate::aws::ecs::EcsClient;
use crate::aws::retry::{with_retries, RetryPolicy};

/// Tag on a revision: the last time (unix seconds) a start used it.
pub const TAG_LAST_USED: &str = "nomad:last-used";
/// Tag on a revision: since when (unix seconds) the sweep has found it unused.
pub const TAG_UNUSED_SINCE: &str = "nomad:unused-since";
/// How many revisions one round reads the tags of for the first time (the rest wait for later
/// rounds), so that an account with thousands of revisions does not meet ECS's rate limit.
pub const MAX_NEW_DESCRIBES_PER_ROUND: usize = 50;
/// How many pages (100 ARNs each) of ACTIVE revisions one round lists at most.
pub const MAX_LIST_PAGES: usize = 100;
const CALL_DEADLINE: Duration = Duration::from_secs(20);

/// What one round does with one revision of the driver's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// In use, or unused for less than the grace time: nothing to do.
    Keep,
    /// In use again: remove a stale `nomad:unused-since`.
    ClearMark,
    /// First round found unused: write `nomad:unused-since`.
    Mark,
    /// Unused for the grace time: deregister.
    Deregister,
}

/// How often a client writes `nomad:last-used` for a revision it keeps using: a quarter of the
/// grace time (at least a second), which is also the margin [`step`] allows for it.
pub fn last_used_every(grace: Duration) -> Duration {
    (grace / 4).max(Duration::from_secs(1))
}

/// The decision for one revision. `running`: a task of a swept cluster runs it this round;
/// `unused_since` / `last_used`: its tags (None when absent or unreadable).
pub fn step(
    running: bool,
    unused_since: Option<SystemTime>,
    last_used: Option<SystemTime>,
    now: SystemTime,
    grace: Duration,
) -> Step {
    let clear_or_keep = if unused_since.is_some() {
        Step::ClearMark
    } else {
        Step::Keep
    };
    if running {
        return clear_or_keep;
    }
    // A start may have used it up to `last_used_every` after the tag was last written.
    let used_recently = last_used.is_some_and(|t| now < t + grace + last_used_every(grace));
    if used_recently {
        return clear_or_keep;
    }
    // A mark older than the last use was made before that use: it does not count.
    match unused_since.filter(|u| last_used.is_none_or(|l| *u > l)) {
        None => Step::Mark,
        Some(since) if now.duration_since(since).unwrap_or_default() >= grace => Step::Deregister,
        Some(_) => Step::Keep,
    }
}

fn unix_tag(tags: &[(String, String)], key: &str) -> Option<SystemTime> {
    handoff::parse_unix_time(tag(tags, key)?)
}

fn tag<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Whether a revision with these tags is one this sweeper may clean: registered by the driver
/// for a job-written definition, in this Nomad cluster and region.
pub fn is_ours(tags: &[(String, String)], nomad: &NomadIdentity) -> bool {
    tag(tags, taskdef::TAG_MANAGED_BY) == Some(super::MANAGED_BY)
        && tag(tags, taskdef::TAG_DEFINITION_HASH).is_some_and(|h| !h.is_empty())
        && tag(tags, handoff::TAG_REGION) == Some(nomad.region.as_str())
        && tag(tags, handoff::TAG_CLUSTER).filter(|c| !c.is_empty()) == nomad.cluster.as_deref()
}

/// What a round did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub looked_at: usize,
    pub marked: usize,
    pub deregistered: Vec<String>,
}

/// One clean-up round. `running`: the task definition ARNs of every task (the driver's or not)
/// of every swept cluster this round; `dry_run` logs what would be deregistered.
pub fn round(
    client: &EcsClient,
    registry: &Registry,
    nomad: &NomadIdentity,
    running: &HashSet<String>,
    grace: Duration,
    dry_run: bool,
) -> Outcome {
    let policy = || RetryPolicy::within(CALL_DEADLINE);
    let mut out = Outcome::default();
    let mut arns = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_LIST_PAGES {
        match with_retries(policy(), || {
            client.list_task_definitions(None, "ACTIVE", token.as_deref())
        }) {
            Ok((page, next)) => {
                arns.extend(page);
                token = next;
            }
            Err(e) => {
                log::warn!("task definition clean-up: cannot list ACTIVE task definitions: {e}");
                return out;
            }
        }
        if token.is_none() {
            break;
        }
    }
    let mut new_reads = 0usize;
    let now = SystemTime::now();
    for arn in arns {
        match registry.cleanup_known(&arn) {
            Some(false) => continue,
            Some(true) if running.contains(&arn) => continue,
            None if new_reads >= MAX_NEW_DESCRIBES_PER_ROUND => continue,
            None => new_reads += 1,
            Some(true) => {}
        }
        // Read afresh: another client may have marked or used it since.
        let tags = match with_retries(policy(), || client.describe_task_definition_with_tags(&arn)) {
            Ok((_, tags)) => tags,
            Err(e) => {
                log::debug!("task definition clean-up: cannot read {arn}: {e}");
                continue;
            }
        };
        let ours = is_ours(&tags, nomad);
        registry.set_cleanup_known(&arn, ours);
        if !ours {
            continue;
        }
        out.looked_at += 1;
        let unused_since = unix_tag(&tags, TAG_UNUSED_SINCE);
        let last_used = unix_tag(&tags, TAG_LAST_USED);
        match step(running.contains(&arn), unused_since, last_used, now, grace) {
            Step::Keep => {}
            Step::ClearMark => {
                let keys = [TAG_UNUSED_SINCE.to_string()];
                if let Err(e) = with_retries(policy(), || client.untag_resource(&arn, &keys)) {
                    log::debug!("task definition clean-up: cannot clear the unused mark of {arn}: {e}");
                }
            }
            Step::Mark => {
                // Rounded up: the whole-second tag never cuts the grace time short.
                let tag = [handoff::unix_time_tag(
                    TAG_UNUSED_SINCE,
                    now + Duration::from_millis(999),
                )];
                match with_retries(policy(), || client.tag_resource(&arn, &tag)) {
                    Ok(()) => {
                        out.marked += 1;
                        log::info!("task definition clean-up: {arn} is not used; it will be deregistered after {grace:?} unless a task uses it again");
                    }
                    Err(e) => log::warn!("task definition clean-up: cannot mark {arn} as unused: {e}"),
                }
            }
            Step::Deregister if dry_run => {
                log::info!("task definition clean-up (dry run): would deregister {arn}, unused for {grace:?}");
            }
            Step::Deregister => match with_retries(policy(), || client.deregister_task_definition(&arn)) {
                Ok(()) => {
                    registry.forget(&arn);
                    log::info!("task definition clean-up: deregistered {arn}, unused for {grace:?}");
                    out.deregistered.push(arn);
                }
                Err(e) => log::warn!("task definition clean-up: cannot deregister {arn}: {e}"),
            },
        }
    }
    out
}

/// Writes `nomad:last-used` on a revision a start just resolved, unless this process wrote it
/// less than [`last_used_every`] ago. A failure is logged and does not fail the start.
pub fn note_use(client: &EcsClient, registry: &Registry, arn: &str, grace: Duration) {
    let now = SystemTime::now();
    if !registry.due_use_mark(arn, now, last_used_every(grace)) {
        return;
    }
    let tag = [handoff::unix_time_tag(TAG_LAST_USED, now)];
    if let Err(e) = with_retries(RetryPolicy::within(CALL_DEADLINE), || client.tag_resource(arn, &tag)) {
        log::warn!("cannot mark task definition {arn} as used (the clean-up may take it for unused): {e}");
        registry.forget_use_mark(arn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const GRACE: Duration = Duration::from_secs(3600);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_running_revision_is_kept_and_its_mark_cleared() {
        assert_eq!(step(true, None, None, at(10_000), GRACE), Step::Keep);
        assert_eq!(step(true, Some(at(1)), None, at(10_000), GRACE), Step::ClearMark);
    }

    #[test]
    fn an_unused_revision_is_marked_then_deregistered_after_the_grace_time() {
        assert_eq!(step(false, None, None, at(10_000), GRACE), Step::Mark);
        assert_eq!(
            step(false, Some(at(10_000)), None, at(10_000 + 3599), GRACE),
            Step::Keep
        );
        assert_eq!(
            step(false, Some(at(10_000)), None, at(10_000 + 3600), GRACE),
            Step::Deregister
        );
    }

    #[test]
    fn a_recent_start_keeps_it_with_a_margin_for_the_throttled_tag() {
        // Used 1 h 10 min ago: the tag may be up to 15 min late, so it still counts.
        let now = at(100_000);
        let used = at(100_000 - 4200);
        assert_eq!(step(false, None, Some(used), now, GRACE), Step::Keep);
        assert_eq!(step(false, Some(at(1)), Some(used), now, GRACE), Step::ClearMark);
        // 1 h 15 min: no longer.
        assert_eq!(step(false, None, Some(at(100_000 - 4500)), now, GRACE), Step::Mark);
    }

    #[test]
    fn a_mark_older_than_the_last_use_does_not_count() {
        let now = at(100_000);
        let old_mark = at(50_000);
        let used_after = at(60_000);
        assert_eq!(step(false, Some(old_mark), Some(used_after), now, GRACE), Step::Mark);
        let new_mark = at(90_000);
        assert_eq!(
            step(false, Some(new_mark), Some(used_after), now, GRACE),
            Step::Deregister
        );
    }

    #[test]
    fn only_the_drivers_revisions_of_this_nomad_identity_are_ours() {
        let nomad = NomadIdentity {
            cluster: Some("blue".into()),
            region: "global".into(),
        };
        let tags = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let full = [
            (taskdef::TAG_MANAGED_BY, super::super::MANAGED_BY),
            (taskdef::TAG_DEFINITION_HASH, "abc"),
            (handoff::TAG_REGION, "global"),
            (handoff::TAG_CLUSTER, "blue"),
        ];
        assert!(is_ours(&tags(&full), &nomad));
        assert!(
            !is_ours(&tags(&full[..3]), &nomad),
            "no cluster tag: another (unnamed) cluster's"
        );
        assert!(!is_ours(&tags(&full[1..]), &nomad), "not registered by the driver");
        let mut other = full;
        other[2] = (handoff::TAG_REGION, "eu");
        assert!(!is_ours(&tags(&other), &nomad));
        let unnamed = NomadIdentity {
            cluster: None,
            region: "global".into(),
        };
        assert!(is_ours(&tags(&full[..3]), &unnamed));
        assert!(!is_ours(&tags(&full), &unnamed));
    }

    #[test]
    fn last_used_is_written_at_most_every_quarter_grace() {
        assert_eq!(last_used_every(GRACE), Duration::from_secs(900));
        assert_eq!(last_used_every(Duration::from_secs(2)), Duration::from_secs(1));
    }
}
