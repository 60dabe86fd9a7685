//! The words of the operations journal: what an operation does, the steps it records and how
//! it ended (the journal's decisions are `agents::journal`'s).

use super::words;

words! {
    /// What an operation does.
    pub enum OperationKind ("operation kind") {
        Create = "create",
        Clone = "clone",
        Migrate = "migrate",
        Restore = "restore",
        Destroy = "destroy",
    }
}

words! {
    /// The steps an operation records, in the order they happen (each kind uses some of them).
    #[derive(PartialOrd, Ord)]
    pub enum Step ("operation step") {
        /// Written, nothing done yet (the new agent's name may be reserved).
        Begun = "begun",
        /// migrate: the agent was stopped on its old host.
        SourceStopped = "source-stopped",
        /// clone, migrate, restore: the workspace copy on the new host is whole and verified.
        Copied = "copied",
        /// The agent was made on its (new) host.
        Created = "created",
        /// migrate: the store names the new host.
        Switched = "switched",
        /// destroy: the host removed the agent.
        HostDone = "host-done",
    }
}

words! {
    /// How an operation ended.
    pub enum Outcome ("operation outcome") {
        /// Every step was done (by the command, or finished after a restart).
        Done = "done",
        /// It failed and what it had done was undone (by the command).
        Failed = "failed",
        /// Cut short by the gateway's death, and undone after a restart.
        Undone = "undone",
        /// Cut short by the gateway's death, and finished after a restart.
        Finished = "finished",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::assert_words;

    #[test]
    fn each_word_reads_back_and_others_are_refused() {
        assert_words(OperationKind::ALL, "operation kind");
        assert_words(Step::ALL, "operation step");
        assert_words(Outcome::ALL, "operation outcome");
        let mut steps = Step::ALL.to_vec();
        steps.sort();
        assert_eq!(steps, Step::ALL, "declared in the order they happen");
    }
}
