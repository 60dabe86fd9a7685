//! How a notification channel is spoken to.

use super::words;

words! {
    /// How a notification channel is spoken to.
    pub enum ChannelKind ("channel kind") {
        /// An HTTP POST of a JSON document.
        Webhook = "webhook",
        /// ntfy's publish format: the message as the body, the rest as headers.
        Ntfy = "ntfy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_word_reads_back_and_others_are_refused() {
        crate::model::assert_words(ChannelKind::ALL, "channel kind");
    }
}
