//! A model of Nomad's logmon (placeholder; filled in by the log-streaming work).
