//! What an operator may do besides using their own agents.

use super::words;

words! {
    /// An operator's role: an admin sees and uses every agent and host; an operator their own
    /// and those shared with them (`agents::access`).
    pub enum Role ("role") {
        Admin = "admin",
        Operator = "operator",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_word_reads_back_and_others_are_refused() {
        crate::model::assert_words(Role::ALL, "role");
    }
}
