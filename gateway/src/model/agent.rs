//! An agent's status as the gateway knows it, and what a running one is doing.

use super::words;

words! {
    /// An agent's status as the gateway knows it.
    pub enum AgentStatus ("agent status") {
        /// `create` is under way on the host.
        Creating = "creating",
        Running = "running",
        Exited = "exited",
        Stopped = "stopped",
        /// Its host could not be asked.
        Unknown = "unknown",
    }
}

impl From<hostctl::api::HostAgentStatus> for AgentStatus {
    fn from(s: hostctl::api::HostAgentStatus) -> Self {
        match s {
            hostctl::api::HostAgentStatus::Running => AgentStatus::Running,
            hostctl::api::HostAgentStatus::Exited => AgentStatus::Exited,
            hostctl::api::HostAgentStatus::Stopped => AgentStatus::Stopped,
        }
    }
}

words! {
    /// What a running agent is doing.
    pub enum ActivityState ("activity") {
        /// Its screen changed recently.
        Working = "working",
        /// It waits for the operator (a prompt or a question on its screen).
        Waiting = "waiting",
        /// No output and no input for the idle period.
        Idle = "idle",
    }
}

words! {
    /// What told an agent's activity.
    pub enum ActivitySource ("activity source") {
        /// The events its CLI reported through its hooks.
        Hook = "hook",
        /// Its screen (the rules of its template or CLI), and its output and input times.
        Screen = "screen",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::assert_words;

    #[test]
    fn each_word_reads_back_and_others_are_refused() {
        assert_words(AgentStatus::ALL, "agent status");
        assert_words(ActivityState::ALL, "activity");
        assert_words(ActivitySource::ALL, "activity source");
        assert_eq!(
            AgentStatus::WORDS,
            ["creating", "running", "exited", "stopped", "unknown"]
        );
    }
}
