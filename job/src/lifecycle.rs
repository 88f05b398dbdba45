//! When a job that sits in a call stops (the recorder, the transcriber): the pure decision behind the job
//! shell's main loop, and the roster of people it is there for.
//!
//! Inputs arrive as `handle_*(now, …)` calls (time is the job's monotonic clock, passed in); the shell asks
//! [`Lifecycle::poll_stop`] after each one. The first reason wins and is reported exactly once, so a SIGTERM
//! that races a `job_stop` message produces one clean finish, not two.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use calls_protocol::signalling::{ParticipantInfo, Role};

/// Why a job left the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The container was asked to stop (SIGTERM from the offloader or Docker).
    Signal,
    /// The SFU sent `job_stop` to the bot.
    JobStop,
    /// The call ended.
    CallEnded,
    /// Nobody but the bot was in the call for this long.
    Alone(Duration),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Signal => f.write_str("stop signal received"),
            StopReason::JobStop => f.write_str("job_stop received from the sfu"),
            StopReason::CallEnded => f.write_str("the call ended"),
            StopReason::Alone(after) => write!(f, "alone in the call for {} s", after.as_secs()),
        }
    }
}

/// The stop state machine.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    alone_timeout: Duration,
    alone_since: Option<Duration>,
    reason: Option<StopReason>,
    reported: bool,
}

impl Lifecycle {
    /// Starts at `now` with nobody else known to be in the call yet (so an empty call also times out).
    pub fn new(now: Duration, alone_timeout: Duration) -> Lifecycle {
        Lifecycle {
            alone_timeout,
            alone_since: Some(now),
            reason: None,
            reported: false,
        }
    }

    /// How many participants other than the bot are in the call now.
    pub fn handle_participants(&mut self, now: Duration, others: usize) {
        self.alone_since = match (others, self.alone_since) {
            (0, Some(since)) => Some(since),
            (0, None) => Some(now),
            _ => None,
        };
    }

    /// SIGTERM or SIGINT arrived.
    pub fn handle_signal(&mut self) {
        self.stop(StopReason::Signal);
    }

    /// The SFU asked the bot to stop.
    pub fn handle_job_stop(&mut self) {
        self.stop(StopReason::JobStop);
    }

    /// The SFU reported that the call ended (or closed the session for good).
    pub fn handle_call_ended(&mut self) {
        self.stop(StopReason::CallEnded);
    }

    /// The reason to stop, once, as soon as there is one at `now`.
    pub fn poll_stop(&mut self, now: Duration) -> Option<StopReason> {
        if let Some(since) = self.alone_since {
            if now.saturating_sub(since) >= self.alone_timeout {
                self.stop(StopReason::Alone(self.alone_timeout));
            }
        }
        if self.reported {
            return None;
        }
        let reason = self.reason.clone()?;
        self.reported = true;
        Some(reason)
    }

    /// When the alone timer fires if nothing changes (for the shell's sleep), `None` if not alone.
    pub fn alone_deadline(&self) -> Option<Duration> {
        self.alone_since.map(|since| since + self.alone_timeout)
    }

    fn stop(&mut self, reason: StopReason) {
        self.reason.get_or_insert(reason);
    }
}

/// The people in the call (bots excluded), by session id, in join order of their names.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    people: BTreeMap<String, String>,
}

impl Roster {
    /// The roster as the bot found it when joining.
    pub fn new(initial: &[ParticipantInfo], own_session: &str) -> Roster {
        let mut roster = Roster::default();
        for info in initial {
            if info.session_id != own_session {
                roster.handle_joined(info);
            }
        }
        roster
    }

    /// Someone joined; bots do not count as people to record for.
    pub fn handle_joined(&mut self, info: &ParticipantInfo) {
        if info.role == Role::Participant {
            self.people
                .insert(info.session_id.clone(), info.name.clone());
        }
    }

    /// Someone left.
    pub fn handle_left(&mut self, session_id: &str) {
        self.people.remove(session_id);
    }

    /// How many people are in the call.
    pub fn count(&self) -> usize {
        self.people.len()
    }

    /// The display name of `session_id`, while they are in the call.
    pub fn name_of(&self, session_id: &str) -> Option<&str> {
        self.people.get(session_id).map(String::as_str)
    }

    /// Their session ids and display names, sorted by name (then session) for a stable picture.
    pub fn people(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut people: Vec<(&str, &str)> = self
            .people
            .iter()
            .map(|(session, name)| (session.as_str(), name.as_str()))
            .collect();
        people.sort_by_key(|&(session, name)| (name, session));
        people.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn keeps_recording_while_someone_is_there() {
        let mut lifecycle = Lifecycle::new(secs(0), secs(60));
        lifecycle.handle_participants(secs(1), 2);
        assert_eq!(lifecycle.poll_stop(secs(3600)), None);
        assert_eq!(lifecycle.alone_deadline(), None);
    }

    #[test]
    fn stops_after_being_alone_for_the_timeout() {
        let mut lifecycle = Lifecycle::new(secs(0), secs(60));
        lifecycle.handle_participants(secs(1), 1);
        lifecycle.handle_participants(secs(100), 0);
        assert_eq!(lifecycle.alone_deadline(), Some(secs(160)));
        assert_eq!(lifecycle.poll_stop(secs(159)), None);
        // Someone comes back: the timer restarts from the next time the bot is alone.
        lifecycle.handle_participants(secs(150), 1);
        lifecycle.handle_participants(secs(170), 0);
        assert_eq!(lifecycle.poll_stop(secs(200)), None);
        assert_eq!(
            lifecycle.poll_stop(secs(230)),
            Some(StopReason::Alone(secs(60)))
        );
    }

    #[test]
    fn an_empty_call_times_out_from_the_start() {
        let mut lifecycle = Lifecycle::new(secs(10), secs(30));
        assert_eq!(
            lifecycle.poll_stop(secs(40)),
            Some(StopReason::Alone(secs(30)))
        );
    }

    #[test]
    fn the_first_reason_wins_and_is_reported_once() {
        let mut lifecycle = Lifecycle::new(secs(0), secs(60));
        lifecycle.handle_participants(secs(0), 1);
        lifecycle.handle_job_stop();
        lifecycle.handle_signal();
        assert_eq!(lifecycle.poll_stop(secs(5)), Some(StopReason::JobStop));
        assert_eq!(lifecycle.poll_stop(secs(6)), None);
        lifecycle.handle_call_ended();
        assert_eq!(lifecycle.poll_stop(secs(7)), None);
    }

    fn info(session: &str, name: &str, role: Role) -> ParticipantInfo {
        ParticipantInfo {
            session_id: session.into(),
            name: name.into(),
            role,
            purpose: None,
            muted: false,
            screen_on: false,
        }
    }

    #[test]
    fn the_roster_counts_people_not_bots_or_ourselves() {
        let initial = [
            info("s1", "Zoe", Role::Participant),
            info("me", "Recorder", Role::Bot),
            info("s2", "Adam", Role::Participant),
            info("s3", "Transcriber", Role::Bot),
        ];
        let mut roster = Roster::new(&initial, "me");
        assert_eq!(roster.count(), 2);
        let names = |roster: &Roster| {
            roster
                .people()
                .map(|(_, name)| name.to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&roster), ["Adam", "Zoe"]);
        roster.handle_left("s1");
        roster.handle_joined(&info("s4", "Bea", Role::Participant));
        assert_eq!(names(&roster), ["Adam", "Bea"]);
        assert_eq!(
            roster
                .people()
                .map(|(session, _)| session)
                .collect::<Vec<_>>(),
            ["s2", "s4"]
        );
    }

    #[test]
    fn reasons_read_well_in_logs() {
        assert_eq!(
            StopReason::Alone(secs(60)).to_string(),
            "alone in the call for 60 s"
        );
        assert_eq!(StopReason::Signal.to_string(), "stop signal received");
    }
}
