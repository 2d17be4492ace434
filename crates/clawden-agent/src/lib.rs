//! The agent runtime (built in the agents issue).
