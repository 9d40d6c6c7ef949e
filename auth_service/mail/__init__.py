"""Mail: render a mail, queue it in the outbox, deliver it; the dev mailbox."""
