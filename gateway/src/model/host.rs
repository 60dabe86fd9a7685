//! Whether the gateway can reach a host.

use super::words;

words! {
    /// Whether the gateway can reach a host: its last look at it answered, or did not (then its
    /// agents are `unknown`, and the host's last error says why).
    pub enum HostStatus ("host status") {
        Reachable = "reachable",
        Unreachable = "unreachable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_word_reads_back_and_others_are_refused() {
        crate::model::assert_words(HostStatus::ALL, "host status");
    }
}
